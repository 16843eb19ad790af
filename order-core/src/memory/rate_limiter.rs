//! [`MemoryRateLimiter`]: per-client counts in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::policy::rate_limit::{Quota, Verdict, decide};
use crate::ports::{Clock, LimiterError, RateLimiter};

/// [`RateLimiter`] in this process's memory: the embedded default's limiter, and the
/// reference the Redis one is checked against. Buckets whose burst is full again are
/// forgotten once there are many, so memory stays bounded by the clients active within a
/// window. Clones share their counts.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    tats: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    /// Buckets kept before the idle ones are swept.
    const SWEEP_AT: usize = 10_000;

    /// A limiter on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            tats: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Buckets held now.
    pub fn buckets(&self) -> usize {
        lock(&self.tats).len()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError> {
        let now = self.clock.now().timestamp_micros();
        let mut tats = lock(&self.tats);
        if tats.len() >= Self::SWEEP_AT {
            // A TAT in the past is the same as none: the bucket's burst is full.
            tats.retain(|_, tat| *tat > now);
        }
        let (verdict, next) = decide(tats.get(bucket).copied(), now, quota);
        if let Some(tat) = next {
            tats.insert(bucket.to_owned(), tat);
        }
        Ok(verdict)
    }
}
