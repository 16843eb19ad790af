//! The in-memory adapters pass the ports' conformance suites.

use std::sync::Arc;

use order_core::memory::{MemoryOrderRepo, MemoryQueue};
use order_core::ports::SystemClock;
use order_core::testing::conformance;

#[tokio::test]
async fn the_memory_repo_honours_the_order_repo_contract() {
    conformance::order_repo(|| async { MemoryOrderRepo::new() }).await;
}

#[tokio::test]
async fn the_memory_queue_honours_the_payment_queue_contract() {
    conformance::payment_queue(|| async {
        let a = MemoryQueue::new(Arc::new(SystemClock)).consumer("a");
        let b = a.consumer("b");
        (a, b)
    })
    .await;
}
