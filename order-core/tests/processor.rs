//! The worker's step: breaker, retries, deferral, leases and dead letters, on a controlled
//! clock with in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use order_core::memory::{ManualClock, MemoryOrderRepo, MemoryQueue};
use order_core::payment::{ChargeReceipt, DeclineReason, GatewayError, PaymentState};
use order_core::policy::circuit_breaker::BreakerState;
use order_core::ports::{MockPaymentGateway, OrderRepo, PaymentGateway, PaymentQueue};
use order_core::service::Outcome;
use order_core::testing::new_order;
use order_core::{Clock, OrderService, OrderStatus, PaymentProcessor, WorkerId};

#[path = "support/world.rs"]
mod world;
use world::{config, ok_receipt, world, world_with};

#[tokio::test]
async fn a_placed_order_is_confirmed_with_one_recorded_attempt() {
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| ok_receipt());
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    assert_eq!(w.step().await, Some(Outcome::Confirmed));

    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Confirmed);
    assert_eq!(stored.payment_attempts.len(), 1);
    assert!(stored.payment_attempts[0].outcome.is_success());
    assert_eq!(w.queue.pending(), 0, "the job was acked");
}

#[tokio::test]
async fn a_decline_fails_the_order_at_once() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .times(1)
        .returning(|_| Err(GatewayError::Declined(DeclineReason::InsufficientFunds)));
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    assert_eq!(w.step().await, Some(Outcome::Failed));
    assert_eq!(w.status(order.id).await, OrderStatus::PaymentFailed);
}

#[tokio::test]
async fn unprocessed_charges_are_retried_up_to_the_limit_with_the_same_key() {
    let mut gateway = MockPaymentGateway::new();
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = keys.clone();
    gateway.expect_charge().times(3).returning(move |req| {
        seen.lock().unwrap().push(req.idempotency_key.clone());
        Err(GatewayError::Unavailable("502".into()))
    });
    // A breaker threshold above the attempt limit: a gateway failing for this order only.
    let mut settings = config();
    settings.breaker.failure_threshold = 10;
    let w = world_with(gateway, settings);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    for _ in 0..2 {
        assert!(matches!(
            w.step().await,
            Some(Outcome::RetryScheduled { .. })
        ));
        assert_eq!(w.step().await, None, "the retry waits for its backoff");
        w.clock.advance(Duration::from_secs(5));
    }
    assert_eq!(w.step().await, Some(Outcome::Failed));

    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::PaymentFailed);
    let numbers: Vec<u32> = stored
        .payment_attempts
        .iter()
        .map(|a| a.number.get())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let keys = keys.lock().unwrap();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every attempt uses one idempotency key"
    );
}

#[tokio::test]
async fn an_open_breaker_defers_orders_without_calling_the_gateway_and_they_confirm_after() {
    // Three failures open the breaker (threshold 3); then the gateway must not be called.
    let mut failing = MockPaymentGateway::new();
    failing
        .expect_charge()
        .times(3)
        .returning(|_| Err(GatewayError::Unavailable("down".into())));
    let w = world(failing);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            w.orders
                .place(new_order(&format!("c{i}")))
                .await
                .unwrap()
                .id,
        );
        assert!(matches!(
            w.step().await,
            Some(Outcome::RetryScheduled { .. })
        ));
    }
    assert!(matches!(
        w.worker.breaker().state(),
        BreakerState::Open { .. }
    ));

    let late = w.orders.place(new_order("late")).await.unwrap();
    let outcome = w.step().await;
    assert!(
        matches!(outcome, Some(Outcome::Deferred { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        w.status(late.id).await,
        OrderStatus::PaymentProcessing,
        "deferred, not failed"
    );
    assert!(
        w.repo
            .get(late.id)
            .await
            .unwrap()
            .unwrap()
            .payment_attempts
            .is_empty(),
        "no attempt burned"
    );
    // Every retry comes due while the breaker is still open: all deferred, none charged.
    w.clock.advance(Duration::from_secs(10));
    while let Some(outcome) = w.step().await {
        assert!(matches!(outcome, Outcome::Deferred { .. }), "{outcome:?}");
    }
    // The mock's `times(3)` fails the test on drop if the open breaker let a call through.
}

#[tokio::test]
async fn failures_while_the_breaker_opens_wait_for_it_instead_of_failing_the_order() {
    // Threshold 3 and 3 attempts: the third failure opens the breaker, so the order waits
    // for the gateway to recover rather than fail because of an outage.
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_charge()
        .times(3)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Unavailable("down".into())));
    gateway
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| ok_receipt());
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    w.until_confirmed(20, Duration::from_secs(5), "an outage failed the order")
        .await;
    assert_eq!(w.status(order.id).await, OrderStatus::Confirmed);
}

#[tokio::test]
async fn half_open_admits_one_probe_and_a_success_closes_the_breaker() {
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_charge()
        .times(3)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Unavailable("down".into())));
    gateway
        .expect_charge()
        .times(4)
        .in_sequence(&mut seq)
        .returning(|_| ok_receipt());
    let w = world(gateway);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            w.orders
                .place(new_order(&format!("c{i}")))
                .await
                .unwrap()
                .id,
        );
        w.step().await;
    }
    assert!(matches!(
        w.worker.breaker().state(),
        BreakerState::Open { .. }
    ));
    ids.push(w.orders.place(new_order("c3")).await.unwrap().id);

    w.clock.advance(Duration::from_secs(61));
    let mut confirmed = 0;
    while let Some(outcome) = w.step().await {
        if outcome == Outcome::Confirmed {
            confirmed += 1;
        }
    }
    w.clock.advance(Duration::from_secs(5));
    while let Some(outcome) = w.step().await {
        if outcome == Outcome::Confirmed {
            confirmed += 1;
        }
    }
    assert_eq!(confirmed, 4);
    for id in ids {
        assert_eq!(w.status(id).await, OrderStatus::Confirmed);
    }
    assert_eq!(
        w.worker.breaker().state(),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
}

#[tokio::test]
async fn an_ambiguous_final_attempt_is_retried_until_the_gateway_tells() {
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_charge()
        .times(4)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    gateway
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| ok_receipt());
    // Before each charge after a time-out the worker asks; nothing is known yet.
    gateway
        .expect_lookup()
        .times(4)
        .returning(|_| Ok(PaymentState::NotCharged));
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    w.until_confirmed(
        20,
        Duration::from_secs(61),
        "an order whose charge may have happened must not fail",
    )
    .await;

    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Confirmed);
    assert_eq!(
        stored.payment_attempts.len(),
        5,
        "past the 3-attempt limit, until the outcome is known"
    );
}

#[tokio::test]
async fn a_clean_failure_after_a_timeout_does_not_fail_an_order_that_may_be_paid() {
    // Attempt 1 times out (the charge may have happened), then the gateway is down: the
    // order must wait for an answer rather than end payment_failed.
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Timeout("no answer".into())));
    gateway
        .expect_charge()
        .times(4)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Unavailable("down".into())));
    gateway
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| ok_receipt());
    gateway
        .expect_lookup()
        .times(5)
        .returning(|_| Ok(PaymentState::NotCharged));
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();

    w.until_confirmed(
        30,
        Duration::from_secs(61),
        "failed an order whose first charge may have been captured",
    )
    .await;
    assert_eq!(w.status(order.id).await, OrderStatus::Confirmed);
}

#[tokio::test]
async fn jobs_of_a_crashed_worker_are_reclaimed_after_the_lease_and_charged_once() {
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| ok_receipt());
    // The order's outcome is unknown once its worker died: the processor is asked first.
    gateway
        .expect_lookup()
        .times(1)
        .returning(|_| Ok(PaymentState::NotCharged));
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();
    // A worker takes the job and the order, then dies without acking.
    let crashed = w.queue.consumer("crashed");
    let job = crashed.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(job.len(), 1);
    w.repo
        .claim(
            order.id,
            &WorkerId::parse("crashed").unwrap(),
            w.clock.now(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    assert!(
        w.worker.reclaim(10).await.unwrap().is_empty(),
        "not before the lease is over"
    );
    w.clock.advance(Duration::from_secs(31));
    let reclaimed = w.worker.reclaim(10).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(
        w.worker.handle(&reclaimed[0]).await.unwrap(),
        Outcome::Confirmed
    );
    assert_eq!(w.status(order.id).await, OrderStatus::Confirmed);
}

#[tokio::test]
async fn an_order_whose_worker_died_mid_payment_is_never_failed_by_clean_failures() {
    // The dead worker's charge was captured but never recorded; afterwards the gateway
    // cleanly fails this order (a partial fault, breaker closed). The order must wait for a
    // definitive answer, not end payment_failed with money taken; when the processor
    // answers, it is confirmed on that capture, never charged again.
    let mut gateway = MockPaymentGateway::new();
    let mut seq = mockall::Sequence::new();
    gateway
        .expect_lookup()
        .times(5)
        .in_sequence(&mut seq)
        .returning(|_| Err(GatewayError::Unavailable("processor error".into())));
    gateway
        .expect_lookup()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|r| {
            Ok(PaymentState::Captured {
                payment_id: "txn_1".into(),
                amount: r.charge.amount,
                refunded: order_core::Money::ZERO,
            })
        });
    gateway.expect_charge().never();
    let mut settings = config();
    settings.breaker.failure_threshold = 100;
    let w = world_with(gateway, settings);
    let order = w.orders.place(new_order("c1")).await.unwrap();
    let crashed = w.queue.consumer("crashed");
    crashed.receive(1, Duration::ZERO).await.unwrap();
    w.repo
        .claim(
            order.id,
            &WorkerId::parse("crashed").unwrap(),
            w.clock.now(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // (Here it charged, and died.)
    w.clock.advance(Duration::from_secs(31));
    for job in w.worker.reclaim(10).await.unwrap() {
        w.worker.handle(&job).await.unwrap();
    }

    w.until_confirmed(
        30,
        Duration::from_secs(61),
        "failed an order a dead worker may have charged",
    )
    .await;
    let stored = w.repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Confirmed);
    assert_eq!(
        stored.payment_attempts.len(),
        6,
        "past the 3-attempt limit, until the gateway told"
    );
}

#[tokio::test]
async fn a_job_delivered_too_often_goes_to_the_dead_letter_queue() {
    let w = world(MockPaymentGateway::new());
    let order = w.orders.place(new_order("c1")).await.unwrap();
    let crashed = w.queue.consumer("crashed");
    crashed.receive(1, Duration::ZERO).await.unwrap();
    let mut last = None;
    for _ in 0..3 {
        last = w.queue.reclaim(Duration::ZERO, 1).await.unwrap().pop();
    }
    let delivery = last.unwrap();
    assert_eq!(delivery.deliveries, 4);
    assert_eq!(
        w.worker.handle(&delivery).await.unwrap(),
        Outcome::DeadLettered
    );
    assert_eq!(w.queue.dead_letters().len(), 1);
    assert_eq!(w.queue.dead_letters()[0].0, order.id);
}

#[tokio::test]
async fn an_order_whose_job_was_lost_is_queued_again_by_the_reconciler() {
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| ok_receipt());
    let w = world(gateway);
    let order = w.orders.place(new_order("c1")).await.unwrap();
    w.queue.wipe();
    assert_eq!(w.step().await, None);
    assert_eq!(
        w.worker.reconcile(100).await.unwrap(),
        0,
        "not within the grace period"
    );

    w.clock.advance(Duration::from_secs(31));
    assert_eq!(w.worker.reconcile(100).await.unwrap(), 1);
    assert_eq!(w.step().await, Some(Outcome::Confirmed));
    assert_eq!(w.status(order.id).await, OrderStatus::Confirmed);
    assert_eq!(
        w.worker.reconcile(100).await.unwrap(),
        0,
        "terminal orders are not queued"
    );
}

/// A gateway whose charge is cancelled by the customer while it is in flight: the
/// cancellation lands in the store between the call and its answer, then the charge
/// captures.
struct CancelledMidCharge {
    repo: Arc<MemoryOrderRepo>,
    clock: Arc<ManualClock>,
    charges: std::sync::atomic::AtomicU32,
    refunds: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl PaymentGateway for CancelledMidCharge {
    async fn charge(
        &self,
        request: &order_core::ChargeRequest,
    ) -> Result<ChargeReceipt, GatewayError> {
        use std::sync::atomic::Ordering;
        self.charges.fetch_add(1, Ordering::SeqCst);
        let result = self
            .repo
            .cancel(
                request.order_id,
                order_core::order::CancelReason::RequestedByCustomer,
                self.clock.now(),
            )
            .await
            .unwrap();
        assert!(
            matches!(result, order_core::ports::CancelResult::Cancelling(_)),
            "{result:?}"
        );
        ok_receipt()
    }

    async fn refund(
        &self,
        request: &order_core::payment::RefundRequest,
    ) -> Result<order_core::payment::RefundReceipt, GatewayError> {
        self.refunds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(order_core::payment::RefundReceipt::Refunded {
            refund_id: "re_1".into(),
            amount: request.amount,
        })
    }

    async fn capture(
        &self,
        _: &order_core::payment::CaptureRequest,
    ) -> Result<order_core::payment::CaptureReceipt, GatewayError> {
        Err(GatewayError::Declined(
            order_core::payment::DeclineReason::ProcessorRefused,
        ))
    }

    /// Never asked: its charges always answer.
    async fn lookup(
        &self,
        _: &order_core::payment::LookupRequest,
    ) -> Result<order_core::payment::PaymentState, GatewayError> {
        Ok(order_core::payment::PaymentState::NotCharged)
    }
}

#[tokio::test]
async fn a_charge_that_resolves_after_a_cancellation_is_recorded_and_refunded_never_confirmed() {
    use std::sync::atomic::Ordering;
    let clock = Arc::new(ManualClock::default());
    let repo = Arc::new(MemoryOrderRepo::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone()));
    let gateway = Arc::new(CancelledMidCharge {
        repo: repo.clone(),
        clock: clock.clone(),
        charges: 0.into(),
        refunds: 0.into(),
    });
    let orders = OrderService::new(repo.clone(), queue.clone(), clock.clone());
    let worker = PaymentProcessor::new(
        repo.clone(),
        queue.clone(),
        gateway.clone(),
        clock.clone(),
        config(),
    );
    let order = orders.place(new_order("c-mid")).await.unwrap();

    let first = worker.process_next(Duration::ZERO).await.unwrap();

    assert_eq!(first, Some(Outcome::CancelledMidCharge));
    let cancelling = repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(
        cancelling.status,
        OrderStatus::Cancelling,
        "the capture did not confirm it"
    );
    assert_eq!(
        cancelling.payment_attempts.len(),
        1,
        "the capture is on record"
    );
    assert!(cancelling.payment_attempts[0].outcome.is_success());

    let second = worker.process_next(Duration::ZERO).await.unwrap();

    assert_eq!(second, Some(Outcome::Cancelled));
    let cancelled = repo.get(order.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        gateway.charges.load(Ordering::SeqCst),
        1,
        "no second charge"
    );
    assert_eq!(gateway.refunds.load(Ordering::SeqCst), 1, "refunded once");
    assert_eq!(
        worker.process_next(Duration::ZERO).await.unwrap(),
        None,
        "nothing left"
    );
}

#[tokio::test]
async fn every_job_of_a_traced_order_carries_the_orders_trace() {
    use order_core::order::CancelReason;
    use order_core::testing::conformance::sample_trace;
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .returning(|_| Err(GatewayError::Unavailable("down".into())));
    let w = world(gateway);
    let traced = new_order("c1").in_trace(Some(sample_trace()));
    let order = w.orders.place(traced).await.unwrap();
    assert_eq!(
        order.trace,
        Some(sample_trace()),
        "the order keeps its trace"
    );
    let plain = w.orders.place(new_order("c2")).await.unwrap();
    assert_eq!(plain.trace, None);

    let received = w.queue.receive(2, Duration::ZERO).await.unwrap();
    let trace_of = |id| received.iter().find(|d| d.order_id == id).unwrap().trace;
    assert_eq!(trace_of(order.id), Some(sample_trace()), "placed");
    assert_eq!(trace_of(plain.id), None);
    // A failed charge defers the job; it comes back in the same trace.
    for d in &received {
        w.worker.handle(d).await.unwrap();
    }
    w.clock.advance(Duration::from_secs(5));
    let again = w.queue.receive(2, Duration::ZERO).await.unwrap();
    let back = again.iter().find(|d| d.order_id == order.id).unwrap();
    assert_eq!(back.trace, Some(sample_trace()), "retried later");
    for d in &again {
        w.queue.ack(d).await.unwrap();
    }
    // A cancellation queues the refund in the order's trace.
    w.orders
        .cancel(order.id, CancelReason::RequestedByCustomer)
        .await
        .unwrap();
    let refund = w.queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(
        (refund[0].order_id, refund[0].trace),
        (order.id, Some(sample_trace())),
        "cancelled"
    );
    // A job lost with the queue is rebuilt by the reconciler, still in the trace.
    w.queue.wipe();
    w.clock.advance(Duration::from_secs(3600));
    assert!(w.worker.reconcile(10).await.unwrap() >= 1);
    let rebuilt = w.queue.receive(10, Duration::ZERO).await.unwrap();
    let rebuilt = rebuilt.iter().find(|d| d.order_id == order.id).unwrap();
    assert_eq!(rebuilt.trace, Some(sample_trace()), "reconciled");
}
