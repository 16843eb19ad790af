//! Uses `order-core` as a library: place an order on the in-memory adapters, run the
//! payment worker's step against the simulated gateway, print the confirmed order.
//!
//! ```sh
//! cargo run -p order-examples --example place_and_pay
//! ```

use std::sync::Arc;
use std::time::Duration;

use order_core::memory::{MemoryOrderRepo, MemoryQueue};
use order_core::order::{UncheckedItem, UncheckedOrder};
use order_core::ports::SystemClock;
use order_core::{
    NewOrder, OrderService, OrderStatus, PaymentProcessor, ProcessorConfig, WorkerId,
};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};
use rust_decimal::Decimal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(SystemClock);
    let repo = Arc::new(MemoryOrderRepo::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone()));
    let orders = OrderService::new(repo.clone(), queue.clone(), clock.clone());
    // Always approves, 50-200 ms per charge, so the example ends confirmed.
    let gateway = SimulatedGateway::new(SimulationConfig::new(
        1.0,
        Duration::from_millis(50)..=Duration::from_millis(200),
        0.0,
        0.0,
    )?);
    let worker = PaymentProcessor::new(
        repo,
        queue,
        Arc::new(gateway),
        clock,
        ProcessorConfig::new(WorkerId::parse("example-worker")?),
    );

    let new = NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: "customer_123".into(),
        items: vec![
            UncheckedItem {
                item_id: "item_001".into(),
                item_name: "Burger".into(),
                quantity: 2,
                price: Decimal::new(1299, 2),
            },
            UncheckedItem {
                item_id: "item_002".into(),
                item_name: "Fries".into(),
                quantity: 1,
                price: Decimal::new(499, 2),
            },
        ],
    })?;
    let placed = orders.place(new).await?;
    println!(
        "placed {} for {} ({})",
        placed.id, placed.total_amount, placed.status
    );

    let outcome = worker.process_next(Duration::from_secs(1)).await?;
    println!("worker step: {outcome:?}");

    let order = orders.get(placed.id).await?.ok_or("order vanished")?;
    assert_eq!(order.status, OrderStatus::Confirmed);
    println!("order {} is {}", order.id, order.status);
    for attempt in &order.payment_attempts {
        println!(
            "  attempt {}: {} in {} ms",
            attempt.number,
            attempt.outcome.as_str(),
            (attempt.finished_at - attempt.started_at).num_milliseconds()
        );
    }
    Ok(())
}
