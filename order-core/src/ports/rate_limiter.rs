//! [`RateLimiter`]: shared counts of requests per client.

use async_trait::async_trait;

use super::BoxError;
use crate::policy::rate_limit::{Quota, Verdict};

/// Errors of [`RateLimiter`].
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The store of the counts cannot be reached; the caller chooses to let requests
    /// through (fail open) or not.
    #[error("rate limiter unavailable")]
    Unavailable(#[source] BoxError),
}

/// Counts requests per client against a [`Quota`], by the GCRA of
/// [`crate::policy::rate_limit::decide`].
///
/// # Contract
/// - `check(bucket, quota)` decides one request of `bucket` and, if it is allowed, counts
///   it. A bucket not seen for a while has its full burst: `burst` requests in a row are
///   allowed (with `remaining` counting down to 0), the next is denied with a
///   `retry_after` of at most one interval, and after waiting it out one more is allowed.
/// - Every value of an adapter sharing one store (every process on one Redis) counts
///   together, and checks of one bucket are atomic: however many run at once, from however
///   many values, no more are allowed than the quota. A value may count a busy bucket's
///   requests ahead in batches (a lease), so another value may be refused before the whole
///   burst is spent; never admitted past it. With a burst under 40, counts are exact.
/// - Different buckets are independent.
/// - When the store cannot be reached: [`LimiterError::Unavailable`], promptly.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Decides one request of `bucket` under `quota`.
    async fn check(&self, bucket: &str, quota: &Quota) -> Result<Verdict, LimiterError>;
}
