//! Event redeliveries have a budget per caller, whatever the general limits are: each one
//! posts an event again to every endpoint subscribed to it.

use std::time::Duration;

use order_api::webhooks::CreateWebhookEndpointRequest;
use order_api::{ErrorBody, ErrorCode, paths};
use order_http::testing::{Backend, Receiver, TestApp, sample_order};

/// Redelivers `event` over plain HTTP: the status, `Retry-After` and the body.
async fn redeliver(app: &TestApp, event: &str) -> (u16, Option<u64>, serde_json::Value) {
    let response = app
        .http
        .post(app.url(&paths::event_redeliver(event)))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        response.status().as_u16(),
        retry_after,
        response.json().await.unwrap(),
    )
}

async fn redeliveries_past_their_budget_get_429_until_the_rate_allows_one(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("WEBHOOKS_ALLOW_HTTP", "true"),
            ("RATE_LIMIT_REDELIVERIES_PER_SECOND", "1"),
            ("RATE_LIMIT_REDELIVERIES_BURST", "3"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    app.client
        .create_webhook_endpoint(&CreateWebhookEndpointRequest {
            url: receiver.url(),
            events: None,
            description: None,
            customer_id: None,
        })
        .await
        .unwrap();
    app.place(&sample_order("redelivered")).await;
    receiver
        .wait_for(Duration::from_secs(10), "the first event", |r| {
            !r.is_empty()
        })
        .await;
    let event = receiver.received()[0].id.clone();

    for i in 0..3 {
        let (status, _, body) = redeliver(&app, &event).await;
        assert_eq!(status, 202, "redelivery {i} is within the burst: {body}");
    }
    let (status, retry_after, body) = redeliver(&app, &event).await;
    assert_eq!(status, 429, "past the burst: {body}");
    assert_eq!(retry_after, Some(1), "one redelivery a second");
    let error: ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(error.error, ErrorCode::RateLimited);
    let (status, _, _) = redeliver(&app, "evt_00000000000000000000000000000000").await;
    assert_eq!(
        status, 429,
        "an unknown event costs the same: no probing past it"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = redeliver(&app, &event).await;
    assert_eq!(status, 202, "a second later, one more: {body}");
    app.stop().await;
}

on_both_backends!(redeliveries_past_their_budget_get_429_until_the_rate_allows_one);
