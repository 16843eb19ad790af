//! [`MemoryQueue`]: the payment queue, in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::lock;
use crate::ids::OrderId;
use crate::ports::{Clock, Delivery, Job, PaymentQueue, QueueError, QueueStats};

#[derive(Debug)]
struct PendingEntry {
    job: Job,
    consumer: String,
    delivered_at: DateTime<Utc>,
    deliveries: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    next_id: u64,
    ready: VecDeque<(u64, Job)>,
    deferred: Vec<(DateTime<Utc>, u64, Job)>,
    pending: BTreeMap<u64, PendingEntry>,
    dead: Vec<(OrderId, String)>,
    /// When each waiting or pending entry was queued, by entry id (oldest first).
    queued_at: BTreeMap<u64, DateTime<Utc>>,
}

impl QueueState {
    fn push(&mut self, job: Job, now: DateTime<Utc>) {
        self.next_id += 1;
        self.ready.push_back((self.next_id, job));
        self.queued_at.insert(self.next_id, now);
    }

    fn promote_due(&mut self, now: DateTime<Utc>) {
        let (due, later): (Vec<_>, Vec<_>) =
            self.deferred.drain(..).partition(|(at, ..)| *at <= now);
        self.deferred = later;
        let mut due = due;
        due.sort_unstable_by_key(|&(at, id, _)| (at, id));
        for (_, _, job) in due {
            self.push(job, now);
        }
    }
}

struct QueueShared {
    state: Mutex<QueueState>,
    arrived: Notify,
    clock: Arc<dyn Clock>,
}

/// [`PaymentQueue`] in memory: a value is one named consumer of a shared queue; make more
/// consumers of the same queue with [`MemoryQueue::consumer`].
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<QueueShared>,
    consumer: String,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl MemoryQueue {
    /// An empty queue whose idle times and deferrals follow `clock`; this value is its
    /// consumer `"memory"`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(QueueShared {
                state: Mutex::new(QueueState::default()),
                arrived: Notify::new(),
                clock,
            }),
            consumer: "memory".into(),
        }
    }

    /// Another consumer of the same queue.
    #[must_use]
    pub fn consumer(&self, name: impl Into<String>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            consumer: name.into(),
        }
    }

    /// Jobs waiting to be received, now or later.
    pub fn queued(&self) -> usize {
        let s = lock(&self.shared.state);
        s.ready.len() + s.deferred.len()
    }

    /// Jobs received and not yet acked, deferred or dead-lettered.
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).pending.len()
    }

    /// Dead-lettered jobs: order and reason.
    pub fn dead_letters(&self) -> Vec<(OrderId, String)> {
        lock(&self.shared.state).dead.clone()
    }

    /// Forgets every job, as a queue server restarted without persistence would.
    pub fn wipe(&self) {
        *lock(&self.shared.state) = QueueState::default();
    }

    fn take_ready(&self, max: usize) -> (Vec<Delivery>, Option<DateTime<Utc>>) {
        let now = self.shared.clock.now();
        let mut s = lock(&self.shared.state);
        s.promote_due(now);
        let mut out = Vec::new();
        while out.len() < max {
            let Some((id, job)) = s.ready.pop_front() else {
                break;
            };
            s.pending.insert(
                id,
                PendingEntry {
                    job,
                    consumer: self.consumer.clone(),
                    delivered_at: now,
                    deliveries: 1,
                },
            );
            out.push(Delivery {
                id: id.to_string(),
                order_id: job.order_id,
                trace: job.trace,
                deliveries: 1,
            });
        }
        let next_due = s.deferred.iter().map(|(at, ..)| *at).min();
        (out, next_due)
    }

    fn remove_pending(&self, delivery: &Delivery) -> Option<PendingEntry> {
        let id: u64 = delivery.id.parse().ok()?;
        let mut s = lock(&self.shared.state);
        s.queued_at.remove(&id);
        s.pending.remove(&id)
    }
}

#[async_trait]
impl PaymentQueue for MemoryQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        let now = self.shared.clock.now();
        lock(&self.shared.state).push(*job, now);
        self.shared.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (got, next_due) = self.take_ready(max);
            if !got.is_empty() || max == 0 {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(due) = next_due {
                let in_ = (due - self.shared.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                until = until.min(now + in_.max(Duration::from_millis(1)));
            }
            let _ = tokio::time::timeout_at(until, arrived).await;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.remove_pending(delivery);
        Ok(())
    }

    async fn defer(&self, delivery: &Delivery, until: DateTime<Utc>) -> Result<(), QueueError> {
        let mut s = lock(&self.shared.state);
        let was_pending = delivery.id.parse::<u64>().is_ok_and(|id| {
            s.queued_at.remove(&id);
            s.pending.remove(&id).is_some()
        });
        if was_pending {
            s.next_id += 1;
            let id = s.next_id;
            let job = Job {
                order_id: delivery.order_id,
                trace: delivery.trace,
            };
            s.deferred.push((until, id, job));
        }
        drop(s);
        self.shared.arrived.notify_waiters();
        Ok(())
    }

    async fn reclaim(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let now = self.shared.clock.now();
        let mut s = lock(&self.shared.state);
        let mut out = Vec::new();
        for (id, entry) in &mut s.pending {
            if out.len() >= max {
                break;
            }
            if now - entry.delivered_at >= crate::time::to_chrono(min_idle) {
                entry.consumer.clone_from(&self.consumer);
                entry.delivered_at = now;
                entry.deliveries += 1;
                out.push(Delivery {
                    id: id.to_string(),
                    order_id: entry.job.order_id,
                    trace: entry.job.trace,
                    deliveries: entry.deliveries,
                });
            }
        }
        Ok(out)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        if let Some(entry) = self.remove_pending(delivery) {
            lock(&self.shared.state)
                .dead
                .push((entry.job.order_id, reason.to_owned()));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = self.shared.clock.now();
        let s = lock(&self.shared.state);
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(QueueStats {
            waiting: count(s.ready.len()),
            pending: count(s.pending.len()),
            deferred: count(s.deferred.len()),
            dead: count(s.dead.len()),
            oldest_age: s
                .queued_at
                .values()
                .next()
                .map(|at| (now - *at).to_std().unwrap_or_default()),
        })
    }
}
