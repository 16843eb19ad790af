//! Webhooks cannot be pointed into private networks: an address that is not public is
//! refused when the endpoint is made, and a name is checked, against every address it
//! resolves to, when a delivery connects. Attacked as a client would: real receivers on
//! loopback, which the service must not reach.

use std::time::Duration;

use order_api::ListOrdersQuery;
use order_core::ports::{WebhookRequest, WebhookSender};
use order_core::webhook::AttemptOutcome;
use order_http::testing::{Backend, Receiver, TestApp, sample_order};
use order_webhook_http::{HttpWebhookSender, Network};

fn request(url: String) -> WebhookRequest {
    WebhookRequest {
        url,
        id: "evt_probe".into(),
        timestamp: 0,
        signature: "v1,x".into(),
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn a_private_address_is_refused_at_creation_naming_the_url() {
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("WEBHOOKS_ALLOW_HTTP", "true"),
            ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "false"),
        ],
    )
    .await;
    for url in [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/hooks",
        "http://192.168.1.1/",
        "http://172.16.5.4:8080/",
        "http://100.64.0.1/",
        "http://0.0.0.0:5432/",
        "http://[::1]:8000/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]:6379/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/webhook-endpoints"))
            .json(&serde_json::json!({ "url": url }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["fields"][0]["field"], "url", "{body}");
        assert!(
            body["fields"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("private network")),
            "{body}"
        );
    }
    assert!(
        app.client
            .list_webhook_endpoints()
            .await
            .unwrap()
            .endpoints
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn names_and_other_spellings_of_private_addresses_are_blocked_when_a_delivery_connects() {
    let receiver = Receiver::start().await;
    let port = receiver.port();
    let guarded = HttpWebhookSender::new(Duration::from_secs(2), Network::PublicOnly).unwrap();
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
    ] {
        let response = guarded.send(&request(url.clone())).await;
        match &response.outcome {
            AttemptOutcome::Failed(e) => {
                assert!(e.starts_with("blocked: "), "{url}: {e}");
                assert!(e.contains("is not a public address"), "{url}: {e}");
            }
            other => panic!("{url} must be blocked, got {other:?}"),
        }
        assert!(response.excerpt.is_empty());
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );

    // The same receiver, with private networks allowed: the guard was all that stopped it.
    let open = HttpWebhookSender::new(Duration::from_secs(2), Network::Any).unwrap();
    let response = open
        .send(&request(format!("http://localhost:{port}/")))
        .await;
    assert!(
        matches!(
            response.outcome,
            AttemptOutcome::Answered { status: 200, .. }
        ),
        "{:?}",
        response.outcome
    );
}

#[tokio::test]
async fn a_failure_is_said_in_a_few_words_not_the_inner_error_chain() {
    // Nothing listens on port 9 of loopback (discard is not served here).
    let open = HttpWebhookSender::new(Duration::from_secs(2), Network::Any).unwrap();
    let response = open.send(&request("http://127.0.0.1:9/".into())).await;
    match &response.outcome {
        AttemptOutcome::Failed(e) => assert_eq!(e, "failed: could not connect"),
        other => panic!("a refused connection fails, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endpoint_named_by_a_name_that_resolves_to_loopback_gets_a_blocked_delivery() {
    let receiver = Receiver::start().await;
    let port = receiver.port();
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("WEBHOOKS_ALLOW_HTTP", "true"),
            ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "false"),
        ],
    )
    .await;
    let created = app
        .client
        .create_webhook_endpoint(&order_api::webhooks::CreateWebhookEndpointRequest {
            url: format!("http://localhost:{port}/hooks"),
            events: None,
            description: None,
            customer_id: None,
        })
        .await
        .expect("a name is checked when a delivery connects, not at creation");
    app.client
        .create(&sample_order("probe"), None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let attempts = app
            .client
            .webhook_deliveries(&created.endpoint.id, None)
            .await
            .unwrap()
            .attempts;
        if let Some(first) = attempts.into_iter().next() {
            break first;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempt.status_code, None);
    assert_eq!(
        attempt.error.as_deref(),
        Some("blocked: localhost is not a public address")
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
    assert!(app.client.list(&ListOrdersQuery::default()).await.is_ok());
    app.stop().await;
}
