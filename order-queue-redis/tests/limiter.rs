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

/// Script calls Redis has served since it started.
async fn script_calls(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split(['=', ','])
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn a_busy_client_leases_requests_and_processes_together_never_exceed_the_quota() {
    let server = PrivateRedis::start();
    let (a, b) = (
        limiter(&server.url(), "lease"),
        limiter(&server.url(), "lease"),
    );
    // 1,000 at once, a few per second after that.
    let quota = Quota::new(0.001, 1000).unwrap();
    let before = script_calls(&server.url()).await;
    let mut allowed = 0;
    for i in 0..1500 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        if limiter.check("busy", &quota).await.unwrap().allowed {
            allowed += 1;
        }
    }
    let calls = script_calls(&server.url()).await - before;
    assert!(
        (900..=1000).contains(&allowed),
        "never more than the burst, and little lost to leases: {allowed}"
    );
    assert!(calls < 150, "{calls} round trips for 1,500 checks");

    // A small burst is counted one request at a time: exact across processes.
    let small = Quota::new(0.001, 10).unwrap();
    let mut allowed = 0;
    for i in 0..30 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        allowed += usize::from(limiter.check("small", &small).await.unwrap().allowed);
    }
    assert_eq!(allowed, 10);
}
