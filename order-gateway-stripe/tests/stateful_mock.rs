//! The adapter's wire conventions against npm's stripe-stateful-mock, a Stripe fake with
//! an idempotency layer and error objects of its own: how each answer is read and
//! classified, and what Stripe keeps under an idempotency key.

use std::time::Duration;

use order_core::payment::{DeclineReason, GatewayError};
use order_gateway_stripe::StripeGateway;
use order_gateway_stripe::stateful_mock::StatefulMock;
use order_gateway_stripe::testing::API_KEY;
use uuid::Uuid;

fn charge(source: &str) -> Vec<(&'static str, String)> {
    vec![
        ("amount", "3097".into()),
        ("currency", "usd".into()),
        ("source", source.into()),
    ]
}

/// A key no other test uses.
fn key() -> String {
    format!("order-{}", Uuid::now_v7())
}

/// A source token chain of its own (the mock keys chains by their text).
fn chain(tokens: &str) -> String {
    format!("{tokens}|{}", Uuid::now_v7().simple())
}

fn gateway(mock: &StatefulMock) -> StripeGateway {
    StripeGateway::new(mock.url(), API_KEY, Duration::from_secs(5)).expect("a gateway")
}

#[tokio::test]
async fn an_answer_is_replayed_under_its_key_and_a_changed_request_refused() {
    let mock = StatefulMock::start().await;
    let stripe = gateway(&mock);
    let key = key();
    let (first, replayed) = stripe
        .post_form("/v1/charges", &key, &charge("tok_visa"))
        .await
        .expect("charged");
    assert!(!replayed);
    let (again, replayed) = stripe
        .post_form("/v1/charges", &key, &charge("tok_visa"))
        .await
        .expect("replayed");
    assert!(replayed, "the second answer says it is a replay");
    assert_eq!(again["id"], first["id"], "one charge under one key");

    let mut changed = charge("tok_visa");
    changed[0].1 = "3098".into();
    let refused = stripe.post_form("/v1/charges", &key, &changed).await;
    assert!(
        matches!(&refused, Err(GatewayError::Timeout(said)) if said.contains("same parameters")),
        "a used key with other parameters says nothing of what the first request did: \
         ambiguous, never a decline ({refused:?})"
    );
}

#[tokio::test]
async fn a_card_error_is_a_final_decline_with_the_issuers_reason() {
    let mock = StatefulMock::start().await;
    let stripe = gateway(&mock);
    let declined = stripe
        .post_form(
            "/v1/charges",
            &key(),
            &charge("tok_chargeDeclinedInsufficientFunds"),
        )
        .await;
    assert_eq!(
        declined.map(|_| ()),
        Err(GatewayError::Declined(DeclineReason::InsufficientFunds))
    );
}

#[tokio::test]
async fn a_rate_limit_stores_nothing_so_the_same_key_goes_through_after_it() {
    let mock = StatefulMock::start().await;
    let stripe = gateway(&mock);
    let key = key();
    let source = chain("tok_429|tok_visa");
    let limited = stripe
        .post_form("/v1/charges", &key, &charge(&source))
        .await;
    assert!(
        matches!(limited, Err(GatewayError::Unavailable(_))),
        "429: nothing was done, retryable ({limited:?})"
    );
    let (paid, replayed) = stripe
        .post_form("/v1/charges", &key, &charge(&source))
        .await
        .expect("the retry under the same key is processed");
    assert!(!replayed, "a 429 is not kept under the key");
    assert_eq!(paid["status"], "succeeded");
}

#[tokio::test]
async fn a_server_error_kept_under_a_key_ends_it_and_the_next_generation_carries_the_request() {
    let mock = StatefulMock::start().await;
    let stripe = gateway(&mock);
    let key = key();
    let source = chain("tok_500|tok_visa");
    let failed = stripe
        .post_form("/v1/charges", &key, &charge(&source))
        .await;
    assert!(
        matches!(failed, Err(GatewayError::Timeout(_))),
        "500: Stripe may have done it; asked again under the same key ({failed:?})"
    );
    // Stripe keeps a 500 under its key like any answer: the same request under the same
    // key gets it again, however often, until the key expires.
    let raw = || async {
        reqwest::Client::new()
            .post(format!("{}/v1/charges", mock.url()))
            .basic_auth(API_KEY, Some(""))
            .header("Idempotency-Key", &key)
            .form(&charge(&source))
            .send()
            .await
            .expect("an answer")
    };
    for _ in 0..2 {
        let kept = raw().await;
        assert_eq!(kept.status(), 500);
        assert_eq!(kept.headers()["idempotent-replayed"], "true");
    }
    // The adapter reads the kept error as the end of that key, and goes on under the next
    // generation of it, where the chain's next token pays.
    let (paid, replayed) = stripe
        .post_form("/v1/charges", &key, &charge(&source))
        .await
        .expect("paid under the key's next generation");
    assert!(!replayed);
    assert_eq!(paid["status"], "succeeded");
    // Every later attempt walks the same keys and finds that charge.
    let (again, replayed) = stripe
        .post_form("/v1/charges", &key, &charge(&source))
        .await
        .expect("replayed");
    assert!(replayed);
    assert_eq!(again["id"], paid["id"], "one charge");
}
