//! [`PaymentQueue`]: the at-least-once queue of payment jobs.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::ids::OrderId;
use crate::order::Order;
use crate::trace::TraceParent;

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
