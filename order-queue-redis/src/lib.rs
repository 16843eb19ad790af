//! # order-queue-redis
//!
//! The Redis adapters: [`RedisQueue`], the [`PaymentQueue`] port on Redis Streams with a
//! consumer group, and [`RedisRateLimiter`] (see [`limiter`]), each on one Redis server or
//! a Redis Cluster.
//!
//! - Jobs are stream entries (`XADD` with an approximate `MAXLEN`), read by competing
//!   consumers with `XREADGROUP ... BLOCK`; each process start uses a consumer name of its
//!   own ([`unique_consumer_name`]).
//! - A job stays in the group's pending list until `XACK`. Entries of consumers that died are
//!   taken over with `XAUTOCLAIM`; their delivery counts come from `XPENDING`.
//! - Deferred jobs wait in a sorted set scored by due time; a Lua script moves due ones back
//!   into the stream atomically.
//! - A job's trace (its W3C `traceparent`) is a field of its entry and part of its deferred
//!   member, so every delivery of the job carries it.
//! - Jobs delivered too often go to a dead-letter stream.
//! - **Shards**: the queue is `shards` independent streams (1 by default), each with its
//!   deferred set and dead-letter stream. A job goes to the shard its order id hashes to;
//!   every consumer reads every shard (without blocking first, starting from a different
//!   shard each time, then blocking briefly on one), so no shard waits for a consumer.
//! - **Hash tags**: each shard's three keys are `{name}`, `{name}:deferred` and `{name}:dead`
//!   (`{name:i}` with several shards), so they share a hash slot: the Lua script and the
//!   `MULTI` blocks touching two keys run on one cluster node, and the shards spread over
//!   the nodes of a [`RedisMode::Cluster`].
//! - One multiplexed connection serves every non-blocking command and reconnects after a
//!   restart; each consumer blocks on a connection of its own, whose response timeout is
//!   longer than any `BLOCK`. A restarted, empty Redis (or cluster node) has no group:
//!   commands that find none recreate it and carry on.

mod conn;
pub mod limiter;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::OrderId;
use order_core::ports::{BoxError, Delivery, Job, PaymentQueue, QueueError, QueueStats};
use order_core::trace::{TRACEPARENT, TraceParent};

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Value};
use tokio::sync::OnceCell;
use tracing::warn;

pub use conn::RedisMode;
use conn::{Conn, Connector};
pub use limiter::RedisRateLimiter;

/// Where the queue lives and how this consumer talks to it.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `redis://` URL; with [`RedisMode::Cluster`], one or more seed nodes separated by
    /// commas.
    pub url: String,
    /// One server or a cluster (`REDIS_MODE`).
    pub mode: RedisMode,
    /// Base name (`REDIS_QUEUE_NAME`); the keys derive from it (see the crate docs).
    pub stream: String,
    /// Number of streams the jobs are spread over (`REDIS_QUEUE_SHARDS`, at least 1). Every
    /// process of a deployment must use the same number; changing it leaves the jobs of
    /// dropped shards to the reconciler.
    pub shards: u16,
    /// Consumer group of the workers.
    pub group: String,
    /// This consumer's name, unique per process start.
    pub consumer: String,
    /// Approximate most entries kept in each stream.
    pub max_len: usize,
    /// Longest `BLOCK` of a receive; longer waits are cut to this.
    pub max_block: Duration,
    /// Response timeout of non-blocking commands.
    pub command_timeout: Duration,
}

impl QueueConfig {
    /// Defaults for `url`: one server, base name `payment_queue`, one shard, group
    /// `payment-workers`, a unique consumer name, 1,000,000 entries, 5 s blocks, 2 s command
    /// timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: RedisMode::Standalone,
            stream: "payment_queue".into(),
            shards: 1,
            group: "payment-workers".into(),
            consumer: unique_consumer_name("consumer"),
            max_len: 1_000_000,
            max_block: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
        }
    }
}

/// `prefix-<pid>-<random>`: unique per process start, so a restarted worker never inherits
/// a dead one's name (its entries are reclaimed instead).
pub fn unique_consumer_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}-{}", std::process::id(), &id[id.len() - 8..])
}

/// The Redis keys of one shard, built in one place: all three share the hash tag `{tag}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    /// The stream of jobs.
    pub stream: String,
    /// The sorted set of deferred jobs.
    pub deferred: String,
    /// The dead-letter stream.
    pub dead: String,
}

impl ShardKeys {
    /// The keys of every shard of the queue named `name`.
    pub fn all(name: &str, shards: u16) -> Vec<Self> {
        let tag = |i: u16| {
            if shards <= 1 {
                format!("{{{name}}}")
            } else {
                format!("{{{name}:{i}}}")
            }
        };
        (0..shards.max(1))
            .map(|i| {
                let tag = tag(i);
                Self {
                    stream: tag.clone(),
                    deferred: format!("{tag}:deferred"),
                    dead: format!("{tag}:dead"),
                }
            })
            .collect()
    }
}

/// Moves due members of the deferred set (KEYS[1]) into the stream (KEYS[2]), atomically.
/// A member is a job as [`deferred_member`] writes it: the order id, then, after a space,
/// its `traceparent` if it has one. ARGV: now in ms, most to move, MAXLEN.
const PROMOTE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local space = string.find(member, ' ', 1, true)
  if space then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
      'order_id', string.sub(member, 1, space - 1), 'traceparent', string.sub(member, space + 1))
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'order_id', member)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

/// A deferred job as a member of the deferred set: its order id, and its trace after a space.
/// Every job of an order carries the order's trace, so one order still has one member and
/// deferring it again only moves it.
fn deferred_member(order: OrderId, trace: Option<TraceParent>) -> String {
    match trace {
        Some(trace) => format!("{order} {trace}"),
        None => order.to_string(),
    }
}

/// Deletes the entries of the stream (KEYS[1]) that the group (ARGV[1]) is done with: those
/// older than its oldest pending entry, or, with none pending, than the last entry it was
/// given. Returns how many were deleted.
const TRIM_ACKED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] then floor = fields['last-delivered-id'] end
end
if floor == nil then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then floor = pending[2] end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
";

/// With several shards, the longest a receive blocks on one shard before looking at the
/// others again: the most a job on another shard waits for an idle consumer.
const SHARD_BLOCK: Duration = Duration::from_millis(50);

/// [`PaymentQueue`] on Redis Streams. A value is one consumer; [`RedisQueue::consumer`]
/// makes more consumers sharing the multiplexed connection.
#[derive(Clone)]
pub struct RedisQueue {
    /// When this process last forgot idle consumers (at most once a minute).
    last_sweep: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    shared: Arc<OnceCell<Conn>>,
    blocking: Arc<OnceCell<Conn>>,
    connector: Connector,
    config: QueueConfig,
    shards: Arc<[ShardKeys]>,
    /// Where this consumer's next receive or reclaim starts, so every shard gets its turn.
    cursor: Arc<AtomicUsize>,
    promote: redis::Script,
    trim: redis::Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.config.stream)
            .field("shards", &self.shards.len())
            .field("consumer", &self.config.consumer)
            .finish_non_exhaustive()
    }
}

/// A delivery's id: the shard and the stream entry id, as `shard/entry`.
fn delivery_id(shard: usize, entry: &str) -> String {
    format!("{shard}/{entry}")
}

impl RedisQueue {
    /// A queue that connects on first use, so a process can start (and accept orders)
    /// while Redis is down; every call until Redis answers fails with
    /// [`QueueError::Unavailable`]. Only a malformed URL is an error here.
    pub fn new(config: QueueConfig) -> Result<Self, QueueError> {
        let connector =
            Connector::new(config.mode, &config.url).map_err(|e| QueueError::Other(e.into()))?;
        Ok(Self {
            last_sweep: Arc::new(std::sync::Mutex::new(None)),
            shared: Arc::new(OnceCell::new()),
            blocking: Arc::new(OnceCell::new()),
            connector,
            shards: ShardKeys::all(&config.stream, config.shards).into(),
            cursor: Arc::new(AtomicUsize::new(0)),
            config,
            promote: redis::Script::new(PROMOTE_DUE),
            trim: redis::Script::new(TRIM_ACKED),
        })
    }

    /// Connects now, creating the streams and groups if needed.
    pub async fn connect(config: QueueConfig) -> Result<Self, QueueError> {
        let queue = Self::new(config)?;
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// Another consumer of the same queue, with its own blocking connection.
    #[must_use]
    pub fn consumer(&self, name: impl Into<String>) -> Self {
        Self {
            blocking: Arc::new(OnceCell::new()),
            cursor: Arc::new(AtomicUsize::new(0)),
            config: QueueConfig {
                consumer: name.into(),
                ..self.config.clone()
            },
            ..self.clone()
        }
    }

    /// The keys of every shard.
    pub fn shard_keys(&self) -> &[ShardKeys] {
        &self.shards
    }

    /// The shard `order`'s jobs go to.
    pub fn shard_of(&self, order: OrderId) -> usize {
        let n = u128::try_from(self.shards.len()).unwrap_or(1);
        usize::try_from(order.as_uuid().as_u128() % n).unwrap_or(0)
    }

    /// The `XADD` that queues `job` on the shard of `keys`, with its trace if it has one.
    fn add_job(&self, keys: &ShardKeys, job: &Job) -> redis::Cmd {
        let mut add = redis::cmd("XADD");
        add.arg(&keys.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len)
            .arg("*")
            .arg("order_id")
            .arg(job.order_id.to_string());
        if let Some(trace) = job.trace {
            add.arg(TRACEPARENT).arg(trace.to_string());
        }
        add
    }

    /// The shard and entry id of a delivery this queue made.
    fn locate<'a>(&self, delivery: &'a Delivery) -> Result<(&ShardKeys, &'a str), QueueError> {
        delivery
            .id
            .split_once('/')
            .and_then(|(shard, entry)| {
                Some((self.shards.get(shard.parse::<usize>().ok()?)?, entry))
            })
            .ok_or_else(|| {
                QueueError::Other(format!("not a delivery of this queue: {:?}", delivery.id).into())
            })
    }

    /// The shard indexes in the order this call visits them, starting one further each call.
    fn rotation(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.shards.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(move |k| (start + k) % n)
    }

    /// The shared multiplexed connection, opened on first use (retried until it opens).
    async fn shared(&self) -> Result<Conn, QueueError> {
        self.shared
            .get_or_try_init(|| self.connector.open(self.config.command_timeout))
            .await
            .cloned()
            .map_err(translate)
    }

    /// This consumer's connection for blocking reads.
    async fn blocking(&self) -> Result<Conn, QueueError> {
        self.blocking
            .get_or_try_init(|| {
                self.connector
                    .open(self.config.max_block + self.config.command_timeout)
            })
            .await
            .cloned()
            .map_err(translate)
    }

    /// This consumer's name.
    pub fn consumer_name(&self) -> &str {
        &self.config.consumer
    }

    /// Removes other consumers of the group that have nothing pending and have been idle
    /// for at least `idle`: workers that stopped. Every process start registers a new
    /// consumer name, so without this the group's consumer lists only grow. Returns how
    /// many were removed (over all shards).
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<u64, QueueError> {
        let conn = self.shared().await?;
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let field = |c: &std::collections::HashMap<String, Value>, k: &str| {
            c.get(k)
                .and_then(|v| redis::from_redis_value::<u64>(v).ok())
        };
        let mut removed = 0;
        for keys in self.shards.iter() {
            let consumers: Vec<std::collections::HashMap<String, Value>> = self
                .with_group(keys, || async {
                    let mut conn = conn.clone();
                    redis::cmd("XINFO")
                        .arg("CONSUMERS")
                        .arg(&keys.stream)
                        .arg(&self.config.group)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for consumer in &consumers {
                let Some(name) = consumer
                    .get("name")
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                else {
                    continue;
                };
                let idle_for = field(consumer, "idle").unwrap_or(0);
                if name == self.config.consumer
                    || field(consumer, "pending") != Some(0)
                    || idle_for < idle_ms
                {
                    continue;
                }
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&keys.stream)
                    .arg(&self.config.group)
                    .arg(&name)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(translate)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes, from every shard's stream, the entries the group is done with (acked,
    /// deferred or dead-lettered), so a stream holds only what is queued or in hand rather
    /// than growing to `max_len`. Workers call it with each reclaim. Returns how many entries
    /// were deleted.
    pub async fn trim_acknowledged(&self) -> Result<u64, QueueError> {
        let mut conn = self.shared().await?;
        let mut total = 0;
        for keys in self.shards.iter() {
            let n: u64 = self
                .trim
                .key(&keys.stream)
                .arg(&self.config.group)
                .invoke_async(&mut conn)
                .await
                .map_err(translate)?;
            total += n;
        }
        Ok(total)
    }

    /// Entries in the dead-letter streams.
    pub async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        let mut conn = self.shared().await?;
        let mut total = 0;
        for keys in self.shards.iter() {
            let n: u64 = redis::cmd("XLEN")
                .arg(&keys.dead)
                .query_async(&mut conn)
                .await
                .map_err(translate)?;
            total += n;
        }
        Ok(total)
    }

    /// Creates every shard's stream and group if missing (from the stream's start, so jobs
    /// queued before the group existed are delivered too).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        for keys in self.shards.iter() {
            self.ensure_shard_group(keys).await?;
        }
        Ok(())
    }

    async fn ensure_shard_group(&self, keys: &ShardKeys) -> Result<(), QueueError> {
        let result: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.shared().await?)
            .await;
        match result {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(translate(e)),
            _ => Ok(()),
        }
    }

    /// Runs `op` on a shard; if Redis says the shard's group is gone (its server restarted
    /// empty), recreates the group and runs `op` once more.
    async fn with_group<T, F, Fut>(&self, keys: &ShardKeys, op: F) -> Result<T, QueueError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        match op().await {
            Err(e) if e.code() == Some("NOGROUP") => {
                warn!(stream = %keys.stream, "consumer group missing; recreating it");
                self.ensure_shard_group(keys).await?;
                op().await.map_err(translate)
            }
            other => other.map_err(translate),
        }
    }

    /// At most once a minute, forgets consumers idle for an hour with nothing pending.
    async fn sweep_consumers(&self) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match self.forget_idle_consumers(Duration::from_secs(3600)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "forgot consumers of stopped workers"),
            Err(e) => warn!(error = ?e, "forgetting idle consumers failed"),
        }
    }

    async fn promote_due(&self) -> Result<(), QueueError> {
        let now_ms = Utc::now().timestamp_millis();
        let mut conn = self.shared().await?;
        let mut failures = Vec::new();
        for keys in self.shards.iter() {
            let promoted: Result<i64, RedisError> = self
                .promote
                .key(&keys.deferred)
                .key(&keys.stream)
                .arg(now_ms)
                .arg(1000)
                .arg(self.config.max_len)
                .invoke_async(&mut conn)
                .await;
            match promoted.map_err(translate) {
                Ok(_) => {}
                Err(e) if e.is_retryable() => failures.push(e),
                Err(e) => return Err(e),
            }
        }
        // A shard that cannot be reached keeps its deferred jobs until it can; the others
        // go on. Only when none answers is the queue unavailable.
        if failures.len() == self.shards.len() {
            return Err(failures.pop().expect("at least one shard"));
        }
        Ok(())
    }

    /// Reads up to `max` new entries of one shard, blocking up to `block` (none if zero).
    async fn read_shard(
        &self,
        conn: &Conn,
        shard: usize,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let keys = &self.shards[shard];
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<StreamReadReply> = self
            .with_group(keys, || async {
                let mut conn = conn.clone();
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg("COUNT")
                    .arg(max);
                if block_ms > 0 {
                    cmd.arg("BLOCK").arg(block_ms);
                }
                cmd.arg("STREAMS")
                    .arg(&keys.stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        let ones = vec![1; entries.len()];
        self.deliveries(shard, entries, &ones).await
    }

    /// Turns entries into deliveries; entries without a valid order id are dead-lettered.
    async fn deliveries(
        &self,
        shard: usize,
        entries: Vec<StreamId>,
        counts: &[u32],
    ) -> Result<Vec<Delivery>, QueueError> {
        let keys = &self.shards[shard];
        let mut out = Vec::with_capacity(entries.len());
        for (entry, deliveries) in entries.into_iter().zip(counts.iter().copied()) {
            let order = entry
                .map
                .get("order_id")
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .and_then(|s| s.parse::<OrderId>().ok());
            if let Some(order_id) = order {
                // A trace that does not read is only a lost link: the job is paid all the same.
                let trace = entry
                    .map
                    .get(TRACEPARENT)
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                    .and_then(|s| s.parse().ok());
                out.push(Delivery {
                    id: delivery_id(shard, &entry.id),
                    order_id,
                    trace,
                    deliveries,
                });
            } else {
                warn!(entry = %entry.id, stream = %keys.stream, "malformed queue entry; dead-lettering it");
                self.move_to_dead(keys, &entry.id, "-", deliveries, "malformed entry")
                    .await?;
            }
        }
        Ok(out)
    }

    async fn move_to_dead(
        &self,
        keys: &ShardKeys,
        id: &str,
        order: &str,
        deliveries: u32,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&keys.dead)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len)
            .arg("*")
            .arg("order_id")
            .arg(order)
            .arg("entry")
            .arg(id)
            .arg("deliveries")
            .arg(deliveries)
            .arg("reason")
            .arg(reason)
            .ignore()
            .cmd("XACK")
            .arg(&keys.stream)
            .arg(&self.config.group)
            .arg(id)
            .ignore();
        let conn = self.shared().await?;
        self.with_group(keys, || {
            let mut conn = conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    /// Takes over up to `max` entries of one shard idle for `idle_ms`.
    async fn reclaim_shard(
        &self,
        conn: &Conn,
        shard: usize,
        idle_ms: u64,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let keys = &self.shards[shard];
        let reply: StreamAutoClaimReply = self
            .with_group(keys, || async {
                let mut conn = conn.clone();
                redis::cmd("XAUTOCLAIM")
                    .arg(&keys.stream)
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg(idle_ms)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(max)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if !reply.deleted_ids.is_empty() {
            warn!(
                count = reply.deleted_ids.len(),
                stream = %keys.stream,
                "pending entries were trimmed from the stream; the reconciler re-queues their orders"
            );
        }
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM does not report delivery counts; XPENDING on each claimed id does.
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&keys.stream)
                .arg(&self.config.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let pending: Vec<Value> = pipe
            .query_async(&mut conn.clone())
            .await
            .map_err(translate)?;
        let counts: Vec<u32> = pending.iter().map(delivery_count).collect();
        self.deliveries(shard, reply.claimed, &counts).await
    }
}

#[async_trait]
impl PaymentQueue for RedisQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        // The order's own shard, or, if its node cannot be reached, the next that answers:
        // a job may sit on any shard, since its delivery id says which.
        let home = self.shard_of(job.order_id);
        let n = self.shards.len();
        let mut conn = self.shared().await?;
        let mut failure = None;
        for shard in (0..n).map(|k| (home + k) % n) {
            let added: Result<String, RedisError> = self
                .add_job(&self.shards[shard], job)
                .query_async(&mut conn)
                .await;
            match added.map_err(translate) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => failure = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(failure.expect("at least one shard"))
    }

    async fn enqueue_many(&self, jobs: &[Job]) -> Result<(), QueueError> {
        // One pipeline per home shard (its keys share a slot, so a cluster takes it whole);
        // if one fails, its jobs go one by one, each to the next shard that answers.
        let mut by_shard: Vec<Vec<&Job>> = vec![Vec::new(); self.shards.len()];
        for job in jobs {
            by_shard[self.shard_of(job.order_id)].push(job);
        }
        let conn = self.shared().await?;
        for (keys, jobs) in self.shards.iter().zip(&by_shard) {
            if jobs.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for job in jobs {
                pipe.add_command(self.add_job(keys, job)).ignore();
            }
            let added: Result<(), RedisError> = pipe.query_async(&mut conn.clone()).await;
            match added.map_err(translate) {
                Ok(()) => {}
                Err(e) if e.is_retryable() && self.shards.len() > 1 => {
                    for job in jobs {
                        self.enqueue(job).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.promote_due().await?;
        let wait = wait.min(self.config.max_block);
        if self.shards.len() == 1 {
            return self.read_shard(&self.blocking().await?, 0, max, wait).await;
        }
        // Several shards: take what is there from each, starting at a different shard each
        // time; when all are empty, block briefly on one that answered, then look at all
        // again. A shard that cannot be reached (its cluster node is down) is skipped: the
        // others keep being served.
        let deadline = tokio::time::Instant::now() + wait;
        let shared = self.shared().await?;
        loop {
            let mut out = Vec::new();
            let mut answered = None;
            let mut failure = None;
            for shard in self.rotation() {
                match self
                    .read_shard(&shared, shard, max - out.len(), Duration::ZERO)
                    .await
                {
                    Ok(got) => {
                        answered = answered.or(Some(shard));
                        out.extend(got);
                    }
                    Err(e) if e.is_retryable() => failure = Some(e),
                    Err(e) => return Err(e),
                }
                if out.len() == max {
                    break;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || left.is_zero() {
                return Ok(out);
            }
            let Some(quiet) = answered else {
                return Err(failure.expect("a shard failed if none answered"));
            };
            let got = self
                .read_shard(&self.blocking().await?, quiet, max, left.min(SHARD_BLOCK))
                .await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ack_many(std::slice::from_ref(delivery)).await
    }

    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        // One XACK per shard, with every entry of that shard.
        let mut by_shard: Vec<Vec<&str>> = vec![Vec::new(); self.shards.len()];
        for delivery in deliveries {
            let (keys, entry) = self.locate(delivery)?;
            let shard = self
                .shards
                .iter()
                .position(|k| std::ptr::eq(k, keys))
                .expect("locate returns one of the shards");
            by_shard[shard].push(entry);
        }
        let conn = self.shared().await?;
        for (keys, entries) in self.shards.iter().zip(&by_shard) {
            if entries.is_empty() {
                continue;
            }
            self.with_group(keys, || async {
                let mut conn = conn.clone();
                redis::cmd("XACK")
                    .arg(&keys.stream)
                    .arg(&self.config.group)
                    .arg(entries)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    async fn defer(&self, delivery: &Delivery, until: DateTime<Utc>) -> Result<(), QueueError> {
        let (keys, entry) = self.locate(delivery)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&keys.deferred)
            .arg("LT")
            .arg(until.timestamp_millis())
            .arg(deferred_member(delivery.order_id, delivery.trace))
            .ignore()
            .cmd("XACK")
            .arg(&keys.stream)
            .arg(&self.config.group)
            .arg(entry)
            .ignore();
        let conn = self.shared().await?;
        self.with_group(keys, || {
            let mut conn = conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn reclaim(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let conn = self.shared().await?;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for shard in self.rotation() {
            match self
                .reclaim_shard(&conn, shard, idle_ms, max - out.len())
                .await
            {
                Ok(got) => out.extend(got),
                Err(e) if e.is_retryable() => failures.push(e),
                Err(e) => return Err(e),
            }
            if out.len() == max {
                break;
            }
        }
        if failures.len() == self.shards.len() {
            return Err(failures.pop().expect("at least one shard"));
        }
        self.sweep_consumers().await;
        if let Err(e) = self.trim_acknowledged().await {
            warn!(error = ?e, "trimming acknowledged entries failed");
        }
        Ok(out)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let (keys, entry) = self.locate(delivery)?;
        self.move_to_dead(
            keys,
            entry,
            &delivery.order_id.to_string(),
            delivery.deliveries,
            reason,
        )
        .await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: Value = redis::cmd("PING")
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let conn = self.shared().await?;
        let mut stats = QueueStats::default();
        let mut oldest_ms: Option<u64> = None;
        for keys in self.shards.iter() {
            let mut conn = conn.clone();
            let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&keys.stream)
                .query_async(&mut conn)
                .await
                .or_else(|e| {
                    // No stream yet: nothing queued on this shard.
                    if e.kind() == redis::ErrorKind::ResponseError {
                        Ok(redis::streams::StreamInfoGroupsReply::default())
                    } else {
                        Err(e)
                    }
                })
                .map_err(translate)?;
            let group = groups.groups.iter().find(|g| g.name == self.config.group);
            let last_delivered =
                group.map_or_else(|| "0-0".to_owned(), |g| g.last_delivered_id.clone());
            if let Some(g) = group {
                stats.pending += g.pending as u64;
            }
            // The oldest entry not yet delivered, and the oldest delivered and unsettled.
            let (length, first_waiting, first_pending, deferred, dead): (
                u64,
                Vec<(String, Value)>,
                Value,
                u64,
                u64,
            ) = redis::pipe()
                .cmd("XLEN")
                .arg(&keys.stream)
                .cmd("XRANGE")
                .arg(&keys.stream)
                .arg(format!("({last_delivered}"))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XPENDING")
                .arg(&keys.stream)
                .arg(&self.config.group)
                .cmd("ZCARD")
                .arg(&keys.deferred)
                .cmd("XLEN")
                .arg(&keys.dead)
                .query_async(&mut conn)
                .await
                .or_else(|e| {
                    if e.kind() == redis::ErrorKind::ResponseError {
                        Ok((0, Vec::new(), Value::Nil, 0, 0))
                    } else {
                        Err(e)
                    }
                })
                .map_err(translate)?;
            // Redis counts what the group has yet to read (`lag`) unless it cannot tell; then
            // the stream's length less the pending entries bounds it from above.
            let pending = group.map_or(0, |g| g.pending as u64);
            stats.waiting += group
                .and_then(|g| g.lag)
                .map_or_else(|| length.saturating_sub(pending), |lag| lag as u64);
            stats.deferred += deferred;
            stats.dead += dead;
            let pending_min = match &first_pending {
                Value::Array(summary) => summary.get(1).and_then(|v| match v {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    _ => None,
                }),
                _ => None,
            };
            for id in first_waiting
                .iter()
                .map(|(id, _)| id.clone())
                .chain(pending_min)
            {
                if let Some(ms) = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()) {
                    oldest_ms = Some(oldest_ms.map_or(ms, |o| o.min(ms)));
                }
            }
        }
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        stats.oldest_age = oldest_ms.map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)));
        Ok(stats)
    }
}

/// The delivery count in an `XPENDING key group id id 1` reply: `[[id, consumer, idle, n]]`.
fn delivery_count(reply: &Value) -> u32 {
    let Value::Array(rows) = reply else { return 1 };
    let Some(Value::Array(fields)) = rows.first() else {
        return 1;
    };
    fields
        .get(3)
        .and_then(|v| redis::from_redis_value::<u32>(v).ok())
        .unwrap_or(1)
}

/// Translates a driver error: connection trouble and time-outs are retryable `Unavailable`.
pub fn translate(e: RedisError) -> QueueError {
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(e.kind(), redis::ErrorKind::ClusterConnectionNotFound)
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN")
        );
    let source: BoxError = Box::new(e);
    if retryable {
        QueueError::Unavailable(source)
    } else {
        QueueError::Other(source)
    }
}
