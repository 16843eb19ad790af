//! `RedisRateLimiter` against the machine's Redis (each test on keys of its own) and a
//! private one it stops.

use std::time::{Duration, Instant};

use order_core::policy::rate_limit::Quota;
use order_core::ports::{LimiterError, RateLimiter};
use order_core::testing::conformance;
use order_queue_redis::testing::{PrivateRedis, free_port, redis_url};
use order_queue_redis::{RedisMode, RedisRateLimiter};

fn limiter(url: &str, prefix: &str) -> RedisRateLimiter {
    RedisRateLimiter::new(RedisMode::Standalone, url, prefix, Duration::from_secs(1))
        .expect("a valid URL")
}

#[tokio::test]
async fn the_redis_rate_limiter_honours_the_rate_limiter_contract() {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is not reachable at {url} ({e}); start it with scripts/ensure-services.sh"
            )
        });
    conformance::rate_limiter(|| async {
        let prefix = format!("test-limit-{}", uuid::Uuid::now_v7().simple());
        // Two values, as two processes would have: they share only Redis.
        (
            limiter(&redis_url(), &prefix),
            limiter(&redis_url(), &prefix),
        )
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_promptly_and_a_restarted_one_serves_again() {
    let port = free_port();
    let limiter = limiter(&format!("redis://127.0.0.1:{port}"), "limit");
    let quota = Quota::new(10.0, 2).unwrap();
    let start = Instant::now();
    let err = limiter.check("c", &quota).await.unwrap_err();
    assert!(matches!(err, LimiterError::Unavailable(_)));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    let server = PrivateRedis::start_on(port);
    let start = Instant::now();
    loop {
        match limiter.check("c", &quota).await {
            Ok(v) => {
                assert!(v.allowed);
                break;
            }
            Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}
