//! The ports: what the services need from the outside world, each with its contract.
//!
//! Every adapter of a port is checked by the same conformance suite
//! (`order_core::testing::conformance`, behind the `testing` feature), so the contracts
//! below are tested, not just written.

use std::error::Error as StdError;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Invalid;
use crate::ids::{CustomerId, OrderId, WorkerId};
use crate::order::{CancelReason, Order, OrderStatus, Transition};
use crate::payment::{
    Attempt, ChargeReceipt, ChargeRequest, GatewayError, RefundReceipt, RefundRequest,
};
use crate::policy::rate_limit::{Quota, Verdict};
use crate::request::{Fingerprint, KeyedRequest, RequestKey};
use crate::trace::TraceParent;

/// A boxed error from an adapter's driver.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The time source. Services never read the system clock directly, so tests control time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Which orders a listing includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this customer's orders.
    pub customer_id: Option<CustomerId>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
}

/// How many orders a page of a listing holds: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Largest page size.
    pub const MAX: u32 = 100;
    /// The original service's default, 20.
    pub const DEFAULT: Self = Self(20);

    /// Parses a page size.
    pub fn new(size: i64) -> Result<Self, Invalid> {
        match u32::try_from(size) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(Invalid::OutOfRange {
                min: "1".into(),
                max: Self::MAX.to_string(),
            }),
        }
    }

    /// The number inside.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// One page of a listing: page numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: NonZeroU32,
    /// Orders per page.
    pub size: PageSize,
}

impl PageRequest {
    /// The first page of the default size.
    pub const FIRST: Self = Self {
        page: NonZeroU32::MIN,
        size: PageSize::DEFAULT,
    };

    /// Largest page number: 2^31 - 1, so the number fits every client's 32-bit integer.
    pub const MAX_PAGE: u32 = i32::MAX.unsigned_abs();

    /// Parses a 1-based page number, 1 to [`MAX_PAGE`](Self::MAX_PAGE).
    pub fn page_number(page: i64) -> Result<NonZeroU32, Invalid> {
        u32::try_from(page)
            .ok()
            .filter(|p| *p <= Self::MAX_PAGE)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| Invalid::OutOfRange {
                min: "1".into(),
                max: Self::MAX_PAGE.to_string(),
            })
    }

    /// Orders skipped before this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.get() - 1) * u64::from(self.size.get())
    }
}

/// A page of orders and how many match the filter in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    /// The page's orders, newest first.
    pub orders: Vec<Order>,
    /// How many orders match the filter, on all pages.
    pub total: u64,
}

/// A worker's exclusive, time-limited right to pay an order. The token fences writes: once
/// another worker claims the order, the old lease's writes fail with [`RepoError::LeaseLost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The order leased.
    pub order_id: OrderId,
    /// The worker holding it.
    pub owner: WorkerId,
    /// Unique to this claim.
    pub token: Uuid,
    /// When other workers may take the order over.
    pub expires_at: DateTime<Utc>,
}

/// What [`OrderRepo::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the order now; it is `payment_processing`.
    Acquired {
        /// The lease to pass to later writes.
        lease: Lease,
        /// The order as claimed, with its attempts so far.
        order: Order,
        /// Whether an earlier holder's lease ran out unended: that worker died mid-payment
        /// and may have charged without recording it. Stays true until the order is
        /// terminal, so the order is never failed before the gateway says what happened.
        uncertain: bool,
    },
    /// The order is in a terminal status: nothing to do.
    Settled(Order),
    /// Another worker holds a live lease until the given time.
    Busy {
        /// When that lease expires.
        until: DateTime<Utc>,
    },
    /// The order's next attempt is scheduled for later.
    NotDue {
        /// When it is due.
        at: DateTime<Utc>,
    },
}

/// How a worker ends its lease on an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// With a transition to a terminal status: the order is due never again.
    Settle(Transition),
    /// With the next attempt scheduled: the order keeps its status and is due at `retry_at`.
    Release {
        /// When the next attempt may start.
        retry_at: DateTime<Utc>,
    },
}

/// The end of one lease, as [`OrderRepo::end_leases`] writes it: what
/// [`OrderRepo::settle`] or [`OrderRepo::release`] takes, in one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndLease {
    /// The lease ended.
    pub lease: Lease,
    /// The attempt made under it, if any.
    pub attempt: Option<Attempt>,
    /// How it ends.
    pub end: LeaseEnd,
    /// When (the order's `updated_at` moves to it, never back).
    pub now: DateTime<Utc>,
}

/// What [`OrderRepo::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// The order was `pending`: it is `cancelled` now, and nothing will ever be charged.
    Cancelled(Order),
    /// Payment had started (or the order was `confirmed`): it is `cancelling` now, due at
    /// once, and a worker refunds (or voids) the payment before it ends `cancelled`.
    Cancelling(Order),
    /// It was `cancelling` or `cancelled` already: nothing was written.
    Unchanged(Order),
    /// Its payment failed: there is nothing to cancel, and nothing was written.
    NotCancellable(Order),
}

/// Errors of [`OrderRepo`].
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// An order with this id exists already.
    #[error("order {0} already exists")]
    Duplicate(OrderId),
    /// No order with this id exists.
    #[error("order {0} not found")]
    NotFound(OrderId),
    /// The lease was taken over by another claim; the write was not made.
    #[error("the lease on order {0} is no longer held")]
    LeaseLost(OrderId),
    /// The order is not in the status the transition starts from; the write was not made.
    #[error("order {id} is {actual}, not {expected}")]
    StatusConflict {
        /// The order.
        id: OrderId,
        /// The status the transition needs.
        expected: OrderStatus,
        /// The status it has.
        actual: OrderStatus,
    },
    /// The store cannot be reached or did not answer in time; retrying later may succeed.
    #[error("order store unavailable")]
    Unavailable(#[source] BoxError),
    /// The request's reservation of its idempotency key was taken over (it was stale); the
    /// order was not stored.
    #[error("the reservation of idempotency key {0} was taken over")]
    RequestSuperseded(RequestKey),
    /// Anything else (corrupt data, a bug): not retryable.
    #[error("order store failed")]
    Other(#[source] BoxError),
}

impl RepoError {
    /// Whether the same call may succeed later.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The same error again, for each caller of a shared call that failed (a source becomes
    /// its text).
    #[must_use]
    pub fn replicate(&self) -> Self {
        match self {
            Self::Duplicate(id) => Self::Duplicate(*id),
            Self::NotFound(id) => Self::NotFound(*id),
            Self::LeaseLost(id) => Self::LeaseLost(*id),
            Self::StatusConflict {
                id,
                expected,
                actual,
            } => Self::StatusConflict {
                id: *id,
                expected: *expected,
                actual: *actual,
            },
            Self::RequestSuperseded(key) => Self::RequestSuperseded(key.clone()),
            Self::Unavailable(source) => Self::Unavailable(source.to_string().into()),
            Self::Other(source) => Self::Other(source.to_string().into()),
        }
    }
}

/// Durable storage of orders: the source of truth.
///
/// # Contract
/// - An order's `updated_at` never moves back: a write whose `now` is earlier than it (two
///   processes' clocks, or a `now` taken before a slower statement) keeps it.
/// - `insert` and `insert_many` are durable when they return `Ok`. `insert_many` is all or
///   nothing. An id that exists already MUST give [`RepoError::Duplicate`] and store nothing.
///   Stored orders are `pending` with no attempts, due at their `created_at`.
/// - `get` returns `Ok(None)` for an unknown id; `get_many` the stored orders among the ids.
/// - `list` returns the page of orders matching the filter, newest first (`created_at`, then
///   id, descending), and the number of matches on all pages.
/// - `claim(id, worker, now, lease_for)` for an unknown id MUST give [`RepoError::NotFound`];
///   for a terminal order [`Claim::Settled`]; for an order whose lease is live at `now`
///   [`Claim::Busy`]; for one whose next attempt is after `now` [`Claim::NotDue`]. Otherwise
///   it MUST atomically move a `pending` order to `payment_processing` (a `payment_processing`
///   or `cancelling` one keeps its status), give it a new lease token expiring at
///   `now + lease_for`, and return [`Claim::Acquired`]. Of concurrent claims at most one acquires. A claim that finds an
///   expired lease that was never settled or released MUST mark the order `uncertain`, and
///   every later claim of it MUST report `uncertain` too.
/// - `settle` and `release` write only while `lease` is the order's current lease, else
///   [`RepoError::LeaseLost`]. Both append `attempt` (if any: a charge attempt to the
///   order's payment attempts, a refund attempt to its refund attempts) and end the lease.
///   `settle` applies `transition` (always to a terminal status) only from its `from`
///   status, else [`RepoError::StatusConflict`] naming the status found, and writes nothing;
///   the order is then due never again (until a cancellation). `release` keeps the status
///   and makes the order due at `retry_at`.
/// - `claim_many(ids, worker, now, lease_for)` gives, for each id in turn, what `claim` would
///   have given had the claims run one after another in that order: so of an id listed twice
///   at most one entry acquires. One order's outcome never depends on another's (an unknown
///   id or a busy order fails only its own entry; so does a failure after the claims were
///   made, which fails only the entries it leaves unanswered). An `Err` of the whole call
///   means nothing was claimed.
/// - `end_leases(ends)` gives, for each end in turn, what `settle` (for
///   [`LeaseEnd::Settle`]) or `release` (for [`LeaseEnd::Release`]) would have given: a lease
///   lost or a status conflict fails that entry alone and writes nothing of it, while the
///   others are written (a failure after the writes fails only the entries it leaves
///   unanswered). An `Err` of the whole call means nothing was written.
/// - `due(before, limit)` lists up to `limit` non-terminal orders, oldest first, that are due
///   at or before `before` and not under a lease live at `before`: the orders a reconciler
///   must make sure are queued.
/// - `cancel(id, reason, now)` for an unknown id MUST give [`RepoError::NotFound`]. In one
///   atomic step it MUST move a `pending` order to `cancelled` ([`CancelResult::Cancelled`]),
///   or a `payment_processing` or `confirmed` one to `cancelling`, due at `now`, leaving any
///   lease in place ([`CancelResult::Cancelling`]); both record the cancellation (`now`,
///   `reason`). A `cancelling` or `cancelled` order is left as it is
///   ([`CancelResult::Unchanged`]), and a `payment_failed` one too
///   ([`CancelResult::NotCancellable`]). A claim racing a cancellation of a `pending` order
///   either acquires first (and the cancellation makes it `cancelling`) or finds it
///   `cancelled` and settled: never both.
/// - `begin_request(key, fingerprint, now, stale_after)` reserves a client's idempotency
///   key. An unknown key MUST be reserved (at `now`) and give [`KeyedRequest::New`] with a
///   fresh token. A known key with another fingerprint MUST give [`KeyedRequest::Mismatch`];
///   one whose request stored an order, [`KeyedRequest::Completed`] with that order; one
///   reserved after `now - stale_after` and not completed, [`KeyedRequest::InFlight`]; an
///   older, uncompleted reservation is abandoned and MUST be taken over (`New`).
/// - `insert_for_request(order, key, token)` stores the order and completes the key with it,
///   atomically, only while `token` is the key's reservation; otherwise it MUST store
///   nothing and give [`RepoError::RequestSuperseded`].
/// - `complete_request(key, token, order)` completes the key's request with `order` (a request
///   that changed an existing order, such as a cancellation), only while `token` is the
///   key's reservation; otherwise it MUST give [`RepoError::RequestSuperseded`].
/// - `abandon_request(key, token)` drops an uncompleted reservation held by `token`.
/// - `purge_requests(before)` forgets keys reserved before `before`, returning how many.
/// - Connection failures and time-outs MUST give [`RepoError::Unavailable`], promptly.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OrderRepo: Send + Sync {
    /// Stores a new order durably.
    async fn insert(&self, order: &Order) -> Result<(), RepoError>;
    /// Stores several new orders durably, all or nothing.
    async fn insert_many(&self, orders: &[Order]) -> Result<(), RepoError>;
    /// The order with this id, if any.
    async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError>;
    /// The stored orders among `ids`, in any order (unknown ids are left out). One read per
    /// id unless the adapter reads them together.
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, RepoError> {
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(order) = self.get(*id).await? {
                orders.push(order);
            }
        }
        Ok(orders)
    }
    /// A page of orders matching `filter`, newest first.
    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError>;
    /// Takes the order for payment under a lease.
    async fn claim(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Claim, RepoError>;
    /// Records the final attempt and the terminal transition, ending the lease.
    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    /// Records an attempt (if any), ends the lease and schedules the next attempt.
    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    /// Claims several orders at once, one result per id, in order. The default makes one
    /// `claim` after another; an adapter overrides it to claim them in one round trip.
    async fn claim_many(
        &self,
        ids: &[OrderId],
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Vec<Result<Claim, RepoError>>, RepoError> {
        let mut claims = Vec::with_capacity(ids.len());
        for &id in ids {
            claims.push(self.claim(id, worker, now, lease_for).await);
        }
        Ok(claims)
    }
    /// Ends several leases at once, one result per end, in order. The default makes one
    /// `settle` or `release` after another; an adapter overrides it to write them in one
    /// round trip.
    async fn end_leases(&self, ends: &[EndLease]) -> Result<Vec<Result<(), RepoError>>, RepoError> {
        let mut ended = Vec::with_capacity(ends.len());
        for e in ends {
            ended.push(match e.end {
                LeaseEnd::Settle(transition) => {
                    self.settle(&e.lease, e.attempt.clone(), transition, e.now)
                        .await
                }
                LeaseEnd::Release { retry_at } => {
                    self.release(&e.lease, e.attempt.clone(), retry_at, e.now)
                        .await
                }
            });
        }
        Ok(ended)
    }
    /// Non-terminal orders due at or before `before` and free of a live lease, oldest first,
    /// as the jobs that pay them (each with the trace stored with its order).
    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, RepoError>;
    /// Reserves a client's idempotency key for a request.
    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError>;
    /// Stores the order and completes the key's request, atomically.
    async fn insert_for_request(
        &self,
        order: &Order,
        key: &RequestKey,
        token: Uuid,
    ) -> Result<(), RepoError>;
    /// Cancels the order, or records that its payment must be refunded first.
    async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError>;
    /// Completes the key's request with an existing order.
    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError>;
    /// Drops a reservation whose request failed before storing an order.
    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError>;
    /// Forgets keys reserved before `before`.
    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), RepoError>;
}

/// A payment job: the order to pay (or refund) and the trace the work joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The order.
    pub order_id: OrderId,
    /// The trace of the request that placed the order, when it was traced.
    pub trace: Option<TraceParent>,
}

impl Job {
    /// The job that pays `order`, in the order's trace.
    pub fn of(order: &Order) -> Self {
        Self {
            order_id: order.id,
            trace: order.trace,
        }
    }

    /// A job for `order_id` in no trace.
    pub const fn untraced(order_id: OrderId) -> Self {
        Self {
            order_id,
            trace: None,
        }
    }
}

/// A queued payment job handed to one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's id of this entry (a stream entry id for Redis).
    pub id: String,
    /// The order to pay.
    pub order_id: OrderId,
    /// The trace the job was queued in, if any.
    pub trace: Option<TraceParent>,
    /// How often this entry has been delivered, this time included (1 the first time).
    pub deliveries: u32,
}

/// What a queue holds, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs no consumer has received yet.
    pub waiting: u64,
    /// Jobs received and not yet acked, deferred or dead-lettered.
    pub pending: u64,
    /// Jobs deferred to a later time.
    pub deferred: u64,
    /// Jobs in the dead-letter queue.
    pub dead: u64,
    /// How long ago the oldest waiting or pending job was queued (`None`: there is none).
    pub oldest_age: Option<Duration>,
}

/// Errors of [`PaymentQueue`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue cannot be reached or did not answer in time; retrying later may succeed.
    #[error("payment queue unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: not retryable.
    #[error("payment queue failed")]
    Other(#[source] BoxError),
}

impl QueueError {
    /// Whether the same call may succeed later.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The same error again, for each caller of a shared call that failed (a source becomes
    /// its text).
    #[must_use]
    pub fn replicate(&self) -> Self {
        match self {
            Self::Unavailable(source) => Self::Unavailable(source.to_string().into()),
            Self::Other(source) => Self::Other(source.to_string().into()),
        }
    }
}

/// The queue of payment jobs, shared by producers and a group of competing consumers. A
/// value of the adapter is one consumer (with a name unique to it); any value may enqueue.
///
/// # Contract
/// - `enqueue` returns `Ok` once the job is stored in the queue. Its trace travels with it:
///   every delivery of the job, a deferred one included, carries the trace it was queued
///   with. `enqueue_many` returns `Ok` once every one of its jobs is stored; after an error
///   some may be stored and others not (a job queued twice is paid once: the claim fences
///   it).
/// - `receive(max, wait)` first makes deferred jobs whose time has come deliverable, then
///   hands this consumer up to `max` jobs no consumer has received yet, each with
///   `deliveries == 1`, waiting up to `wait` for one to arrive. Jobs come roughly in the
///   order they were queued; a queue spread over several partitions need not keep that
///   order between partitions. A delivery's `id` means something only to the queue that
///   made it. A received job stays pending
///   for this consumer until it is acked, deferred or dead-lettered.
/// - `ack` removes the pending job; acking it twice is not an error. `ack_many` acks each
///   of its deliveries as `ack` would; after an error some may be acked and others not (so
///   the caller may ack them all again).
/// - `defer(delivery, until)` acks the job and queues it again, deliverable from `until`,
///   with its delivery count back at zero.
/// - `reclaim(min_idle, max)` hands this consumer up to `max` jobs pending with any consumer
///   (itself included) for at least `min_idle`, each with its delivery count increased.
/// - `dead_letter(delivery, reason)` moves the pending job to the dead-letter queue.
/// - `stats()` counts the jobs waiting (queued, not received), pending (received, not
///   settled), deferred and dead-lettered, and gives the age of the oldest job waiting or
///   pending, measured from when it was queued (for a deferred job, from when it came due).
/// - Connection failures and time-outs MUST give [`QueueError::Unavailable`], promptly.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentQueue: Send + Sync {
    /// Queues a payment job.
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError>;
    /// Queues payment jobs. The default queues one after another; an adapter overrides it
    /// to queue them in one round trip.
    async fn enqueue_many(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for job in jobs {
            self.enqueue(job).await?;
        }
        Ok(())
    }
    /// Receives new jobs for this consumer, waiting up to `wait`.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Marks a job done.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Marks jobs done. The default acks one after another; an adapter overrides it to ack
    /// them in one round trip.
    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        for delivery in deliveries {
            self.ack(delivery).await?;
        }
        Ok(())
    }
    /// Acks a job and queues it again for `until`.
    async fn defer(&self, delivery: &Delivery, until: DateTime<Utc>) -> Result<(), QueueError>;
    /// Takes over jobs left pending for at least `min_idle`.
    async fn reclaim(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, QueueError>;
    /// Moves a job that keeps failing to the dead-letter queue.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    /// Whether the queue answers.
    async fn ping(&self) -> Result<(), QueueError>;
    /// What the queue holds.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}

/// A payment gateway.
///
/// # Contract
/// - At most one payment is captured per idempotency key, however often `charge` is called.
/// - Once a key has a definitive outcome (captured or declined), every later call with that
///   key returns the same outcome.
/// - [`GatewayError::Unavailable`] means nothing was charged; [`GatewayError::Timeout`] means
///   the outcome is unknown and a call with the same key will tell.
/// - `refund` gives back at most one capture's amount, at most once per capture, however
///   often and under however many refund keys it is called; it never gives back more than
///   was captured. Once a refund key has a definitive outcome, every later call with it
///   returns the same outcome.
/// - `refund` of a charge key with nothing captured MUST void the key and return
///   [`RefundReceipt::NothingCaptured`]: every later `charge` with that key is declined
///   ([`DeclineReason::Voided`](crate::payment::DeclineReason::Voided)) and captures
///   nothing. This settles a refund racing a charge that is still on its way.
/// - Refund failures are classified as charges' are.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges the request's amount, deduplicated by its idempotency key.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError>;
    /// Gives back what was captured under the request's charge key, deduplicated by the
    /// request's own idempotency key; voids the charge key if nothing was captured.
    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError>;
}

/// Errors of [`RateLimiter`].
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The store of the counts cannot be reached; the caller chooses to let requests
    /// through (fail open) or not.
    #[error("rate limiter unavailable")]
    Unavailable(#[source] BoxError),
}

/// Counts requests per client against a [`Quota`], by the GCRA of
/// [`crate::policy::rate_limit::decide`].
///
/// # Contract
/// - `check(bucket, quota)` decides one request of `bucket` and, if it is allowed, counts
///   it. A bucket not seen for a while has its full burst: `burst` requests in a row are
///   allowed (with `remaining` counting down to 0), the next is denied with a
///   `retry_after` of at most one interval, and after waiting it out one more is allowed.
/// - Every value of an adapter sharing one store (every process on one Redis) counts
///   together, and checks of one bucket are atomic: however many run at once, from however
///   many values, no more are allowed than the quota. A value may count a busy bucket's
///   requests ahead in batches (a lease), so another value may be refused before the whole
///   burst is spent; never admitted past it. With a burst under 40, counts are exact.
/// - Different buckets are independent.
/// - When the store cannot be reached: [`LimiterError::Unavailable`], promptly.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Decides one request of `bucket` under `quota`.
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError>;
}

/// Where API keys are kept.
///
/// # Contract
/// - `insert_key` stores a new key (its id is new); `key` returns it as stored, `keys` every
///   key, newest first.
/// - `revoke_key(id, at)` sets `revoked_at` once (revoking again keeps the first time) and
///   returns the key; `None` if there is no such key.
/// - `touch_key(id, at)` records `last_used_at` (never moving it back); no such key is not an
///   error.
/// - Nothing here ever sees a key's secret, only its hash.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key.
    async fn insert_key(&self, key: &crate::access::ApiKey) -> Result<(), RepoError>;
    /// The key with this id.
    async fn key(
        &self,
        id: &crate::access::KeyId,
    ) -> Result<Option<crate::access::ApiKey>, RepoError>;
    /// Every key, newest first.
    async fn keys(&self) -> Result<Vec<crate::access::ApiKey>, RepoError>;
    /// Revokes a key from `at`.
    async fn revoke_key(
        &self,
        id: &crate::access::KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::access::ApiKey>, RepoError>;
    /// Records that the key was used at `at`.
    async fn touch_key(
        &self,
        id: &crate::access::KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError>;
}

/// A delivery of an event to an endpoint, taken by one dispatcher under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The event to deliver.
    pub event: crate::webhook::Event,
    /// The endpoint, as it is now.
    pub endpoint: crate::webhook::Endpoint,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// Fences the result: only the holder of the current lease may record it.
    pub token: Uuid,
}

/// An attempt to record with [`WebhookStore::finish_deliveries`]: the delivery it was made
/// under, what it came to, what comes next, and whether to disable the endpoint (why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedDelivery {
    /// The delivery, as claimed.
    pub claimed: ClaimedDelivery,
    /// The attempt made.
    pub attempt: crate::webhook::DeliveryAttempt,
    /// What comes next.
    pub next: DeliveryNext,
    /// Disable the endpoint, for this reason.
    pub disable: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryNext {
    /// It was delivered: done.
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// No attempt is left: it failed for good.
    GiveUp,
}

/// Where webhook endpoints, the outbox of events and their deliveries are kept. The outbox
/// is written by the order store itself ([`OrderRepo`]), so the same adapter implements
/// both.
///
/// # Contract
/// - Every status change an [`OrderRepo`] makes records one event of
///   [`EventType::entering`](crate::webhook::EventType::entering) the new status, in the same
///   atomic step, at the change's time: `insert` and `insert_many` (`order.created`), a claim
///   that moves a `pending` order on, `settle` and `cancel`. A claim that changes no status
///   records nothing. A `cancelling` order settled `cancelled` after a refund whose outcome
///   is `refunded` records `order.refunded` too, after `order.cancelled`.
/// - `events_of(order)` lists an order's events in the order they were recorded.
/// - `fan_out(now, limit)` takes up to `limit` events not yet fanned out, oldest first, and
///   in one atomic step creates a delivery, due at `now`, for every enabled endpoint then
///   subscribed to the event's type, and marks the events fanned out; it returns how many
///   events it took. Concurrent calls never take the same event, and every event recorded is
///   taken by some call. An adapter whose writes commit concurrently may hold an event back
///   while a write begun before it is still running, and may order the events of concurrent
///   writes by when those writes began (so a caller polls, as the dispatcher's rounds do).
/// - `oldest_waiting_event()` is the time of the first event, in the order `fan_out` takes
///   them, not fanned out yet (held back or not); `None` when every event is fanned out.
/// - `claim_deliveries(now, lease_for, limit)` hands out up to `limit` deliveries that are
///   pending, due at or before `now`, not under a lease live at `now`, and whose endpoint is
///   enabled, oldest due first, each under a new lease until `now + lease_for`, with its
///   attempt number (previous attempts + 1). Of concurrent claims, at most one gets a
///   delivery.
/// - `finish_deliveries(finished)` records each attempt, applies its `next` and ends its
///   lease, in one atomic step, for every delivery whose lease `claimed.token` still is;
///   the others record nothing (another dispatcher took them over). It returns, in input
///   order, whether each was recorded. Per endpoint, if any recorded attempt delivered, its
///   `failing_since` is cleared; otherwise a failed one sets it, if unset, to the earliest
///   failed attempt's time. A `disable` reason disables the endpoint with that reason.
/// - `attempts(endpoint, limit)` lists the endpoint's recorded attempts, newest first.
/// - `redeliver(event, now)` makes the event due again at `now` for every enabled endpoint
///   subscribed to its type (whether or not it was delivered before, with its attempt
///   count kept); `None` for an unknown event, else how many deliveries are due.
/// - `delete_endpoint` removes the endpoint with its deliveries and attempts.
/// - `purge(before, limit)` forgets history: every attempt made before `before`, and at most
///   `limit` events (an adapter may look at only the `limit` oldest) that happened before
///   `before`, were fanned out and have no delivery left pending, with their deliveries; it
///   returns how many events it deleted. An event still to
///   fan out, or with a delivery pending (to a disabled endpoint, say), is kept whatever its
///   age.
/// - Endpoint writes keep everything they are given, secrets included; `update_endpoint`
///   replaces the stored endpoint with the same id and returns whether there was one.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint.
    async fn insert_endpoint(&self, endpoint: &crate::webhook::Endpoint) -> Result<(), RepoError>;
    /// The endpoint with this id.
    async fn endpoint(
        &self,
        id: crate::webhook::EndpointId,
    ) -> Result<Option<crate::webhook::Endpoint>, RepoError>;
    /// Every endpoint, oldest first.
    async fn endpoints(&self) -> Result<Vec<crate::webhook::Endpoint>, RepoError>;
    /// Replaces a stored endpoint.
    async fn update_endpoint(&self, endpoint: &crate::webhook::Endpoint)
    -> Result<bool, RepoError>;
    /// Removes an endpoint and its deliveries.
    async fn delete_endpoint(&self, id: crate::webhook::EndpointId) -> Result<bool, RepoError>;
    /// The event with this id.
    async fn event(
        &self,
        id: crate::webhook::EventId,
    ) -> Result<Option<crate::webhook::Event>, RepoError>;
    /// An order's events, oldest first.
    async fn events_of(&self, order: OrderId) -> Result<Vec<crate::webhook::Event>, RepoError>;
    /// Fans events out to the endpoints subscribed to them.
    async fn fan_out(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, RepoError>;
    /// When the next event to fan out happened, if one is waiting.
    async fn oldest_waiting_event(&self) -> Result<Option<DateTime<Utc>>, RepoError>;
    /// Takes due deliveries under a lease.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, RepoError>;
    /// Records attempts and what comes after each, for the deliveries still leased.
    async fn finish_deliveries(
        &self,
        finished: &[FinishedDelivery],
    ) -> Result<Vec<bool>, RepoError>;
    /// An endpoint's attempts, newest first.
    async fn attempts(
        &self,
        endpoint: crate::webhook::EndpointId,
        limit: usize,
    ) -> Result<Vec<crate::webhook::DeliveryAttempt>, RepoError>;
    /// Makes an event due again for its subscribers.
    async fn redeliver(
        &self,
        event: crate::webhook::EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, RepoError>;
    /// Forgets attempts, and settled events with their deliveries, older than `before`.
    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepoError>;
}

/// A signed webhook request, ready to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Where to post it.
    pub url: String,
    /// `webhook-id`: the event's id.
    pub id: String,
    /// `webhook-timestamp`: seconds since the epoch.
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What a [`WebhookSender`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    /// The answer, or why there was none.
    pub outcome: crate::webhook::AttemptOutcome,
    /// The start of the answer's body ([`crate::webhook::excerpt`]).
    pub excerpt: String,
}

/// Posts webhook requests.
///
/// # Contract
/// - `send` posts the body as `application/json` with the `webhook-id`,
///   `webhook-timestamp` and `webhook-signature` headers, and reports the status the
///   receiver answered (with its `Retry-After`, in seconds, if any),
///   [`AttemptOutcome::TimedOut`](crate::webhook::AttemptOutcome::TimedOut) when no answer
///   came within its time-out, or
///   [`AttemptOutcome::Failed`](crate::webhook::AttemptOutcome::Failed) when the request
///   could not be made. It never follows redirects and keeps at most an excerpt of the body.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Posts one request.
    async fn send(&self, request: &WebhookRequest) -> WebhookResponse;
}
