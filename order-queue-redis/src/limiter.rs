//! [`RedisRateLimiter`]: the [`RateLimiter`] port on Redis, so every process sharing a
//! Redis (or a Redis Cluster) enforces one limit together.
//!
//! Each bucket is one key holding its theoretical arrival time in microseconds, expiring
//! when the bucket's burst is full again. One Lua script per request reads the server's
//! clock (`TIME`, so processes with skewed clocks still agree), applies the same GCRA as
//! [`order_core::policy::rate_limit::decide`] and stores the new time: atomic, one round
//! trip.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_core::policy::rate_limit::{Quota, Verdict};
use order_core::ports::{LimiterError, RateLimiter};
use tokio::sync::OnceCell;

use crate::conn::{Conn, Connector};
use crate::{RedisMode, translate};

/// KEYS[1]: the bucket. ARGV: interval in µs, burst. Returns {allowed, remaining,
/// retry_after µs, reset_after µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * (burst - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then
  return {0, 0, tat - tolerance - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tolerance - tat) / interval), 0, new_tat - now}
";

/// [`RateLimiter`] on Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connector: Connector,
    conn: Arc<OnceCell<Conn>>,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (seed URLs separated by commas for a cluster),
    /// keeping its buckets under `prefix:`. It connects on first use; until Redis answers,
    /// every check fails with [`LimiterError::Unavailable`] within `timeout`.
    pub fn new(
        mode: RedisMode,
        url: &str,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, LimiterError> {
        Ok(Self {
            connector: Connector::new(mode, url).map_err(unavailable)?,
            conn: Arc::new(OnceCell::new()),
            prefix: prefix.into(),
            timeout,
            script: redis::Script::new(GCRA),
        })
    }

    async fn conn(&self) -> Result<Conn, LimiterError> {
        self.conn
            .get_or_try_init(|| self.connector.open(self.timeout))
            .await
            .cloned()
            .map_err(unavailable)
    }
}

fn unavailable(e: redis::RedisError) -> LimiterError {
    let error = match translate(e) {
        order_core::ports::QueueError::Unavailable(e) | order_core::ports::QueueError::Other(e) => {
            e
        }
    };
    LimiterError::Unavailable(error)
}

fn micros(v: i64) -> Duration {
    Duration::from_micros(u64::try_from(v).unwrap_or(0))
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.script.key(format!("{}:{bucket}", self.prefix));
        invocation.arg(quota.interval_micros()).arg(quota.burst());
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, retry_after, reset_after) =
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|e| LimiterError::Unavailable(Box::new(e)))?
                .map_err(unavailable)?;
        Ok(Verdict {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: micros(retry_after),
            reset_after: micros(reset_after),
        })
    }
}
