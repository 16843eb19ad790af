//! Webhook endpoints that belong to a customer: a key bound to one manages its own, sees no
//! other, and its endpoints receive only its orders' events; a customer has at most
//! `WEBHOOK_MAX_ENDPOINTS` endpoints.

use std::collections::BTreeSet;
use std::time::Duration;

use order_api::webhooks::{EventType, WebhookEndpointList};
use order_api::{ErrorCode, paths};
use order_http::testing::{Backend, Received, Receiver, TestApp, sample_order};
use serde_json::{Value, json};

use super::{Scope, Secured, call};

/// `method path` with `key` and `body`; the status and the JSON answer.
async fn send(
    s: &Secured,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = s
        .app
        .http
        .request(method.parse().unwrap(), s.app.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The orders whose events `received` holds.
fn orders_of(received: &[Received]) -> BTreeSet<uuid::Uuid> {
    received.iter().map(|r| r.event().data.id).collect()
}

async fn a_customers_key_manages_its_own_webhooks_which_get_only_its_orders(backend: Backend) {
    let s = Secured::start_with(backend, &[("WEBHOOKS_ALLOW_HTTP", "true")]).await;
    let admin = s.admin.clone();
    let scopes = [Scope::WebhooksManage, Scope::OrdersWrite, Scope::OrdersRead];
    let (alice, _) = s.key(&scopes, Some("alice"), None).await;
    let (everyone_rx, alice_rx, bob_rx) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let create = |url: String, customer: Option<&str>| {
        let mut body = json!({"url": url, "events": ["order.created"]});
        if let Some(c) = customer {
            body["customer_id"] = json!(c);
        }
        body
    };
    let (status, everyone) = send(
        &s,
        "POST",
        paths::WEBHOOK_ENDPOINTS,
        &admin,
        Some(create(everyone_rx.url(), None)),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        everyone["customer_id"],
        Value::Null,
        "an admin's endpoint serves everyone"
    );
    let (status, bobs) = send(
        &s,
        "POST",
        paths::WEBHOOK_ENDPOINTS,
        &admin,
        Some(create(bob_rx.url(), Some("bob"))),
    )
    .await;
    assert_eq!((status, &bobs["customer_id"]), (201, &json!("bob")));
    let (status, alices) = send(
        &s,
        "POST",
        paths::WEBHOOK_ENDPOINTS,
        &alice,
        Some(create(alice_rx.url(), None)),
    )
    .await;
    assert_eq!(
        (status, &alices["customer_id"]),
        (201, &json!("alice")),
        "a bound key's endpoint is its customer's"
    );
    let (status, code, _) = call(
        &s.app,
        "POST",
        paths::WEBHOOK_ENDPOINTS,
        Some(&alice),
        Some(create(alice_rx.url(), Some("bob"))),
    )
    .await;
    assert_eq!(
        (status, code),
        (403, Some(ErrorCode::Forbidden)),
        "not for bob"
    );

    let listed = |key: &str, query: &str| {
        let url = s.app.url(&format!("{}{query}", paths::WEBHOOK_ENDPOINTS));
        let request = s.app.http.get(url).bearer_auth(key.to_owned());
        async move {
            let list: WebhookEndpointList = request.send().await.unwrap().json().await.unwrap();
            list.endpoints.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let (everyone_id, bob_id, alice_id) = (id(&everyone), id(&bobs), id(&alices));
    assert_eq!(
        listed(&alice, "").await,
        std::slice::from_ref(&alice_id),
        "alice sees hers only"
    );
    assert_eq!(
        listed(&admin, "").await,
        [everyone_id.clone(), bob_id.clone(), alice_id.clone()]
    );
    assert_eq!(
        listed(&admin, "?customer_id=bob").await,
        std::slice::from_ref(&bob_id)
    );
    let (status, _, _) = call(
        &s.app,
        "GET",
        &format!("{}?customer_id=bob", paths::WEBHOOK_ENDPOINTS),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 403);
    for other in [&bob_id, &everyone_id] {
        for (method, path, body) in [
            ("GET", paths::webhook_endpoint(other), None),
            (
                "PATCH",
                paths::webhook_endpoint(other),
                Some(json!({"url": alice_rx.url()})),
            ),
            ("POST", paths::webhook_endpoint_rotate(other), None),
            ("GET", paths::webhook_endpoint_deliveries(other), None),
            ("DELETE", paths::webhook_endpoint(other), None),
        ] {
            let (status, code, _) = call(&s.app, method, &path, Some(&alice), body).await;
            assert_eq!(
                (status, code),
                (404, Some(ErrorCode::NotFound)),
                "{method} {path}: another's endpoint does not exist for alice"
            );
        }
    }
    let (status, _) = send(
        &s,
        "PATCH",
        &paths::webhook_endpoint(&alice_id),
        &alice,
        Some(json!({"description": "mine"})),
    )
    .await;
    assert_eq!(status, 200, "her own she changes");

    let placed = |key: &str, customer: &str| {
        let client = s.client(key);
        let order = sample_order(customer);
        async move { client.create(&order, None).await.unwrap().order.id }
    };
    let alices_order = placed(&alice, "alice").await;
    let bobs_order = placed(&admin, "bob").await;
    let both: BTreeSet<_> = [alices_order, bobs_order].into();
    // Generous: open transactions of tests beside it on the same cluster hold the fan-out back.
    let wait = Duration::from_secs(30);
    everyone_rx
        .wait_for(wait, "both orders", |r| orders_of(r) == both)
        .await;
    alice_rx
        .wait_for(wait, "alice's order", |r| !r.is_empty())
        .await;
    bob_rx
        .wait_for(wait, "bob's order", |r| !r.is_empty())
        .await;
    // A round after both were fanned out: nothing else is on its way to the owners.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        orders_of(&alice_rx.received()),
        [alices_order].into(),
        "alice's only"
    );
    assert_eq!(
        orders_of(&bob_rx.received()),
        [bobs_order].into(),
        "bob's only"
    );

    let event_of = |rx: &Receiver| rx.received()[0].id.clone();
    let (alices_event, bobs_event) = (event_of(&alice_rx), event_of(&bob_rx));
    let (status, code, _) = call(
        &s.app,
        "POST",
        &paths::event_redeliver(&bobs_event),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (status, code),
        (404, Some(ErrorCode::NotFound)),
        "bob's event is not alice's"
    );
    let (status, redelivered) = send(
        &s,
        "POST",
        &paths::event_redeliver(&alices_event),
        &alice,
        None,
    )
    .await;
    assert_eq!(
        (status, &redelivered["deliveries"]),
        (202, &json!(1)),
        "to her endpoint only"
    );
    alice_rx
        .wait_for(wait, "the first redelivery", |r| r.len() >= 2)
        .await;
    let (status, redelivered) = send(
        &s,
        "POST",
        &paths::event_redeliver(&alices_event),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, &redelivered["deliveries"]),
        (202, &json!(2)),
        "to hers and to the one serving everyone, never to bob's"
    );
    alice_rx
        .wait_for(wait, "the redeliveries", |r| r.len() >= 3)
        .await;
    assert_eq!(orders_of(&bob_rx.received()), [bobs_order].into());
    assert!(
        bob_rx
            .received()
            .iter()
            .all(|r| r.event().kind == EventType::Created),
        "subscribed to order.created"
    );
    s.stop().await;
}

on_both_backends!(a_customers_key_manages_its_own_webhooks_which_get_only_its_orders);

#[tokio::test]
async fn a_customer_has_at_most_webhook_max_endpoints_endpoints() {
    let app = TestApp::spawn(Backend::Memory, &[("WEBHOOK_MAX_ENDPOINTS", "2")]).await;
    let post = |customer: &str| {
        let body = json!({"url": "https://receiver.example/hooks", "customer_id": customer});
        app.http
            .post(app.url(paths::WEBHOOK_ENDPOINTS))
            .json(&body)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(post("alice").await.unwrap().status(), 201);
    }
    let refused = post("alice").await.unwrap();
    assert_eq!(refused.status(), 409);
    let body: order_api::ErrorBody = refused.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::LimitReached);
    assert!(
        body.message.contains("WEBHOOK_MAX_ENDPOINTS"),
        "{}",
        body.message
    );
    assert_eq!(
        post("bob").await.unwrap().status(),
        201,
        "bob has a quota of his own"
    );
    app.stop().await;
}
