//! A receiver that hangs: it holds at most its endpoint's share of posts until they time
//! out, and every other endpoint's deliveries go on meanwhile.

use std::time::{Duration, Instant};

use order_api::webhooks::EventType;
use order_http::testing::{Answer, Backend, Receiver, TestApp, sample_order};

use super::subscribe;

/// Orders whose terminal event (`order.confirmed` or `order.payment_failed`) the receiver
/// got and accepted.
fn settled_orders(receiver: &Receiver) -> usize {
    receiver
        .delivered()
        .values()
        .map(order_http::testing::Received::event)
        .filter(|e| matches!(e.kind, EventType::Confirmed | EventType::PaymentFailed))
        .map(|e| e.data.id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

async fn a_receiver_that_hangs_holds_its_share_of_posts_and_no_one_else_s(backend: Backend) {
    const ORDERS: usize = 40;
    let (hanging, plain) = (Receiver::start().await, Receiver::start().await);
    hanging.otherwise(Answer::Hang(Duration::from_secs(60)));
    let app = TestApp::spawn(
        backend,
        &[
            ("WEBHOOKS_ALLOW_HTTP", "true"),
            ("WEBHOOK_TIMEOUT_SECONDS", "8"),
            ("WEBHOOK_ENDPOINT_CONCURRENCY", "3"),
        ],
    )
    .await;
    subscribe(&app, &hanging).await;
    subscribe(&app, &plain).await;
    let started = Instant::now();
    for i in 0..ORDERS {
        app.place(&sample_order(&format!("hang-{i}"))).await;
    }

    // Every event of every order reaches the plain receiver long before the hanging one's
    // first post times out: no loop waits for those posts.
    while settled_orders(&plain) < ORDERS && started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    assert_eq!(
        settled_orders(&plain),
        ORDERS,
        "every order's terminal event reached the plain receiver within {took:?} ({} requests, {} to the hanging one)",
        plain.received().len(),
        hanging.received().len()
    );
    assert!(
        took < Duration::from_secs(6),
        "the plain receiver got every order's events in {took:?}"
    );
    let at_once = hanging.most_at_once();
    assert!(
        (1..=3).contains(&at_once),
        "the hanging receiver was sent {at_once} requests at once, its share is 3"
    );
    assert!(
        hanging.received().len() <= 3,
        "nothing more is posted to it while its share hangs: {}",
        hanging.received().len()
    );
    app.stop().await;
}

on_both_backends!(a_receiver_that_hangs_holds_its_share_of_posts_and_no_one_else_s);
