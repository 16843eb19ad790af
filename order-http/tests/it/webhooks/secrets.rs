//! Signing secrets over time: a rotated secret signs beside the new one for its grace, or
//! stops at once when the rotation asks.

use std::time::Duration;

use order_api::webhooks::{EventType, UpdateWebhookEndpointRequest};
use order_http::testing::{Backend, Receiver, TestApp, sample_order};

use super::{subscribe, verifies};

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
    let app = TestApp::spawn(Backend::Memory, &[("WEBHOOK_SECRET_GRACE_SECONDS", "1.5")]).await;
    let receiver = Receiver::start().await;
    let (old, endpoint_id) = subscribe(&app, &receiver).await;
    let (old, endpoint_id) = (old.as_str(), endpoint_id.as_str());
    app.client
        .update_webhook_endpoint(
            endpoint_id,
            &UpdateWebhookEndpointRequest {
                events: Some(vec![EventType::Created]),
                ..UpdateWebhookEndpointRequest::default()
            },
        )
        .await
        .unwrap();
    let rotated = app.client.rotate_webhook_secret(endpoint_id).await.unwrap();
    let new = rotated.secret.as_str();
    assert_ne!(new, old);
    let during = app.place(&sample_order("during")).await.id;
    receiver
        .wait_for(Duration::from_secs(10), "the event during the grace", |r| {
            r.iter().any(|x| x.event().data.id == during)
        })
        .await;
    let got = receiver
        .received()
        .into_iter()
        .find(|x| x.event().data.id == during)
        .unwrap();
    assert_eq!(
        got.signature.split(' ').count(),
        2,
        "two signatures: {}",
        got.signature
    );
    assert!(
        verifies(old, &got) && verifies(new, &got),
        "both secrets verify"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let after = app.place(&sample_order("after")).await.id;
    receiver
        .wait_for(Duration::from_secs(10), "the event after the grace", |r| {
            r.iter().any(|x| x.event().data.id == after)
        })
        .await;
    let got = receiver
        .received()
        .into_iter()
        .find(|x| x.event().data.id == after)
        .unwrap();
    assert!(verifies(new, &got), "the new secret verifies");
    assert!(!verifies(old, &got), "the old one no longer does");

    // A leaked secret is stopped at once: no grace.
    let leaked = new.to_owned();
    let at_once = app
        .client
        .rotate_webhook_secret_with(
            endpoint_id,
            &order_api::webhooks::RotateSecretRequest {
                previous_secret_grace_seconds: Some(0),
            },
        )
        .await
        .unwrap();
    assert!(at_once.previous_secret_expires_at <= chrono::Utc::now());
    let next = app.place(&sample_order("at-once")).await.id;
    receiver
        .wait_for(Duration::from_secs(10), "the event after the leak", |r| {
            r.iter().any(|x| x.event().data.id == next)
        })
        .await;
    let got = receiver
        .received()
        .into_iter()
        .find(|x| x.event().data.id == next)
        .unwrap();
    assert_eq!(got.signature.split(' ').count(), 1, "{}", got.signature);
    assert!(verifies(&at_once.secret, &got) && !verifies(&leaked, &got));
    let response = app
        .http
        .post(app.url(&order_api::paths::webhook_endpoint_rotate(endpoint_id)))
        .json(&serde_json::json!({"previous_secret_grace_seconds": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    app.stop().await;
}
