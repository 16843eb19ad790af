//! The Redis keys of each shard, and the ids of deliveries.

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

/// A delivery's id: the shard and the stream entry id, as `shard/entry`.
pub(crate) fn delivery_id(shard: usize, entry: &str) -> String {
    format!("{shard}/{entry}")
}
