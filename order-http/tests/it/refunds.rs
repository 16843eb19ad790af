//! Refunds asked for on their own: part of a confirmed order's captured payment given back,
//! by amount or by items, never more in all than was captured, whatever races them; and a
//! cancellation afterwards gives back only the rest. On both backends, and at Stripe
//! (localstripe).

use order_api::ErrorCode;
use order_api::orders::{
    CancelOrderRequest, OrderStatus, PaymentStatus, RefundItem, RefundOrderRequest, RefundStatus,
};
use order_core::{IdempotencyKey, OrderId};
use order_gateway_stripe::testing::{API_KEY, FakeStripe};
use order_http::testing::{Backend, TestApp, refusal, sample_order};
use uuid::Uuid;

fn decimal(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

fn amount(a: &str) -> RefundOrderRequest {
    RefundOrderRequest {
        amount: Some(decimal(a)),
        ..RefundOrderRequest::default()
    }
}

fn burgers(quantity: u32) -> RefundOrderRequest {
    RefundOrderRequest {
        items: Some(vec![RefundItem {
            item_id: "item_001".into(),
            quantity,
        }]),
        reason: Some("the restaurant had no burgers".into()),
        ..RefundOrderRequest::default()
    }
}

/// What the simulated gateway's ledger gave back for order `id`, in all.
fn given_back(app: &TestApp, id: Uuid) -> rust_decimal::Decimal {
    app.gateway()
        .entry(&IdempotencyKey::for_order(OrderId::from_uuid(id)))
        .map_or(rust_decimal::Decimal::ZERO, |e| e.refunded().amount())
}

async fn confirmed(backend: Backend, customer: &str) -> (TestApp, Uuid) {
    let app = TestApp::spawn(backend, &[("PAYMENT_MOCK_SUCCESS_RATE", "1")]).await;
    let placed = app.place(&sample_order(customer)).await;
    app.wait_status(placed.id, OrderStatus::Confirmed).await;
    (app, placed.id)
}

async fn a_confirmed_order_is_refunded_in_parts_never_past_its_capture(backend: Backend) {
    let (app, id) = confirmed(backend, "refund-parts").await;
    // 2 x 12.99 + 4.99 = 30.97 captured.
    let first = app
        .client
        .refund(id, &burgers(1), Some("refund-1"))
        .await
        .expect("one burger is refunded")
        .order;
    assert_eq!(
        first.status,
        OrderStatus::Confirmed,
        "the order keeps its status"
    );
    let payment = first.payment.clone().expect("a payment");
    assert_eq!(
        (
            payment.status,
            payment.refunded_amount,
            payment.captured_amount
        ),
        (
            PaymentStatus::PartiallyRefunded,
            decimal("12.99"),
            decimal("30.97")
        )
    );
    let refund = &first.refunds[0];
    assert_eq!(
        (refund.status, refund.amount),
        (RefundStatus::Succeeded, decimal("12.99"))
    );
    assert_eq!(refund.items, burgers(1).items.unwrap());
    assert_eq!(
        refund.reason.as_deref(),
        Some("the restaurant had no burgers")
    );
    assert!(refund.refund_id.is_some() && refund.requested_at.is_some());

    let again = app
        .client
        .refund(id, &burgers(1), Some("refund-1"))
        .await
        .expect("a retry with the key replays");
    assert!(again.replayed);
    assert_eq!(again.order.refunds.len(), 1, "nothing was refunded twice");

    // What the order holds decides these: conflicts, not malformed requests.
    let (status, error) = refusal(app.client.refund(id, &burgers(2), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotRefundable)
    );
    assert!(
        error.message.contains("items[0].quantity"),
        "one burger is left: {error:?}"
    );
    let pizza = RefundOrderRequest {
        items: Some(vec![RefundItem {
            item_id: "pizza".into(),
            quantity: 1,
        }]),
        ..RefundOrderRequest::default()
    };
    let (status, error) = refusal(app.client.refund(id, &pizza, None).await);
    assert_eq!(status, 409);
    assert!(
        error.message.contains("items[0].item_id"),
        "not an item of the order: {error:?}"
    );
    let (status, error) = refusal(app.client.refund(id, &amount("17.99"), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotRefundable)
    );
    assert!(error.message.contains("17.98"), "{error:?}");
    assert_eq!(error.current_status, Some(OrderStatus::Confirmed));

    // Part of an item's value: half a burger, never more than the burger.
    let burger_for = |a: &str| RefundOrderRequest {
        amount: Some(decimal(a)),
        ..burgers(1)
    };
    let (status, _) = refusal(app.client.refund(id, &burger_for("13.00"), None).await);
    assert_eq!(status, 409, "more than the burger is worth");
    let part = app
        .client
        .refund(id, &burger_for("6.50"), None)
        .await
        .expect("part of a burger is refunded")
        .order;
    assert_eq!(part.refunds[1].amount, decimal("6.50"));
    assert_eq!(part.refunds[1].items, burgers(1).items.unwrap());

    // No amount, no items: all of what is left (11.48).
    let rest = app
        .client
        .refund(id, &RefundOrderRequest::default(), None)
        .await
        .expect("what is left is refunded")
        .order;
    assert_eq!(rest.refunds[2].amount, decimal("11.48"));
    let payment = rest.payment.expect("a payment");
    assert_eq!(
        (payment.status, payment.refunded_amount),
        (PaymentStatus::Refunded, decimal("30.97"))
    );
    assert_eq!(rest.status, OrderStatus::Confirmed);
    let (status, error) = refusal(app.client.refund(id, &amount("0.01"), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotRefundable)
    );
    assert_eq!(error.current_status, Some(OrderStatus::Confirmed));
    assert_eq!(given_back(&app, id), decimal("30.97"), "the gateway agrees");

    // A cancellation now has nothing left to give back, and sends nothing.
    app.client
        .cancel(id, &CancelOrderRequest::default(), None)
        .await
        .expect("a confirmed order can be cancelled");
    let cancelled = app.wait_status(id, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.refunds.len(), 3, "{:?}", cancelled.refunds);
    assert_eq!(
        cancelled.payment.expect("a payment").status,
        PaymentStatus::Refunded
    );
    assert_eq!(given_back(&app, id), decimal("30.97"));
    app.stop().await;
}

async fn a_cancellation_after_a_refund_gives_back_only_the_rest(backend: Backend) {
    let (app, id) = confirmed(backend, "refund-then-cancel").await;
    app.client
        .refund(id, &amount("5.00"), None)
        .await
        .expect("refunded");
    app.client
        .cancel(id, &CancelOrderRequest::default(), None)
        .await
        .expect("cancelled");
    let cancelled = app.wait_status(id, OrderStatus::Cancelled).await;
    let amounts: Vec<_> = cancelled
        .refunds
        .iter()
        .map(|r| (r.amount, r.status))
        .collect();
    assert_eq!(
        amounts,
        [
            (decimal("5.00"), RefundStatus::Succeeded),
            (decimal("25.97"), RefundStatus::Succeeded)
        ]
    );
    let payment = cancelled.payment.expect("a payment");
    assert_eq!(
        (payment.status, payment.refunded_amount),
        (PaymentStatus::Refunded, decimal("30.97"))
    );
    assert_eq!(
        given_back(&app, id),
        decimal("30.97"),
        "given back once, in all"
    );
    let (status, error) = refusal(app.client.refund(id, &amount("1.00"), None).await);
    assert_eq!(
        (status, error.error, error.current_status),
        (
            409,
            ErrorCode::PaymentNotRefundable,
            Some(OrderStatus::Cancelled)
        )
    );
    app.stop().await;
}

async fn concurrent_refunds_never_give_back_more_than_was_captured(backend: Backend) {
    let (app, id) = confirmed(backend, "refund-race").await;
    let five = amount("5.00");
    let calls = (0..8).map(|_| app.client.refund(id, &five, None));
    let results = futures::future::join_all(calls).await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 6, "six refunds of 5.00 fit in 30.97");
    for refused in results.into_iter().filter_map(Result::err) {
        let (status, _) = refusal::<()>(Err(refused));
        assert_eq!(status, 409, "more than is left");
    }
    let order = app.order(id).await;
    assert_eq!(
        order.payment.expect("a payment").refunded_amount,
        decimal("30.00")
    );
    assert_eq!(given_back(&app, id), decimal("30.00"));
    app.stop().await;
}

async fn what_cannot_be_refunded_is_refused_with_the_reason(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_CAPTURE", "manual"),
            ("PAYMENT_MOCK_SUCCESS_RATE", "1"),
        ],
    )
    .await;
    let placed = app.place(&sample_order("refund-authorized")).await;
    app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let (status, error) = refusal(app.client.refund(placed.id, &amount("1.00"), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotRefundable),
        "authorized, nothing captured yet"
    );
    let (status, _) = refusal(
        app.client
            .refund(Uuid::now_v7(), &amount("1.00"), None)
            .await,
    );
    assert_eq!(status, 404);
    for (body, field) in [
        (
            serde_json::json!({"amount": 1, "items": [{"item_id": "item_001", "quantity": 0}]}),
            "items[0].quantity",
        ),
        (serde_json::json!({"amount": "-1"}), "amount"),
        (serde_json::json!({"amount": 1, "reason": ""}), "reason"),
    ] {
        let response = app
            .http
            .post(app.url(&order_api::paths::order_refunds(placed.id)))
            .json(&body)
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status().as_u16(), 422, "{body}");
        let error: order_api::ErrorBody = response.json().await.expect("an ErrorBody");
        assert_eq!(error.error, ErrorCode::ValidationFailed);
        assert_eq!(error.fields[0].field, field, "{body}");
    }
    app.stop().await;
}

async fn a_refund_the_gateway_did_not_answer_is_settled_by_the_sweep(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_MOCK_SUCCESS_RATE", "1"),
            ("PAYMENT_RECONCILE_INTERVAL_SECONDS", "0.2"),
            ("PAYMENT_RECONCILE_GRACE_SECONDS", "0.5"),
        ],
    )
    .await;
    let placed = app.place(&sample_order("refund-sweep")).await;
    app.wait_status(placed.id, OrderStatus::Confirmed).await;
    app.gateway()
        .set_outage_until(Some(chrono::Utc::now() + chrono::Duration::seconds(2)));
    let (status, error) = refusal(app.client.refund(placed.id, &amount("5.00"), None).await);
    assert_eq!((status, error.error), (503, ErrorCode::ServiceUnavailable));
    let pending = app.order(placed.id).await;
    assert_eq!(
        pending
            .refunds
            .iter()
            .map(|r| (r.status, r.amount))
            .collect::<Vec<_>>(),
        [(RefundStatus::Pending, decimal("5.00"))],
        "the refund is recorded, its outcome unknown"
    );
    let (status, error) = refusal(app.client.refund(placed.id, &amount("26.00"), None).await);
    assert_eq!(
        (status, error.error),
        (409, ErrorCode::PaymentNotRefundable),
        "a pending refund holds its amount back"
    );

    // No client asks again: the sweep settles it once the gateway is back.
    let start = std::time::Instant::now();
    let settled = loop {
        let order = app.order(placed.id).await;
        if order.refunds[0].status != RefundStatus::Pending {
            break order;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{order:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(settled.refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(
        settled.payment.expect("a payment").refunded_amount,
        decimal("5.00")
    );
    assert_eq!(
        given_back(&app, placed.id),
        decimal("5.00"),
        "given back once"
    );
    app.stop().await;
}

async fn a_refund_that_gave_money_back_is_told_to_subscribers(backend: Backend) {
    use order_api::webhooks::{CreateWebhookEndpointRequest, EventType};
    use order_http::testing::Receiver;

    let app = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_MOCK_SUCCESS_RATE", "1"),
            ("WEBHOOKS_ALLOW_HTTP", "true"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    app.client
        .create_webhook_endpoint(&CreateWebhookEndpointRequest {
            url: receiver.url(),
            events: Some(vec![EventType::PartiallyRefunded]),
            description: None,
            customer_id: None,
        })
        .await
        .expect("endpoint created");
    let placed = app.place(&sample_order("refund-told")).await;
    app.wait_status(placed.id, OrderStatus::Confirmed).await;
    app.client
        .refund(placed.id, &amount("4.99"), Some("told-1"))
        .await
        .expect("refunded");
    // Replayed under its key: one refund, one event.
    app.client
        .refund(placed.id, &amount("4.99"), Some("told-1"))
        .await
        .expect("replayed");
    let refused = app.client.refund(placed.id, &amount("30.00"), None).await;
    assert!(refused.is_err(), "more than is left is refused");
    receiver
        .wait_for(
            std::time::Duration::from_secs(20),
            "order.partially_refunded",
            |got| !got.is_empty(),
        )
        .await;
    // Anything else would have come by now: the dispatcher runs every few milliseconds.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events: Vec<_> = receiver
        .delivered()
        .values()
        .map(order_http::testing::Received::event)
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.kind, EventType::PartiallyRefunded);
    assert_eq!(event.data.id, placed.id);
    assert_eq!(event.data.status, OrderStatus::Confirmed);
    assert_eq!(event.data.refunds.len(), 1);
    assert_eq!(event.data.refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(event.data.refunds[0].amount, decimal("4.99"));
    app.stop().await;
}

on_both_backends!(
    a_refund_that_gave_money_back_is_told_to_subscribers,
    a_refund_the_gateway_did_not_answer_is_settled_by_the_sweep,
    a_confirmed_order_is_refunded_in_parts_never_past_its_capture,
    a_cancellation_after_a_refund_gives_back_only_the_rest,
    concurrent_refunds_never_give_back_more_than_was_captured,
    what_cannot_be_refunded_is_refused_with_the_reason,
);

#[tokio::test]
async fn at_stripe_a_partial_refund_shows_on_the_intent() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn(
        Backend::PostgresRedis,
        &[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", API_KEY),
            ("STRIPE_API_URL", stripe.url()),
        ],
    )
    .await;
    let mut order = sample_order("refund-stripe");
    order.payment_method = Some("pm_card_visa".into());
    let placed = app.place(&order).await;
    let order = app.wait_status(placed.id, OrderStatus::Confirmed).await;
    let intent_id = order.payment_attempts[0].transaction_id.clone().unwrap();

    let refunded = app
        .client
        .refund(placed.id, &amount("4.99"), Some("stripe-refund-1"))
        .await
        .expect("refunded at Stripe")
        .order;
    let refund_id = refunded.refunds[0]
        .refund_id
        .clone()
        .expect("Stripe's refund id");
    assert!(refund_id.starts_with("re_"), "{refund_id}");
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={intent_id}"))
        .await;
    let listed: Vec<_> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == refund_id.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{refunds}");
    assert_eq!(listed[0]["amount"], 499, "4.99 in cents");
    assert_eq!(
        refunded.payment.expect("a payment").status,
        PaymentStatus::PartiallyRefunded
    );

    // The rest goes back with the cancellation: 25.98 more, 30.97 in all.
    app.client
        .cancel(placed.id, &CancelOrderRequest::default(), None)
        .await
        .expect("cancelled");
    app.wait_status(placed.id, OrderStatus::Cancelled).await;
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={intent_id}"))
        .await;
    let total: i64 = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["amount"].as_i64())
        .sum();
    assert_eq!(total, 3097, "{refunds}");
    app.stop().await;
}
