//! The consumer group of each shard: created when missing, recreated when a restarted,
//! empty Redis lost it.

use order_core::ports::QueueError;
use redis::RedisError;
use tracing::warn;

use super::RedisQueue;
use crate::error::translate;
use crate::keys::ShardKeys;

impl RedisQueue {
    /// Creates every shard's stream and group if missing (from the stream's start, so jobs
    /// queued before the group existed are delivered too).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        for keys in self.shards.iter() {
            self.ensure_shard_group(keys).await?;
        }
        Ok(())
    }

    pub(super) async fn ensure_shard_group(&self, keys: &ShardKeys) -> Result<(), QueueError> {
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
    pub(super) async fn with_group<T, F, Fut>(
        &self,
        keys: &ShardKeys,
        op: F,
    ) -> Result<T, QueueError>
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
}
