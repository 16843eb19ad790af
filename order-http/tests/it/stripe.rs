//! Paying through Stripe (`PAYMENT_GATEWAY=stripe`), end to end on PostgreSQL + Redis
//! against localstripe: what the customer sees, and what Stripe's books hold.

use std::time::Duration;

use order_api::orders::{
    AttemptStatus, CancelOrderRequest, CancelReason, OrderStatus, RefundStatus,
};
use order_api::paths;
use order_gateway_stripe::testing::{API_KEY, FakeStripe, Fault};
use order_http::testing::{Backend, TestApp, sample_order};

const PATIENCE: Duration = Duration::from_secs(30);

async fn paying_through(stripe: &FakeStripe, backend: Backend) -> TestApp {
    TestApp::spawn(
        backend,
        &[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", API_KEY),
            ("STRIPE_API_URL", stripe.url()),
        ],
    )
    .await
}

fn paying_with(customer: &str, method: &str) -> order_api::orders::CreateOrderRequest {
    let mut order = sample_order(customer);
    order.payment_method = Some(method.into());
    order
}

#[tokio::test]
async fn the_readmes_order_paid_with_a_card_is_confirmed_and_stripe_holds_its_amount_in_cents() {
    let stripe = FakeStripe::start().await;
    let app = paying_through(&stripe, Backend::PostgresRedis).await;

    let placed = app
        .place(&paying_with("customer_123", "pm_card_visa"))
        .await;
    assert_eq!(placed.payment_method.as_deref(), Some("pm_card_visa"));
    let order = app.wait_terminal(placed.id, PATIENCE).await;

    assert_eq!(order.status, OrderStatus::Confirmed);
    let intent_id = order.payment_attempts[0]
        .transaction_id
        .clone()
        .expect("the payment intent's id");
    let intent = stripe
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 3097, "30.97 in cents");
    assert_eq!(intent["metadata"]["order_id"], order.id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn a_declining_card_fails_the_order_with_stripes_reason_and_charges_nothing() {
    let stripe = FakeStripe::start().await;
    let app = paying_through(&stripe, Backend::PostgresRedis).await;

    let placed = app
        .place(&paying_with("declined", "pm_card_chargeCustomerFail"))
        .await;
    let order = app.wait_terminal(placed.id, PATIENCE).await;

    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert_eq!(order.payment_attempts.len(), 1, "a decline is final");
    let attempt = &order.payment_attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Declined);
    assert_eq!(attempt.error_message.as_deref(), Some("card_declined"));
    let books = stripe.books(&format!("order-{}", order.id)).await;
    assert_eq!(books.captures, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_paid_order_is_refunded_in_full_at_stripe() {
    let stripe = FakeStripe::start().await;
    let app = paying_through(&stripe, Backend::PostgresRedis).await;
    let placed = app.place(&paying_with("refund-me", "pm_card_visa")).await;
    assert_eq!(
        app.wait_terminal(placed.id, PATIENCE).await.status,
        OrderStatus::Confirmed
    );

    app.client
        .cancel(
            placed.id,
            &CancelOrderRequest {
                reason: Some(CancelReason::RestaurantUnavailable),
            },
            None,
        )
        .await
        .expect("a confirmed order can be cancelled");
    let start = std::time::Instant::now();
    let order = loop {
        let order = app.order(placed.id).await;
        if order.status == OrderStatus::Cancelled {
            break order;
        }
        assert!(start.elapsed() < PATIENCE, "never cancelled: {order:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let refund = &order.refunds[0];
    assert_eq!(refund.status, RefundStatus::Succeeded);
    let books = stripe.books(&format!("order-{}", order.id)).await;
    assert_eq!(
        (books.captures, books.refunds, books.amount_refunded),
        (1, 1, 3097),
        "Stripe refunded the whole payment, once"
    );
    assert_eq!(
        refund.refund_id.as_deref().map(|id| id.starts_with("re_")),
        Some(true)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_order_without_a_payment_method_is_refused_naming_the_field() {
    let stripe = FakeStripe::start().await;
    let app = paying_through(&stripe, Backend::Memory).await;

    let (status, error) = app.refused(&sample_order("no-card")).await;

    assert_eq!(status, 422);
    let fields: Vec<_> = error.fields.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["payment_method"], "{error:?}");
    assert_eq!(stripe.requests(), 0, "nothing reached Stripe");
    let (status, _) = app
        .refused(&paying_with("bad-card", "pm card with spaces"))
        .await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn stripes_event_settles_an_order_whose_attempt_timed_out_in_seconds_not_at_its_retry() {
    let stripe = FakeStripe::start().await;
    // The second POST (the confirmation) is made, but its answer is lost.
    stripe.inject(2, &[Fault::AnswerLost]);
    let app = TestApp::spawn(
        Backend::PostgresRedis,
        &[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", API_KEY),
            ("STRIPE_API_URL", stripe.url()),
            ("STRIPE_WEBHOOK_SECRET", "whsec_order_service_test"),
            ("PAYMENT_RETRY_DELAY", "120"),
            ("PAYMENT_RETRY_MAX_DELAY", "120"),
        ],
    )
    .await;
    stripe
        .send_events_to(
            &app.url(paths::GATEWAY_EVENTS_STRIPE),
            "whsec_order_service_test",
        )
        .await;
    let start = std::time::Instant::now();

    let placed = app.place(&paying_with("timed-out", "pm_card_visa")).await;
    let order = app.wait_terminal(placed.id, Duration::from_secs(20)).await;

    assert_eq!(order.status, OrderStatus::Confirmed);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "settled by the event, not by the retry two minutes later"
    );
    let outcomes: Vec<_> = order.payment_attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        outcomes,
        [AttemptStatus::TimedOut, AttemptStatus::Succeeded]
    );
    let books = stripe.books(&format!("order-{}", order.id)).await;
    assert_eq!(books.captures, 1, "paid once");
    app.stop().await;
}

#[tokio::test]
async fn an_event_that_is_not_signed_with_our_secret_is_refused_and_changes_nothing() {
    let stripe = FakeStripe::start().await;
    let secret = "whsec_ours";
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", API_KEY),
            ("STRIPE_API_URL", stripe.url()),
            ("STRIPE_WEBHOOK_SECRET", secret),
        ],
    )
    .await;
    let event = br#"{"id":"evt_x","type":"payment_intent.succeeded","data":{"object":{"id":"pi_x","metadata":{"order_id":"01a24ec8-eefd-71f5-85ed-8378e3759932"}}}}"#;
    let now = chrono::Utc::now().timestamp();
    let post = |signature: String| {
        app.http
            .post(app.url(paths::GATEWAY_EVENTS_STRIPE))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(event.to_vec())
            .send()
    };
    let theirs = order_gateway_stripe::events::sign(event, "whsec_theirs", now);
    assert_eq!(post(theirs).await.unwrap().status(), 400);
    let stale = order_gateway_stripe::events::sign(event, secret, now - 3600);
    assert_eq!(post(stale).await.unwrap().status(), 400);
    let ours = order_gateway_stripe::events::sign(event, secret, now);
    let answer = post(ours).await.unwrap();
    assert_eq!(
        answer.status(),
        200,
        "signed by us, about an order we do not have"
    );
    app.stop().await;

    // Without STRIPE_WEBHOOK_SECRET the route takes nothing.
    let app = paying_through(&stripe, Backend::Memory).await;
    let ours = order_gateway_stripe::events::sign(event, secret, now);
    let answer = app
        .http
        .post(app.url(paths::GATEWAY_EVENTS_STRIPE))
        .header("stripe-signature", ours)
        .body(event.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    app.stop().await;
}
