//! The in-memory adapters pass the ports' conformance suites.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use order_core::memory::{MemoryOrderRepo, MemoryQueue, MemoryRateLimiter};
use order_core::payment::{
    ChargeReceipt, ChargeRequest, GatewayError, IdempotencyKey, RefundReceipt, RefundRequest,
};
use order_core::ports::{PaymentGateway, SystemClock};
use order_core::testing::conformance::{self, GatewayBooks};

#[tokio::test]
async fn the_memory_repo_honours_the_order_repo_contract() {
    conformance::order_repo(|| async { MemoryOrderRepo::new() }).await;
}

#[tokio::test]
async fn the_memory_rate_limiter_honours_the_rate_limiter_contract() {
    conformance::rate_limiter(|| async {
        let a = MemoryRateLimiter::new(Arc::new(SystemClock));
        (a.clone(), a)
    })
    .await;
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

/// A gateway that charges again on every call with a key but answers with the first
/// receipt: its answers look idempotent, its books do not.
#[derive(Default)]
struct DoubleChargingGateway {
    books: Mutex<HashMap<IdempotencyKey, u32>>,
}

#[async_trait]
impl PaymentGateway for DoubleChargingGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        *self
            .books
            .lock()
            .unwrap()
            .entry(request.idempotency_key.clone())
            .or_default() += 1;
        Ok(ChargeReceipt {
            transaction_id: format!("txn-{}", request.idempotency_key),
        })
    }

    async fn refund(&self, _: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        Ok(RefundReceipt::NothingCaptured)
    }
}

#[tokio::test]
#[should_panic(expected = "captured 2 times")]
async fn a_gateway_that_charges_a_key_twice_fails_the_gateway_contract() {
    let gateway = DoubleChargingGateway::default();
    conformance::payment_gateway(&gateway, |key| GatewayBooks {
        captures: gateway.books.lock().unwrap().get(key).copied().unwrap_or(0),
        refunds: 0,
    })
    .await;
}
