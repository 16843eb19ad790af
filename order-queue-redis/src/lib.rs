//! # order-queue-redis
//!
//! The Redis adapters: [`RedisQueue`], the [`PaymentQueue`](order_core::ports::PaymentQueue) port on Redis Streams with a
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

mod config;
mod conn;
mod error;
mod keys;
pub mod limiter;
mod queue;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{QueueConfig, unique_consumer_name};
pub use conn::RedisMode;
pub use error::translate;
pub use keys::ShardKeys;
pub use limiter::RedisRateLimiter;
pub use queue::RedisQueue;
