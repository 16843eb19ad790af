//! No accepted order is lost and none is charged twice when Redis restarts empty with jobs
//! queued, or when an order was stored but never queued: PostgreSQL is the source of truth
//! and the reconciler rebuilds the queue from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_core::ports::{Clock, OrderRepo, PaymentGateway, PaymentQueue, SystemClock};
use order_core::testing::new_order;
use order_core::{
    IdempotencyKey, OrderService, OrderStatus, PaymentProcessor, ProcessorConfig, WorkerId,
};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};
use order_queue_redis::testing::{PrivateRedis, free_port};
use order_queue_redis::{QueueConfig, RedisQueue};
use order_store_postgres::testing::TestSchema;

#[tokio::test]
async fn orders_queued_in_a_redis_that_restarts_empty_are_all_paid_once() {
    let schema = TestSchema::create().await;
    let port = free_port();
    let mut redis = PrivateRedis::start_on(port);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let repo: Arc<dyn OrderRepo> = Arc::new(schema.repo());
    let queue: Arc<dyn PaymentQueue> = Arc::new(
        RedisQueue::connect(QueueConfig::new(format!("redis://127.0.0.1:{port}")))
            .await
            .unwrap(),
    );
    let orders = OrderService::new(repo.clone(), queue.clone(), clock.clone());

    // 30 orders accepted and queued; then Redis dies and comes back with nothing.
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            orders
                .place(new_order(&format!("lost-{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    redis.kill();
    // Accepted while Redis is down: stored durably, not queued.
    for i in 0..5 {
        ids.push(
            orders
                .place(new_order(&format!("down-{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let _redis = PrivateRedis::start_on(port);

    let gateway = SimulatedGateway::new(
        SimulationConfig::new(
            0.7,
            Duration::from_millis(1)..=Duration::from_millis(5),
            0.0,
            0.5,
        )
        .unwrap()
        .with_seed(9),
    );
    let worker = PaymentProcessor::new(
        repo.clone(),
        queue.clone(),
        Arc::new(gateway.clone()) as Arc<dyn PaymentGateway>,
        clock,
        ProcessorConfig {
            reconcile_grace: Duration::from_millis(200),
            retry: order_core::policy::retry::RetryPolicy::new(
                5,
                Duration::from_millis(10),
                Duration::from_millis(50),
            )
            .unwrap(),
            ..ProcessorConfig::new(WorkerId::parse("survivor").unwrap())
        },
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = worker.reconcile(1000).await;
        while let Ok(Some(_)) = worker.process_next(Duration::from_millis(20)).await {}
        let mut open = 0;
        for id in &ids {
            if !repo.get(*id).await.unwrap().unwrap().status.is_terminal() {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} orders never reached a terminal status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for id in &ids {
        let order = repo.get(*id).await.unwrap().unwrap();
        let captures = gateway
            .entry(&IdempotencyKey::for_order(*id))
            .map_or(0, |e| e.captures);
        match order.status {
            OrderStatus::Confirmed => {
                assert_eq!(captures, 1, "{id} confirmed with {captures} captures");
            }
            OrderStatus::PaymentFailed => assert_eq!(captures, 0, "{id} failed but captured"),
            other => panic!("{id} ended {other}"),
        }
    }
    assert!(gateway.ledger().values().all(|e| e.captures <= 1));
    schema.drop().await;
}
