//! The world the worker's tests run in: in-memory adapters on a controlled clock, a
//! gateway of the test's choosing shared by the worker and the order service.

use std::sync::Arc;
use std::time::Duration;

use order_core::memory::{ManualClock, MemoryOrderRepo, MemoryQueue};
use order_core::payment::{ChargeReceipt, GatewayError};
use order_core::policy::circuit_breaker::BreakerConfig;
use order_core::policy::retry::RetryPolicy;
use order_core::ports::{OrderRepo, PaymentGateway};
use order_core::service::Outcome;
use order_core::{OrderService, OrderStatus, PaymentProcessor, ProcessorConfig, WorkerId};

pub struct World<G: PaymentGateway> {
    pub clock: Arc<ManualClock>,
    pub repo: Arc<MemoryOrderRepo>,
    pub queue: Arc<MemoryQueue>,
    pub orders: OrderService<MemoryOrderRepo, MemoryQueue, ManualClock>,
    pub worker: PaymentProcessor<MemoryOrderRepo, MemoryQueue, G, ManualClock>,
}

pub fn config() -> ProcessorConfig {
    ProcessorConfig {
        retry: RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(4)).unwrap(),
        breaker: BreakerConfig {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(60),
            half_open_probes: 1,
            probe_wait: Duration::from_secs(1),
        },
        max_deliveries: 3,
        seed: Some(7),
        ..ProcessorConfig::new(WorkerId::parse("w1").unwrap())
    }
}

pub fn world<G: PaymentGateway + 'static>(gateway: G) -> World<G> {
    world_with(gateway, config())
}

pub fn world_with<G: PaymentGateway + 'static>(gateway: G, config: ProcessorConfig) -> World<G> {
    let clock = Arc::new(ManualClock::default());
    let repo = Arc::new(MemoryOrderRepo::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone()));
    let gateway = Arc::new(gateway);
    let orders =
        OrderService::new(repo.clone(), queue.clone(), clock.clone()).with_gateway(gateway.clone());
    let worker = PaymentProcessor::new(repo.clone(), queue.clone(), gateway, clock.clone(), config);
    World {
        clock,
        repo,
        queue,
        orders,
        worker,
    }
}

#[allow(clippy::unnecessary_wraps, reason = "shaped like a charge result")]
pub fn ok_receipt() -> Result<ChargeReceipt, GatewayError> {
    Ok(ChargeReceipt {
        transaction_id: "txn_1".into(),
    })
}

impl<G: PaymentGateway> World<G> {
    pub async fn step(&self) -> Option<Outcome> {
        self.worker.process_next(Duration::ZERO).await.unwrap()
    }

    /// Steps the worker, moving the clock by `idle` whenever no job is ready, until an order
    /// is confirmed; fails with `never_failed` if one ends `payment_failed`.
    pub async fn until_confirmed(&self, steps: usize, idle: Duration, never_failed: &str) {
        for _ in 0..steps {
            match self.step().await {
                Some(Outcome::Failed) => panic!("{never_failed}"),
                Some(Outcome::Confirmed) => return,
                Some(_) => {}
                None => self.clock.advance(idle),
            }
        }
    }

    pub async fn status(&self, id: order_core::OrderId) -> OrderStatus {
        self.repo.get(id).await.unwrap().unwrap().status
    }
}
