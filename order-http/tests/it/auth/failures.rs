//! What a client meets before its key is taken: refused keys are limited per client
//! address (past the quota an address gets `429` for every request, a good key's too,
//! before any key it sends is looked up), and routes outside `/api/v1` need a key only
//! where they expose the service (`/metrics`).

use order_api::{ErrorCode, paths};
use order_http::testing::Backend;

use super::{Secured, call, with_last_char_changed};

async fn an_address_presenting_refused_keys_is_refused_before_any_lookup(backend: Backend) {
    let s = Secured::start_with(
        backend,
        &[
            ("RATE_LIMIT_AUTH_FAILURES_PER_SECOND", "0.01"),
            ("RATE_LIMIT_AUTH_FAILURES_BURST", "3"),
        ],
    )
    .await;
    let orders = paths::ORDERS;
    // A missing or malformed key costs no look-up: it does not count.
    for key in [None, Some("not-a-key")].into_iter().cycle().take(10) {
        let (status, code, _) = call(&s.app, "GET", orders, key, None).await;
        assert_eq!((status, code), (401, Some(ErrorCode::Unauthorized)));
    }
    let (status, _, _) = call(&s.app, "GET", orders, Some(&s.admin), None).await;
    assert_eq!(status, 200, "nothing counted yet");

    // Well-formed keys that are refused count: three pass, the fourth spends the quota.
    let guess = with_last_char_changed(&s.admin);
    for _ in 0..4 {
        let (status, code, _) = call(&s.app, "GET", orders, Some(&guess), None).await;
        assert_eq!((status, code), (401, Some(ErrorCode::Unauthorized)));
    }
    for key in [&guess, &s.admin] {
        let response = s
            .app
            .http
            .get(s.app.url(orders))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            429,
            "the address is refused, whatever key"
        );
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=100).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
    }
    // Routes outside /api/v1 stay open.
    let (status, _, _) = call(&s.app, "GET", paths::HEALTH, None, None).await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// With keys asked for, `/metrics` on the API's port needs `metrics:read`; the health
/// routes stay open for orchestrators.
async fn metrics_on_the_api_port_need_their_scope(backend: Backend) {
    use super::Scope;
    let s = Secured::start(backend).await;
    let (reader, _) = s.key(&[Scope::OrdersRead], None, None).await;
    let (scraper, _) = s.key(&[Scope::MetricsRead], None, None).await;
    let cases = [
        (None, 401),
        (Some(reader.as_str()), 403),
        (Some(scraper.as_str()), 200),
        (Some(s.admin.as_str()), 200),
    ];
    for (key, expected) in cases {
        let (status, _, _) = call(&s.app, "GET", paths::METRICS, key, None).await;
        assert_eq!(status, expected, "/metrics with {key:?}");
    }
    let response = s
        .app
        .http
        .get(s.app.url(paths::METRICS))
        .bearer_auth(&scraper)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("order_http_requests_total"), "{text}");
    for open in [paths::HEALTH, paths::READY] {
        let (status, _, _) = call(&s.app, "GET", open, None, None).await;
        assert_eq!(status, 200, "{open} needs no key");
    }
    s.stop().await;
}

on_both_backends!(
    an_address_presenting_refused_keys_is_refused_before_any_lookup,
    metrics_on_the_api_port_need_their_scope,
);
