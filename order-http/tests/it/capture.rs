//! Authorize now, capture later (`PAYMENT_CAPTURE=manual`): on the embedded default with
//! the simulated gateway, and on PostgreSQL + Redis against localstripe.

use order_api::ErrorCode;
use order_api::orders::{
    CancelOrderRequest, CaptureMethod, CaptureOrderRequest, OrderStatus, PaymentStatus,
};
use order_gateway_stripe::testing::{API_KEY, FakeStripe};
use order_http::testing::{Backend, TestApp, refusal, sample_order};

fn decimal(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

fn capture(amount: Option<&str>) -> CaptureOrderRequest {
    CaptureOrderRequest {
        amount: amount.map(decimal),
    }
}

#[tokio::test]
async fn on_the_embedded_default_an_order_is_authorized_and_captured_once_for_less() {
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("PAYMENT_CAPTURE", "manual"),
            ("PAYMENT_MOCK_SUCCESS_RATE", "1"),
        ],
    )
    .await;
    let placed = app.place(&sample_order("manual")).await;
    let order = app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let payment = order.payment.expect("an authorized payment");
    assert_eq!(
        (payment.status, payment.capture_method),
        (PaymentStatus::Authorized, CaptureMethod::Manual)
    );
    assert_eq!(
        (payment.authorized_amount, payment.captured_amount),
        (decimal("30.97"), decimal("0.00"))
    );

    let (status, error) = refusal(
        app.client
            .capture(placed.id, &capture(Some("30.98")), None)
            .await,
    );
    assert_eq!((status, error.error), (422, ErrorCode::ValidationFailed));
    assert_eq!(error.fields[0].field, "amount");

    let captured = app
        .client
        .capture(placed.id, &capture(Some("25.98")), Some("cap-1"))
        .await
        .expect("captured")
        .order;
    let payment = captured.payment.expect("a payment");
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(payment.captured_amount, decimal("25.98"));
    assert_eq!(
        captured.status,
        OrderStatus::Confirmed,
        "the order keeps its status"
    );

    let again = app
        .client
        .capture(placed.id, &capture(Some("25.98")), Some("cap-1"))
        .await
        .expect("a retry with the key replays");
    assert!(again.replayed);
    let (status, error) = refusal(app.client.capture(placed.id, &capture(None), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotCapturable)
    );
    assert_eq!(error.current_status, Some(OrderStatus::Confirmed));
    let entry = app
        .gateway()
        .entry(&order_core::IdempotencyKey::for_order(
            order_core::OrderId::from_uuid(placed.id),
        ))
        .expect("the gateway's ledger has the payment");
    assert_eq!(entry.captures, 1, "captured once");
    app.stop().await;
}

#[tokio::test]
async fn with_automatic_capture_there_is_nothing_to_capture() {
    let app = TestApp::spawn(Backend::Memory, &[("PAYMENT_MOCK_SUCCESS_RATE", "1")]).await;
    let placed = app.place(&sample_order("automatic")).await;
    let order = app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let payment = order.payment.expect("a payment");
    assert_eq!(
        (payment.status, payment.captured_amount),
        (PaymentStatus::Captured, decimal("30.97"))
    );
    let (status, error) = refusal(app.client.capture(placed.id, &capture(None), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotCapturable)
    );
    app.stop().await;
}

async fn manual_through(stripe: &FakeStripe) -> TestApp {
    TestApp::spawn(
        Backend::PostgresRedis,
        &[
            ("PAYMENT_GATEWAY", "stripe"),
            ("PAYMENT_CAPTURE", "manual"),
            ("STRIPE_API_KEY", API_KEY),
            ("STRIPE_API_URL", stripe.url()),
        ],
    )
    .await
}

fn with_card(customer: &str) -> order_api::orders::CreateOrderRequest {
    let mut order = sample_order(customer);
    order.payment_method = Some("pm_card_visa".into());
    order
}

#[tokio::test]
async fn at_stripe_a_capture_for_less_than_authorized_shows_both_amounts_and_stripe_agrees() {
    let stripe = FakeStripe::start().await;
    let app = manual_through(&stripe).await;
    let placed = app.place(&with_card("manual-stripe")).await;
    let order = app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let intent_id = order.payment_attempts[0].transaction_id.clone().unwrap();
    let intent = stripe
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "requires_capture", "authorized only");
    assert_eq!(intent["capture_method"], "manual");

    let captured = app
        .client
        .capture(placed.id, &capture(Some("25.98")), None)
        .await
        .expect("captured")
        .order;

    let payment = captured.payment.expect("a payment");
    assert_eq!(
        (payment.authorized_amount, payment.captured_amount),
        (decimal("30.97"), decimal("25.98"))
    );
    let intent = stripe
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "succeeded");
    // localstripe shows a partial capture as the charge's amount less an uncaptured
    // remainder it books as refunded (Stripe shows `amount_received`).
    let charge = &intent["charges"]["data"][0];
    assert_eq!(charge["captured"], true);
    assert_eq!(
        charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap(),
        2598,
        "Stripe took 25.98: {charge}"
    );
    app.stop().await;
}

#[tokio::test]
async fn at_stripe_cancelling_an_authorized_order_voids_it_and_nothing_is_taken() {
    let stripe = FakeStripe::start().await;
    let app = manual_through(&stripe).await;
    let placed = app.place(&with_card("manual-void")).await;
    let order = app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let intent_id = order.payment_attempts[0].transaction_id.clone().unwrap();

    app.client
        .cancel(placed.id, &CancelOrderRequest::default(), None)
        .await
        .expect("an authorized order can be cancelled");
    let cancelled = app.wait_status(placed.id, OrderStatus::Cancelled).await;

    let payment = cancelled.payment.expect("a payment");
    assert_eq!(payment.status, PaymentStatus::Voided);
    assert_eq!(payment.captured_amount, decimal("0.00"));
    let intent = stripe
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(
        intent["status"], "canceled",
        "the authorization is released"
    );
    let (status, error) = refusal(app.client.capture(placed.id, &capture(None), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotCapturable)
    );
    app.stop().await;
}
