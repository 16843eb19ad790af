//! The API through a real socket, on the embedded default and on PostgreSQL + Redis.

use std::time::Duration;

use crate::support::{Backend, TestApp, sample_order};
use serde_json::{Value, json};

async fn the_original_cases_hold(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let customer = format!("customer-{}", uuid::Uuid::now_v7().simple());

    // Create: 202, Location, exact total, request id echoed.
    let response = app.post_order(&sample_order(&customer)).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(response.headers().contains_key("x-request-id"));
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        created["total_amount"].to_string(),
        "30.97",
        "2 x 12.99 + 4.99, exact"
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["items"][0]["price"].to_string(), "12.99");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/orders/{id}"));

    // Get, and the order is paid in the background.
    let (status, fetched) = app.get_json(&location).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["id"], created["id"]);
    let paid = app.wait_terminal(&id, Duration::from_secs(10)).await;
    assert_eq!(paid["status"], "confirmed");
    let attempts = paid["payment_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], "succeeded");
    assert_eq!(attempts[0]["attempt_number"], 1);

    // Unknown and malformed ids.
    let (status, body) = app
        .get_json(&format!("/api/v1/orders/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app.get_json("/api/v1/orders/not-a-uuid").await;
    assert_eq!(status, 422);
    assert_eq!(body["fields"][0]["field"], "order_id");

    // Listing: customer filter, status filter (any case), pagination, newest first.
    for _ in 0..4 {
        assert_eq!(app.post_order(&sample_order(&customer)).await.status(), 202);
    }
    let (status, page) = app
        .get_json(&format!(
            "/api/v1/orders?customer_id={customer}&page=1&page_size=2"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["page_size"].as_u64()
        ),
        (Some(5), Some(1), Some(2))
    );
    let orders = page["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert!(
        orders[0]["created_at"].as_str() >= orders[1]["created_at"].as_str(),
        "newest first"
    );
    let (_, last) = app
        .get_json(&format!(
            "/api/v1/orders?customer_id={customer}&page=3&page_size=2"
        ))
        .await;
    assert_eq!(last["orders"].as_array().unwrap().len(), 1);
    assert_eq!(
        last["orders"][0]["id"].as_str(),
        Some(id.as_str()),
        "the oldest is last"
    );
    let (_, confirmed) = app
        .get_json(&format!(
            "/api/v1/orders?customer_id={customer}&status=CONFIRMED"
        ))
        .await;
    assert!(
        confirmed["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "confirmed")
    );
    assert!(confirmed["total"].as_u64().unwrap() >= 1);

    // Health.
    let (status, health) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        health,
        json!({"status": "healthy", "service": "order-service"})
    );
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    app.stop().await;
}

#[tokio::test]
async fn the_original_cases_hold_on_the_embedded_default() {
    the_original_cases_hold(Backend::Memory).await;
}

#[tokio::test]
async fn the_original_cases_hold_on_postgres_and_redis() {
    the_original_cases_hold(Backend::PostgresRedis).await;
}

fn with_item(field: &str, value: Value) -> Value {
    let mut order = sample_order("c");
    order["items"][0][field] = value;
    order
}

fn with_customer(value: Value) -> Value {
    let mut order = sample_order("c");
    order["customer_id"] = value;
    order
}

fn items(n: usize) -> Value {
    let item = json!({"item_id": "i", "item_name": "n", "quantity": 1, "price": 1});
    json!({"customer_id": "c", "items": vec![item; n]})
}

async fn invalid_orders_are_rejected_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let long = |n: usize| Value::String("x".repeat(n));
    let rejected: Vec<(&str, Value, &str)> = vec![
        ("empty customer", with_customer(json!("")), "customer_id"),
        ("blank customer", with_customer(json!("   ")), "customer_id"),
        (
            "101-character customer",
            with_customer(long(101)),
            "customer_id",
        ),
        ("numeric customer", with_customer(json!(42)), "customer_id"),
        (
            "no items",
            json!({"customer_id": "c", "items": []}),
            "items",
        ),
        (
            "items not a list",
            json!({"customer_id": "c", "items": "burger"}),
            "items",
        ),
        ("items missing", json!({"customer_id": "c"}), "items"),
        ("101 items", items(101), "items"),
        ("1,000 items", items(1000), "items"),
        (
            "empty item id",
            with_item("item_id", json!("")),
            "items[0].item_id",
        ),
        (
            "101-character item id",
            with_item("item_id", long(101)),
            "items[0].item_id",
        ),
        (
            "256-character item name",
            with_item("item_name", long(256)),
            "items[0].item_name",
        ),
        (
            "quantity 0",
            with_item("quantity", json!(0)),
            "items[0].quantity",
        ),
        (
            "quantity -1",
            with_item("quantity", json!(-1)),
            "items[0].quantity",
        ),
        (
            "quantity 10,001",
            with_item("quantity", json!(10_001)),
            "items[0].quantity",
        ),
        (
            "fractional quantity",
            with_item("quantity", json!(2.5)),
            "items[0].quantity",
        ),
        (
            "quantity as text",
            with_item("quantity", json!("2")),
            "items[0].quantity",
        ),
        ("price 0", with_item("price", json!(0)), "items[0].price"),
        (
            "negative price",
            with_item("price", json!(-5)),
            "items[0].price",
        ),
        (
            "price over 1,000,000",
            with_item("price", json!(1_000_000.01)),
            "items[0].price",
        ),
        (
            "price with 3 decimals",
            with_item("price", json!(12.999)),
            "items[0].price",
        ),
        (
            "price as a word",
            with_item("price", json!("cheap")),
            "items[0].price",
        ),
        (
            "price missing",
            json!({"customer_id": "c", "items": [{"item_id": "i", "item_name": "n", "quantity": 1}]}),
            "items[0].price",
        ),
        ("body not an object", json!([1, 2]), "body"),
    ];
    for (case, body, field) in rejected {
        let response = app.post_order(&body).await;
        assert_eq!(response.status(), 422, "{case}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "validation_failed", "{case}");
        let fields: Vec<&str> = error["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{case}: {field} not in {fields:?}");
    }

    let accepted: Vec<(&str, Value)> = vec![
        ("100-character customer", with_customer(long(100))),
        ("100 items", items(100)),
        ("100-character item id", with_item("item_id", long(100))),
        ("255-character item name", with_item("item_name", long(255))),
        ("quantity 10,000", with_item("quantity", json!(10_000))),
        ("price 0.01", with_item("price", json!(0.01))),
        ("price 1,000,000", with_item("price", json!(1_000_000))),
        ("price as exact text", with_item("price", json!("12.99"))),
    ];
    for (case, body) in accepted {
        assert_eq!(app.post_order(&body).await.status(), 202, "{case}");
    }

    let all_wrong = json!({"customer_id": "", "items": [{"item_id": "", "item_name": "ok", "quantity": 0, "price": 0.001}]});
    let error: Value = app.post_order(&all_wrong).await.json().await.unwrap();
    let fields: Vec<&str> = error["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "customer_id",
            "items[0].item_id",
            "items[0].quantity",
            "items[0].price"
        ],
        "every field, in order"
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_orders_are_rejected_naming_the_field_on_the_embedded_default() {
    invalid_orders_are_rejected_naming_the_field(Backend::Memory).await;
}

#[tokio::test]
async fn invalid_orders_are_rejected_naming_the_field_on_postgres_and_redis() {
    invalid_orders_are_rejected_naming_the_field(Backend::PostgresRedis).await;
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_get_400_413_and_415() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    let post = |body: reqwest::Body, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/orders"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let malformed = post("{\"customer_id\": ".into(), "application/json")
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"],
        "bad_request"
    );

    let text = post(sample_order("c").to_string().into(), "text/plain")
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(
        text.json::<Value>().await.unwrap()["error"],
        "unsupported_media_type"
    );

    let huge = format!(
        "{{\"customer_id\": \"{}\", \"items\": []}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let oversized = post(huge.into(), "application/json").await.unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(
        oversized.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_each_one() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("status=paid", "status"),
        ("customer_id=", "customer_id"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/orders?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["fields"][0]["field"], field, "{query}");
    }
    let (status, body) = app.get_json("/api/v1/orders?page=0&page_size=500").await;
    assert_eq!(status, 422);
    assert_eq!(body["fields"].as_array().unwrap().len(), 2, "both named");
    let (status, body) = app.get_json("/api/v1/orders").await;
    assert_eq!(
        (status, body["page"].as_u64(), body["page_size"].as_u64()),
        (200, Some(1), Some(20)),
        "defaults"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_docs_and_the_openapi_document_are_served_from_the_binary() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/api/v1/orders"]["post"].is_object());
    assert!(spec["paths"]["/api/v1/orders/{id}"]["get"].is_object());
    for path in ["/docs/", "/redoc"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.to_lowercase().contains("<html"), "{path} is a page");
    }
    let (status, info) = app.get_json("/").await;
    assert_eq!(
        (status, info["service"].as_str()),
        (200, Some("order-service"))
    );
    let (status, body) = app.get_json("/no/such/route").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    app.stop().await;
}

async fn an_idempotency_key_makes_retries_safe(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let customer = format!("idem-{}", uuid::Uuid::now_v7().simple());
    let key = format!("key-{}", uuid::Uuid::now_v7().simple());
    let post = |body: Value, key: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/orders"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    let first = post(sample_order(&customer), key.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.unwrap();
    let again = post(sample_order(&customer), key.clone()).await;
    assert_eq!(again.status(), 202, "a retry is accepted");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "the same order, not a second one");

    let mut different = sample_order(&customer);
    different["items"][0]["quantity"] = json!(3);
    let reused = post(different, key.clone()).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"],
        "idempotency_key_reused"
    );

    let bad = post(sample_order(&customer), "k".repeat(300)).await;
    assert_eq!(bad.status(), 400);

    // Many identical requests at once: one order; each answer is that order or 409.
    let key = format!("burst-{}", uuid::Uuid::now_v7().simple());
    let burst =
        futures::future::join_all((0..20).map(|_| post(sample_order(&customer), key.clone())))
            .await;
    let mut ids = std::collections::HashSet::new();
    let mut conflicts = 0;
    for response in burst {
        match response.status().as_u16() {
            202 => {
                ids.insert(
                    response.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            409 => {
                assert!(response.headers().contains_key("retry-after"));
                conflicts += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "concurrent identical requests place one order ({conflicts} answered 409)"
    );
    let (_, listed) = app
        .get_json(&format!("/api/v1/orders?customer_id={customer}"))
        .await;
    assert_eq!(listed["total"], 2, "one order per key");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_retries_safe_on_the_embedded_default() {
    an_idempotency_key_makes_retries_safe(Backend::Memory).await;
}

#[tokio::test]
async fn an_idempotency_key_makes_retries_safe_on_postgres_and_redis() {
    an_idempotency_key_makes_retries_safe(Backend::PostgresRedis).await;
}
