//! [`OrderService`]: places, reads and lists orders, and reports on the store and queue.

use std::sync::Arc;
use std::time::Duration;

mod captures;
pub use captures::{CaptureError, Captured};
mod refunds;
mod sweep;
pub(crate) use refunds::settlement as refund_settlement;
pub use refunds::{RefundError, Refunded};

use tracing::{Instrument as _, info_span, instrument, warn};

use super::batch::{self, Batcher};
use super::group_commit::GroupCommit;
use super::store_gate::StoreGate;
use super::{chrono, micros_now};
use crate::ids::OrderId;
use crate::order::{CancelReason, NewOrder, Order};
use crate::policy::circuit_breaker::BreakerConfig;
use crate::ports::{
    CancelResult, Clock, Job, OrderFilter, OrderPage, OrderRepo, PageRequest, PaymentQueue,
    QueueError, RepoError,
};
use crate::request::{Fingerprint, KeyedRequest, RequestKey};

/// Places and reads orders.
pub struct OrderService<R: ?Sized, Q: ?Sized, C: ?Sized> {
    repo: Arc<R>,
    queue: Arc<Q>,
    clock: Arc<C>,
    group: Arc<GroupCommit>,
    jobs: Arc<Batcher<Job, Result<(), QueueError>>>,
    gate: Arc<StoreGate>,
    /// How the orders it places are paid.
    capture: crate::payment::CaptureMethod,
    /// Where captures of authorized payments go, when it takes them.
    gateway: Option<Arc<dyn crate::ports::PaymentGateway>>,
}

impl<R: ?Sized, Q: ?Sized, C: ?Sized> Clone for OrderService<R, Q, C> {
    fn clone(&self) -> Self {
        Self {
            repo: Arc::clone(&self.repo),
            queue: Arc::clone(&self.queue),
            clock: Arc::clone(&self.clock),
            group: Arc::clone(&self.group),
            jobs: Arc::clone(&self.jobs),
            gate: Arc::clone(&self.gate),
            capture: self.capture,
            gateway: self.gateway.clone(),
        }
    }
}

impl<R, Q, C> OrderService<R, Q, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    C: Clock + ?Sized,
{
    /// The clock it reads.
    pub fn clock(&self) -> Arc<C> {
        Arc::clone(&self.clock)
    }

    /// A service over these adapters.
    pub fn new(repo: Arc<R>, queue: Arc<Q>, clock: Arc<C>) -> Self {
        Self {
            repo,
            queue,
            clock,
            group: Arc::new(GroupCommit::default()),
            jobs: Arc::new(Batcher::new(super::group_commit::MAX_BATCH)),
            gate: Arc::new(StoreGate::default()),
            capture: crate::payment::CaptureMethod::Automatic,
            gateway: None,
        }
    }

    /// The same service placing orders paid with `capture` ([`CaptureMethod::Automatic`]
    /// unless set): with [`CaptureMethod::Manual`] the worker only authorizes an order's
    /// payment, and [`capture`](Self::capture) takes it.
    ///
    /// [`CaptureMethod::Automatic`]: crate::payment::CaptureMethod::Automatic
    /// [`CaptureMethod::Manual`]: crate::payment::CaptureMethod::Manual
    #[must_use]
    pub fn with_capture(mut self, capture: crate::payment::CaptureMethod) -> Self {
        self.capture = capture;
        self
    }

    /// The same service taking captures and refunds through `gateway`.
    #[must_use]
    pub fn with_gateway(mut self, gateway: Arc<dyn crate::ports::PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// The same service with its store gate set to `config` ([`StoreGate::DEFAULT`] unless
    /// set): how many failures in a row make it fail fast, and for how long.
    #[must_use]
    pub fn with_store_breaker(mut self, config: BreakerConfig) -> Self {
        self.gate = Arc::new(StoreGate::new(config));
        self
    }

    /// Runs a store call through the gate.
    async fn store<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RepoError>>,
    ) -> Result<T, RepoError> {
        self.gate
            .call(&*self.clock, call, || self.repo.ping())
            .await
    }

    /// Whether the store answers (for readiness checks).
    pub async fn check_store(&self) -> Result<(), RepoError> {
        self.repo.ping().await
    }

    /// Whether the queue answers (for readiness checks).
    pub async fn check_queue(&self) -> Result<(), QueueError> {
        self.queue.ping().await
    }

    /// Places an order: stores it durably as `pending`, then queues its payment.
    ///
    /// Concurrent placements share transactions ([`group_commit`](super::group_commit)): one durable commit serves
    /// every order that arrived while the previous one was being written.
    ///
    /// Once this returns `Ok` the order is never lost. If queueing fails the order is
    /// still accepted: it stays due in the store, and [`PaymentProcessor::reconcile`](super::PaymentProcessor::reconcile) queues
    /// it later.
    pub async fn place(&self, new: NewOrder) -> Result<Order, RepoError> {
        self.place_telling(new, |_| {}).await
    }

    /// [`place`](Self::place), telling `stored` the order once it is stored, before its
    /// payment job is queued: a caller that answers its client from `stored` answers as soon
    /// as the order is durable, one stage earlier, and the job is queued meanwhile (as with
    /// `place`, a failed enqueue, or one lost with the process, is the reconciler's).
    #[instrument(name = "place", skip_all, fields(order_id))]
    pub async fn place_telling(
        &self,
        new: NewOrder,
        stored: impl FnOnce(&Order),
    ) -> Result<Order, RepoError> {
        let order = new
            .with_capture(self.capture)
            .place(OrderId::new(), micros_now(&*self.clock));
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        self.group
            .insert(&*self.repo, &self.gate, &*self.clock, order.clone())
            .instrument(info_span!("store insert"))
            .await?;
        stored(&order);
        if let Err(e) = self.enqueue(&order).await {
            warn!(error = %e, "order stored but not queued; the reconciler will queue it");
        }
        Ok(order)
    }

    /// Places an order under a client's idempotency key: a retry of the same request
    /// returns the first order (`replayed`), never a second one.
    ///
    /// A key reused for a different order gives [`PlaceError::KeyReused`]; a key whose first
    /// request is still being stored gives [`PlaceError::InFlight`]. The key is completed
    /// in the same transaction that stores the order.
    pub async fn place_once(&self, new: NewOrder, key: &RequestKey) -> Result<Placed, PlaceError> {
        self.place_once_telling(new, key, |_| {}).await
    }

    /// [`place_once`](Self::place_once), telling `stored` the answer once it is known (the
    /// order stored, or the earlier one found), before a new order's payment job is queued,
    /// as [`place_telling`](Self::place_telling) does.
    #[instrument(name = "place_once", skip_all, fields(order_id, key = %key))]
    pub async fn place_once_telling(
        &self,
        new: NewOrder,
        key: &RequestKey,
        stored: impl FnOnce(&Placed),
    ) -> Result<Placed, PlaceError> {
        let now = micros_now(&*self.clock);
        let token = match self.reserve(key, &Fingerprint::of(&new)).await? {
            Reserved::New(token) => token,
            Reserved::Replay(order) => {
                let placed = Placed {
                    order: *order,
                    replayed: true,
                };
                stored(&placed);
                return Ok(placed);
            }
        };
        let order = new.with_capture(self.capture).place(OrderId::new(), now);
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        if let Err(e) = self
            .store(self.repo.insert_for_request(&order, key, token))
            .instrument(info_span!("store insert"))
            .await
        {
            if !matches!(e, RepoError::RequestSuperseded(_)) {
                let _ = self.repo.abandon_request(key, token).await;
            }
            return Err(e.into());
        }
        metrics::counter!(crate::observe::ORDERS_PLACED).increment(1);
        let placed = Placed {
            order,
            replayed: false,
        };
        stored(&placed);
        if let Err(e) = self.enqueue(&placed.order).await {
            warn!(error = %e, "order stored but not queued; the reconciler will queue it");
        }
        Ok(placed)
    }

    /// Cancels order `id` for `reason`: at once when payment has not started; otherwise the
    /// order becomes `cancelling` and its payment job is queued, so a worker refunds what was
    /// captured (or voids the charge) and then cancels it.
    ///
    /// Once this returns `Ok(CancelResult::Cancelling(_))` the refund happens, also if
    /// queueing fails: the order is due in the store and the reconciler queues it.
    #[instrument(skip_all, fields(order_id = %id, reason = %reason))]
    pub async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
    ) -> Result<CancelResult, RepoError> {
        let result = self
            .store(self.repo.cancel(id, reason, micros_now(&*self.clock)))
            .await?;
        if let CancelResult::Cancelled(order) = &result {
            crate::observe::terminal(order.status, order.updated_at - order.created_at);
        }
        if let CancelResult::Cancelling(order) = &result {
            if let Err(e) = self.enqueue(order).await {
                warn!(error = %e, "cancellation stored but not queued; the reconciler will queue it");
            }
        }
        Ok(result)
    }

    /// Cancels under a client's idempotency key: a retry of the same cancellation answers
    /// with the order as it is now ([`Cancelled::Replayed`]); the same key used for another
    /// request gives [`PlaceError::KeyReused`], and while the first is in flight
    /// [`PlaceError::InFlight`].
    #[instrument(skip_all, fields(order_id = %id, key = %key))]
    pub async fn cancel_once(
        &self,
        id: OrderId,
        reason: CancelReason,
        key: &RequestKey,
    ) -> Result<Cancelled, PlaceError> {
        let token = match self
            .reserve(key, &Fingerprint::of_cancel(id, reason))
            .await?
        {
            Reserved::New(token) => token,
            Reserved::Replay(order) => return Ok(Cancelled::Replayed(*order)),
        };
        let result = match self.cancel(id, reason).await {
            Ok(result) => result,
            Err(e) => {
                let _ = self.repo.abandon_request(key, token).await;
                return Err(e.into());
            }
        };
        // The cancellation itself is idempotent: if completing the key fails, a retry with
        // the key takes the stale reservation over and cancels again, to the same effect.
        self.repo.complete_request(key, token, id).await?;
        Ok(Cancelled::Now(result))
    }

    /// Word from the payment processor that order `id`'s payment changed (an event it
    /// signed): a worker looks at the order at once, asking the gateway, instead of at its
    /// next scheduled attempt. The event is never taken as the outcome itself, so one that
    /// arrives late, twice or out of order cannot move the order anywhere the gateway's own
    /// answer would not. Only an order whose payment a worker still has to do is touched.
    /// `None` when there is no such order.
    #[instrument(skip_all, fields(order_id = %id))]
    pub async fn hasten(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        let now = micros_now(&*self.clock);
        let order = self.store(self.repo.hasten(id, now)).await?;
        if let Some(order) = order.as_ref().filter(|o| !o.status.is_terminal()) {
            if let Err(e) = self.enqueue(order).await {
                warn!(error = %e, "order hastened but not queued; the reconciler will queue it");
            }
        }
        Ok(order)
    }

    /// Records that the processor's event `event_id` arrived: `true` the first time,
    /// `false` for one sent again.
    pub async fn first_event(&self, event_id: &str) -> Result<bool, RepoError> {
        let now = micros_now(&*self.clock);
        self.store(self.repo.record_processor_event(event_id, now))
            .await
    }

    /// Queues the job of `order`, in the order's trace, in one call with the jobs queued
    /// concurrently (so a group commit's orders are queued together).
    async fn enqueue(&self, order: &Order) -> Result<(), QueueError> {
        let flush = |jobs: Vec<Job>| async move {
            let queued = self.queue.enqueue_many(&jobs).await;
            batch::each(jobs.len(), &queued, QueueError::replicate)
        };
        self.jobs
            .submit(Job::of(order), flush)
            .instrument(info_span!("queue enqueue"))
            .await
            .unwrap_or_else(|abandoned| Err(abandoned.into()))
    }

    /// Reserves `key` for a request with `fingerprint`, or finds the order an earlier
    /// request with it left; a key in flight or used for another request is an error.
    async fn reserve(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
    ) -> Result<Reserved, PlaceError> {
        let now = micros_now(&*self.clock);
        match self
            .store(
                self.repo
                    .begin_request(key, fingerprint, now, REQUEST_STALE_AFTER),
            )
            .await?
        {
            KeyedRequest::New(token) => Ok(Reserved::New(token)),
            KeyedRequest::InFlight => Err(PlaceError::InFlight),
            KeyedRequest::Mismatch => Err(PlaceError::KeyReused),
            KeyedRequest::Completed(id) => {
                let order = self
                    .store(self.repo.get(id))
                    .await?
                    .ok_or(RepoError::NotFound(id))?;
                Ok(Reserved::Replay(Box::new(order)))
            }
        }
    }

    /// Forgets idempotency keys older than `retention`; returns how many.
    pub async fn purge_request_keys(&self, retention: Duration) -> Result<u64, RepoError> {
        self.repo
            .purge_requests(micros_now(&*self.clock) - chrono(retention))
            .await
    }

    /// The order with this id, if any.
    pub async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        self.store(self.repo.get(id)).await
    }

    /// A page of orders, newest first.
    pub async fn list(
        &self,
        filter: &OrderFilter,
        page: PageRequest,
    ) -> Result<OrderPage, RepoError> {
        self.store(self.repo.list(filter, page)).await
    }
}

/// How long a reservation of an idempotency key may stay uncompleted before another request
/// with the key may take it over (its request is presumed dead).
pub const REQUEST_STALE_AFTER: Duration = Duration::from_secs(60);

/// How long idempotency keys are kept: a retry later than this creates a new order.
pub const REQUEST_KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// An order placed under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The order.
    pub order: Order,
    /// Whether it was placed by an earlier request with the same key.
    pub replayed: bool,
}

/// What reserving a client's key found.
enum Reserved {
    /// The key is this request's now, under this token.
    New(uuid::Uuid),
    /// An earlier request with the key left this order.
    Replay(Box<Order>),
}

/// A cancellation under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// This request cancelled (or found the order already cancelled or not cancellable).
    Now(CancelResult),
    /// An earlier request with the same key did; the order as it is now.
    Replayed(Order),
}

/// Why an order could not be placed (or cancelled) under an idempotency key.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The key was used for a different order.
    #[error("the idempotency key was used for a different order")]
    KeyReused,
    /// A request with the key is still being stored.
    #[error("a request with this idempotency key is in flight")]
    InFlight,
    /// The store failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}
