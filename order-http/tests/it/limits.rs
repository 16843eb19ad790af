//! Per-client rate limits over HTTP: the headers, the 429, `Retry-After` honoured, one
//! limit across two processes sharing Redis, and what happens when Redis is gone; what an
//! overloaded process answers (`overload`).

use std::time::Duration;

mod overload;
mod redeliveries;

use order_api::{ErrorBody, ErrorCode, paths};
use order_http::Role;
use order_http::testing::{
    Backend, PrivateRedis, Storage, TestApp, free_port, sample_json, sample_order,
};

/// Posts an order with `headers`; returns the status, `Retry-After`, `RateLimit-Policy` and
/// `RateLimit`, and the body.
async fn post(
    app: &TestApp,
    headers: &[(&str, &str)],
) -> (
    u16,
    Option<u64>,
    Option<String>,
    Option<String>,
    serde_json::Value,
) {
    let mut request = app
        .http
        .post(app.url(paths::ORDERS))
        .json(&sample_json("limited"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let retry_after = header("retry-after").map(|v| v.parse().unwrap());
    let (policy, state) = (header("ratelimit-policy"), header("ratelimit"));
    let status = response.status().as_u16();
    (
        status,
        retry_after,
        policy,
        state,
        response.json().await.unwrap(),
    )
}

async fn a_client_over_its_write_limit_gets_429_with_retry_after_and_can_come_back(
    backend: Backend,
) {
    let app = TestApp::spawn(
        backend,
        &[
            ("RATE_LIMIT_WRITES_PER_SECOND", "1"),
            ("RATE_LIMIT_WRITES_BURST", "3"),
        ],
    )
    .await;
    for remaining in [2, 1, 0] {
        let (status, _, policy, state, _) = post(&app, &[]).await;
        assert_eq!(status, 202);
        assert_eq!(policy.as_deref(), Some("\"writes\";q=3;w=3"));
        let state = state.expect("a RateLimit header");
        assert!(
            state.starts_with(&format!("\"writes\";r={remaining};t=")),
            "{state}"
        );
    }
    let (status, retry_after, policy, state, body) = post(&app, &[]).await;
    assert_eq!(status, 429);
    let body: ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(body.error, ErrorCode::RateLimited);
    assert!(body.message.contains("writes"), "{}", body.message);
    let retry_after = retry_after.expect("Retry-After");
    assert!(retry_after >= 1, "never 0");
    assert!(policy.is_some() && state.is_some_and(|s| s.contains("r=0")));

    // Reads have no limit set: no headers, no refusal.
    let read = app.http.get(app.url(paths::ORDERS)).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert!(read.headers().get("ratelimit").is_none());

    // A client that waits what it was told succeeds.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(post(&app, &[]).await.0, 202);
    app.stop().await;
}

on_both_backends!(a_client_over_its_write_limit_gets_429_with_retry_after_and_can_come_back);

#[tokio::test]
async fn two_processes_sharing_redis_enforce_one_limit_together() {
    let storage = Storage::create().await;
    let limits = [
        ("RATE_LIMIT_WRITES_PER_SECOND", "0.2"),
        ("RATE_LIMIT_WRITES_BURST", "10"),
    ];
    let a = TestApp::spawn_role(Role::Serve, storage.env(), &limits).await;
    let b = TestApp::spawn_role(Role::Serve, storage.env(), &limits).await;

    // 30 orders from one client, alternating between the processes, as fast as they go.
    let mut answers = Vec::new();
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        answers.push(post(app, &[]).await);
    }
    let accepted = answers.iter().filter(|a| a.0 == 202).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(
        (accepted, limited.len()),
        (10, 20),
        "one burst of 10 between both processes"
    );
    let retry_after = limited.last().unwrap().1.expect("Retry-After");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(post(&b, &[]).await.0, 202, "after Retry-After, from either");
    a.stop().await;
    b.stop().await;
    storage.drop().await;
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart_by_x_forwarded_for_and_not_otherwise() {
    let limits = [
        ("RATE_LIMIT_WRITES_PER_SECOND", "0.1"),
        ("RATE_LIMIT_WRITES_BURST", "1"),
    ];
    let trusting = TestApp::spawn(
        Backend::Memory,
        &[limits[0], limits[1], ("TRUST_FORWARDED_FOR", "true")],
    )
    .await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        let forwarded = [("x-forwarded-for", client)];
        assert_eq!(
            post(&trusting, &forwarded).await.0,
            202,
            "{client}: its own bucket"
        );
        assert_eq!(
            post(&trusting, &forwarded).await.0,
            429,
            "{client}: used up"
        );
    }
    // A client that writes its own X-Forwarded-For before the proxy's entry does not
    // choose its bucket: the entry one from the right is the proxy's.
    for spoofed in ["198.51.100.7", "198.51.100.8"] {
        let forwarded = [("x-forwarded-for", format!("{spoofed}, 203.0.113.1"))];
        let forwarded = [("x-forwarded-for", forwarded[0].1.as_str())];
        assert_eq!(
            post(&trusting, &forwarded).await.0,
            429,
            "{spoofed}: still 203.0.113.1's bucket"
        );
    }
    trusting.stop().await;

    // Without the setting the header is the client's own word: ignored.
    let plain = TestApp::spawn(Backend::Memory, &limits).await;
    assert_eq!(
        post(&plain, &[("x-forwarded-for", "203.0.113.1")]).await.0,
        202
    );
    assert_eq!(
        post(&plain, &[("x-forwarded-for", "203.0.113.2")]).await.0,
        429
    );
    plain.stop().await;
}

#[tokio::test]
async fn with_redis_gone_the_limiter_fails_open_or_closed_as_configured() {
    let port = free_port();
    let mut redis = PrivateRedis::start_on(port);
    let storage = Storage::create().await;
    let env: Vec<(String, String)> = storage
        .env()
        .into_iter()
        .filter(|(k, _)| k != "REDIS_URL")
        .chain([("REDIS_URL".to_owned(), format!("redis://127.0.0.1:{port}"))])
        .collect();
    let limits = [
        ("RATE_LIMIT_WRITES_PER_SECOND", "100"),
        ("RATE_LIMIT_WRITES_BURST", "100"),
    ];
    let open = TestApp::spawn_role(Role::Serve, env.clone(), &limits).await;
    let closed = TestApp::spawn_role(
        Role::Serve,
        env,
        &[limits[0], limits[1], ("RATE_LIMIT_FAIL_CLOSED", "true")],
    )
    .await;
    assert_eq!(post(&open, &[]).await.0, 202);
    assert_eq!(post(&closed, &[]).await.0, 202);

    redis.kill();
    // Orders are durable in PostgreSQL: failing open, they are still accepted (the
    // reconciler queues them once Redis is back); failing closed, they are refused.
    let placed = open
        .client
        .create(&sample_order("limiter-down"), None)
        .await;
    assert!(placed.is_ok(), "{placed:?}");
    let (status, retry_after, _, _, body) = post(&closed, &[]).await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    let body: ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(body.error, ErrorCode::ServiceUnavailable);
    open.stop().await;
    closed.stop().await;
    storage.drop().await;
}
