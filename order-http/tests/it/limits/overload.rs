//! Overload over HTTP: once more requests arrive than start, newcomers are refused at once
//! with `503` and `Retry-After`, those that waited long are refused too, health still
//! answers, and every request that started is carried out.

use std::time::{Duration, Instant};

use order_api::{ListOrdersQuery, paths};
use order_http::Role;
use order_http::testing::{Storage, TestApp, sample_json};

/// What one request got: its status, `Retry-After`, and how long the answer took.
type Answer = (u16, Option<u64>, Duration);

fn post(app: &TestApp, customer: &str) -> tokio::task::JoinHandle<Answer> {
    let request = app
        .http
        .post(app.url(paths::ORDERS))
        .json(&sample_json(customer));
    tokio::spawn(async move {
        let asked = Instant::now();
        let response = request.send().await.expect("every request is answered");
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (response.status().as_u16(), retry_after, asked.elapsed())
    })
}

#[tokio::test]
async fn an_overloaded_process_refuses_newcomers_at_once_and_serves_what_started() {
    let storage = Storage::create().await;
    // 128 execute at first (the initial limit) while the orders table is locked; the rest
    // wait. Three quarters of a ceiling of 200 held, waiting far past the target, while
    // more keep arriving than start: overload.
    let app = TestApp::spawn_role(
        Role::All,
        storage.env(),
        &[("MAX_REQUESTS_IN_FLIGHT", "200")],
    )
    .await;
    let customer = format!("overloaded-{}", uuid::Uuid::now_v7().simple());
    let pool = storage.schema.repo().pool().clone();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let first: Vec<_> = (0..160).map(|_| post(&app, &customer)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Then 200 a second for a second, as a flood keeps coming.
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(post(&app, &customer));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let health = app.http.get(app.url(paths::HEALTH)).send().await.unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "health answers during the overload"
    );
    let mut refused_at_once = 0;
    for request in &mut flood {
        let (status, retry_after, took) = request.await.unwrap();
        if status == 503 && took < Duration::from_secs(1) {
            let retry_after = retry_after.expect("a 503 for overload says when to come back");
            assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
            refused_at_once += 1;
        }
    }
    assert!(
        refused_at_once >= 180,
        "newcomers of a flood are refused at once: {refused_at_once} of 200"
    );

    lock.rollback().await.unwrap();
    let mut placed = 0;
    for request in first {
        match request.await.unwrap() {
            (202, ..) => placed += 1,
            (503, Some(_), _) => {}
            other => panic!("a request is carried out or refused, nothing else: {other:?}"),
        }
    }
    assert!(
        placed >= 128,
        "every request that started is carried out: {placed}"
    );
    let query = ListOrdersQuery {
        customer_id: Some(customer),
        page_size: Some(1),
        ..ListOrdersQuery::default()
    };
    assert_eq!(app.client.list(&query).await.unwrap().total, placed);
    app.stop().await;
}
