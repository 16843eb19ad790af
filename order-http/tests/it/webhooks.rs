//! Webhooks end to end: a real receiver on loopback, the real HTTP sender, both backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use order_api::webhooks::{CreateWebhookEndpointRequest, EventType, UpdateWebhookEndpointRequest};
use order_core::memory::{ManualClock, MemoryOrderRepo};
use order_core::ports::{Clock, OrderRepo, WebhookSender, WebhookStore};
use order_core::service::{DispatcherConfig, WebhookDispatcher};
use order_core::testing::placed_order;
use order_core::webhook::{Endpoint, EndpointUrl, EventType as CoreEventType, NewEndpoint};
use order_http::Role;
use order_http::testing::{
    Answer, Backend, Received, Receiver, Storage, TestApp, check_sequences, refusal, sample_order,
    sequences,
};
use order_webhook_http::{HttpWebhookSender, Network};

mod hanging;
/// Checks a delivery's signature with the `standardwebhooks` crate, an implementation of
/// the specification that is not ours.
mod secrets;

fn verifies(secret: &str, received: &Received) -> bool {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("webhook-id", &received.id),
        ("webhook-timestamp", &received.timestamp),
        ("webhook-signature", &received.signature),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    standardwebhooks::Webhook::new(secret)
        .expect("a secret standardwebhooks reads")
        .verify(&received.body, &headers)
        .is_ok()
}

/// The dispatcher as the direct tests drive it: on an in-memory store, posting over HTTP.
type Direct = WebhookDispatcher<dyn WebhookStore, dyn OrderRepo, dyn WebhookSender, ManualClock>;

/// An in-memory store with one endpoint, `receiver` subscribed to `order.created`, and a
/// dispatcher on it driven by `clock` whose requests time out after `timeout`.
async fn direct(
    receiver: &Receiver,
    clock: &Arc<ManualClock>,
    timeout: Duration,
    config: DispatcherConfig,
) -> (Arc<MemoryOrderRepo>, Endpoint, Direct) {
    let store = Arc::new(MemoryOrderRepo::new());
    let endpoint = Endpoint::create(
        NewEndpoint {
            url: EndpointUrl::parse(&receiver.url(), true).unwrap(),
            events: [CoreEventType::Created].into_iter().collect(),
            owner: None,
            description: String::new(),
        },
        clock.now(),
    );
    store.insert_endpoint(&endpoint, 100).await.unwrap();
    let dispatcher = WebhookDispatcher::new(
        store.clone() as Arc<dyn WebhookStore>,
        store.clone() as Arc<dyn OrderRepo>,
        Arc::new(HttpWebhookSender::new(timeout, Network::Any).unwrap()) as Arc<dyn WebhookSender>,
        Arc::clone(clock),
        Arc::new(|o| serde_json::to_value(order_http::http::convert::order(o)).unwrap()),
        config,
    );
    (store, endpoint, dispatcher)
}

#[tokio::test]
async fn a_failed_delivery_is_retried_on_the_clock_until_accepted_with_the_same_id() {
    let receiver = Receiver::start().await;
    receiver.script(&[
        Answer::Status(500),
        Answer::Hang(Duration::from_secs(1)),
        Answer::Status(204),
    ]);
    // The clock spans about six minutes: start it three before now, so every timestamp is
    // within the five minutes a verifier tolerates.
    let clock = Arc::new(ManualClock::new(Utc::now() - chrono::Duration::minutes(3)));
    let (store, endpoint, dispatcher) = direct(
        &receiver,
        &clock,
        Duration::from_millis(300),
        DispatcherConfig::default(),
    )
    .await;
    let order = placed_order("alice", clock.now());
    store.insert(&order).await.unwrap();

    let first = dispatcher.run_once().await.unwrap();
    assert_eq!(
        (first.fanned_out, first.attempted, first.delivered),
        (1, 1, 0)
    );
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "not due yet"
    );
    clock.advance(Duration::from_millis(4400));
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "the first retry waits 5 s, give or take 10 %"
    );
    clock.advance(Duration::from_millis(1200));
    let second = dispatcher.run_once().await.unwrap();
    assert_eq!((second.attempted, second.delivered), (1, 0), "timed out");
    clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "5 min next"
    );
    clock.advance(Duration::from_secs(90));
    let third = dispatcher.run_once().await.unwrap();
    assert_eq!((third.attempted, third.delivered), (1, 1));
    clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "delivered: done"
    );

    receiver
        .wait_for(Duration::from_secs(5), "three requests", |r| r.len() == 3)
        .await;
    let requests = receiver.received();
    let event = store.events_of(order.id).await.unwrap()[0].clone();
    assert!(
        requests.iter().all(|r| r.id == event.id.to_string()),
        "one webhook-id"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .count(),
        1,
        "exactly one accepted delivery"
    );
    let secret = endpoint.secret.expose();
    assert!(
        requests.iter().all(|r| verifies(&secret, r)),
        "every attempt signed"
    );
    assert_eq!(requests[2].event().kind, EventType::Created);
    assert_eq!(requests[2].event().data.id, order.id.as_uuid());
    let attempts = store.attempts(endpoint.id, 10).await.unwrap();
    let shown: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.status_code, a.error.clone(), a.delivered))
        .collect();
    assert_eq!(
        shown,
        [
            (3, Some(204), None, true),
            (2, None, Some("timed out".into()), false),
            (1, Some(500), None, false),
        ]
    );
}

#[tokio::test]
async fn a_gone_endpoint_is_disabled_and_retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.script(&[Answer::RetryAfter(503, 120), Answer::Status(410)]);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (store, endpoint, dispatcher) = direct(
        &receiver,
        &clock,
        Duration::from_secs(2),
        DispatcherConfig::default(),
    )
    .await;
    store
        .insert(&placed_order("bob", clock.now()))
        .await
        .unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap().attempted, 1);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "Retry-After: 120 beats the schedule's 5 s"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(dispatcher.run_once().await.unwrap().attempted, 1);
    let stored = store.endpoint(endpoint.id).await.unwrap().unwrap();
    assert!(!stored.enabled, "410 Gone disables the endpoint");
    assert_eq!(
        stored.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
}

#[tokio::test]
async fn an_absurd_retry_after_waits_the_schedules_longest_delay_and_stops_nothing() {
    let receiver = Receiver::start().await;
    receiver.script(&[
        Answer::RetryAfter(503, 99_999_999_999_999),
        Answer::Status(204),
    ]);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (store, _endpoint, dispatcher) = direct(
        &receiver,
        &clock,
        Duration::from_secs(2),
        DispatcherConfig::default(),
    )
    .await;
    store
        .insert(&placed_order("bob", clock.now()))
        .await
        .unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap().attempted, 1);
    // The default schedule's longest step is 10 h.
    clock.advance(Duration::from_secs(10 * 3600 - 60));
    assert_eq!(dispatcher.run_once().await.unwrap().attempted, 0);
    clock.advance(Duration::from_secs(61));
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.attempted, round.delivered), (1, 1));
}

/// A receiver whose every answer holds NUL and other control bytes, beside one that answers
/// plainly: both endpoints' attempts are recorded, and nothing is sent twice.
async fn a_receiver_answering_nul_bytes_fails_no_one_s_deliveries(backend: Backend) {
    let (poisoned, plain) = (Receiver::start().await, Receiver::start().await);
    poisoned.otherwise(Answer::Body(500, b"oops\0\x01\x1b[31m\0"));
    plain.otherwise(Answer::Status(204));
    let app = TestApp::spawn(backend, &[("WEBHOOKS_ALLOW_HTTP", "true")]).await;
    let (_, poisoned_id) = subscribe(&app, &poisoned).await;
    let (_, plain_id) = subscribe(&app, &plain).await;
    for i in 0..5 {
        app.client
            .create(&sample_order(&format!("nul-{i}")), None)
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let recorded = app
            .client
            .webhook_deliveries(&poisoned_id, Some(100))
            .await
            .unwrap()
            .attempts;
        if recorded.len() >= 5 {
            assert!(
                recorded.iter().all(|a| a.status_code == Some(500)
                    && a.response_excerpt == "oops\u{fffd}\u{fffd}\u{fffd}[31m\u{fffd}"),
                "{recorded:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the poisoned endpoint's attempts were never recorded: {recorded:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Posts may still be in flight, or posted and not yet recorded: read both sides once
    // the receiver and the record agree, or at the deadline.
    let (plain_attempts, delivered) = loop {
        let delivered = plain.delivered();
        let attempts = app
            .client
            .webhook_deliveries(&plain_id, Some(100))
            .await
            .unwrap()
            .attempts;
        if attempts.len() == delivered.len() || std::time::Instant::now() >= deadline {
            break (attempts, delivered);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        plain.received().len(),
        delivered.len(),
        "nothing went twice to the plain receiver"
    );
    assert_eq!(plain_attempts.len(), delivered.len(), "each recorded once");
    app.stop().await;
}

/// Subscribes the receiver to every event; returns the secret and the endpoint's id.
async fn subscribe(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let created = app
        .client
        .create_webhook_endpoint(&CreateWebhookEndpointRequest {
            url: receiver.url(),
            events: None,
            description: Some("kitchen".into()),
            customer_id: None,
        })
        .await
        .expect("endpoint created");
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(created.endpoint.events, EventType::ALL);
    (created.secret, created.endpoint.id)
}

/// Places orders, cancels some at every stage, and checks what the subscriber got.
async fn events_reach_a_subscriber_signed_and_in_an_order_the_state_machine_allows(
    backend: Backend,
) {
    let app = TestApp::spawn(backend, &[("WEBHOOKS_ALLOW_HTTP", "true")]).await;
    let receiver = Receiver::start().await;
    receiver.script(&[Answer::Status(500), Answer::Status(502)]);
    let (secret, endpoint_id) = subscribe(&app, &receiver).await;
    let (secret, endpoint_id) = (secret.as_str(), endpoint_id.as_str());
    let mut ids = Vec::new();
    for i in 0..12 {
        let placed = app.place(&sample_order(&format!("customer_{i}"))).await;
        ids.push(placed.id);
        if i % 4 == 0 {
            app.client
                .cancel(placed.id, &order_api::CancelOrderRequest::default(), None)
                .await
                .expect("cancel");
        }
    }
    for id in &ids {
        app.wait_terminal(*id, Duration::from_secs(30)).await;
    }
    // Cancel two paid orders too: their refunds are events of their own.
    let mut refunded = Vec::new();
    for id in &ids {
        if refunded.len() < 2 && app.order(*id).await.status == order_api::OrderStatus::Confirmed {
            app.client
                .cancel(*id, &order_api::CancelOrderRequest::default(), None)
                .await
                .expect("cancel");
            refunded.push(*id);
        }
    }
    for id in &refunded {
        app.wait_terminal(*id, Duration::from_secs(30)).await;
    }
    let finals: HashMap<uuid::Uuid, order_api::OrderResponse> = {
        let mut finals = HashMap::new();
        for id in &ids {
            finals.insert(*id, app.order(*id).await);
        }
        finals
    };
    let expected_last = |order: &order_api::OrderResponse| match order.status {
        order_api::OrderStatus::Confirmed => EventType::Confirmed,
        order_api::OrderStatus::PaymentFailed => EventType::PaymentFailed,
        order_api::OrderStatus::Cancelled
            if order
                .refunds
                .iter()
                .any(|r| r.status == order_api::RefundStatus::Succeeded) =>
        {
            EventType::Refunded
        }
        _ => EventType::Cancelled,
    };
    receiver
        .wait_for(Duration::from_secs(30), "every order's last event", |_| {
            let Ok(sequences) = sequences(&receiver.delivered()) else {
                return false;
            };
            finals.values().all(|o| {
                sequences
                    .get(&o.id)
                    .and_then(|s| s.last())
                    .is_some_and(|last| *last == expected_last(o))
            })
        })
        .await;
    let delivered = receiver.delivered();
    let sequences = check_sequences(&delivered);
    for id in &refunded {
        assert_eq!(
            sequences[id][sequences[id].len() - 3..],
            [
                EventType::Cancelling,
                EventType::Cancelled,
                EventType::Refunded
            ],
            "{id}"
        );
    }
    for received in receiver.received() {
        assert!(verifies(secret, &received), "signed: {}", received.id);
        assert_eq!(
            received.headers.get("content-type").unwrap(),
            "application/json"
        );
    }
    // The last event of an order carries the order as the API shows it now.
    for r in delivered.values() {
        let event = r.event();
        if Some(&event.kind) == sequences[&event.data.id].last() {
            assert_eq!(event.data, finals[&event.data.id], "{}", event.id);
        }
    }
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.answered >= 500)
            .count(),
        2
    );
    let attempts = app
        .client
        .webhook_deliveries(endpoint_id, Some(100))
        .await
        .unwrap();
    assert!(
        attempts
            .attempts
            .iter()
            .any(|a| a.status_code == Some(500) && !a.delivered)
    );
    assert!(attempts.attempts.iter().filter(|a| a.delivered).count() >= 30);

    // Replay: the same event again, same id.
    let replayed = delivered.keys().next().unwrap().clone();
    let before = receiver.received().len();
    let queued = app
        .client
        .redeliver_event(&replayed)
        .await
        .expect("redeliver");
    assert_eq!(queued.deliveries, 1);
    receiver
        .wait_for(Duration::from_secs(10), "the replay", |r| {
            r.len() > before && r[before..].iter().any(|x| x.id == replayed)
        })
        .await;
    app.stop().await;
}

on_both_backends!(
    events_reach_a_subscriber_signed_and_in_an_order_the_state_machine_allows,
    a_receiver_answering_nul_bytes_fails_no_one_s_deliveries,
);

#[tokio::test]
async fn bad_endpoints_are_refused_naming_the_field_and_endpoints_are_managed() {
    let app = TestApp::spawn(Backend::Memory, &[("WEBHOOKS_ALLOW_HTTP", "false")]).await;
    let create = |url: &str, events: Option<Vec<&str>>| {
        let mut body = serde_json::json!({ "url": url });
        if let Some(events) = events {
            body["events"] = serde_json::json!(events);
        }
        let http = app.http.clone();
        let url = app.url("/api/v1/webhook-endpoints");
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    for (url, events, field) in [
        ("http://127.0.0.1:9/x", None, "url"),
        ("ftp://example.com", None, "url"),
        (
            "https://example.com/x",
            Some(vec!["order.shipped"]),
            "events[0]",
        ),
        ("https://example.com/x", Some(vec![]), "events"),
    ] {
        let (status, body) = create(url, events).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    let (status, body) = create("https://hooks.example.com/x", Some(vec!["order.confirmed"])).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
    let listed = app.client.list_webhook_endpoints().await.unwrap();
    assert_eq!(listed.endpoints.len(), 1);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains("whsec_"), "a listing never shows a secret");
    let disabled = app
        .client
        .update_webhook_endpoint(
            &id,
            &UpdateWebhookEndpointRequest {
                enabled: Some(false),
                ..UpdateWebhookEndpointRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(
        app.client.get_webhook_endpoint(&id).await.unwrap(),
        disabled
    );
    app.client.delete_webhook_endpoint(&id).await.unwrap();
    let (status, _) = refusal(app.client.get_webhook_endpoint(&id).await);
    assert_eq!(status, 404);
    let (status, _) = refusal(
        app.client
            .redeliver_event("evt_00000000000000000000000000000000")
            .await,
    );
    assert_eq!(status, 404);
    let (status, _) = refusal(app.client.webhook_deliveries("nope", None).await);
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn two_worker_processes_deliver_each_event_once() {
    let storage = Storage::create().await;
    let env = storage.env();
    let extra = [("WEBHOOKS_ALLOW_HTTP", "true")];
    let api = TestApp::spawn_role(Role::Serve, env.clone(), &extra).await;
    let workers = [
        TestApp::spawn_role(Role::Worker, env.clone(), &extra).await,
        TestApp::spawn_role(Role::Worker, env.clone(), &extra).await,
    ];
    let receiver = Receiver::start().await;
    subscribe(&api, &receiver).await;
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(api.place(&sample_order(&format!("c{i}"))).await.id);
    }
    for id in &ids {
        api.wait_terminal(*id, Duration::from_secs(60)).await;
    }
    receiver
        .wait_for(Duration::from_secs(30), "three events per order", |r| {
            r.len() >= ids.len() * 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = receiver.received();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        *per_id.entry(r.id.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_id.len(),
        ids.len() * 3,
        "created, payment_processing, and an end"
    );
    assert!(
        per_id.values().all(|n| *n == 1),
        "no event was delivered twice: {:?}",
        per_id.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    check_sequences(&receiver.delivered());
    for w in workers {
        w.stop().await;
    }
    api.stop().await;
    storage.drop().await;
}

#[tokio::test]
async fn an_endpoint_failing_everything_for_the_set_period_is_disabled_and_says_why() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::Status(500));
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (store, endpoint, dispatcher) = direct(
        &receiver,
        &clock,
        Duration::from_secs(2),
        DispatcherConfig {
            disable_after: Duration::from_secs(3600),
            ..DispatcherConfig::default()
        },
    )
    .await;
    store
        .insert(&placed_order("carol", clock.now()))
        .await
        .unwrap();
    dispatcher.run_once().await.unwrap();
    assert!(store.endpoint(endpoint.id).await.unwrap().unwrap().enabled);
    // The second order's event fails too, an hour after the first failure.
    clock.advance(Duration::from_secs(3600));
    store
        .insert(&placed_order("dave", clock.now()))
        .await
        .unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!(
        round.attempted, 1,
        "a failing endpoint is sent one delivery at a time: the first one's retry"
    );
    let disabled = store.endpoint(endpoint.id).await.unwrap().unwrap();
    assert!(
        !disabled.enabled,
        "failing for the whole period disables it"
    );
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("every delivery failed for 60 minutes (the last: status 500)")
    );
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        dispatcher.run_once().await.unwrap().attempted,
        0,
        "nothing goes to a disabled endpoint"
    );
}

#[tokio::test]
async fn https_endpoints_are_reached_over_tls_and_an_untrusted_certificate_is_a_failed_attempt() {
    use order_core::ports::WebhookRequest;
    use order_core::webhook::AttemptOutcome;
    let server = order_http::testing::TlsServer::start();
    let sender = HttpWebhookSender::new(Duration::from_secs(5), Network::Any).unwrap();
    let request = WebhookRequest {
        url: format!("{}/hooks", server.url()),
        id: "evt_tls".into(),
        timestamp: 0,
        signature: "v1,x".into(),
        body: b"{}".to_vec(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        let response = sender.send(&request).await;
        match &response.outcome {
            AttemptOutcome::Failed(e)
                if e.contains("could not connect") && !e.contains("certificate") =>
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the TLS server never listened: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => break response.outcome,
        }
    };
    // The handshake happened: the self-signed certificate is refused, as it must be.
    match outcome {
        AttemptOutcome::Failed(e) => assert!(
            e.to_lowercase().contains("certificate"),
            "a TLS handshake that rejects the certificate: {e}"
        ),
        other => panic!("an untrusted certificate must fail the attempt, got {other:?}"),
    }
}
