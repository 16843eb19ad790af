//! [`PaymentProcessor`]: the worker's steps. Receive jobs, claim each order under a lease,
//! charge through the breaker, record the attempt and what follows from it, then settle the
//! job in the queue.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, error, info, instrument, warn};

use super::batch::{self, Batcher};
use super::decision::{self, AttemptContext, ChargeDecision, GatewayHealth, RefundDecision};
use super::{chrono, micros_now};
use crate::ids::{OrderId, WorkerId};
use crate::money::Money;
use crate::observe;
use crate::order::{Order, OrderEvent, OrderStatus, Transition};
use crate::payment::{
    Attempt, AttemptOutcome, GatewayError, PaymentAttempt, PaymentState, RefundAttempt,
    RefundOutcome,
};
use crate::policy::circuit_breaker::{
    BreakerConfig, BreakerState, CircuitBreaker, Permit, Rejection,
};
use crate::policy::retry::{ChargeHistory, RetryPolicy};
use crate::ports::{
    Claim, Clock, Delivery, EndLease, Lease, LeaseEnd, OrderRepo, PaymentGateway, PaymentQueue,
    QueueError, RepoError,
};

/// Most orders in one batched claim or lease-end statement.
pub const MAX_BATCH: usize = 512;

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
    /// The cancelled order's payment was refunded (or never captured and now void): the
    /// order is `cancelled`.
    Cancelled,
    /// The order was cancelled while its charge was in flight: the attempt is recorded and
    /// the order is due at once for its refund.
    CancelledMidCharge,
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
    claims: Batcher<OrderId, Result<Claim, RepoError>>,
    ends: Batcher<EndLease, Result<(), RepoError>>,
    acks: Batcher<Delivery, Result<(), QueueError>>,
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
        let breaker = CircuitBreaker::new(config.breaker);
        metrics::gauge!(observe::BREAKER_STATE).set(observe::breaker_state(&breaker.state()).0);
        Self {
            repo,
            queue,
            gateway,
            clock,
            breaker: Mutex::new(breaker),
            rng: Mutex::new(rng),
            claims: Batcher::new(MAX_BATCH),
            ends: Batcher::new(MAX_BATCH),
            acks: Batcher::new(MAX_BATCH),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// The breaker as it is now (for health reporting and tests).
    pub fn breaker(&self) -> CircuitBreaker {
        self.lock_breaker().clone()
    }

    fn lock_breaker(&self) -> MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn draw(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<f64>()
    }

    /// Whether the store answers (a worker waits for it before taking jobs, so a job is not
    /// taken only to be left to the lease because the store was not there yet).
    pub async fn check_store(&self) -> Result<(), RepoError> {
        self.repo.ping().await
    }

    /// Receives up to `max` new jobs, waiting up to `wait` for the first; each is then given
    /// to [`handle`](Self::handle) (concurrently, by the caller, as it sees fit).
    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, ProcessError> {
        Ok(self.queue.receive(max, wait).await?)
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
        for job in &due {
            self.queue.enqueue(job).await?;
            metrics::counter!(observe::RECONCILER_REQUEUED).increment(1);
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
            metrics::counter!(observe::JOBS_DEAD_LETTERED).increment(1);
            return Ok(Outcome::DeadLettered);
        }
        let now = micros_now(&*self.clock);
        let claim = match self.claim(delivery.order_id).await {
            Err(RepoError::NotFound(_)) => {
                warn!("job for an unknown order; dropping it");
                self.ack(delivery).await?;
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
                self.ack(delivery).await?;
                return Ok(Outcome::AlreadySettled);
            }
            Claim::Busy { until } | Claim::NotDue { at: until } => {
                self.queue.defer(delivery, until).await?;
                return Ok(Outcome::Deferred { until });
            }
        };
        let permit = self.lock_breaker().try_acquire(now);
        match permit {
            Ok(permit) if order.status == OrderStatus::Cancelling => {
                self.refund(delivery, &lease, &order, permit).await
            }
            Ok(permit) => {
                self.charge(delivery, &lease, &order, uncertain, permit)
                    .await
            }
            Err(Rejection { reason, retry_at }) => {
                debug!(?reason, %retry_at, "breaker rejected the call; deferring");
                metrics::counter!(observe::PAYMENT_ATTEMPTS, "outcome" => "rejected_by_breaker")
                    .increment(1);
                self.finish(delivery, &lease, None, LeaseEnd::Release { retry_at }, now)
                    .await
                    .map(|()| Outcome::Deferred { until: retry_at })
            }
        }
    }

    /// Refunds (or voids) what is left of the payment of a cancelling order once, then
    /// records the attempt and, when the gateway gave a definitive answer, cancels the
    /// order. Refunds asked for on their own whose outcome is not known are asked about
    /// first: what is left depends on them, and one the gateway does not answer fails the
    /// attempt. Refunds never give up: money taken must go back.
    async fn refund(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        order: &Order,
        permit: Permit,
    ) -> Result<Outcome, ProcessError> {
        let started_at = micros_now(&*self.clock);
        let (order, unsettled) = self.settle_partial_refunds(order).await?;
        let order = &order;
        let request = order.refund_request();
        if unsettled.is_none()
            && request.amount == Money::ZERO
            && order.partially_refunded() > Money::ZERO
        {
            // Refunds asked for on their own gave all of it back: nothing is left to send,
            // and the call the permit was for is not made.
            self.lock_breaker().on_abandoned(permit);
            let transition = Transition::apply(OrderStatus::Cancelling, OrderEvent::Refunded)
                .expect("a claimed cancelling order can be refunded");
            let ended = match self
                .finish(
                    delivery,
                    lease,
                    None,
                    LeaseEnd::Settle(transition),
                    started_at,
                )
                .await
            {
                Err(ProcessError::Repo(RepoError::LeaseLost(_))) => Ok(Outcome::LeaseLost),
                ended => ended.map(|()| Outcome::Cancelled),
            };
            return observe_terminal(ended, order, started_at);
        }
        let number = next_number(order.refund_attempts.len());
        let timer = std::time::Instant::now();
        let result = match unsettled {
            Some(e) => Err(e),
            None => self.gateway.refund(&request).await,
        };
        observe::gateway_call("refund", timer.elapsed());
        let finished_at = micros_now(&*self.clock);
        let outcome = RefundOutcome::from_refund(&result);
        metrics::counter!(observe::REFUND_ATTEMPTS, "outcome" => observe::refund_outcome(&outcome))
            .increment(1);
        let attempt = Attempt::Refund(RefundAttempt {
            number,
            outcome,
            started_at,
            finished_at,
        });
        let fault = result.as_ref().err().filter(|e| e.is_gateway_fault());
        let context = AttemptContext {
            number: number.get(),
            history: ChargeHistory::Resolved,
            gateway: self.record_in_breaker(permit, fault, finished_at),
            finished_at,
        };
        let decided = decision::decide_refund(
            &result,
            &context,
            &self.config.retry,
            self.config.breaker.probe_wait,
            self.draw(),
        );
        let (end, outcome) = match decided {
            RefundDecision::Complete => {
                let transition = Transition::apply(OrderStatus::Cancelling, OrderEvent::Refunded)
                    .expect("a claimed cancelling order can be refunded");
                (LeaseEnd::Settle(transition), Outcome::Cancelled)
            }
            RefundDecision::RetryAt(at) | RefundDecision::AwaitGateway(at) => {
                if matches!(result, Err(GatewayError::Declined(_))) {
                    error!(
                        ?result,
                        "the gateway refused a refund; retrying until it accepts"
                    );
                } else {
                    debug!(?result, attempt = number.get(), %at, "refund failed; retrying later");
                }
                (
                    LeaseEnd::Release { retry_at: at },
                    Outcome::RetryScheduled { at },
                )
            }
        };
        let ended = self
            .end_lease(delivery, lease, attempt, end, outcome, finished_at)
            .await;
        observe_terminal(ended, order, finished_at)
    }

    /// Asks the gateway about `order`'s refunds asked for on their own whose outcome is not
    /// known, and records what it says: the order as it is then, and the gateway's error
    /// for one it still did not answer.
    async fn settle_partial_refunds(
        &self,
        order: &Order,
    ) -> Result<(Order, Option<GatewayError>), ProcessError> {
        let mut order = order.clone();
        let pending: Vec<_> = order
            .partial_refunds
            .iter()
            .filter(|r| r.is_pending())
            .cloned()
            .collect();
        let mut unsettled = None;
        for refund in pending {
            let answer = self
                .gateway
                .refund(&order.partial_refund_request(&refund))
                .await;
            match super::orders::refund_settlement(answer) {
                Ok(settlement) => {
                    let now = micros_now(&*self.clock);
                    order = self
                        .repo
                        .finish_refund(order.id, &refund.key, &settlement, now)
                        .await?;
                }
                Err(e) => unsettled = Some(e),
            }
        }
        Ok((order, unsettled))
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
        let request = order.charge_request();
        let number = next_number(order.payment_attempts.len());
        let started_at = micros_now(&*self.clock);
        let history = history(order, uncertain);
        let result = match history {
            // An earlier charge's outcome is not known: ask before charging again.
            ChargeHistory::Unresolved => match self.look_up(order).await {
                Ok(None) => self.send_charge(&request).await,
                Ok(Some(known)) => known,
                Err(e) => Err(e),
            },
            ChargeHistory::Resolved => self.send_charge(&request).await,
        };
        let finished_at = micros_now(&*self.clock);
        let outcome = AttemptOutcome::from_charge(&result);
        metrics::counter!(observe::PAYMENT_ATTEMPTS, "outcome" => observe::charge_outcome(&outcome))
            .increment(1);
        let attempt = Attempt::Charge(PaymentAttempt {
            number,
            outcome,
            started_at,
            finished_at,
        });
        let fault = result.as_ref().err().filter(|e| e.is_gateway_fault());
        let context = AttemptContext {
            number: number.get(),
            history,
            gateway: self.record_in_breaker(permit, fault, finished_at),
            finished_at,
        };
        let decided = decision::decide(
            &result,
            &context,
            &self.config.retry,
            self.config.breaker.probe_wait,
            self.draw(),
        );
        let settle = |event| {
            Transition::apply(OrderStatus::PaymentProcessing, event)
                .expect("a claimed order that is not cancelling is payment_processing")
        };
        let (end, outcome) = match decided {
            ChargeDecision::Confirm => (
                LeaseEnd::Settle(settle(OrderEvent::PaymentCaptured)),
                Outcome::Confirmed,
            ),
            ChargeDecision::Fail => {
                info!(?result, attempt = number.get(), "payment failed for good");
                (
                    LeaseEnd::Settle(settle(OrderEvent::PaymentFailed)),
                    Outcome::Failed,
                )
            }
            ChargeDecision::RetryAt(at) | ChargeDecision::AwaitGateway(at) => {
                debug!(?result, attempt = number.get(), %at, "payment failed; retrying later");
                (
                    LeaseEnd::Release { retry_at: at },
                    Outcome::RetryScheduled { at },
                )
            }
        };
        let ended = self
            .end_lease(delivery, lease, attempt.clone(), end, outcome, finished_at)
            .await;
        match observe_terminal(ended, order, finished_at) {
            Err(ProcessError::Repo(RepoError::StatusConflict {
                actual: OrderStatus::Cancelling,
                ..
            })) => {
                // Cancelled while the charge was in flight: keep the attempt (it may be a
                // capture) and hand the order straight to its refund.
                info!("order cancelled mid-charge; refunding next");
                self.end_lease(
                    delivery,
                    lease,
                    attempt,
                    LeaseEnd::Release {
                        retry_at: finished_at,
                    },
                    Outcome::CancelledMidCharge,
                    finished_at,
                )
                .await
            }
            other => other,
        }
    }

    async fn send_charge(
        &self,
        request: &crate::payment::ChargeRequest,
    ) -> Result<crate::payment::ChargeReceipt, GatewayError> {
        let timer = std::time::Instant::now();
        let result = self.gateway.charge(request).await;
        observe::gateway_call("charge", timer.elapsed());
        result
    }

    /// What the processor says of `order`'s payment: the outcome of its charge when the
    /// processor has decided it, `None` when nothing was charged (a charge may be sent), a
    /// time-out while it is still processing.
    async fn look_up(
        &self,
        order: &Order,
    ) -> Result<Option<Result<crate::payment::ChargeReceipt, GatewayError>>, GatewayError> {
        let timer = std::time::Instant::now();
        let state = self.gateway.lookup(&order.lookup_request()).await;
        observe::gateway_call("lookup", timer.elapsed());
        let state = state?;
        debug!(?state, "looked the payment up before charging again");
        match state {
            PaymentState::Processing => Err(GatewayError::Timeout(
                "the processor is still processing the payment".into(),
            )),
            state => Ok(state.charge_outcome()),
        }
    }

    /// Ends the lease as `end` says and returns `outcome`; a lease another worker took over
    /// meanwhile is left to it ([`Outcome::LeaseLost`]).
    async fn end_lease(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        attempt: Attempt,
        end: LeaseEnd,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ProcessError> {
        match self.finish(delivery, lease, Some(attempt), end, now).await {
            Ok(()) => Ok(outcome),
            Err(ProcessError::Repo(RepoError::LeaseLost(_))) => {
                // Another worker reclaimed this job and owns it now: leave the entry to it.
                warn!("lease lost during payment; the new holder finishes the order");
                Ok(Outcome::LeaseLost)
            }
            Err(e) => Err(e),
        }
    }

    /// Tells the breaker how the call went and returns what it now says of the gateway.
    /// Only gateway faults count against it: a decline is the gateway working.
    fn record_in_breaker(
        &self,
        permit: Permit,
        fault: Option<&GatewayError>,
        now: DateTime<Utc>,
    ) -> GatewayHealth {
        let mut breaker = self.lock_breaker();
        let before = observe::breaker_state(&breaker.state()).1;
        match fault {
            Some(_) => breaker.on_failure(permit, now),
            None => breaker.on_success(permit),
        }
        let (gauge, after) = observe::breaker_state(&breaker.state());
        if after != before {
            metrics::gauge!(observe::BREAKER_STATE).set(gauge);
            metrics::counter!(observe::BREAKER_TRANSITIONS, "to" => after).increment(1);
        }
        match breaker.state() {
            BreakerState::Open { until } => GatewayHealth::Outage { until },
            _ => GatewayHealth::Serving,
        }
    }

    /// Claims the order for this worker, in a statement shared with concurrent claims.
    async fn claim(&self, id: OrderId) -> Result<Claim, RepoError> {
        let flush = |ids: Vec<OrderId>| async move {
            metrics::histogram!(observe::PAYMENT_BATCH, "op" => "claim").record(ids.len() as f64);
            let now = micros_now(&*self.clock);
            let (worker, lease) = (&self.config.worker, self.config.lease);
            let claims = self.repo.claim_many(&ids, worker, now, lease).await;
            batch::each_or_all(ids.len(), claims, RepoError::replicate)
        };
        self.claims
            .submit(id, flush)
            .await
            .unwrap_or_else(|abandoned| Err(abandoned.into()))
    }

    /// Acks the job, in a call shared with concurrent acks.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let flush = |deliveries: Vec<Delivery>| async move {
            let acked = self.queue.ack_many(&deliveries).await;
            batch::each(deliveries.len(), &acked, QueueError::replicate)
        };
        self.acks
            .submit(delivery.clone(), flush)
            .await
            .unwrap_or_else(|abandoned| Err(abandoned.into()))
    }

    /// Writes the end of a lease to the store, in a statement shared with concurrent ends,
    /// then settles the job in the queue.
    async fn finish(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        attempt: Option<Attempt>,
        end: LeaseEnd,
        now: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        let flush = |ends: Vec<EndLease>| async move {
            metrics::histogram!(observe::PAYMENT_BATCH, "op" => "end").record(ends.len() as f64);
            let ended = self.repo.end_leases(&ends).await;
            batch::each_or_all(ends.len(), ended, RepoError::replicate)
        };
        let ending = EndLease {
            lease: lease.clone(),
            attempt,
            end,
            now,
        };
        self.ends
            .submit(ending, flush)
            .await
            .unwrap_or_else(|abandoned| Err(abandoned.into()))?;
        match end {
            LeaseEnd::Settle(_) => self.ack(delivery).await?,
            LeaseEnd::Release { retry_at } => self.queue.defer(delivery, retry_at).await?,
        }
        Ok(())
    }
}

/// Records the time to a terminal status when `ended` brought the order to one.
fn observe_terminal(
    ended: Result<Outcome, ProcessError>,
    order: &Order,
    at: DateTime<Utc>,
) -> Result<Outcome, ProcessError> {
    let status = match &ended {
        Ok(Outcome::Confirmed) => Some(OrderStatus::Confirmed),
        Ok(Outcome::Failed) => Some(OrderStatus::PaymentFailed),
        Ok(Outcome::Cancelled) => Some(OrderStatus::Cancelled),
        _ => None,
    };
    if let Some(status) = status {
        observe::terminal(status, at - order.created_at);
    }
    ended
}

/// Whether `order` may already have been charged: a timed-out attempt, or a worker that
/// died holding it (`uncertain`), leaves the outcome to the gateway.
fn history(order: &Order, uncertain: bool) -> ChargeHistory {
    let timed_out = order
        .payment_attempts
        .iter()
        .any(|a| matches!(a.outcome, AttemptOutcome::TimedOut { .. }));
    if uncertain || timed_out {
        ChargeHistory::Unresolved
    } else {
        ChargeHistory::Resolved
    }
}

/// The number of the next attempt after `made` of its kind.
fn next_number(made: usize) -> NonZeroU32 {
    u32::try_from(made)
        .ok()
        .and_then(|n| NonZeroU32::new(n + 1))
        .expect("fewer than u32::MAX attempts")
}
