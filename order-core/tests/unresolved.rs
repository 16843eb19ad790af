//! Charges whose outcome is unknown: the worker asks the processor before it charges
//! again, and the payment sweep hands it the orders the processor has decided.

use std::time::Duration;

use order_core::payment::{DeclineReason, GatewayError, PaymentState};
use order_core::policy::retry::RetryPolicy;
use order_core::ports::{MockPaymentGateway, OrderRepo};
use order_core::service::Outcome;
use order_core::testing::new_order;
use order_core::{OrderStatus, ProcessorConfig};

#[path = "support/world.rs"]
#[allow(dead_code, reason = "this binary uses a part of the shared world")]
mod world;
use world::World;

/// Retries a minute apart at first, so that a retry is never due by accident.
fn world(gateway: MockPaymentGateway) -> World<MockPaymentGateway> {
    let config = ProcessorConfig {
        retry: RetryPolicy::new(3, Duration::from_secs(60), Duration::from_secs(600)).unwrap(),
        ..world::config()
    };
    world::world_with(gateway, config)
}

#[tokio::test]
async fn a_charge_that_timed_out_is_settled_by_what_the_processor_says_not_charged_again() {
    // The charge was captured, but its answer was lost; the processor is then still busy
    // with it once, then says it succeeded.
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    gateway
        .expect_lookup()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(PaymentState::Processing));
    gateway
        .expect_lookup()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|r| {
            Ok(PaymentState::Captured {
                payment_id: "pi_found".into(),
                amount: r.charge.amount,
                refunded: order_core::Money::ZERO,
            })
        });
    gateway.expect_charge().never();
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    w.until_confirmed(
        10,
        Duration::from_secs(61),
        "a captured payment must not fail",
    )
    .await;

    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Confirmed);
    assert_eq!(stored.payment_id().as_deref(), Some("pi_found"));
    assert_eq!(
        stored.payment_attempts.len(),
        3,
        "timed out, processing, found"
    );
}

#[tokio::test]
async fn a_charge_that_timed_out_and_was_declined_fails_on_the_processors_word() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .times(1)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    gateway.expect_lookup().times(1).returning(|_| {
        Ok(PaymentState::Declined {
            reason: DeclineReason::InsufficientFunds,
        })
    });
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();
    for _ in 0..10 {
        match w.step().await {
            Some(Outcome::Failed) => break,
            Some(Outcome::Confirmed) => panic!("a declined payment confirmed"),
            _ => w.clock.advance(Duration::from_secs(61)),
        }
    }
    assert_eq!(w.status(order.id).await, OrderStatus::PaymentFailed);
}

#[tokio::test]
async fn the_sweep_hands_a_worker_at_once_a_charge_the_processor_decided() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .times(1)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    // The sweep's look-up, then the worker's.
    gateway.expect_lookup().times(2).returning(|r| {
        Ok(PaymentState::Captured {
            payment_id: "pi_swept".into(),
            amount: r.charge.amount,
            refunded: order_core::Money::ZERO,
        })
    });
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();
    assert!(matches!(
        w.step().await,
        Some(Outcome::RetryScheduled { .. })
    ));
    w.clock.advance(Duration::from_millis(1));
    assert_eq!(w.step().await, None, "the retry is not due yet");
    assert_eq!(
        w.orders
            .sweep_unresolved_charges(Duration::from_secs(60), 10)
            .await
            .unwrap(),
        0,
        "not before the grace is over"
    );

    assert_eq!(
        w.orders
            .sweep_unresolved_charges(Duration::ZERO, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(w.step().await, Some(Outcome::Confirmed), "due at once");
    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.payment_id().as_deref(), Some("pi_swept"));
    assert_eq!(
        w.orders
            .sweep_unresolved_charges(Duration::ZERO, 10)
            .await
            .unwrap(),
        0,
        "a settled order is not swept"
    );
}

#[tokio::test]
async fn the_sweep_leaves_a_charge_the_processor_is_still_processing_to_its_retry() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .times(1)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    gateway
        .expect_lookup()
        .times(1)
        .returning(|_| Ok(PaymentState::Processing));
    let w = world(gateway);
    w.orders.place(new_order("c1")).await.unwrap();
    assert!(matches!(
        w.step().await,
        Some(Outcome::RetryScheduled { .. })
    ));
    w.clock.advance(Duration::from_millis(1));
    assert_eq!(
        w.orders
            .sweep_unresolved_charges(Duration::ZERO, 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(w.step().await, None, "still waiting for its retry");
}
