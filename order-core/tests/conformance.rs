//! The in-memory adapters pass the ports' conformance suites.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use order_core::memory::{MemoryApiKeys, MemoryOrderRepo, MemoryQueue, MemoryRateLimiter};
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
async fn the_memory_key_store_honours_the_api_key_store_contract() {
    conformance::api_key_store(|| async { MemoryApiKeys::new() }).await;
}

fn key_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("keys-{}.jsonl", uuid::Uuid::now_v7().simple()))
}

#[tokio::test]
async fn the_file_backed_key_store_honours_the_api_key_store_contract() {
    let files = Mutex::new(Vec::new());
    conformance::api_key_store(|| {
        let path = key_file();
        files.lock().unwrap().push(path.clone());
        async move { MemoryApiKeys::from_file(&path).unwrap() }
    })
    .await;
    for path in files.into_inner().unwrap() {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn keys_made_and_revoked_through_a_file_backed_store_survive_a_restart() {
    use order_core::access::{NewApiKey, Scope, issue};
    use order_core::ports::ApiKeyStore as _;
    let path = key_file();
    let now = chrono::Utc::now();
    let new = |name: &str| NewApiKey {
        name: name.into(),
        scopes: vec![Scope::OrdersRead],
        customer_id: None,
        expires_at: None,
    };
    let (kept, _) = issue(new("kept"), now).unwrap();
    let (revoked, _) = issue(new("revoked"), now).unwrap();
    let store = MemoryApiKeys::from_file(&path).unwrap();
    store.insert_key(&kept).await.unwrap();
    store.insert_key(&revoked).await.unwrap();
    store.revoke_key(&revoked.id, now).await.unwrap();
    drop(store);

    let restarted = MemoryApiKeys::from_file(&path).unwrap();
    let read = |id| {
        let restarted = restarted.clone();
        async move { restarted.key(id).await.unwrap().unwrap() }
    };
    assert_eq!(read(&kept.id).await.revoked_at, None);
    assert!(
        read(&revoked.id).await.revoked_at.is_some(),
        "a revocation outlives the process"
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_key_file_holds_hashes_only_and_reads_back_as_written() {
    use order_core::access::{NewApiKey, Scope, issue};
    use order_core::ports::ApiKeyStore as _;
    let path = key_file();
    let (key, plain) = issue(
        NewApiKey {
            name: "file".into(),
            scopes: vec![Scope::OrdersRead],
            customer_id: None,
            expires_at: None,
        },
        chrono::Utc::now(),
    )
    .unwrap();
    MemoryApiKeys::append_to_file(&path, &key).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let secret = plain.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "no secret in the file");
    let store = MemoryApiKeys::from_file(&path).unwrap();
    assert_eq!(store.key(&key.id).await.unwrap(), Some(key));
    std::fs::write(&path, "not a key\n").unwrap();
    let err = MemoryApiKeys::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    std::fs::remove_file(&path).unwrap();
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

    async fn capture(
        &self,
        _: &order_core::payment::CaptureRequest,
    ) -> Result<order_core::payment::CaptureReceipt, GatewayError> {
        Err(GatewayError::Declined(
            order_core::payment::DeclineReason::ProcessorRefused,
        ))
    }

    async fn lookup(
        &self,
        request: &order_core::payment::LookupRequest,
    ) -> Result<order_core::payment::PaymentState, GatewayError> {
        let charged = self
            .books
            .lock()
            .unwrap()
            .get(request.charge_key())
            .copied()
            .unwrap_or(0);
        Ok(if charged > 0 {
            order_core::payment::PaymentState::Captured {
                payment_id: format!("txn-{}", request.charge_key()),
                amount: request.charge.amount,
                refunded: order_core::Money::ZERO,
            }
        } else {
            order_core::payment::PaymentState::NotCharged
        })
    }
}

#[tokio::test]
#[should_panic(expected = "captured 2 times")]
async fn a_gateway_that_charges_a_key_twice_fails_the_gateway_contract() {
    let gateway = DoubleChargingGateway::default();
    conformance::payment_gateway(&gateway, |key| GatewayBooks {
        captures: gateway.books.lock().unwrap().get(key).copied().unwrap_or(0),
        ..GatewayBooks::default()
    })
    .await;
}

#[tokio::test]
async fn the_memory_store_honours_the_webhook_store_contract() {
    conformance::webhook_store(|| async { MemoryOrderRepo::new() }).await;
}
