//! [`OrderRepo`]: where orders, their leases and the keys of placed requests are kept.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::BoxError;
use super::Job;
use crate::ids::{CustomerId, OrderId, WorkerId};
use crate::order::{CancelReason, Order, OrderStatus, Transition};
use crate::payment::Attempt;
use crate::request::{Fingerprint, KeyedRequest, RequestKey};

mod page;
pub use page::{OrderPage, PageCursor, PageRequest, PageSize, PageStart};

/// Which orders a listing includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this customer's orders.
    pub customer_id: Option<CustomerId>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
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

/// What [`OrderRepo::begin_capture`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureStart {
    /// The capture of the amount is recorded as asked for (now, or by an earlier request
    /// for the same amount whose outcome is not known yet): the caller captures it.
    Begun(Order),
    /// The amount was captured already: nothing was written.
    Captured(Order),
    /// The order has no authorized payment to capture (it is not `confirmed` with manual
    /// capture, or it is being cancelled), or another amount is being or was captured:
    /// nothing was written.
    Refused(Order),
}

/// What [`OrderRepo::begin_refund`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStart {
    /// The refund is recorded as asked for (now, or by an earlier request under its key
    /// whose outcome is not known yet): the caller sends it to the gateway.
    Begun(Order),
    /// The refund under the key has its outcome already (given back, or refused):
    /// nothing was written.
    Settled(Order),
    /// The key names another refund of the order (another amount or other items):
    /// nothing was written.
    KeyReused(Order),
    /// The order cannot be refunded this way ([`Order::refundable_now`] is `None`), or the
    /// refund asks for more than is left: nothing was written.
    Refused(Order),
}

impl RefundStart {
    /// What a request for `draft` finds when it records nothing new: the order's refund
    /// under the same key (resumed, settled, or another refund), else a refusal.
    pub fn found(order: Order, draft: &crate::order::RefundDraft) -> Self {
        match order.partial_refund(&draft.key) {
            Some(known) if !known.is_asked_as(draft) => Self::KeyReused(order),
            Some(known) if known.is_pending() => Self::Begun(order),
            Some(_) => Self::Settled(order),
            None => Self::Refused(order),
        }
    }
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
    /// Records that `amount` of the order's authorized payment is being captured, unless
    /// that cannot be (see [`CaptureStart`]). Atomic: of concurrent calls for different
    /// amounts, at most one is [`CaptureStart::Begun`].
    async fn begin_capture(
        &self,
        id: OrderId,
        amount: crate::Money,
        now: DateTime<Utc>,
    ) -> Result<CaptureStart, RepoError>;
    /// Records that the capture begun for the order took `amount`; the order as it is
    /// then. Recording it again changes nothing.
    async fn finish_capture(
        &self,
        id: OrderId,
        amount: crate::Money,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError>;
    /// Records `draft` as a pending refund of order `id`, asked for at `now`, unless that
    /// cannot be (see [`RefundStart`]). Atomic: whatever the races, the order's refunds
    /// (pending ones by what they ask, given ones by what they gave) never add up to more
    /// than was captured, a key is recorded once, and no refund begins once a cancellation
    /// is recorded (nor a cancellation's refund miss one that began).
    async fn begin_refund(
        &self,
        id: OrderId,
        draft: &crate::order::RefundDraft,
        now: DateTime<Utc>,
    ) -> Result<RefundStart, RepoError>;
    /// Records the outcome of order `id`'s refund under `key`, answered at `now`; the
    /// order as it is then. Recording an outcome again changes nothing.
    async fn finish_refund(
        &self,
        id: OrderId,
        key: &crate::payment::IdempotencyKey,
        settlement: &crate::order::RefundSettlement,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError>;
    /// Orders with a refund asked for on its own still pending (its outcome not known) since
    /// before `before`, the longest waiting first, at most `limit`.
    async fn pending_refunds(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError>;
    /// Orders a worker is still paying (`payment_processing`, no cancellation asked) whose
    /// last charge attempt timed out before `before`: the processor may have charged them,
    /// and nobody knows yet. The longest waiting first, at most `limit`.
    async fn unresolved_charges(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError>;
    /// Makes order `id` due at `now` when a worker still has its payment to do
    /// (`payment_processing` or `cancelling`), so that word from the processor about it is
    /// acted on at once rather than at its next scheduled attempt; any other order is left
    /// as it is. The order as it is then; `None` when there is no such order.
    async fn hasten(&self, id: OrderId, now: DateTime<Utc>) -> Result<Option<Order>, RepoError>;
    /// Records that the processor's event `event_id` arrived at `now`: `true` the first
    /// time, `false` when it was recorded already (and not purged since: events are purged
    /// with request keys, by [`purge_requests`](Self::purge_requests)).
    async fn record_processor_event(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
    /// Completes the key's request with an existing order.
    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError>;
    /// Drops a reservation whose request failed before storing an order.
    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError>;
    /// Forgets keys reserved before `before`, and processor events recorded before it.
    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
    /// Whether the store answers: asked of the store itself, waiting for none of its busy
    /// resources (a pool whose every connection is in use is busy, not down), within half a
    /// second.
    async fn ping(&self) -> Result<(), RepoError>;
}
