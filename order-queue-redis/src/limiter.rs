//! [`RedisRateLimiter`]: the [`RateLimiter`] port on Redis, so every process sharing a
//! Redis (or a Redis Cluster) enforces one limit together.
//!
//! Each bucket is one key holding its theoretical arrival time in microseconds, expiring
//! when the bucket's burst is full again. One Lua script reads the server's clock (`TIME`,
//! so processes with skewed clocks still agree), applies the same GCRA as
//! [`order_core::policy::rate_limit::decide`] and stores the new time: atomic, one round
//! trip.
//!
//! **Leases.** A busy client would cost a round trip per request. Instead, a check may take
//! several requests' worth from Redis at once (counted there like that many requests) and
//! spend them locally for at most [`LEASE_FOR`]: the lease starts at one and doubles each
//! time one is used up in time, up to a twentieth of the burst, and halves when one expires
//! unused. Every request is still counted in Redis before it is allowed, so processes
//! together never exceed the quota; the cost is that tokens a process leased and did not
//! use within the lease are lost to the others (they may be refused slightly early, never
//! admitted late). With a burst under 40 every lease is one request: exact. A refusal is
//! remembered until the time Redis gave, so a client hammering past its limit costs no
//! round trips either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use order_core::policy::rate_limit::{Quota, Verdict};
use order_core::ports::{LimiterError, RateLimiter};
use tokio::sync::OnceCell;

use crate::conn::{Conn, Connector};
use crate::{RedisMode, translate};

/// KEYS[1]: the bucket. ARGV: interval in µs, burst, requests wanted (at least 1). Takes as
/// many of the wanted requests as fit now (GCRA with a cost) and returns {granted,
/// remaining, retry_after µs, reset_after µs}; granted 0 is a refusal.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tolerance = interval * (burst - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then
  return {0, 0, tat - tolerance - now, tat - now}
end
local fit = math.floor((now + tolerance - tat) / interval) + 1
local granted = math.min(wanted, fit)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, fit - granted, 0, new_tat - now}
";

/// How long leased requests may be spent locally.
pub const LEASE_FOR: Duration = Duration::from_millis(100);

/// Requests taken from Redis for one bucket and not yet spent.
#[derive(Debug)]
struct Lease {
    /// Requests left to spend.
    left: u32,
    /// What Redis said was left after granting them.
    remaining: u32,
    /// How long until the bucket's full burst was back, when they were granted.
    reset_after: Duration,
    granted_at: Instant,
    /// When Redis refused the bucket: until when it said no. Refusing locally until then is
    /// exact (nothing another process does can bring that time closer), and a client
    /// hammering past its limit costs no round trips.
    denied_until: Option<Instant>,
    /// How many to ask for next time.
    next: u32,
}

/// [`RateLimiter`] on Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connector: Connector,
    conn: Arc<OnceCell<Conn>>,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
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
        Self::with_root_ca(mode, url, None, prefix, timeout)
    }

    /// [`new`](Self::new), with `rediss://` servers' certificates checked against
    /// `root_ca` (PEM) rather than the public roots.
    pub fn with_root_ca(
        mode: RedisMode,
        url: &str,
        root_ca: Option<&[u8]>,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, LimiterError> {
        Ok(Self {
            connector: Connector::new(mode, url, root_ca).map_err(unavailable)?,
            conn: Arc::new(OnceCell::new()),
            leases: Arc::new(Mutex::new(HashMap::new())),
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

impl RedisRateLimiter {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends one leased request of `bucket`, if a live lease has one; otherwise says how
    /// many to ask Redis for.
    fn spend_leased(&self, bucket: &str, quota: &Quota) -> Result<Verdict, u32> {
        let cap = (quota.burst() / 20).max(1);
        let mut leases = self.leases();
        let Some(lease) = leases.get_mut(bucket) else {
            return Err(1);
        };
        let now = Instant::now();
        if let Some(until) = lease.denied_until.filter(|until| *until > now) {
            return Ok(Verdict {
                allowed: false,
                remaining: 0,
                retry_after: until - now,
                reset_after: lease.reset_after.saturating_sub(lease.granted_at.elapsed()),
            });
        }
        let age = lease.granted_at.elapsed();
        if lease.left > 0 && age < LEASE_FOR {
            lease.left -= 1;
            return Ok(Verdict {
                allowed: true,
                remaining: lease.remaining + lease.left,
                retry_after: Duration::ZERO,
                reset_after: lease.reset_after.saturating_sub(age),
            });
        }
        // Used up within the lease: ask for more next time; expired unused: ask for fewer.
        let next = match (lease.left, age < LEASE_FOR) {
            (0, true) => lease.next.saturating_mul(2),
            (0, false) => lease.next,
            _ => lease.next / 2,
        };
        lease.next = next.clamp(1, cap);
        Err(lease.next)
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError> {
        let wanted = match self.spend_leased(bucket, quota) {
            Ok(verdict) => return Ok(verdict),
            Err(wanted) => wanted,
        };
        let mut conn = self.conn().await?;
        let mut invocation = self.script.key(format!("{}:{bucket}", self.prefix));
        invocation
            .arg(quota.interval_micros())
            .arg(quota.burst())
            .arg(wanted);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (granted, remaining, retry_after, reset_after) =
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|e| LimiterError::Unavailable(Box::new(e)))?
                .map_err(unavailable)?;
        let granted = u32::try_from(granted).unwrap_or(0);
        let remaining = u32::try_from(remaining).unwrap_or(0);
        let reset_after = micros(reset_after);
        {
            let mut leases = self.leases();
            if leases.len() >= 10_000 {
                leases.retain(|_, l| l.granted_at.elapsed() < LEASE_FOR);
            }
            // This request takes one of the granted; the rest are leased. A refusal is kept
            // until the time Redis gave.
            leases.insert(
                bucket.to_owned(),
                Lease {
                    left: granted.saturating_sub(1),
                    remaining,
                    reset_after,
                    granted_at: Instant::now(),
                    denied_until: (granted == 0).then(|| Instant::now() + micros(retry_after)),
                    next: wanted,
                },
            );
        }
        Ok(Verdict {
            allowed: granted > 0,
            remaining: remaining + granted.saturating_sub(1),
            retry_after: micros(retry_after),
            reset_after,
        })
    }
}
