//! The API through a real socket, on the embedded default and on PostgreSQL + Redis.

use std::time::Duration;

use order_api::health::{HealthResponse, Readiness};
use order_api::orders::{AttemptStatus, ListOrdersQuery, OrderStatus};
use order_api::{ErrorBody, ErrorCode, headers, paths};
use order_http::Role;
use order_http::testing::{Backend, Storage, TestApp, sample_json, sample_order};
use serde_json::{Value, json};

mod documents;

async fn an_order_is_accepted_with_its_location_and_exact_total_then_paid(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let customer = format!("customer-{}", uuid::Uuid::now_v7().simple());

    let response = app.post_order(&sample_order(&customer)).await;

    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key(headers::REQUEST_ID));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: order_api::OrderResponse = response.json().await.unwrap();
    assert_eq!(
        created.total_amount.to_string(),
        "30.97",
        "2 x 12.99 + 4.99, exact"
    );
    assert_eq!(created.status, OrderStatus::Pending);
    assert_eq!(created.items[0].price.to_string(), "12.99");
    assert_eq!(location, paths::order(created.id));
    assert_eq!(app.order(created.id).await.id, created.id);
    let paid = app.wait_terminal(created.id, Duration::from_secs(10)).await;
    assert_eq!(paid.status, OrderStatus::Confirmed);
    assert_eq!(paid.payment_attempts.len(), 1);
    assert_eq!(paid.payment_attempts[0].status, AttemptStatus::Succeeded);
    assert_eq!(paid.payment_attempts[0].attempt_number, 1);
    app.stop().await;
}

async fn unknown_and_malformed_order_ids_are_404_and_422(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;

    let (status, body) = app.error_at(&paths::order(uuid::Uuid::now_v7())).await;
    assert_eq!((status, body.error), (404, ErrorCode::NotFound));
    let (status, body) = app.error_at("/api/v1/orders/not-a-uuid").await;
    assert_eq!(status, 422);
    assert_eq!(body.fields[0].field, "order_id");
    app.stop().await;
}

async fn listing_filters_by_customer_and_status_and_pages_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let customer = format!("customer-{}", uuid::Uuid::now_v7().simple());
    let oldest = app.place(&sample_order(&customer)).await;
    for _ in 0..4 {
        app.place(&sample_order(&customer)).await;
    }
    app.wait_terminal(oldest.id, Duration::from_secs(10)).await;
    let query = |page| ListOrdersQuery {
        customer_id: Some(customer.clone()),
        status: None,
        page: Some(page),
        page_size: Some(2),
        cursor: None,
    };

    let page = app.client.list(&query(1)).await.unwrap();
    let last = app.client.list(&query(3)).await.unwrap();
    let confirmed: order_api::OrderListResponse = app
        .http
        .get(app.url(&format!(
            "{}?customer_id={customer}&status=CONFIRMED",
            paths::ORDERS
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!((page.total, page.page, page.page_size), (5, 1, 2));
    assert_eq!(page.orders.len(), 2);
    assert!(
        page.orders[0].created_at >= page.orders[1].created_at,
        "newest first"
    );
    assert_eq!(last.orders.len(), 1);
    assert_eq!(last.orders[0].id, oldest.id, "the oldest is last");
    assert!(
        confirmed
            .orders
            .iter()
            .all(|o| o.status == OrderStatus::Confirmed)
    );
    assert!(confirmed.total >= 1, "the status filter reads any case");

    // Page after page by the `Link` header, then by `next_cursor`: the numbered pages'
    // orders, and the last page says it is the last.
    let response = app
        .http
        .get(app.url(&format!(
            "{}?customer_id={customer}&page_size=2",
            paths::ORDERS
        )))
        .send()
        .await
        .unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    let first: order_api::OrderListResponse = response.json().await.unwrap();
    // Statuses move on meanwhile: pages are compared by their orders' ids.
    let ids = |orders: &[order_api::OrderResponse]| orders.iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(&first.orders), ids(&page.orders));
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link: {link}"));
    let second: order_api::OrderListResponse = app
        .http
        .get(app.url(next))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((second.page, second.total), (2, 5));
    assert_eq!(
        ids(&second.orders),
        ids(&app.client.list(&query(2)).await.unwrap().orders)
    );
    let third = app
        .client
        .list(&ListOrdersQuery {
            page: None,
            cursor: second.next_cursor.clone(),
            ..query(1)
        })
        .await
        .unwrap();
    assert_eq!((third.page, ids(&third.orders)), (3, ids(&last.orders)));
    assert_eq!(third.next_cursor, None, "the last page");
    // Any 56 hex digits are a place in the listing, the farthest ones too.
    for far in ["ffffffff8000000000000000", "000000007fffffffffffffff"] {
        let url = format!("{}?cursor={far}{}", paths::ORDERS, "0".repeat(32));
        let response = app.http.get(app.url(&url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    let cursor = second.next_cursor.unwrap();
    for (query, field) in [
        (format!("page=0&cursor={cursor}"), "page"),
        ("cursor=00ff".to_owned(), "cursor"),
        (format!("cursor={}", cursor.to_uppercase()), "cursor"),
        ("page=1001".to_owned(), "page"),
    ] {
        let response = app
            .http
            .get(app.url(&format!("{}?{query}", paths::ORDERS)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{query}");
        let body: order_api::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.fields[0].field, field, "{query}");
    }
    app.stop().await;
}

async fn liveness_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;

    assert_eq!(
        app.client.health().await.unwrap(),
        HealthResponse::healthy()
    );
    assert_eq!(app.client.ready().await.unwrap().status, Readiness::Ready);
    app.stop().await;
}

on_both_backends!(
    an_order_is_accepted_with_its_location_and_exact_total_then_paid,
    unknown_and_malformed_order_ids_are_404_and_422,
    listing_filters_by_customer_and_status_and_pages_newest_first,
    liveness_and_readiness_answer,
    invalid_orders_are_rejected_naming_the_field,
    an_idempotency_key_makes_retries_safe,
);

fn with_item(field: &str, value: Value) -> Value {
    let mut order = sample_json("c");
    order["items"][0][field] = value;
    order
}

fn with_customer(value: Value) -> Value {
    let mut order = sample_json("c");
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
        let (status, error) = app.refused(&body).await;
        assert_eq!(status, 422, "{case}");
        assert_eq!(error.error, ErrorCode::ValidationFailed, "{case}");
        let fields: Vec<&str> = error.fields.iter().map(|f| f.field.as_str()).collect();
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
        ("quantity written 2.0", with_item("quantity", json!(2.0))),
    ];
    for (case, body) in accepted {
        assert_eq!(app.post_order(&body).await.status(), 202, "{case}");
    }

    let all_wrong = json!({"customer_id": "", "items": [{"item_id": "", "item_name": "ok", "quantity": 0, "price": 0.001}]});
    let (_, error) = app.refused(&all_wrong).await;
    let fields: Vec<&str> = error.fields.iter().map(|f| f.field.as_str()).collect();
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
async fn malformed_oversized_and_non_json_bodies_get_400_413_and_415() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    let post = |body: reqwest::Body, content_type: &'static str| {
        app.http
            .post(app.url(paths::ORDERS))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let malformed = post("{\"customer_id\": ".into(), "application/json")
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<ErrorBody>().await.unwrap().error,
        ErrorCode::BadRequest
    );

    let text = post(sample_json("c").to_string().into(), "text/plain")
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(
        text.json::<ErrorBody>().await.unwrap().error,
        ErrorCode::UnsupportedMediaType
    );

    let huge = format!(
        "{{\"customer_id\": \"{}\", \"items\": []}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let oversized = post(huge.into(), "application/json").await.unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(
        oversized.json::<ErrorBody>().await.unwrap().error,
        ErrorCode::PayloadTooLarge
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_each_one() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=2147483648", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("status=paid", "status"),
        ("customer_id=", "customer_id"),
    ] {
        let (status, body) = app.error_at(&format!("{}?{query}", paths::ORDERS)).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body.fields[0].field, field, "{query}");
    }
    let (status, body) = app
        .error_at(&format!("{}?page=0&page_size=500", paths::ORDERS))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body.fields.len(), 2, "both named");
    let page = app.client.list(&ListOrdersQuery::default()).await.unwrap();
    assert_eq!((page.page, page.page_size), (1, 20), "defaults");
    app.stop().await;
}

async fn an_idempotency_key_makes_retries_safe(backend: Backend) {
    let app = TestApp::spawn(backend, &[]).await;
    let customer = format!("idem-{}", uuid::Uuid::now_v7().simple());
    let key = format!("key-{}", uuid::Uuid::now_v7().simple());

    let first = app
        .place_with_key(&sample_order(&customer), &key)
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = app
        .place_with_key(&sample_order(&customer), &key)
        .await
        .unwrap();
    assert!(again.replayed, "a retry is accepted and marked replayed");
    assert_eq!(
        again.order.id, first.order.id,
        "the same order, not a second one"
    );

    let mut different = sample_order(&customer);
    different.items[0].quantity = 3;
    let (status, body) = order_http::testing::refusal(app.place_with_key(&different, &key).await);
    assert_eq!((status, body.error), (422, ErrorCode::IdempotencyKeyReused));

    let (status, _) = order_http::testing::refusal(
        app.place_with_key(&sample_order(&customer), &"k".repeat(300))
            .await,
    );
    assert_eq!(status, 400);

    // Many identical requests at once: one order; each answer is that order or 409.
    let key = format!("burst-{}", uuid::Uuid::now_v7().simple());
    let order = sample_order(&customer);
    let burst = futures::future::join_all((0..20).map(|_| app.place_with_key(&order, &key))).await;
    let mut ids = std::collections::HashSet::new();
    let mut conflicts = 0;
    for answer in burst {
        match answer {
            Ok(placed) => {
                ids.insert(placed.order.id);
            }
            Err(e) if e.status() == Some(409) => {
                assert_eq!(e.code(), Some(ErrorCode::RequestInFlight));
                assert!(e.retry_after().is_some(), "a 409 says when to retry");
                conflicts += 1;
            }
            Err(e) => panic!("unexpected answer {e:?}"),
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "concurrent identical requests place one order ({conflicts} answered 409)"
    );
    let listed = app
        .client
        .list(&ListOrdersQuery {
            customer_id: Some(customer),
            ..ListOrdersQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.total, 2, "one order per key");
    app.stop().await;
}

/// Sends `POST /api/v1/orders` over a raw connection and hangs up `after` it sent the
/// request, without reading the answer.
async fn post_and_hang_up(addr: &str, body: &[u8], after: Duration) {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        paths::ORDERS,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::sleep(after).await;
    drop(stream);
}

#[tokio::test]
async fn orders_whose_clients_hung_up_are_paid_at_once_not_left_to_the_reconciler() {
    // The reconciler would find a stranded order only after its 30 s grace.
    let app = TestApp::spawn(Backend::PostgresRedis, &[]).await;
    let customer = format!("hang-up-{}", uuid::Uuid::now_v7().simple());
    let body = serde_json::to_vec(&sample_order(&customer)).unwrap();
    let addr = app.base.trim_start_matches("http://").to_owned();

    // Hang-ups spread over the first few milliseconds land before, during and after the
    // commit, and between the commit and the enqueue. All at once, as mobile clients do.
    futures::future::join_all(
        (0..200u64).map(|i| post_and_hang_up(&addr, &body, Duration::from_micros(i * 150))),
    )
    .await;

    let count = |status: Option<OrderStatus>| {
        let query = ListOrdersQuery {
            customer_id: Some(customer.clone()),
            status,
            page_size: Some(1),
            ..ListOrdersQuery::default()
        };
        let client = &app.client;
        async move { client.list(&query).await.unwrap().total }
    };
    let start = std::time::Instant::now();
    loop {
        // Every request arrived whole: each is work the client started, finished for it.
        let (stored, confirmed) = (count(None).await, count(Some(OrderStatus::Confirmed)).await);
        if stored == 200 && confirmed == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{stored} of 200 orders stored, {confirmed} paid"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_whose_client_hung_up_keeps_its_place_in_flight_until_its_work_is_done() {
    let storage = Storage::create().await;
    let app =
        TestApp::spawn_role(Role::All, storage.env(), &[("MAX_REQUESTS_IN_FLIGHT", "1")]).await;
    let pool = storage.schema.repo().pool().clone();
    let customer = format!("hung-up-held-{}", uuid::Uuid::now_v7().simple());
    let body = serde_json::to_vec(&sample_order(&customer)).unwrap();
    let addr = app.base.trim_start_matches("http://").to_owned();

    // The orders table held: an insert waits for it, reads do not.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    post_and_hang_up(&addr, &body, Duration::from_millis(300)).await;

    // The client is gone but its order is still being stored: the one place is taken.
    let (status, refused) = app.error_at(paths::ORDERS).await;
    assert_eq!((status, refused.error), (503, ErrorCode::Overloaded));

    lock.rollback().await.unwrap();
    let start = std::time::Instant::now();
    let listed = loop {
        let query = ListOrdersQuery {
            customer_id: Some(customer.clone()),
            ..ListOrdersQuery::default()
        };
        match app.client.list(&query).await {
            Ok(listed) if listed.total == 1 => break listed,
            _ => assert!(
                start.elapsed() < Duration::from_secs(5),
                "the place was not given back once the work finished"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let order = app
        .wait_terminal(listed.orders[0].id, Duration::from_secs(10))
        .await;
    assert_eq!(order.status, OrderStatus::Confirmed);
    app.stop().await;
    storage.drop().await;
}
