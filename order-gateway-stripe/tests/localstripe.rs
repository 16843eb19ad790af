//! The adapter against localstripe (behind the proxy that adds Stripe's idempotency):
//! the port's conformance suite under injected faults, and what Stripe's books show.

use std::time::Duration;

use order_core::PaymentMethod;
use order_core::payment::{DeclineReason, GatewayError};
use order_core::ports::PaymentGateway;
use order_core::testing::conformance::{self, GatewayBooks};
use order_core::testing::placed_order;
use order_gateway_stripe::StripeGateway;
use order_gateway_stripe::testing::{API_KEY, FakeStripe, Fault};

fn gateway(stripe: &FakeStripe) -> StripeGateway {
    StripeGateway::new(stripe.url(), API_KEY, Duration::from_secs(10)).expect("a gateway")
}

fn order_paying_with(method: Option<&str>) -> order_core::Order {
    let mut order = placed_order("c-stripe", chrono::Utc::now());
    order.payment_method = method.map(|m| PaymentMethod::parse(m).unwrap());
    order
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_passes_the_gateway_suite_with_lost_answers_rate_limits_and_api_errors() {
    let stripe = FakeStripe::start().await;
    stripe.inject(
        3,
        &[
            Fault::AnswerLost,
            Fault::RateLimited,
            Fault::ApiError,
            Fault::ApiErrorKept,
        ],
    );
    let gateway = gateway(&stripe);
    let handle = tokio::runtime::Handle::current();
    conformance::payment_gateway_paying_with(
        &gateway,
        &["pm_card_visa", "pm_card_chargeCustomerFail"],
        |key| {
            let books = tokio::task::block_in_place(|| handle.block_on(stripe.books(key.as_str())));
            let money = |cents: i64| order_core::Money::new(rust_decimal::Decimal::new(cents, 2));
            GatewayBooks {
                captures: books.captures,
                refunds: books.refunds,
                captured: money(books.amount_received).expect("Stripe's amounts are money"),
                refunded: money(books.amount_refunded).expect("Stripe's amounts are money"),
            }
        },
    )
    .await;
    assert!(stripe.requests() > 100, "the suite went through the proxy");
    let later = stripe.later_generations();
    assert!(
        !later.is_empty(),
        "kept server errors sent requests on under later keys"
    );
    eprintln!("requests sent on under a later key: {later:?}");
}

#[tokio::test]
async fn a_payment_is_one_confirmed_intent_for_the_orders_amount_in_cents() {
    let stripe = FakeStripe::start().await;
    let order = order_paying_with(Some("pm_card_visa"));
    let receipt = gateway(&stripe)
        .charge(&order.charge_request())
        .await
        .expect("pm_card_visa pays");
    let intent = stripe
        .get(&format!("/v1/payment_intents/{}", receipt.transaction_id))
        .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 3097, "30.97 in cents");
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["metadata"]["order_id"], order.id.to_string());
    assert_eq!(intent["metadata"]["customer_id"], "c-stripe");
    assert_eq!(
        stripe.made_under(&format!("order-{}", order.id)),
        vec![receipt.transaction_id]
    );
}

#[tokio::test]
async fn a_card_that_fails_is_declined_for_good_and_never_charged() {
    let stripe = FakeStripe::start().await;
    let gateway = gateway(&stripe);
    let order = order_paying_with(Some("pm_card_chargeCustomerFail"));
    let request = order.charge_request();
    assert_eq!(
        gateway.charge(&request).await,
        Err(GatewayError::Declined(DeclineReason::CardDeclined))
    );
    assert_eq!(
        gateway.charge(&request).await,
        Err(GatewayError::Declined(DeclineReason::CardDeclined)),
        "asked again, the same answer"
    );
    assert_eq!(
        stripe
            .books(request.idempotency_key.as_str())
            .await
            .captures,
        0
    );
}

#[tokio::test]
async fn an_order_without_a_known_payment_method_is_declined_as_invalid() {
    let stripe = FakeStripe::start().await;
    let gateway = gateway(&stripe);
    assert!(gateway.requires_payment_method());
    let none = order_paying_with(None);
    assert_eq!(
        gateway.charge(&none.charge_request()).await,
        Err(GatewayError::Declined(DeclineReason::InvalidPaymentMethod))
    );
    assert_eq!(stripe.requests(), 0, "nothing is sent without one");
    let unknown = order_paying_with(Some("pm_no_such_method"));
    assert_eq!(
        gateway.charge(&unknown.charge_request()).await,
        Err(GatewayError::Declined(DeclineReason::InvalidPaymentMethod))
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_a_fault_of_the_gateway_not_a_decline() {
    let stripe = FakeStripe::start().await;
    let gateway = StripeGateway::new(stripe.url(), "not_a_key", Duration::from_secs(5)).unwrap();
    let order = order_paying_with(Some("pm_card_visa"));
    assert!(matches!(
        gateway.charge(&order.charge_request()).await,
        Err(GatewayError::Unavailable(_))
    ));
}
