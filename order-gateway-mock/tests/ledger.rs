//! The mock gateway's durable ledger: killed with SIGKILL and started again on the same
//! `GATEWAY_LEDGER_PATH`, it still knows every capture, refund and voided key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_api::gateway::{
    AUDIT_CHARGES, Audit, CHARGES, ChargeAnswer, ChargeBody, IDEMPOTENCY_KEY, REFUNDS,
    RefundAnswer, RefundBody,
};
use uuid::Uuid;

struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    async fn start(port: u16, ledger: &std::path::Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_order-gateway-mock"))
            .env("GATEWAY_PORT", port.to_string())
            .env("GATEWAY_LEDGER_PATH", ledger)
            .env("PAYMENT_MOCK_SUCCESS_RATE", "1")
            .env("PAYMENT_MOCK_LATENCY_MIN", "0")
            .env("PAYMENT_MOCK_LATENCY_MAX", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the gateway");
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while reqwest::get(format!("{base}/health")).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the gateway never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, base }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    async fn charge(&self, key: &str, order: Uuid) -> (u16, ChargeAnswer) {
        let response = reqwest::Client::new()
            .post(format!("{}{CHARGES}", self.base))
            .header(IDEMPOTENCY_KEY, key)
            .json(&body(order))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn refund(&self, key: &str, charge_key: &str, order: Uuid) -> RefundAnswer {
        reqwest::Client::new()
            .post(format!("{}{REFUNDS}", self.base))
            .header(IDEMPOTENCY_KEY, key)
            .json(&RefundBody {
                charge_key: charge_key.into(),
                charge: body(order),
                amount: "30.97".parse().unwrap(),
            })
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn audit(&self) -> Audit {
        reqwest::get(format!("{}{AUDIT_CHARGES}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_killed_gateway_restarted_on_its_ledger_replays_every_capture_and_refund() {
    let dir = std::env::temp_dir().join(format!("gateway-ledger-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("ledger.jsonl");
    let port = free_port();
    let (paid, refunded, voided) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let gateway = Gateway::start(port, &ledger).await;
    let (status, captured) = gateway.charge("order-paid", paid).await;
    assert_eq!(status, 200, "{captured:?}");
    gateway.charge("order-refunded", refunded).await;
    let refund = gateway.refund("refund-1", "order-refunded", refunded).await;
    assert!(
        matches!(refund, RefundAnswer::Refunded { .. }),
        "{refund:?}"
    );
    let void = gateway.refund("refund-2", "order-voided", voided).await;
    assert_eq!(void, RefundAnswer::NothingCaptured);

    gateway.kill();
    let gateway = Gateway::start(port, &ledger).await;

    assert_eq!(
        gateway.charge("order-paid", paid).await,
        (200, captured),
        "the capture is replayed, not made again"
    );
    assert_eq!(
        gateway.refund("refund-1", "order-refunded", refunded).await,
        refund
    );
    let (status, declined) = gateway.charge("order-voided", voided).await;
    assert_eq!(status, 402, "a voided key stays void: {declined:?}");
    let audit = gateway.audit().await;
    assert_eq!(audit.charges["order-paid"].captures, 1);
    assert_eq!(audit.charges["order-refunded"].refunds, 1);
    assert_eq!((audit.captures, audit.refunds), (2, 1));
    gateway.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A charge of 30.97 for `order`.
fn body(order: Uuid) -> ChargeBody {
    ChargeBody {
        order_id: order,
        customer_id: "c".into(),
        amount: "30.97".parse().unwrap(),
        payment_method: None,
        capture_method: None,
    }
}
