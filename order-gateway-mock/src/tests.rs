use super::*;
use order_core::memory::ManualClock;
use order_core::testing::{conformance, placed_order};

fn instant(success: f64, decline: f64, timeout: f64) -> SimulationConfig {
    SimulationConfig::new(success, Duration::ZERO..=Duration::ZERO, decline, timeout)
        .unwrap()
        .with_seed(1)
}

fn request(customer: &str) -> ChargeRequest {
    placed_order(customer, Utc::now()).charge_request()
}

#[test]
fn a_ledger_line_cut_short_by_a_crash_is_dropped_and_any_other_bad_line_refused() {
    let dir = std::env::temp_dir().join(format!("ledger-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.jsonl");
    let gateway = SimulatedGateway::new(instant(1.0, 0.0, 0.0))
        .with_ledger_file(&path)
        .unwrap();
    let r = request("journal");
    let receipt = gateway.book(&r).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"key\": \"cut-sh");
    std::fs::write(&path, &text).unwrap();

    let reopened = SimulatedGateway::new(instant(0.0, 1.0, 0.0))
        .with_ledger_file(&path)
        .unwrap();

    assert_eq!(reopened.book(&r), Ok(receipt), "replayed from the journal");
    std::fs::write(&path, format!("not json\n{text}\n")).unwrap();
    assert!(
        SimulatedGateway::new(instant(1.0, 0.0, 0.0))
            .with_ledger_file(&path)
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn it_honours_the_payment_gateway_contract() {
    let gateway = SimulatedGateway::new(instant(0.5, 0.3, 0.3));
    conformance::payment_gateway(&gateway, |key| gateway.books(key)).await;
}

/// The simulation with a look-up that forgets refunds: what it says of a payment no longer
/// agrees with its books.
struct ForgetsRefunds(SimulatedGateway);

#[async_trait]
impl PaymentGateway for ForgetsRefunds {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        self.0.charge(request).await
    }
    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        self.0.refund(request).await
    }
    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        self.0.capture(request).await
    }
    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        match self.0.lookup(request).await? {
            PaymentState::Captured {
                payment_id, amount, ..
            } => Ok(PaymentState::Captured {
                payment_id,
                amount,
                refunded: Money::ZERO,
            }),
            other => Ok(other),
        }
    }
}

#[tokio::test]
#[should_panic(expected = "a look-up after a partial refund")]
async fn a_look_up_that_disagrees_with_the_books_fails_the_contract() {
    let gateway = ForgetsRefunds(SimulatedGateway::new(instant(1.0, 0.0, 0.0)));
    conformance::payment_gateway(&gateway, |key| gateway.0.books(key)).await;
}

#[tokio::test]
async fn a_look_up_reads_the_ledger_and_moves_nothing() {
    let gateway = SimulatedGateway::new(instant(0.0, 0.0, 1.0));
    let r = request("lookup");
    let lookup = LookupRequest {
        charge: r.clone(),
        payment_id: None,
    };
    assert_eq!(gateway.lookup(&lookup).await, Ok(PaymentState::NotCharged));
    // Every charge times out; half of them took the money.
    let _ = gateway.charge(&r).await;
    let captured = gateway
        .entry(&r.idempotency_key)
        .is_some_and(|e| e.captures == 1);
    let state = gateway.lookup(&lookup).await.unwrap();
    assert_eq!(state.is_settled(), captured, "{state:?}");
    assert_eq!(gateway.lookup_calls(), 2);
    assert_eq!(gateway.calls(), 1, "look-ups are not charges");
}

#[tokio::test]
async fn a_key_is_captured_at_most_once_however_often_it_is_charged() {
    let gateway = SimulatedGateway::new(instant(0.3, 0.0, 0.5));
    let requests: Vec<_> = (0..200).map(|i| request(&format!("c{i}"))).collect();
    for _ in 0..10 {
        for r in &requests {
            let _ = gateway.charge(r).await;
        }
    }
    assert!(gateway.ledger().values().all(|e| e.captures <= 1));
    assert!(gateway.total_captures() > 150, "most keys end captured");
}

#[tokio::test]
async fn the_success_rate_is_honoured() {
    let gateway = SimulatedGateway::new(instant(0.95, 1.0, 0.0));
    let mut ok = 0;
    for i in 0..2000 {
        if gateway.charge(&request(&format!("c{i}"))).await.is_ok() {
            ok += 1;
        }
    }
    assert!((1850..=1950).contains(&ok), "{ok} of 2000 succeeded");
}

#[tokio::test]
async fn declines_carry_the_original_reasons_and_are_replayed() {
    let gateway = SimulatedGateway::new(instant(0.0, 1.0, 0.0));
    let r = request("c");
    let first = gateway.charge(&r).await;
    assert!(matches!(first, Err(GatewayError::Declined(_))));
    assert_eq!(gateway.charge(&r).await, first);
}

#[tokio::test]
async fn a_failed_charge_at_rate_zero_is_retryable_when_declines_are_off() {
    let gateway = SimulatedGateway::new(instant(0.0, 0.0, 0.0));
    for _ in 0..5 {
        assert!(matches!(
            gateway.charge(&request("c")).await,
            Err(GatewayError::Unavailable(_))
        ));
    }
}

#[tokio::test]
async fn an_outage_fails_everything_until_its_end() {
    let clock = Arc::new(ManualClock::default());
    let gateway = SimulatedGateway::with_clock(instant(1.0, 0.0, 0.0), clock.clone());
    gateway.set_outage_until(Some(clock.now() + chrono::Duration::seconds(10)));
    let r = request("c");
    assert!(matches!(
        gateway.charge(&r).await,
        Err(GatewayError::Unavailable(_))
    ));
    clock.advance(Duration::from_secs(10));
    assert!(gateway.charge(&r).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn charges_take_the_configured_latency() {
    let config = SimulationConfig::new(
        1.0,
        Duration::from_millis(50)..=Duration::from_millis(200),
        0.0,
        0.0,
    )
    .unwrap()
    .with_seed(3);
    let gateway = SimulatedGateway::new(config);
    let start = tokio::time::Instant::now();
    gateway.charge(&request("c")).await.unwrap();
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(200)).contains(&took),
        "{took:?}"
    );
}

#[test]
fn bad_settings_name_the_variable() {
    let err = SimulationConfig::new(1.5, Duration::ZERO..=Duration::ZERO, 0.0, 0.0).unwrap_err();
    assert_eq!(err.name, "PAYMENT_MOCK_SUCCESS_RATE");
    let latency = Duration::from_millis(10)..=Duration::from_millis(5);
    assert_eq!(
        SimulationConfig::new(0.5, latency, 0.0, 0.0)
            .unwrap_err()
            .name,
        "PAYMENT_MOCK_LATENCY_MIN"
    );
}
