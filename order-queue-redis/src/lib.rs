//! # order-queue-redis
//!
//! [`RedisQueue`]: the [`PaymentQueue`] port on Redis Streams with a consumer group.
//!
//! - Jobs are stream entries (`XADD` with an approximate `MAXLEN`), read by competing
//!   consumers with `XREADGROUP ... BLOCK`; each process start uses a consumer name of its
//!   own ([`unique_consumer_name`]).
//! - A job stays in the group's pending list until `XACK`. Entries of consumers that died are
//!   taken over with `XAUTOCLAIM`; their delivery counts come from `XPENDING`.
//! - Deferred jobs wait in a sorted set scored by due time; a Lua script moves due ones back
//!   into the stream atomically.
//! - Jobs delivered too often go to a dead-letter stream.
//! - One multiplexed [`ConnectionManager`] serves every non-blocking command and reconnects
//!   after a restart; each consumer blocks on a connection of its own, whose response timeout
//!   is longer than any `BLOCK`. A restarted, empty Redis has no group: commands that find
//!   none recreate it and carry on.

#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::OrderId;
use order_core::ports::{BoxError, Delivery, PaymentQueue, QueueError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{Client, RedisError, Value};
use tokio::sync::OnceCell;
use tracing::warn;

/// Where the queue lives and how this consumer talks to it.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `redis://` URL.
    pub url: String,
    /// Stream name (`REDIS_QUEUE_NAME`); the deferred set and dead-letter stream derive
    /// from it.
    pub stream: String,
    /// Consumer group of the workers.
    pub group: String,
    /// This consumer's name, unique per process start.
    pub consumer: String,
    /// Approximate most entries kept in the stream.
    pub max_len: usize,
    /// Longest `BLOCK` of a receive; longer waits are cut to this.
    pub max_block: Duration,
    /// Response timeout of non-blocking commands.
    pub command_timeout: Duration,
}

impl QueueConfig {
    /// Defaults for `url`: stream `payment_queue`, group `payment-workers`, a unique
    /// consumer name, 1,000,000 entries, 5 s blocks, 2 s command timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "payment_queue".into(),
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

/// The Redis keys of one queue, built in one place.
#[derive(Debug, Clone)]
struct Keys {
    stream: String,
    deferred: String,
    dead: String,
}

impl Keys {
    fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            deferred: format!("{stream}:deferred"),
            dead: format!("{stream}:dead"),
        }
    }
}

/// Moves due members of the deferred set (KEYS[1]) into the stream (KEYS[2]), atomically.
/// ARGV: now in ms, most to move, MAXLEN.
const PROMOTE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'order_id', member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

/// [`PaymentQueue`] on Redis Streams. A value is one consumer; [`RedisQueue::consumer`]
/// makes more consumers sharing the multiplexed connection.
#[derive(Clone)]
pub struct RedisQueue {
    /// When this process last forgot idle consumers (at most once a minute).
    last_sweep: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    shared: Arc<OnceCell<ConnectionManager>>,
    blocking: Arc<OnceCell<ConnectionManager>>,
    client: Client,
    config: QueueConfig,
    keys: Keys,
    promote: redis::Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.config.stream)
            .field("consumer", &self.config.consumer)
            .finish_non_exhaustive()
    }
}

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(2)
        .set_max_delay(500)
}

impl RedisQueue {
    /// A queue that connects on first use, so a process can start (and accept orders)
    /// while Redis is down; every call until Redis answers fails with
    /// [`QueueError::Unavailable`]. Only a malformed URL is an error here.
    pub fn new(config: QueueConfig) -> Result<Self, QueueError> {
        let client = Client::open(config.url.as_str()).map_err(|e| QueueError::Other(e.into()))?;
        Ok(Self {
            last_sweep: Arc::new(std::sync::Mutex::new(None)),
            shared: Arc::new(OnceCell::new()),
            blocking: Arc::new(OnceCell::new()),
            client,
            keys: Keys::new(&config.stream),
            config,
            promote: redis::Script::new(PROMOTE_DUE),
        })
    }

    /// Connects now, creating the stream and group if needed.
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
            config: QueueConfig {
                consumer: name.into(),
                ..self.config.clone()
            },
            ..self.clone()
        }
    }

    /// The shared multiplexed connection, opened on first use (retried until it opens).
    async fn shared(&self) -> Result<ConnectionManager, QueueError> {
        self.shared
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(manager_config(self.config.command_timeout))
            })
            .await
            .cloned()
            .map_err(translate)
    }

    /// This consumer's connection for blocking reads.
    async fn blocking(&self) -> Result<ConnectionManager, QueueError> {
        self.blocking
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(manager_config(
                        self.config.max_block + self.config.command_timeout,
                    ))
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
    /// consumer name, so without this the group's consumer list only grows. Returns how
    /// many were removed.
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<u64, QueueError> {
        let conn = self.shared().await?;
        let consumers: Vec<std::collections::HashMap<String, Value>> = self
            .with_group(|| async {
                let mut conn = conn.clone();
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&self.keys.stream)
                    .arg(&self.config.group)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let field = |c: &std::collections::HashMap<String, Value>, k: &str| {
            c.get(k)
                .and_then(|v| redis::from_redis_value::<u64>(v).ok())
        };
        let mut removed = 0;
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
                .arg(&self.keys.stream)
                .arg(&self.config.group)
                .arg(&name)
                .query_async(&mut conn.clone())
                .await
                .map_err(translate)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        redis::cmd("XLEN")
            .arg(&self.keys.dead)
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)
    }

    /// Creates the stream and group if missing (from the stream's start, so jobs queued
    /// before the group existed are delivered too).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let result: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
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

    /// Runs `op`; if Redis says the group is gone (it restarted empty), recreates the group
    /// and runs `op` once more.
    async fn with_group<T, F, Fut>(&self, op: F) -> Result<T, QueueError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        match op().await {
            Err(e) if e.code() == Some("NOGROUP") => {
                warn!(stream = %self.keys.stream, "consumer group missing; recreating it");
                self.ensure_group().await?;
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
        let _: i64 = self
            .promote
            .key(&self.keys.deferred)
            .key(&self.keys.stream)
            .arg(now_ms)
            .arg(1000)
            .arg(self.config.max_len)
            .invoke_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    /// Turns entries into deliveries; entries without a valid order id are dead-lettered.
    async fn deliveries(
        &self,
        entries: Vec<StreamId>,
        counts: &[u32],
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::with_capacity(entries.len());
        for (entry, deliveries) in entries.into_iter().zip(counts.iter().copied()) {
            let order = entry
                .map
                .get("order_id")
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .and_then(|s| s.parse::<OrderId>().ok());
            if let Some(order_id) = order {
                out.push(Delivery {
                    id: entry.id,
                    order_id,
                    deliveries,
                });
            } else {
                warn!(entry = %entry.id, "malformed queue entry; dead-lettering it");
                self.move_to_dead(&entry.id, "-", deliveries, "malformed entry")
                    .await?;
            }
        }
        Ok(out)
    }

    async fn move_to_dead(
        &self,
        id: &str,
        order: &str,
        deliveries: u32,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.keys.dead)
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
            .arg(&self.keys.stream)
            .arg(&self.config.group)
            .arg(id)
            .ignore();
        let conn = self.shared().await?;
        self.with_group(|| {
            let mut conn = conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }
}

#[async_trait]
impl PaymentQueue for RedisQueue {
    async fn enqueue(&self, order: OrderId) -> Result<(), QueueError> {
        let _: String = redis::cmd("XADD")
            .arg(&self.keys.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len)
            .arg("*")
            .arg("order_id")
            .arg(order.to_string())
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.promote_due().await?;
        let block_ms = wait.min(self.config.max_block).as_millis();
        let conn = self.blocking().await?;
        let reply: Option<StreamReadReply> = self
            .with_group(|| async {
                let mut conn = conn.clone();
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg("COUNT")
                    .arg(max);
                if block_ms > 0 {
                    cmd.arg("BLOCK")
                        .arg(u64::try_from(block_ms).unwrap_or(u64::MAX));
                }
                cmd.arg("STREAMS")
                    .arg(&self.keys.stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        let ones = vec![1; entries.len()];
        self.deliveries(entries, &ones).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let conn = self.shared().await?;
        self.with_group(|| async {
            let mut conn = conn.clone();
            redis::cmd("XACK")
                .arg(&self.keys.stream)
                .arg(&self.config.group)
                .arg(&delivery.id)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await?;
        Ok(())
    }

    async fn defer(&self, delivery: &Delivery, until: DateTime<Utc>) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&self.keys.deferred)
            .arg("LT")
            .arg(until.timestamp_millis())
            .arg(delivery.order_id.to_string())
            .ignore()
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(&self.config.group)
            .arg(&delivery.id)
            .ignore();
        let conn = self.shared().await?;
        self.with_group(|| {
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
        let reply: StreamAutoClaimReply = self
            .with_group(|| async {
                let mut conn = conn.clone();
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.keys.stream)
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
                "pending entries were trimmed from the stream; the reconciler re-queues their orders"
            );
        }
        self.sweep_consumers().await;
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM does not report delivery counts; XPENDING on each claimed id does.
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&self.keys.stream)
                .arg(&self.config.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let pending: Vec<Value> = pipe
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        let counts: Vec<u32> = pending.iter().map(delivery_count).collect();
        self.deliveries(reply.claimed, &counts).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.move_to_dead(
            &delivery.id,
            &delivery.order_id.to_string(),
            delivery.deliveries,
            reason,
        )
        .await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        Ok(())
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
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN")
        );
    let source: BoxError = Box::new(e);
    if retryable {
        QueueError::Unavailable(source)
    } else {
        QueueError::Other(source)
    }
}
