//! In-memory adapters of every port: concurrent and faithful to the port contracts (they
//! pass the same conformance suites as the PostgreSQL and Redis adapters). They are the
//! embedded default of `order-http` and the bed of the property tests. Nothing survives the
//! process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::access::{ApiKey, KeyId};
use crate::ids::{OrderId, WorkerId};
use crate::order::{CancelReason, Cancellation, Order, OrderEvent, OrderStatus, Transition};
use crate::payment::Attempt;
use crate::policy::rate_limit::{Quota, Verdict, decide};
use crate::ports::{
    ApiKeyStore, CancelResult, Claim, Clock, Delivery, Job, Lease, LimiterError, OrderFilter,
    OrderPage, OrderRepo, PageRequest, PaymentQueue, QueueError, QueueStats, RateLimiter,
    RepoError,
};
use crate::request::{Fingerprint, KeyedRequest, RequestKey};

mod hooks;
use hooks::Hooks;

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Row {
    order: Order,
    lease: Option<(Uuid, DateTime<Utc>)>,
    due_at: DateTime<Utc>,
    uncertain: bool,
}

#[derive(Debug, Clone)]
struct KeyRecord {
    fingerprint: Fingerprint,
    token: Uuid,
    reserved_at: DateTime<Utc>,
    order: Option<OrderId>,
}

/// [`OrderRepo`] in memory.
#[derive(Debug, Default)]
pub struct MemoryOrderRepo {
    rows: RwLock<HashMap<OrderId, Row>>,
    keys: Mutex<HashMap<RequestKey, KeyRecord>>,
    /// The outbox and the webhooks' endpoints and deliveries; events are recorded while the
    /// rows' write lock is held, so an event and its status change are one step.
    hooks: Mutex<Hooks>,
}

impl MemoryOrderRepo {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored order (for tests and invariant checks).
    pub fn all(&self) -> Vec<Order> {
        self.read().values().map(|r| r.order.clone()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrderId, Row>> {
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<OrderId, Row>> {
        self.rows.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores new orders, all or nothing.
    fn insert_rows(&self, orders: &[Order]) -> Result<(), RepoError> {
        let mut rows = self.write();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = orders
            .iter()
            .find(|o| rows.contains_key(&o.id) || !seen.insert(o.id))
        {
            return Err(RepoError::Duplicate(dup.id));
        }
        for order in orders {
            let order = Order {
                status: OrderStatus::Pending,
                payment_attempts: Vec::new(),
                cancellation: None,
                refund_attempts: Vec::new(),
                ..order.clone()
            };
            let due_at = order.created_at;
            lock(&self.hooks).record(&order, None);
            rows.insert(
                order.id,
                Row {
                    order,
                    lease: None,
                    due_at,
                    uncertain: false,
                },
            );
        }
        Ok(())
    }

    fn row_under_lease<'a>(
        rows: &'a mut HashMap<OrderId, Row>,
        lease: &Lease,
    ) -> Result<&'a mut Row, RepoError> {
        let row = rows
            .get_mut(&lease.order_id)
            .ok_or(RepoError::NotFound(lease.order_id))?;
        match row.lease {
            Some((token, _)) if token == lease.token => Ok(row),
            _ => Err(RepoError::LeaseLost(lease.order_id)),
        }
    }
}

#[async_trait]
impl OrderRepo for MemoryOrderRepo {
    async fn insert(&self, order: &Order) -> Result<(), RepoError> {
        self.insert_many(std::slice::from_ref(order)).await
    }

    async fn insert_many(&self, orders: &[Order]) -> Result<(), RepoError> {
        self.insert_rows(orders)
    }

    async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        Ok(self.read().get(&id).map(|r| r.order.clone()))
    }

    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError> {
        let rows = self.read();
        let mut matching: Vec<&Order> = rows
            .values()
            .map(|r| &r.order)
            .filter(|o| {
                filter
                    .customer_id
                    .as_ref()
                    .is_none_or(|c| &o.customer_id == c)
            })
            .filter(|o| filter.status.is_none_or(|s| o.status == s))
            .collect();
        matching.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        let total = matching.len() as u64;
        let orders = matching
            .into_iter()
            .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
            .take(page.size.get() as usize)
            .cloned()
            .collect();
        Ok(OrderPage { orders, total })
    }

    async fn claim(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Claim, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        if row.order.status.is_terminal() {
            return Ok(Claim::Settled(row.order.clone()));
        }
        if let Some((_, until)) = row.lease {
            if until > now {
                return Ok(Claim::Busy { until });
            }
        }
        if row.due_at > now {
            return Ok(Claim::NotDue { at: row.due_at });
        }
        if row.order.status == OrderStatus::Pending {
            let t = Transition::apply(row.order.status, OrderEvent::PaymentStarted)
                .map_err(|e| RepoError::Other(e.into()))?;
            row.order.status = t.to();
            row.order.updated_at = row.order.updated_at.max(now);
            lock(&self.hooks).record(&row.order, Some(t.from()));
        }
        let lease = Lease {
            order_id: id,
            owner: worker.clone(),
            token: Uuid::now_v7(),
            expires_at: now + chrono(lease_for),
        };
        // A lease still set here ran out without being settled or released.
        row.uncertain |= row.lease.is_some();
        row.lease = Some((lease.token, lease.expires_at));
        Ok(Claim::Acquired {
            lease,
            order: row.order.clone(),
            uncertain: row.uncertain,
        })
    }

    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut rows = self.write();
        let row = Self::row_under_lease(&mut rows, lease)?;
        if row.order.status != transition.from() {
            return Err(RepoError::StatusConflict {
                id: lease.order_id,
                expected: transition.from(),
                actual: row.order.status,
            });
        }
        record(&mut row.order, attempt);
        row.order.status = transition.to();
        row.order.updated_at = row.order.updated_at.max(now);
        row.lease = None;
        lock(&self.hooks).record(&row.order, Some(transition.from()));
        Ok(())
    }

    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut rows = self.write();
        let row = Self::row_under_lease(&mut rows, lease)?;
        if attempt.is_some() {
            record(&mut row.order, attempt);
            row.order.updated_at = row.order.updated_at.max(now);
        }
        row.lease = None;
        row.due_at = retry_at;
        Ok(())
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, RepoError> {
        let rows = self.read();
        let mut due: Vec<(DateTime<Utc>, OrderId, Job)> = rows
            .values()
            .filter(|r| !r.order.status.is_terminal() && r.due_at <= before)
            .filter(|r| r.lease.is_none_or(|(_, until)| until <= before))
            .map(|r| (r.due_at, r.order.id, Job::of(&r.order)))
            .collect();
        due.sort_unstable_by_key(|&(at, id, _)| (at, id));
        Ok(due.into_iter().take(limit).map(|(.., job)| job).collect())
    }

    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError> {
        let mut keys = lock(&self.keys);
        let fresh = || KeyRecord {
            fingerprint: *fingerprint,
            token: Uuid::now_v7(),
            reserved_at: now,
            order: None,
        };
        let Some(record) = keys.get_mut(key) else {
            let record = fresh();
            let token = record.token;
            keys.insert(key.clone(), record);
            return Ok(KeyedRequest::New(token));
        };
        if record.fingerprint != *fingerprint {
            return Ok(KeyedRequest::Mismatch);
        }
        if let Some(order) = record.order {
            return Ok(KeyedRequest::Completed(order));
        }
        if record.reserved_at > now - chrono(stale_after) {
            return Ok(KeyedRequest::InFlight);
        }
        *record = fresh();
        Ok(KeyedRequest::New(record.token))
    }

    async fn insert_for_request(
        &self,
        order: &Order,
        key: &RequestKey,
        token: Uuid,
    ) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        let record = reservation(&mut keys, key, token)?;
        self.insert_rows(std::slice::from_ref(order))?;
        record.order = Some(order.id);
        Ok(())
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let event = match row.order.status {
            OrderStatus::Pending => OrderEvent::Cancelled,
            OrderStatus::PaymentProcessing | OrderStatus::Confirmed => OrderEvent::CancelRequested,
            OrderStatus::Cancelling | OrderStatus::Cancelled => {
                return Ok(CancelResult::Unchanged(row.order.clone()));
            }
            OrderStatus::PaymentFailed => {
                return Ok(CancelResult::NotCancellable(row.order.clone()));
            }
        };
        let transition =
            Transition::apply(row.order.status, event).map_err(|e| RepoError::Other(e.into()))?;
        row.order.status = transition.to();
        row.order.updated_at = row.order.updated_at.max(now);
        row.order.cancellation = Some(Cancellation {
            requested_at: now,
            reason,
        });
        lock(&self.hooks).record(&row.order, Some(transition.from()));
        if transition.to() == OrderStatus::Cancelled {
            Ok(CancelResult::Cancelled(row.order.clone()))
        } else {
            row.due_at = now;
            Ok(CancelResult::Cancelling(row.order.clone()))
        }
    }

    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        reservation(&mut keys, key, token)?.order = Some(order);
        Ok(())
    }

    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        if keys
            .get(key)
            .is_some_and(|r| r.token == token && r.order.is_none())
        {
            keys.remove(key);
        }
        Ok(())
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut keys = lock(&self.keys);
        let count = keys.len();
        keys.retain(|_, r| r.reserved_at >= before);
        Ok((count - keys.len()) as u64)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        Ok(())
    }
}

/// The uncompleted reservation of `key` that `token` holds.
fn reservation<'a>(
    keys: &'a mut HashMap<RequestKey, KeyRecord>,
    key: &RequestKey,
    token: Uuid,
) -> Result<&'a mut KeyRecord, RepoError> {
    keys.get_mut(key)
        .filter(|r| r.token == token && r.order.is_none())
        .ok_or_else(|| RepoError::RequestSuperseded(key.clone()))
}

/// Appends an attempt to the order's charges or refunds.
fn record(order: &mut Order, attempt: Option<Attempt>) {
    match attempt {
        Some(Attempt::Charge(a)) => order.payment_attempts.push(a),
        Some(Attempt::Refund(a)) => order.refund_attempts.push(a),
        None => {}
    }
}

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
            if now - entry.delivered_at >= chrono(min_idle) {
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

/// A clock that moves only when told: tests control time exactly.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.now) += chrono(by);
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.now) = to;
    }
}

impl Default for ManualClock {
    /// A clock at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }
}

/// [`RateLimiter`] in this process's memory: the embedded default's limiter, and the
/// reference the Redis one is checked against. Buckets whose burst is full again are
/// forgotten once there are many, so memory stays bounded by the clients active within a
/// window. Clones share their counts.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    tats: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    /// Buckets kept before the idle ones are swept.
    const SWEEP_AT: usize = 10_000;

    /// A limiter on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            tats: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Buckets held now.
    pub fn buckets(&self) -> usize {
        lock(&self.tats).len()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError> {
        let now = self.clock.now().timestamp_micros();
        let mut tats = lock(&self.tats);
        if tats.len() >= Self::SWEEP_AT {
            // A TAT in the past is the same as none: the bucket's burst is full.
            tats.retain(|_, tat| *tat > now);
        }
        let (verdict, next) = decide(tats.get(bucket).copied(), now, quota);
        if let Some(tat) = next {
            tats.insert(bucket.to_owned(), tat);
        }
        Ok(verdict)
    }
}

/// [`ApiKeyStore`] in memory, optionally kept in a file of JSON lines (one stored key per
/// line: hashes, never secrets), so the embedded default can have keys that survive a
/// restart. Clones share their keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryApiKeys {
    keys: Arc<Mutex<Vec<ApiKey>>>,
}

impl MemoryApiKeys {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys in `path` (a missing file holds none). The file is a log: a later line for
    /// the same id (a revocation) replaces the earlier one. A line that is not a stored key
    /// is an error naming it.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let key: ApiKey = serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: line {} is not a stored API key: {e}",
                        path.display(),
                        n + 1
                    ),
                )
            })?;
            match keys.iter_mut().find(|k: &&mut ApiKey| k.id == key.id) {
                Some(earlier) => *earlier = key,
                None => keys.push(key),
            }
        }
        keys.reverse();
        Ok(Self {
            keys: Arc::new(Mutex::new(keys)),
        })
    }

    /// Appends `key` to the file at `path` (created if missing).
    pub fn append_to_file(path: &std::path::Path, key: &ApiKey) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut line = serde_json::to_string(key).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_all()
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn insert_key(&self, key: &ApiKey) -> Result<(), RepoError> {
        lock(&self.keys).insert(0, key.clone());
        Ok(())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<ApiKey>, RepoError> {
        Ok(lock(&self.keys).iter().find(|k| &k.id == id).cloned())
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, RepoError> {
        Ok(lock(&self.keys).clone())
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>, RepoError> {
        let mut keys = lock(&self.keys);
        Ok(keys.iter_mut().find(|k| &k.id == id).map(|k| {
            k.revoked_at = k.revoked_at.or(Some(at));
            k.clone()
        }))
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        if let Some(k) = lock(&self.keys).iter_mut().find(|k| &k.id == id) {
            k.last_used_at = k.last_used_at.max(Some(at));
        }
        Ok(())
    }
}
