//! The services the binaries call: [`OrderService`] for the API, [`PaymentProcessor`] for
//! the worker. Both are generic over the ports and hold no I/O of their own.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, instrument, warn};

use crate::ids::{OrderId, WorkerId};
use crate::order::{NewOrder, Order, OrderEvent, OrderStatus, Transition};
use crate::payment::{AttemptOutcome, ChargeRequest, PaymentAttempt};
use crate::policy::circuit_breaker::{
    BreakerConfig, BreakerState, CircuitBreaker, Permit, Rejection,
};
use crate::policy::retry::{RetryDecision, RetryPolicy};
use crate::ports::{
    Claim, Clock, Delivery, Lease, OrderFilter, OrderPage, OrderRepo, PageRequest, PaymentGateway,
    PaymentQueue, QueueError, RepoError,
};
use crate::request::{Fingerprint, KeyedRequest, RequestKey};

pub mod group_commit;

use group_commit::GroupCommit;

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The clock's time at the microsecond precision every store keeps.
fn micros_now<C: Clock + ?Sized>(clock: &C) -> DateTime<Utc> {
    clock.now().trunc_subsecs(6)
}

/// Places and reads orders.
pub struct OrderService<R: ?Sized, Q: ?Sized, C: ?Sized> {
    repo: Arc<R>,
    queue: Arc<Q>,
    clock: Arc<C>,
    group: Arc<GroupCommit>,
}

impl<R: ?Sized, Q: ?Sized, C: ?Sized> Clone for OrderService<R, Q, C> {
    fn clone(&self) -> Self {
        Self {
            repo: Arc::clone(&self.repo),
            queue: Arc::clone(&self.queue),
            clock: Arc::clone(&self.clock),
            group: Arc::clone(&self.group),
        }
    }
}

impl<R, Q, C> OrderService<R, Q, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    C: Clock + ?Sized,
{
    /// A service over these adapters.
    pub fn new(repo: Arc<R>, queue: Arc<Q>, clock: Arc<C>) -> Self {
        Self {
            repo,
            queue,
            clock,
            group: Arc::new(GroupCommit::default()),
        }
    }

    /// The store.
    pub fn repo(&self) -> &Arc<R> {
        &self.repo
    }

    /// Places an order: stores it durably as `pending`, then queues its payment.
    ///
    /// Concurrent placements share transactions ([`group_commit`]): one durable commit serves
    /// every order that arrived while the previous one was being written.
    ///
    /// Once this returns `Ok` the order is never lost. If queueing fails the order is
    /// still accepted: it stays due in the store, and [`PaymentProcessor::reconcile`] queues
    /// it later.
    #[instrument(skip_all, fields(order_id))]
    pub async fn place(&self, new: NewOrder) -> Result<Order, RepoError> {
        let order = new.place(OrderId::new(), micros_now(&*self.clock));
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        self.group.insert(&*self.repo, order.clone()).await?;
        if let Err(e) = self.queue.enqueue(order.id).await {
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
    #[instrument(skip_all, fields(order_id, key = %key))]
    pub async fn place_once(&self, new: NewOrder, key: &RequestKey) -> Result<Placed, PlaceError> {
        let now = micros_now(&*self.clock);
        let fingerprint = Fingerprint::of(&new);
        let token = match self
            .repo
            .begin_request(key, &fingerprint, now, REQUEST_STALE_AFTER)
            .await?
        {
            KeyedRequest::New(token) => token,
            KeyedRequest::InFlight => return Err(PlaceError::InFlight),
            KeyedRequest::Mismatch => return Err(PlaceError::KeyReused),
            KeyedRequest::Completed(id) => {
                let order = self.repo.get(id).await?.ok_or(RepoError::NotFound(id))?;
                return Ok(Placed {
                    order,
                    replayed: true,
                });
            }
        };
        let order = new.place(OrderId::new(), now);
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        if let Err(e) = self.repo.insert_for_request(&order, key, token).await {
            if !matches!(e, RepoError::RequestSuperseded(_)) {
                let _ = self.repo.abandon_request(key, token).await;
            }
            return Err(e.into());
        }
        if let Err(e) = self.queue.enqueue(order.id).await {
            warn!(error = %e, "order stored but not queued; the reconciler will queue it");
        }
        Ok(Placed {
            order,
            replayed: false,
        })
    }

    /// Forgets idempotency keys older than `retention`; returns how many.
    pub async fn purge_request_keys(&self, retention: Duration) -> Result<u64, RepoError> {
        self.repo
            .purge_requests(micros_now(&*self.clock) - chrono(retention))
            .await
    }

    /// The order with this id, if any.
    pub async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        self.repo.get(id).await
    }

    /// A page of orders, newest first.
    pub async fn list(
        &self,
        filter: &OrderFilter,
        page: PageRequest,
    ) -> Result<OrderPage, RepoError> {
        self.repo.list(filter, page).await
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

/// Why an order could not be placed under an idempotency key.
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

/// Settings of a [`PaymentProcessor`].
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// This worker's name, unique among running workers.
    pub worker: WorkerId,
    /// How long a claim on an order lasts; longer than a charge can take.
    pub lease: Duration,
    /// Retry policy for failed charges.
    pub retry: RetryPolicy,
    /// Circuit breaker settings.
    pub breaker: BreakerConfig,
    /// Deliveries after which a job is moved to the dead-letter queue.
    pub max_deliveries: u32,
    /// How long a job may sit unqueued in the store before the reconciler queues it again.
    pub reconcile_grace: Duration,
    /// Seed of the jitter's random numbers; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl ProcessorConfig {
    /// Defaults for a worker named `worker`: 30 s leases, the default retry policy and
    /// breaker, 10 deliveries, 30 s reconcile grace.
    pub fn new(worker: WorkerId) -> Self {
        Self {
            worker,
            lease: Duration::from_secs(30),
            retry: RetryPolicy::DEFAULT,
            breaker: BreakerConfig::default(),
            max_deliveries: 10,
            reconcile_grace: Duration::from_secs(30),
            seed: None,
        }
    }
}

/// What handling one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Paid: the order is `confirmed`.
    Confirmed,
    /// Declined or out of attempts: the order is `payment_failed`.
    Failed,
    /// The charge failed; another attempt is scheduled.
    RetryScheduled {
        /// When.
        at: DateTime<Utc>,
    },
    /// Not attempted now (breaker open, order busy or not yet due); queued again.
    Deferred {
        /// Until when.
        until: DateTime<Utc>,
    },
    /// The order was already terminal; the job was dropped.
    AlreadySettled,
    /// No such order; the job was dropped.
    UnknownOrder,
    /// Delivered too often; moved to the dead-letter queue.
    DeadLettered,
    /// Another worker took the order over mid-payment; it finishes the job.
    LeaseLost,
}

/// Errors of [`PaymentProcessor`]. The job stays pending and is delivered again later.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The store failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ProcessError {
    /// Whether the same call may succeed later.
    pub const fn is_retryable(&self) -> bool {
        match self {
            Self::Repo(e) => e.is_retryable(),
            Self::Queue(e) => e.is_retryable(),
        }
    }
}

/// The worker's logic: take a job, claim the order, charge through breaker and retry
/// policy, record the attempt and the transition, ack.
pub struct PaymentProcessor<R: ?Sized, Q: ?Sized, G: ?Sized, C: ?Sized> {
    repo: Arc<R>,
    queue: Arc<Q>,
    gateway: Arc<G>,
    clock: Arc<C>,
    breaker: Mutex<CircuitBreaker>,
    rng: Mutex<SmallRng>,
    config: ProcessorConfig,
}

impl<R, Q, G, C> PaymentProcessor<R, Q, G, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    G: PaymentGateway + ?Sized,
    C: Clock + ?Sized,
{
    /// A processor over these adapters.
    pub fn new(
        repo: Arc<R>,
        queue: Arc<Q>,
        gateway: Arc<G>,
        clock: Arc<C>,
        config: ProcessorConfig,
    ) -> Self {
        let rng = config.seed.map_or_else(
            || SmallRng::from_rng(&mut rand::rng()),
            SmallRng::seed_from_u64,
        );
        Self {
            repo,
            queue,
            gateway,
            clock,
            breaker: Mutex::new(CircuitBreaker::new(config.breaker)),
            rng: Mutex::new(rng),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<Q> {
        &self.queue
    }

    /// The breaker as it is now (for health reporting and tests).
    pub fn breaker(&self) -> CircuitBreaker {
        self.lock_breaker().clone()
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn draw(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random::<f64>()
    }

    /// Receives at most one new job, waiting up to `wait`, and handles it.
    pub async fn process_next(&self, wait: Duration) -> Result<Option<Outcome>, ProcessError> {
        let Some(delivery) = self.queue.receive(1, wait).await?.into_iter().next() else {
            return Ok(None);
        };
        self.handle(&delivery).await.map(Some)
    }

    /// Takes over jobs whose consumer has been silent for a lease: it probably crashed.
    pub async fn reclaim(&self, max: usize) -> Result<Vec<Delivery>, ProcessError> {
        Ok(self.queue.reclaim(self.config.lease, max).await?)
    }

    /// Queues again every order that is due but has waited past the grace period: its job
    /// was lost (a crash between commit and enqueue, or a queue that lost its data).
    /// Returns how many were queued.
    pub async fn reconcile(&self, limit: usize) -> Result<usize, ProcessError> {
        let before = micros_now(&*self.clock) - chrono(self.config.reconcile_grace);
        let due = self.repo.due(before, limit).await?;
        for id in &due {
            self.queue.enqueue(*id).await?;
        }
        if !due.is_empty() {
            info!(count = due.len(), "reconciler queued orders again");
        }
        Ok(due.len())
    }

    /// Handles one delivered job.
    #[instrument(skip_all, fields(order_id = %delivery.order_id, deliveries = delivery.deliveries))]
    pub async fn handle(&self, delivery: &Delivery) -> Result<Outcome, ProcessError> {
        if delivery.deliveries > self.config.max_deliveries {
            warn!("job delivered too often; moving it to the dead-letter queue");
            self.queue
                .dead_letter(
                    delivery,
                    &format!("delivered {} times", delivery.deliveries),
                )
                .await?;
            return Ok(Outcome::DeadLettered);
        }
        let now = micros_now(&*self.clock);
        let claim = match self
            .repo
            .claim(
                delivery.order_id,
                &self.config.worker,
                now,
                self.config.lease,
            )
            .await
        {
            Err(RepoError::NotFound(_)) => {
                warn!("job for an unknown order; dropping it");
                self.queue.ack(delivery).await?;
                return Ok(Outcome::UnknownOrder);
            }
            other => other?,
        };
        let (lease, order, uncertain) = match claim {
            Claim::Acquired {
                lease,
                order,
                uncertain,
            } => (lease, order, uncertain),
            Claim::Settled(_) => {
                self.queue.ack(delivery).await?;
                return Ok(Outcome::AlreadySettled);
            }
            Claim::Busy { until } | Claim::NotDue { at: until } => {
                self.queue.defer(delivery, until).await?;
                return Ok(Outcome::Deferred { until });
            }
        };
        let permit = self.lock_breaker().try_acquire(now);
        match permit {
            Ok(permit) => {
                self.charge(delivery, &lease, &order, uncertain, permit)
                    .await
            }
            Err(Rejection { reason, retry_at }) => {
                debug!(?reason, %retry_at, "breaker rejected the charge; deferring");
                self.finish(delivery, &lease, None, LeaseEnd::Retry(retry_at), now)
                    .await
                    .map(|()| Outcome::Deferred { until: retry_at })
            }
        }
    }

    /// Charges the claimed order once, then records the attempt and what follows from it.
    async fn charge(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        order: &Order,
        uncertain: bool,
        permit: Permit,
    ) -> Result<Outcome, ProcessError> {
        let request = ChargeRequest::for_order(order);
        let number = u32::try_from(order.payment_attempts.len())
            .ok()
            .and_then(|n| NonZeroU32::new(n + 1))
            .expect("fewer than u32::MAX attempts");
        let started_at = micros_now(&*self.clock);
        let result = self.gateway.charge(&request).await;
        let finished_at = micros_now(&*self.clock);
        let attempt = PaymentAttempt {
            number,
            outcome: AttemptOutcome::from_charge(&result),
            started_at,
            finished_at,
        };

        let (end, outcome) = match &result {
            Ok(_) => {
                self.lock_breaker().on_success(permit);
                (
                    LeaseEnd::Settle(OrderEvent::PaymentCaptured),
                    Outcome::Confirmed,
                )
            }
            Err(error) => {
                let outage_until = {
                    let mut breaker = self.lock_breaker();
                    if error.is_gateway_fault() {
                        breaker.on_failure(permit, finished_at);
                    } else {
                        breaker.on_success(permit);
                    }
                    match breaker.state() {
                        BreakerState::Open { until } if error.is_gateway_fault() => Some(until),
                        _ => None,
                    }
                };
                // A timed-out attempt, or a worker that died holding the order, may have
                // charged: until the gateway says, a clean failure cannot end the order.
                let unresolved = uncertain
                    || order
                        .payment_attempts
                        .iter()
                        .any(|a| matches!(a.outcome, AttemptOutcome::TimedOut { .. }));
                let decision = match outage_until {
                    // The gateway is in an outage: this failure says nothing about the order.
                    // Wait for the breaker instead of spending the order's attempts, so an
                    // outage never turns into a wave of failed orders.
                    Some(until) => {
                        let spread = self.config.breaker.probe_wait.mul_f64(self.draw());
                        RetryDecision::RetryAfter(
                            (until - finished_at).to_std().unwrap_or_default() + spread,
                        )
                    }
                    None => self
                        .config
                        .retry
                        .decide(number.get(), error, unresolved, self.draw()),
                };
                match decision {
                    RetryDecision::GiveUp => {
                        info!(%error, attempt = number.get(), "payment failed for good");
                        (LeaseEnd::Settle(OrderEvent::PaymentFailed), Outcome::Failed)
                    }
                    RetryDecision::RetryAfter(delay) => {
                        let at = finished_at + chrono(delay);
                        debug!(%error, attempt = number.get(), %at, "payment failed; retrying later");
                        (LeaseEnd::Retry(at), Outcome::RetryScheduled { at })
                    }
                }
            }
        };
        match self
            .finish(delivery, lease, Some(attempt), end, finished_at)
            .await
        {
            Ok(()) => Ok(outcome),
            Err(ProcessError::Repo(RepoError::LeaseLost(_))) => {
                // Another worker reclaimed this job and owns it now: leave the entry to it.
                warn!("lease lost during payment; the new holder finishes the order");
                Ok(Outcome::LeaseLost)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the end of a lease to the store, then settles the job in the queue.
    async fn finish(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        attempt: Option<PaymentAttempt>,
        end: LeaseEnd,
        now: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        match end {
            LeaseEnd::Settle(event) => {
                let transition = Transition::apply(OrderStatus::PaymentProcessing, event)
                    .expect("a claimed order is payment_processing");
                self.repo.settle(lease, attempt, transition, now).await?;
                self.queue.ack(delivery).await?;
            }
            LeaseEnd::Retry(at) => {
                self.repo.release(lease, attempt, at, now).await?;
                self.queue.defer(delivery, at).await?;
            }
        }
        Ok(())
    }
}

/// How a lease ends.
enum LeaseEnd {
    /// With a terminal transition.
    Settle(OrderEvent),
    /// With another attempt scheduled.
    Retry(DateTime<Utc>),
}
