//! [`QueueConfig`]: where the queue lives and how a consumer talks to it.

use std::time::Duration;

use crate::RedisMode;

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
    /// The certificate (PEM) of the authority that signs the servers' certificates, for
    /// `rediss://` URLs of servers with a private CA (`REDIS_CA_FILE`); `None`: the public
    /// roots.
    pub root_ca: Option<Vec<u8>>,
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
            root_ca: None,
        }
    }
}

/// `prefix-<pid>-<random>`: unique per process start, so a restarted worker never inherits
/// a dead one's name (its entries are reclaimed instead).
pub fn unique_consumer_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}-{}", std::process::id(), &id[id.len() - 8..])
}
