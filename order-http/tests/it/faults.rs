//! PostgreSQL going away: the service starts without it, answers 503 at once while it is
//! down (keyed requests too), and recovers by itself when it comes back.

use std::time::{Duration, Instant};

use order_api::ErrorCode;
use order_api::health::Readiness;
use order_api::orders::OrderStatus;
use order_http::Role;
use order_http::testing::{Storage, TestApp, free_port, redis_url, refusal, sample_order};
use order_store_postgres::testing::PrivatePostgres;

/// Places an order (under `key`, if any), which must be refused with 503 and `Retry-After`
/// within `limit`; returns how long that took.
async fn refused_fast(app: &TestApp, key: Option<&str>, limit: Duration) -> Duration {
    let start = Instant::now();
    let answer = app.client.create(&sample_order("db-down"), key).await;
    let took = start.elapsed();
    let retry_after = answer
        .as_ref()
        .err()
        .and_then(order_api::client::ClientError::retry_after);
    let (status, body) = refusal(answer);
    assert_eq!(
        (status, body.error),
        (503, ErrorCode::ServiceUnavailable),
        "key {key:?}"
    );
    assert!(retry_after.is_some(), "a 503 says when to retry");
    assert!(took < limit, "key {key:?}: the 503 took {took:?}");
    took
}

/// A listener that accepts connections and never says a word.
struct BlackHole {
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn listen(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the crashed server's port is free");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { task }
    }

    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn wait_ready(app: &TestApp, ready: Readiness) {
    let start = Instant::now();
    while app.client.ready().await.unwrap().status != ready {
        assert!(start.elapsed() < Duration::from_secs(30), "never {ready:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_postgres_the_service_starts_fails_fast_and_recovers_by_itself() {
    let port = free_port();
    let mut postgres = PrivatePostgres::create(port);
    let env = vec![
        ("DATABASE_URL".into(), postgres.url()),
        ("REDIS_URL".into(), redis_url()),
        (
            "REDIS_QUEUE_NAME".into(),
            format!("test-{}", uuid::Uuid::now_v7().simple()),
        ),
    ];

    // Down from the start: the process starts anyway, alive and not ready.
    let app = TestApp::start_role(Role::All, env, &[("DATABASE_ACQUIRE_TIMEOUT", "1")]).await;
    assert_eq!(app.client.health().await.unwrap().status, "healthy");
    let ready = app.client.ready().await.unwrap();
    assert_eq!(ready.status, Readiness::NotReady);
    assert_ne!(ready.database, "ok");
    refused_fast(&app, None, Duration::from_secs(2)).await;
    refused_fast(&app, Some("db-down-key-1"), Duration::from_secs(2)).await;

    // Back: the migrations are applied and orders are taken and paid.
    postgres.start();
    wait_ready(&app, Readiness::Ready).await;
    let order = app.place(&sample_order("db-back")).await;
    assert_eq!(
        app.wait_terminal(order.id, Duration::from_secs(15))
            .await
            .status,
        OrderStatus::Confirmed
    );

    // Crashed while serving, and in its place something that accepts connections and never
    // answers (a network partition, a frozen host): every request, keyed or not, is refused
    // within about the acquire timeout; after three such failures the store gate opens and
    // the next ones are refused at once, without waiting on a connection.
    postgres.crash();
    let black_hole = BlackHole::listen(port).await;
    let mut took = Vec::new();
    for i in 0..6 {
        let key = format!("db-crash-{i}");
        let key = (i % 2 == 1).then_some(key.as_str());
        took.push(refused_fast(&app, key, Duration::from_secs(2)).await);
    }
    assert!(
        took[3..].iter().all(|t| *t < Duration::from_millis(300)),
        "an open gate answers at once: {took:?}"
    );
    wait_ready(&app, Readiness::NotReady).await;

    // Back again: orders are accepted again without a restart.
    black_hole.close().await;
    postgres.start();
    let start = Instant::now();
    let order = loop {
        match app
            .client
            .create(&sample_order("db-back-again"), None)
            .await
        {
            Ok(placed) => break placed.order,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(30),
                "not accepting orders again: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        app.wait_terminal(order.id, Duration::from_secs(15))
            .await
            .status,
        OrderStatus::Confirmed
    );
    app.stop().await;
}

#[tokio::test]
async fn a_post_is_answered_once_the_order_is_stored_while_redis_holds_the_enqueue() {
    let mut redis = order_http::testing::PrivateRedis::start();
    let storage = Storage::create().await;
    let env: Vec<(String, String)> = storage
        .env()
        .into_iter()
        .filter(|(k, _)| k != "REDIS_URL")
        .chain([("REDIS_URL".to_owned(), redis.url())])
        .collect();
    let app = TestApp::spawn_role(Role::All, env, &[("PAYMENT_MOCK_SUCCESS_RATE", "1")]).await;
    let warm = app.place(&sample_order("hold-warm")).await;
    app.wait_status(warm.id, OrderStatus::Confirmed).await;

    // Redis takes no write for 3 s: the payment job's XADD waits (and times out after 2 s).
    let paused = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "CLIENT",
            "PAUSE",
            "3000",
            "WRITE",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(paused.status.success(), "{paused:?}");
    let start = Instant::now();
    let placed = app.place(&sample_order("hold")).await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the order was answered after {took:?}: it waited for the queue"
    );
    assert_eq!(placed.status, OrderStatus::Pending);
    // Once Redis takes writes again the order is queued (or reconciled) and paid.
    let paid = app.wait_terminal(placed.id, Duration::from_secs(60)).await;
    assert_eq!(paid.status, OrderStatus::Confirmed);
    app.stop().await;
    storage.drop().await;
    redis.kill();
}
