//! [`WebhookStore`]: the outbox of webhook events, their endpoints and deliveries.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RepoError;
use crate::ids::{CustomerId, OrderId};

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

/// How many deliveries one [`WebhookStore::claim_deliveries`] may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    /// At most this many in all.
    pub total: usize,
    /// At most this many of one healthy endpoint's deliveries under a live lease at once,
    /// counting those leased before (by any dispatcher); an endpoint that is failing (its
    /// `failing_since` is set) gets one. A receiver that hangs holds no more than that of
    /// every dispatcher's posts.
    pub per_endpoint: usize,
}

impl ClaimLimits {
    /// How many of `endpoint`'s deliveries may be under a live lease at once.
    pub fn for_endpoint(&self, endpoint: &crate::webhook::Endpoint) -> usize {
        if endpoint.failing_since.is_some() {
            1
        } else {
            self.per_endpoint.max(1)
        }
    }
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
/// is written by the order store itself ([`OrderRepo`](crate::ports::OrderRepo)), so the same adapter implements
/// both.
///
/// # Contract
/// - Every status change an [`OrderRepo`](crate::ports::OrderRepo) makes records one event of
///   [`EventType::entering`](crate::webhook::EventType::entering) the new status, in the same
///   atomic step, at the change's time: `insert` and `insert_many` (`order.created`), a claim
///   that moves a `pending` order on, `settle` and `cancel`. A claim that changes no status
///   records nothing. A `cancelling` order settled `cancelled` after a refund whose outcome
///   is `refunded` records `order.refunded` too, after `order.cancelled`. A refund asked for
///   on its own that `finish_refund` settles as given back records
///   `order.partially_refunded`, at the answer's time, when the order is `confirmed`.
/// - `events_of(order)` lists an order's events in the order they were recorded.
/// - `fan_out(now, limit)` takes up to `limit` events not yet fanned out, oldest first, and
///   in one atomic step creates a delivery, due at `now`, for every enabled endpoint then
///   subscribed to the event's type and [serving](crate::webhook::Endpoint::serves) the
///   customer of the event's order, and marks the events fanned out; it returns how many
///   events it took. Concurrent calls never take the same event, and every event recorded is
///   taken by some call. An adapter whose writes commit concurrently may hold an event back
///   while a write begun before it is still running, and may order the events of concurrent
///   writes by when those writes began (so a caller polls, as the dispatcher's rounds do).
/// - `oldest_waiting_event()` is the time of the first event, in the order `fan_out` takes
///   them, not fanned out yet (held back or not); `None` when every event is fanned out.
/// - `claim_deliveries(now, lease_for, limits)` hands out up to `limits.total` deliveries
///   that are pending, due at or before `now`, not under a lease live at `now`, and whose
///   endpoint is enabled, oldest due first among those it may hand out, each under a new
///   lease until `now + lease_for`, with its attempt number (previous attempts + 1). It
///   leaves an endpoint's deliveries for later once that endpoint has
///   [`limits.for_endpoint`](ClaimLimits::for_endpoint) deliveries under a lease live at
///   `now`, counting those it hands out, and that bound holds across concurrent claims. Of
///   concurrent claims, at most one gets a delivery.
/// - `finish_deliveries(finished)` records each attempt, applies its `next` and ends its
///   lease, in one atomic step, for every delivery whose lease `claimed.token` still is;
///   the others record nothing (another dispatcher took them over). It returns, in input
///   order, whether each was recorded. Per endpoint, if any recorded attempt delivered, its
///   `failing_since` is cleared; otherwise a failed one sets it, if unset, to the earliest
///   failed attempt's time. A `disable` reason disables the endpoint with that reason.
/// - `attempts(endpoint, limit)` lists the endpoint's recorded attempts, newest first.
/// - `redeliver(event, now, owner)` makes the event due again at `now` for every enabled
///   endpoint subscribed to its type and serving its order's customer (whether or not it
///   was delivered before, with its attempt count kept), and with `owner` only for those
///   that customer owns; `None` for an unknown event, else how many deliveries are due.
/// - `delete_endpoint` removes the endpoint with its deliveries and attempts.
/// - `purge(before, limit)` forgets history: every attempt made before `before`, and at most
///   `limit` events (an adapter may look at only the `limit` oldest) that happened before
///   `before`, were fanned out and have no delivery left pending, with their deliveries; it
///   returns how many events it deleted. An event still to
///   fan out, or with a delivery pending (to a disabled endpoint, say), is kept whatever its
///   age.
/// - `insert_endpoint` keeps everything it is given, secrets included.
/// - An endpoint's columns are written apart, each write only its own, so concurrent ones
///   lose nothing of each other: `change_endpoint` the settings (as
///   [`Endpoint::apply`](crate::webhook::Endpoint::apply) does), `rotate_secret` the
///   secrets, the dispatcher (`finish_deliveries`) the failure streak and the reason to
///   disable. Both return the endpoint as the write left it, `None` if there is none.
/// - `insert_endpoint(endpoint, at_most)` stores it unless its owner (or, for an endpoint
///   without one, the endpoints without one) already has `at_most` endpoints, and returns
///   whether it did; concurrent inserts never take an owner past `at_most`.
/// - `endpoints(owner)` lists every endpoint, or with `owner` only that customer's, oldest
///   first.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint, unless its owner has `at_most` already.
    async fn insert_endpoint(
        &self,
        endpoint: &crate::webhook::Endpoint,
        at_most: usize,
    ) -> Result<bool, RepoError>;
    /// The endpoint with this id.
    async fn endpoint(
        &self,
        id: crate::webhook::EndpointId,
    ) -> Result<Option<crate::webhook::Endpoint>, RepoError>;
    /// Every endpoint, or one customer's, oldest first.
    async fn endpoints(
        &self,
        owner: Option<&CustomerId>,
    ) -> Result<Vec<crate::webhook::Endpoint>, RepoError>;
    /// Changes an endpoint's settings, and only those, at `now`.
    async fn change_endpoint(
        &self,
        id: crate::webhook::EndpointId,
        change: &crate::webhook::EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::webhook::Endpoint>, RepoError>;
    /// Makes `secret` the endpoint's, and the one it replaces the retiring one until
    /// `retiring_until`, at `now`; nothing else changes.
    async fn rotate_secret(
        &self,
        id: crate::webhook::EndpointId,
        secret: &crate::webhook::Secret,
        retiring_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::webhook::Endpoint>, RepoError>;
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
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedDelivery>, RepoError>;
    /// Records attempts and what comes after each, for the deliveries still leased. Each
    /// row stands alone: whatever a receiver answered, one row never fails the others, and
    /// an attempt's error and excerpt are kept as [`printable`](crate::webhook::printable)
    /// text.
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
    /// Makes an event due again for its subscribers (or one owner's).
    async fn redeliver(
        &self,
        event: crate::webhook::EventId,
        now: DateTime<Utc>,
        owner: Option<&CustomerId>,
    ) -> Result<Option<usize>, RepoError>;
    /// Forgets attempts, and settled events with their deliveries, older than `before`.
    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepoError>;
}
