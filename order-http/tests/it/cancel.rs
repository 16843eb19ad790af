//! Cancellation over HTTP, on both backends: in every status, repeated, racing the worker,
//! and through a gateway outage; the gateway's ledger shows each capture refunded once.

use std::time::Duration;

use order_api::orders::{CancelOrderRequest, CancelReason, OrderStatus, RefundStatus};
use order_api::{ErrorCode, OrderResponse, paths};
use order_core::IdempotencyKey;
use order_http::Role;
use order_http::testing::{Backend, Storage, TestApp, refusal, sample_order};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

fn reason(reason: CancelReason) -> CancelOrderRequest {
    CancelOrderRequest {
        reason: Some(reason),
    }
}

/// What the app's in-process gateway did for `id`: captures and refunds.
fn ledger(app: &TestApp, id: Uuid) -> (u32, u32) {
    app.gateway()
        .entry(&IdempotencyKey::for_order(order_core::OrderId::from_uuid(
            id,
        )))
        .map_or((0, 0), |e| (e.captures, e.refunds))
}

#[tokio::test]
async fn a_pending_order_is_cancelled_at_once_and_never_charged() {
    let storage = Storage::create().await;
    let api = TestApp::spawn_role(Role::Serve, storage.env(), &[]).await;
    let order = api.place(&sample_order("cancel-pending")).await;

    let cancelled = api
        .client
        .cancel(order.id, &reason(CancelReason::Duplicate), None)
        .await
        .unwrap()
        .order;

    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let cancellation = cancelled.cancellation.expect("the cancellation is shown");
    assert_eq!(cancellation.reason, CancelReason::Duplicate);
    assert!(
        cancelled.refunds.is_empty(),
        "nothing was taken, nothing to refund"
    );
    // A worker that gets the job now finds the order cancelled and charges nothing.
    let worker = TestApp::spawn_role(Role::Worker, storage.env(), &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        worker.gateway().calls(),
        0,
        "the worker never called the gateway"
    );
    assert_eq!(api.order(order.id).await.status, OrderStatus::Cancelled);
    worker.stop().await;
    api.stop().await;
    storage.drop().await;
}

async fn a_charge_in_flight_is_refunded_once_it_resolves(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_MOCK_LATENCY_MIN", "300"),
            ("PAYMENT_MOCK_LATENCY_MAX", "400"),
        ],
    )
    .await;
    let order = app.place(&sample_order("cancel-in-flight")).await;
    app.wait_status(order.id, OrderStatus::PaymentProcessing)
        .await;

    let answer = app
        .client
        .cancel(order.id, &CancelOrderRequest::default(), None)
        .await;

    let cancelling = answer.unwrap().order;
    assert_eq!(cancelling.status, OrderStatus::Cancelling);
    assert_eq!(
        cancelling.cancellation.map(|c| c.reason),
        Some(CancelReason::RequestedByCustomer),
        "the default reason"
    );
    let done = app.wait_terminal(order.id, PATIENCE).await;
    assert_eq!(done.status, OrderStatus::Cancelled);
    assert_eq!(
        done.payment_attempts.len(),
        1,
        "the charge in flight is recorded, no other starts"
    );
    assert_eq!(done.refunds.len(), 1);
    assert_eq!(done.refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(done.refunds[0].amount, order.total_amount);
    assert_eq!(
        ledger(&app, order.id),
        (1, 1),
        "captured once, refunded once"
    );
    app.stop().await;
}

async fn a_confirmed_order_is_refunded_then_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let order = app.place(&sample_order("cancel-confirmed")).await;
    assert_eq!(
        app.wait_terminal(order.id, PATIENCE).await.status,
        OrderStatus::Confirmed
    );

    let response = app
        .http
        .post(app.url(&paths::order_cancel(order.id)))
        .json(&reason(CancelReason::RestaurantUnavailable))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 202, "accepted: the refund follows");
    let cancelling: OrderResponse = response.json().await.unwrap();
    assert_eq!(cancelling.status, OrderStatus::Cancelling);
    assert_eq!(cancelling.refunds[0].status, RefundStatus::Pending);
    let done = app.wait_status(order.id, OrderStatus::Cancelled).await;
    let refund = &done.refunds[0];
    assert_eq!(refund.status, RefundStatus::Succeeded);
    assert!(
        refund.refund_id.is_some(),
        "the gateway's refund id is shown"
    );
    assert_eq!(refund.attempts.len(), 1);
    assert_eq!(ledger(&app, order.id), (1, 1));
    app.stop().await;
}

async fn cancelling_again_is_idempotent_and_a_failed_payment_is_not_cancellable(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let order = app.place(&sample_order("cancel-again")).await;
    app.wait_terminal(order.id, PATIENCE).await;
    app.client
        .cancel(order.id, &CancelOrderRequest::default(), None)
        .await
        .unwrap();
    let cancelled = app.wait_status(order.id, OrderStatus::Cancelled).await;

    let again = app
        .http
        .post(app.url(&paths::order_cancel(order.id)))
        .send()
        .await
        .unwrap();

    assert_eq!(
        again.status(),
        200,
        "no body is needed, and a repeat is 200"
    );
    assert_eq!(again.json::<OrderResponse>().await.unwrap(), cancelled);
    assert_eq!(ledger(&app, order.id), (1, 1), "still one refund");

    let key = format!("cancel-{}", Uuid::now_v7().simple());
    let first = app
        .client
        .cancel(order.id, &reason(CancelReason::Other), Some(&key))
        .await
        .unwrap();
    let replay = app
        .client
        .cancel(order.id, &reason(CancelReason::Other), Some(&key))
        .await
        .unwrap();
    assert!(!first.replayed && replay.replayed);
    let (status, body) = refusal(
        app.client
            .cancel(order.id, &reason(CancelReason::Fraudulent), Some(&key))
            .await,
    );
    assert_eq!((status, body.error), (422, ErrorCode::IdempotencyKeyReused));
    app.stop().await;

    let declining = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_MOCK_SUCCESS_RATE", "0"),
            ("PAYMENT_MOCK_DECLINE_SHARE", "1"),
            ("PAYMENT_MOCK_TIMEOUT_SHARE", "0"),
        ],
    )
    .await;
    let failed = declining.place(&sample_order("cancel-failed")).await;
    assert_eq!(
        declining.wait_terminal(failed.id, PATIENCE).await.status,
        OrderStatus::PaymentFailed
    );
    let (status, body) = refusal(
        declining
            .client
            .cancel(failed.id, &CancelOrderRequest::default(), None)
            .await,
    );
    assert_eq!((status, body.error), (409, ErrorCode::OrderNotCancellable));
    assert_eq!(body.current_status, Some(OrderStatus::PaymentFailed));
    declining.stop().await;
}

async fn orders_cancelled_while_the_worker_pays_them_end_cancelled_with_every_capture_refunded(
    backend: Backend,
) {
    let app = TestApp::spawn(
        backend,
        &[
            ("PAYMENT_MOCK_LATENCY_MIN", "0"),
            ("PAYMENT_MOCK_LATENCY_MAX", "30"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let order = app.place(&sample_order(&format!("cancel-race-{i}"))).await;
        // Stagger the cancellations so they land in every stage of the payment.
        tokio::time::sleep(Duration::from_millis(i % 7 * 3)).await;
        app.client
            .cancel(order.id, &CancelOrderRequest::default(), None)
            .await
            .unwrap();
        ids.push(order.id);
    }

    for id in ids {
        let order = app.wait_terminal(id, PATIENCE).await;
        assert_eq!(order.status, OrderStatus::Cancelled, "{id}");
        let (captures, refunds) = ledger(&app, id);
        assert!(captures <= 1, "{id} captured {captures} times");
        assert_eq!(refunds, captures, "{id}: every capture refunded, once");
        match order.refunds.first().map(|r| r.status) {
            Some(RefundStatus::Succeeded) => assert_eq!(captures, 1),
            Some(RefundStatus::NothingCaptured) | None => assert_eq!(captures, 0),
            Some(status @ (RefundStatus::Pending | RefundStatus::Refused)) => {
                panic!("{id} cancelled with its refund {status:?}")
            }
        }
    }
    app.stop().await;
}

async fn refunds_wait_out_a_gateway_outage_then_complete_once(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "0.3"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let order = app
            .place(&sample_order(&format!("cancel-outage-{i}")))
            .await;
        app.wait_terminal(order.id, PATIENCE).await;
        ids.push(order.id);
    }
    app.gateway().set_outage_until(Some(
        chrono::Utc::now() + chrono::Duration::milliseconds(1500),
    ));

    for id in &ids {
        app.client
            .cancel(*id, &CancelOrderRequest::default(), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    for id in &ids {
        assert_eq!(
            app.order(*id).await.status,
            OrderStatus::Cancelling,
            "refunds wait during the outage"
        );
    }
    for id in &ids {
        let order = app.wait_status(*id, OrderStatus::Cancelled).await;
        assert_eq!(order.refunds[0].status, RefundStatus::Succeeded);
        assert_eq!(ledger(&app, *id), (1, 1), "refunded exactly once");
    }
    app.stop().await;
}

on_both_backends!(
    a_charge_in_flight_is_refunded_once_it_resolves,
    a_confirmed_order_is_refunded_then_cancelled,
    cancelling_again_is_idempotent_and_a_failed_payment_is_not_cancellable,
    orders_cancelled_while_the_worker_pays_them_end_cancelled_with_every_capture_refunded,
    refunds_wait_out_a_gateway_outage_then_complete_once,
);

#[tokio::test]
async fn bad_cancellations_are_refused_naming_what_is_wrong() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    let order = app.place(&sample_order("cancel-bad")).await;
    let post = |path: String, body: &'static str| {
        app.http
            .post(app.url(&path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, body) = refusal(
        app.client
            .cancel(Uuid::now_v7(), &CancelOrderRequest::default(), None)
            .await,
    );
    assert_eq!((status, body.error), (404, ErrorCode::NotFound));
    let unknown = post(paths::order_cancel(order.id), r#"{"reason": "bored"}"#)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    let body: order_api::ErrorBody = unknown.json().await.unwrap();
    assert_eq!(body.fields[0].field, "reason");
    let malformed = post(paths::order_cancel(order.id), r#"{"reason": "#)
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let blank = post(paths::order_cancel(order.id), "\r\n ").await.unwrap();
    assert_eq!(blank.status(), 400, "white space alone is not a JSON body");
    let not_a_uuid = post("/api/v1/orders/nope/cancel".into(), "{}")
        .await
        .unwrap();
    assert_eq!(not_a_uuid.status(), 422);
    let text = app
        .http
        .post(app.url(&paths::order_cancel(order.id)))
        .header("content-type", "text/plain")
        .body("reason=other")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    app.stop().await;
}
