//! Payments end to end over HTTP: retries, the breaker during an outage, and several
//! worker processes sharing one backlog.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use order_api::orders::{AttemptStatus, OrderStatus};
use order_core::IdempotencyKey;
use order_http::Role;
use order_http::testing::{
    Backend, PrivateCluster, PrivateRedis, Storage, TestApp, free_port, sample_order,
};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_gateway_that_never_succeeds_fails_the_order_after_exactly_the_configured_attempts() {
    let app = TestApp::spawn(
        Backend::PostgresRedis,
        &[
            ("PAYMENT_MOCK_SUCCESS_RATE", "0"),
            ("PAYMENT_MOCK_DECLINE_SHARE", "0"),
            ("PAYMENT_MOCK_TIMEOUT_SHARE", "0"),
            ("PAYMENT_RETRY_ATTEMPTS", "4"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "100"),
        ],
    )
    .await;
    let created = app.place(&sample_order("never")).await;

    let order = app.wait_terminal(created.id, Duration::from_secs(15)).await;

    assert_eq!(order.status, OrderStatus::PaymentFailed);
    let attempts = &order.payment_attempts;
    assert_eq!(attempts.len(), 4, "exactly PAYMENT_RETRY_ATTEMPTS attempts");
    assert!(attempts.iter().all(|a| a.status == AttemptStatus::Failed));
    app.stop().await;
}

#[tokio::test]
async fn a_decline_fails_the_order_after_one_attempt() {
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("PAYMENT_MOCK_SUCCESS_RATE", "0"),
            ("PAYMENT_MOCK_DECLINE_SHARE", "1"),
            ("PAYMENT_MOCK_TIMEOUT_SHARE", "0"),
        ],
    )
    .await;
    let created = app.place(&sample_order("declined")).await;
    let order = app.wait_terminal(created.id, Duration::from_secs(10)).await;
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert_eq!(order.payment_attempts.len(), 1);
    assert_eq!(order.payment_attempts[0].status, AttemptStatus::Declined);
    app.stop().await;
}

#[tokio::test]
async fn during_a_gateway_outage_orders_wait_without_hammering_it_and_confirm_after() {
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "0.5"),
            ("PAYMENT_RETRY_ATTEMPTS", "3"),
            // One charge at a time: a closed breaker admits every call already in flight,
            // so with concurrency the count before it opens would depend on scheduling.
            ("WORKER_CONCURRENCY", "1"),
        ],
    )
    .await;
    let outage = Duration::from_secs(3);
    app.gateway().set_outage_until(Some(
        chrono::Utc::now() + chrono::Duration::from_std(outage).unwrap(),
    ));
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..20 {
        let created = app.place(&sample_order(&format!("outage-{i}"))).await;
        ids.push(created.id);
    }

    // While the outage lasts, no order fails.
    while start.elapsed() < Duration::from_millis(2500) {
        for id in &ids {
            assert_ne!(
                app.order(*id).await.status,
                OrderStatus::PaymentFailed,
                "an outage must not fail orders"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls_during_outage = app.gateway().calls();

    for id in &ids {
        let order = app.wait_terminal(*id, Duration::from_secs(20)).await;
        assert_eq!(order.status, OrderStatus::Confirmed);
    }
    // 3 failures open the breaker; then about one probe per 0.5 s recovery window over a 3 s
    // outage: far fewer than the 60 calls 20 orders x 3 attempts would make.
    assert!(
        calls_during_outage <= 15,
        "the open breaker let {calls_during_outage} calls through"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_worker_processes_share_a_backlog_and_charge_each_order_once() {
    let storage = Storage::create().await;
    let env = storage.env();
    let settings = [
        ("PAYMENT_MOCK_LATENCY_MIN", "10"),
        ("PAYMENT_MOCK_LATENCY_MAX", "30"),
        ("WORKER_CONCURRENCY", "4"),
    ];
    let api = TestApp::spawn_role(Role::Serve, env.clone(), &settings).await;
    let workers = [
        TestApp::spawn_role(Role::Worker, env.clone(), &settings).await,
        TestApp::spawn_role(Role::Worker, env.clone(), &settings).await,
    ];
    let mut ids = Vec::new();
    for i in 0..60 {
        let created = api.place(&sample_order(&format!("backlog-{i}"))).await;
        ids.push(created.id);
    }

    for id in &ids {
        assert_eq!(
            api.wait_terminal(*id, Duration::from_secs(20)).await.status,
            OrderStatus::Confirmed
        );
    }

    let mut captures: HashMap<IdempotencyKey, u32> = HashMap::new();
    let mut by_worker = Vec::new();
    for worker in &workers {
        let ledger = worker.gateway().ledger();
        by_worker.push(ledger.values().map(|e| e.captures).sum::<u32>());
        for (key, entry) in ledger {
            *captures.entry(key).or_default() += entry.captures;
        }
    }
    assert_eq!(captures.len(), 60);
    assert!(
        captures.values().all(|n| *n == 1),
        "each order charged exactly once"
    );
    assert!(
        by_worker.iter().all(|n| *n > 0),
        "both workers took part: {by_worker:?}"
    );
    for worker in workers {
        worker.stop().await;
    }
    api.stop().await;
    storage.drop().await;
}

#[tokio::test]
async fn with_redis_down_orders_are_still_accepted_and_paid_once_it_is_back() {
    let storage = Storage::create().await;
    let port = free_port();
    let mut env = storage.env();
    env.retain(|(k, _)| k != "REDIS_URL");
    env.push(("REDIS_URL".into(), format!("redis://127.0.0.1:{port}")));
    let api = TestApp::start_role(Role::Serve, env.clone(), &[]).await;
    let start = Instant::now();
    while api.client.ready().await.unwrap().database != "ok" {
        assert!(start.elapsed() < PATIENCE, "the store never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Accepted: the order is durable in PostgreSQL.
    let created = api.place(&sample_order("redis-down")).await;
    let ready = api.client.ready().await.unwrap();
    assert_eq!(ready.status, order_api::health::Readiness::NotReady);
    assert_eq!(ready.database, "ok");
    assert_ne!(ready.queue, "ok");

    let _redis = PrivateRedis::start_on(port);
    let worker = TestApp::spawn_role(
        Role::Worker,
        env,
        &[
            ("PAYMENT_RECONCILE_GRACE_SECONDS", "0.5"),
            ("PAYMENT_RECONCILE_INTERVAL_SECONDS", "0.2"),
        ],
    )
    .await;
    // The job was never queued: the reconciler finds the order after its grace period.
    let order = api.wait_terminal(created.id, Duration::from_secs(15)).await;
    assert_eq!(order.status, OrderStatus::Confirmed);
    worker.stop().await;
    api.stop().await;
    storage.drop().await;
}

/// A gateway with a bug: every charge panics.
struct PanickingGateway;

#[async_trait::async_trait]
impl order_core::ports::PaymentGateway for PanickingGateway {
    async fn charge(
        &self,
        _: &order_core::ChargeRequest,
    ) -> Result<order_core::ChargeReceipt, order_core::GatewayError> {
        panic!("gateway adapter bug")
    }

    async fn refund(
        &self,
        _: &order_core::payment::RefundRequest,
    ) -> Result<order_core::payment::RefundReceipt, order_core::GatewayError> {
        panic!("gateway adapter bug")
    }

    async fn capture(
        &self,
        _: &order_core::payment::CaptureRequest,
    ) -> Result<order_core::payment::CaptureReceipt, order_core::GatewayError> {
        panic!("gateway adapter bug")
    }

    async fn lookup(
        &self,
        _: &order_core::payment::LookupRequest,
    ) -> Result<order_core::payment::PaymentState, order_core::GatewayError> {
        panic!("gateway adapter bug")
    }
}

#[tokio::test]
async fn a_panicking_payment_task_stops_the_worker_with_its_message() {
    use std::sync::Arc;

    use order_core::memory::{MemoryOrderRepo, MemoryQueue};
    use order_core::ports::{Clock, OrderRepo, PaymentGateway, PaymentQueue, SystemClock};
    use order_core::testing::new_order;
    use order_core::{OrderService, PaymentProcessor, ProcessorConfig, WorkerId};
    use order_http::worker::{self, WorkerSettings};

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let repo: Arc<dyn OrderRepo> = Arc::new(MemoryOrderRepo::new());
    let queue: Arc<dyn PaymentQueue> = Arc::new(MemoryQueue::new(Arc::clone(&clock)));
    let gateway: Arc<dyn PaymentGateway> = Arc::new(PanickingGateway);
    let orders = OrderService::new(Arc::clone(&repo), Arc::clone(&queue), Arc::clone(&clock));
    orders.place(new_order("c-panic")).await.unwrap();
    let processor = Arc::new(PaymentProcessor::new(
        repo,
        queue,
        gateway,
        clock,
        ProcessorConfig::new(WorkerId::parse("w-panic").unwrap()),
    ));
    let settings = WorkerSettings {
        concurrency: 4,
        poll_wait: Duration::from_millis(50),
        reclaim_every: Duration::from_secs(60),
        reconcile_every: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);

    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        worker::run(processor, settings, stopped),
    )
    .await
    .expect("the worker stops by itself when a payment task panics");

    let err = ended.expect_err("a panic is reported, not swallowed");
    assert!(err.0.contains("gateway adapter bug"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_are_paid_through_a_queue_sharded_over_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let urls = cluster.urls();
    let app = TestApp::spawn(
        Backend::PostgresRedis,
        &[
            ("REDIS_MODE", "cluster"),
            ("REDIS_URL", &urls),
            ("REDIS_QUEUE_SHARDS", "3"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(app.place(&sample_order(&format!("cluster-{i}"))).await.id);
    }
    for id in ids {
        let order = app.wait_terminal(id, PATIENCE).await;
        assert_eq!(order.status, OrderStatus::Confirmed, "{id}");
    }
    app.stop().await;
    drop(cluster);
}
