//! Housekeeping: forgetting stopped consumers, trimming acknowledged entries, counting
//! dead letters.

use std::time::Duration;

use order_core::ports::QueueError;
use redis::Value;
use tracing::warn;

use super::RedisQueue;
use crate::error::translate;

impl RedisQueue {
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

    /// At most once a minute, forgets consumers idle for an hour with nothing pending.
    pub(super) async fn sweep_consumers(&self) {
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
}
