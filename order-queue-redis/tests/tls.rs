//! Redis over TLS (`rediss://`): a server with a private CA is reached when its
//! certificate is given, by the queue and the rate limiter, and refused when it is not.

use std::time::Duration;

use order_core::OrderId;
use order_core::policy::rate_limit::Quota;
use order_core::ports::{Job, PaymentQueue, RateLimiter};
use order_core::testing::TestCertificates;
use order_queue_redis::testing::PrivateRedis;
use order_queue_redis::{QueueConfig, RedisMode, RedisQueue, RedisRateLimiter};

#[tokio::test]
async fn a_tls_server_with_a_private_ca_is_reached_and_an_untrusted_one_refused() {
    let certificates = TestCertificates::make();
    let server = PrivateRedis::start_tls(&certificates.server_cert(), &certificates.server_key());
    let ca = std::fs::read(certificates.ca()).unwrap();
    let config = QueueConfig {
        root_ca: Some(ca.clone()),
        ..QueueConfig::new(server.tls_url())
    };
    let queue = RedisQueue::connect(config)
        .await
        .expect("verified against the private CA");
    let job = Job::untraced(OrderId::new());
    queue.enqueue(&job).await.unwrap();
    let limiter = RedisRateLimiter::with_root_ca(
        RedisMode::Standalone,
        &server.tls_url(),
        Some(&ca),
        "tls",
        Duration::from_secs(2),
    )
    .unwrap();
    let quota = Quota::new(1.0, 1).unwrap();
    assert!(limiter.check("a", &quota).await.unwrap().allowed);
    assert!(
        !limiter.check("a", &quota).await.unwrap().allowed,
        "counted in the server"
    );

    // The public roots do not vouch for the server: the queue cannot connect.
    let untrusted = RedisQueue::connect(QueueConfig::new(server.tls_url())).await;
    assert!(untrusted.is_err(), "an untrusted certificate is refused");
}
