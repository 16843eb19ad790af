//! [`RedisQueue`]: its connections, shards and the reads behind receive and reclaim.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use order_core::OrderId;
use order_core::ports::{Delivery, Job, QueueError};
use order_core::trace::TRACEPARENT;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Value};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::config::QueueConfig;
use crate::conn::{Conn, Connector};
use crate::error::translate;
use crate::keys::{ShardKeys, delivery_id};
use crate::scripts::{PROMOTE_DUE, TRIM_ACKED};

mod group;
mod maintenance;
mod port;

/// With several shards, the longest a receive blocks on one shard before looking at the
/// others again: the most a job on another shard waits for an idle consumer.
const SHARD_BLOCK: Duration = Duration::from_millis(50);

/// [`PaymentQueue`](order_core::ports::PaymentQueue) on Redis Streams. A value is one consumer; [`RedisQueue::consumer`]
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

impl RedisQueue {
    /// A queue that connects on first use, so a process can start (and accept orders)
    /// while Redis is down; every call until Redis answers fails with
    /// [`QueueError::Unavailable`]. Only a malformed URL is an error here.
    pub fn new(config: QueueConfig) -> Result<Self, QueueError> {
        let connector = Connector::new(config.mode, &config.url, config.root_ca.as_deref())
            .map_err(|e| QueueError::Other(e.into()))?;
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
