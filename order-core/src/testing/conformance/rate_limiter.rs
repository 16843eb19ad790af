//! The [`RateLimiter`](crate::ports::RateLimiter) suite.

use std::future::Future;
use std::time::Duration;

/// Checks a [`RateLimiter`](crate::ports::RateLimiter) against its contract, in real time:
/// `make` returns two values sharing one store (two processes on one Redis), each call a
/// store no earlier call used.
pub async fn rate_limiter<L, F, Fut>(make: F)
where
    L: crate::ports::RateLimiter + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (L, L)>,
{
    use crate::policy::rate_limit::Quota;

    // One request per 200 ms, three at once.
    let quota = Quota::new(5.0, 3).expect("a valid quota");
    let (a, b) = make().await;
    let mut remaining = Vec::new();
    for limiter in [&a, &b, &a] {
        let v = limiter.check("client-1", &quota).await.expect("check");
        assert!(v.allowed, "the burst is allowed, from either value");
        remaining.push(v.remaining);
    }
    assert_eq!(remaining, [2, 1, 0], "both values count together");
    let denied = b.check("client-1", &quota).await.expect("check");
    assert!(!denied.allowed, "past the burst");
    assert!(
        denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_millis(200),
        "retry after at most one interval: {:?}",
        denied.retry_after
    );
    assert!(
        a.check("client-2", &quota).await.expect("check").allowed,
        "buckets are independent"
    );
    tokio::time::sleep(denied.retry_after + Duration::from_millis(5)).await;
    assert!(
        a.check("client-1", &quota).await.expect("check").allowed,
        "waiting out retry_after is enough"
    );

    // Checks of one bucket are atomic: 40 at once, from both values, allow the burst only.
    let (a, b) = make().await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let slow = Quota::new(0.1, 5).expect("a valid quota");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { limiter.check("crowd", &slow).await.expect("check").allowed });
    }
    let mut allowed = 0;
    while let Some(ok) = tasks.join_next().await {
        allowed += usize::from(ok.expect("task"));
    }
    assert_eq!(allowed, 5, "no more than the burst, however many at once");
}
