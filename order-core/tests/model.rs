//! A model test of `OrderService` + `PaymentProcessor` on the in-memory adapters.
//!
//! Random interleavings of placing orders (captured when charged, or authorized and
//! captured later for part of their total), cancelling them at any point, two workers
//! processing (one job at a time, or several at once in shared batches), gateway declines, outages, refund failures and ambiguous timeouts (before
//! and after capture or refund), workers that crash at every stage without acking,
//! duplicate deliveries, reclaims, reconciles, a queue wiped empty and time passing.
//!
//! Refunds of part of a captured payment (an amount or an item, fresh or retried under the
//! same token) come at any point too.
//!
//! After every step: no key is captured twice or refunded more than it was captured, no
//! refund key gives back twice, the gateway's refunds of an order lie between what the
//! order records as given back and what it holds back for refunds not yet answered, no
//! capture takes more than its authorization or follows a void, an order's recorded capture
//! is what the gateway took,
//! `payment_failed` and `cancelled` never change and `confirmed` changes only into a
//! cancellation, every observed status change is one the state machine allows, confirmed
//! orders are captured and refunded only by refunds asked for on their own, failed ones are
//! not captured, cancelled ones have all of every capture given back, and no charge starts once a cancellation is recorded. Once faults
//! stop, every order becomes terminal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use order_core::memory::{ManualClock, MemoryOrderRepo, MemoryQueue};
use order_core::order::CancelReason;
use order_core::order::next_status;
use order_core::order::{PartialRefund, RefundAsk, RefundedItem};
use order_core::payment::{AttemptOutcome, CaptureMethod};
use order_core::policy::circuit_breaker::BreakerConfig;
use order_core::policy::retry::RetryPolicy;
use order_core::ports::{CancelResult, Claim, Job, OrderRepo, PaymentGateway, PaymentQueue};
use order_core::service::{CaptureError, RefundError};
use order_core::testing::new_order;
use order_core::{
    Clock, IdempotencyKey, ItemId, Money, OrderEvent, OrderId, OrderService, OrderStatus,
    PaymentProcessor, ProcessorConfig, Quantity, WorkerId,
};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

#[path = "model/batching.rs"]
mod batching;
#[path = "model/gateway.rs"]
mod gateway;
use batching::Batching;
use gateway::{GatewayState, Mode, ScriptedGateway};

#[derive(Debug, Clone)]
enum Step {
    Place,
    /// An order paid with manual capture: the worker only authorizes it.
    PlaceManual,
    /// The i-th placed order's authorized payment is captured, for this many cents (more
    /// than its total is refused before the gateway is asked).
    Capture(usize, i64),
    /// Part of the i-th placed order's captured payment is given back: this many cents
    /// (or, for 0, one Burger; for 1, all of what is left), under refund token `token` (a retry of the refund with
    /// that token, whose outcome may be unknown), or a fresh one (`None`).
    Refund(usize, i64, Option<u8>),
    /// A customer cancels the i-th placed order, whatever its status.
    Cancel(usize, CancelReason),
    Process(usize),
    /// A worker receives several jobs and handles them at once: its claims, lease ends and
    /// acks go out in shared batches.
    ProcessMany(usize),
    /// A worker takes a job and dies: after receiving (0), claiming (1) or charging (2).
    Crash(u8),
    Reclaim(usize),
    Duplicate(usize),
    Reconcile(usize),
    /// The payment sweep: orders whose last charge timed out are looked up, and those the
    /// gateway has decided are made due at once.
    SweepCharges,
    WipeQueue,
    Gateway(Mode),
    Advance(u64),
}

#[derive(Debug, Clone)]
struct Reference {
    placed: usize,
}

impl ReferenceStateMachine for Reference {
    type State = Self;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Self> {
        Just(Self { placed: 0 }).boxed()
    }

    fn transitions(state: &Self) -> BoxedStrategy<Step> {
        let mode = prop_oneof![
            4 => Just(Mode::Approve),
            1 => Just(Mode::Decline),
            2 => Just(Mode::Down),
            1 => Just(Mode::TimeoutBeforeCapture),
            2 => Just(Mode::TimeoutAfterCapture),
            2 => Just(Mode::DownForSome),
            2 => Just(Mode::RefundsDown),
        ];
        let reason = prop_oneof![
            Just(CancelReason::RequestedByCustomer),
            Just(CancelReason::Fraudulent),
            Just(CancelReason::Other),
        ];
        let placed = state.placed.max(1);
        prop_oneof![
            4 => Just(Step::Place),
            2 => Just(Step::PlaceManual),
            2 => (0..placed, prop_oneof![Just(100i64), Just(2500), Just(3097)])
                .prop_map(|(i, cents)| Step::Capture(i, cents)),
            2 => (
                0..placed,
                prop_oneof![Just(0i64), Just(1), Just(500), Just(1299), Just(3097)],
                prop_oneof![Just(None), (0..3u8).prop_map(Some)],
            )
                .prop_map(|(i, cents, token)| Step::Refund(i, cents, token)),
            2 => (0..placed, reason).prop_map(|(i, r)| Step::Cancel(i, r)),
            4 => (0..2usize).prop_map(Step::Process),
            2 => (0..2usize).prop_map(Step::ProcessMany),
            1 => (0..3u8).prop_map(Step::Crash),
            1 => (0..2usize).prop_map(Step::Reclaim),
            1 => (0..placed).prop_map(Step::Duplicate),
            1 => (0..2usize).prop_map(Step::Reconcile),
            1 => Just(Step::SweepCharges),
            1 => Just(Step::WipeQueue),
            2 => mode.prop_map(Step::Gateway),
            2 => prop_oneof![Just(1u64), Just(5), Just(31), Just(61)].prop_map(Step::Advance),
        ]
        .boxed()
    }

    fn apply(mut state: Self, step: &Step) -> Self {
        if matches!(step, Step::Place | Step::PlaceManual) {
            state.placed += 1;
        }
        state
    }
}

type Processor = PaymentProcessor<Batching, MemoryQueue, ScriptedGateway, ManualClock>;

struct System {
    rt: tokio::runtime::Runtime,
    clock: Arc<ManualClock>,
    repo: Arc<MemoryOrderRepo>,
    queue: MemoryQueue,
    gateway: Arc<ScriptedGateway>,
    service: OrderService<MemoryOrderRepo, MemoryQueue, ManualClock>,
    /// Places orders paid with manual capture, and captures them.
    manual: OrderService<MemoryOrderRepo, MemoryQueue, ManualClock>,
    workers: Vec<Processor>,
    placed: Vec<OrderId>,
    seen: HashMap<OrderId, OrderStatus>,
    /// Charge attempts each cancelled order had when its cancellation was recorded.
    charges_at_cancel: HashMap<OrderId, usize>,
}

fn config(name: &str) -> ProcessorConfig {
    ProcessorConfig {
        lease: Duration::from_secs(30),
        retry: RetryPolicy::new(2, Duration::from_secs(1), Duration::from_secs(8)).unwrap(),
        breaker: BreakerConfig {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(20),
            half_open_probes: 1,
            probe_wait: Duration::from_secs(1),
        },
        max_deliveries: 5,
        reconcile_grace: Duration::from_secs(30),
        seed: Some(42),
        ..ProcessorConfig::new(WorkerId::parse(name).unwrap())
    }
}

fn reachable(from: OrderStatus, to: OrderStatus) -> bool {
    let events = [
        OrderEvent::PaymentStarted,
        OrderEvent::PaymentCaptured,
        OrderEvent::PaymentFailed,
        OrderEvent::Cancelled,
        OrderEvent::CancelRequested,
        OrderEvent::Refunded,
    ];
    let mut frontier = vec![from];
    let mut seen = HashSet::from([from]);
    while let Some(s) = frontier.pop() {
        for e in events {
            if let Ok(next) = next_status(s, e) {
                if seen.insert(next) {
                    frontier.push(next);
                }
            }
        }
    }
    seen.contains(&to)
}

impl System {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let clock = Arc::new(ManualClock::default());
        let repo = Arc::new(MemoryOrderRepo::new());
        let queue = MemoryQueue::new(clock.clone());
        let gateway = Arc::new(ScriptedGateway {
            state: Mutex::new(GatewayState::new()),
        });
        let service =
            OrderService::new(repo.clone(), Arc::new(queue.consumer("api")), clock.clone());
        let manual = service
            .clone()
            .with_capture(CaptureMethod::Manual)
            .with_gateway(gateway.clone());
        let workers = ["w0", "w1"]
            .into_iter()
            .map(|name| {
                PaymentProcessor::new(
                    Arc::new(Batching(repo.clone())),
                    Arc::new(queue.consumer(name)),
                    gateway.clone(),
                    clock.clone(),
                    config(name),
                )
            })
            .collect();
        Self {
            rt,
            clock,
            repo,
            queue,
            gateway,
            service,
            manual,
            workers,
            placed: Vec::new(),
            seen: HashMap::new(),
            charges_at_cancel: HashMap::new(),
        }
    }

    fn run(&mut self, step: &Step) {
        let rt = &self.rt;
        match *step {
            Step::Place => {
                let order = rt.block_on(self.service.place(new_order("model"))).unwrap();
                self.placed.push(order.id);
            }
            Step::PlaceManual => {
                let order = rt.block_on(self.manual.place(new_order("manual"))).unwrap();
                self.placed.push(order.id);
            }
            Step::Capture(i, cents) => {
                if let Some(id) = self.placed.get(i).copied() {
                    let amount = Money::new(rust_decimal::Decimal::new(cents, 2)).unwrap();
                    match rt.block_on(self.manual.capture(id, Some(amount))) {
                        Ok(order) => {
                            let record = order.captured.expect("a capture is recorded");
                            assert_eq!(record.amount, amount);
                            assert!(record.captured_at.is_some());
                        }
                        Err(
                            CaptureError::NotCapturable(_)
                            | CaptureError::Declined(..)
                            | CaptureError::Gateway(_)
                            | CaptureError::Amount { .. },
                        ) => {}
                        Err(e) => panic!("capture of {id}: {e}"),
                    }
                }
            }
            Step::Refund(i, cents, token) => self.refund(i, cents, token),
            Step::Cancel(i, reason) => {
                if let Some(id) = self.placed.get(i).copied() {
                    let result = rt.block_on(self.service.cancel(id, reason)).unwrap();
                    if let CancelResult::Cancelled(o) | CancelResult::Cancelling(o) = result {
                        self.charges_at_cancel.insert(id, o.payment_attempts.len());
                    }
                }
            }
            Step::Process(w) => {
                rt.block_on(self.workers[w].process_next(Duration::ZERO))
                    .unwrap();
            }
            Step::ProcessMany(w) => rt.block_on(async {
                let jobs = self.workers[w].receive(4, Duration::ZERO).await.unwrap();
                let handles = jobs.iter().map(|job| self.workers[w].handle(job));
                for handled in futures::future::join_all(handles).await {
                    handled.unwrap();
                }
            }),
            Step::Crash(stage) => rt.block_on(async {
                let crashed = self.queue.consumer("crashed");
                let Some(job) = crashed.receive(1, Duration::ZERO).await.unwrap().pop() else {
                    return;
                };
                if stage == 0 {
                    return;
                }
                let claim = self
                    .repo
                    .claim(
                        job.order_id,
                        &WorkerId::parse("crashed").unwrap(),
                        self.clock.now(),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                // It dies after calling the gateway as a live worker would have.
                if let (2, Claim::Acquired { order, .. }) = (stage, claim) {
                    if order.status == OrderStatus::Cancelling {
                        let _ = self.gateway.refund(&order.refund_request()).await;
                    } else {
                        let _ = self.gateway.charge(&order.charge_request()).await;
                    }
                }
            }),
            Step::Reclaim(w) => rt.block_on(async {
                for job in self.workers[w].reclaim(10).await.unwrap() {
                    self.workers[w].handle(&job).await.unwrap();
                }
            }),
            Step::Duplicate(i) => {
                if let Some(id) = self.placed.get(i) {
                    rt.block_on(self.queue.enqueue(&Job::untraced(*id)))
                        .unwrap();
                }
            }
            Step::Reconcile(w) => {
                rt.block_on(self.workers[w].reconcile(100)).unwrap();
            }
            Step::SweepCharges => {
                rt.block_on(self.service.sweep_unresolved_charges(Duration::ZERO, 100))
                    .unwrap();
            }
            Step::WipeQueue => self.queue.wipe(),
            Step::Gateway(mode) => self.gateway.state.lock().unwrap().mode = mode,
            Step::Advance(secs) => self.clock.advance(Duration::from_secs(secs)),
        }
    }

    /// Gives back part of the i-th order's payment: `cents` (or, for 0, one Burger), under
    /// refund token `token` or a fresh one.
    fn refund(&self, i: usize, cents: i64, token: Option<u8>) {
        let Some(id) = self.placed.get(i).copied() else {
            return;
        };
        let ask = if cents == 1 {
            RefundAsk::Rest
        } else if cents == 0 {
            RefundAsk::Items {
                items: vec![RefundedItem {
                    item_id: ItemId::parse("item_001").unwrap(),
                    quantity: Quantity::new(1).unwrap(),
                }],
                amount: None,
            }
        } else {
            RefundAsk::Amount(Money::new(rust_decimal::Decimal::new(cents, 2)).unwrap())
        };
        let token = token.map(|t| format!("t{t}"));
        match self
            .rt
            .block_on(self.manual.refund(id, &ask, None, token.as_deref()))
        {
            Ok(order) => {
                let given: Money = order.partial_refunds.iter().map(PartialRefund::given).sum();
                assert!(given <= order.captured_amount(), "{id}: {given} given back");
            }
            Err(
                RefundError::NotRefundable(_)
                | RefundError::Exceeds { .. }
                | RefundError::Invalid { .. }
                | RefundError::Declined(..)
                | RefundError::Gateway(_)
                | RefundError::Key(_),
            ) => {}
            Err(e) => panic!("refund of {id}: {e}"),
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "every invariant in one place, checked after every step"
    )]
    fn check(&mut self) {
        let gateway = self.gateway.state.lock().unwrap();
        for (key, n) in &gateway.captures {
            assert!(*n <= 1, "{key} captured {n} times");
        }
        for (key, n) in &gateway.refunds_by_key {
            assert!(*n <= 1, "refund {key} made {n} times");
        }
        for (key, (n, amount)) in &gateway.refunds {
            let captured = gateway.captures.get(key).copied().unwrap_or(0);
            assert!(
                *n == 0 || captured > 0,
                "{key} refunded {n} times with nothing captured"
            );
            assert!(
                *amount <= gateway.captured_amounts[key],
                "{key} refunded {amount}, more than captured"
            );
        }
        for (key, authorized) in &gateway.authorized {
            if let Some(taken) = gateway.captured_amounts.get(key) {
                assert!(
                    taken <= authorized,
                    "{key} captured {taken} of {authorized}"
                );
            }
        }
        for key in &gateway.voided {
            assert_eq!(
                gateway.captures.get(key).copied().unwrap_or(0),
                0,
                "{key} was captured after its void"
            );
        }
        for order in self.repo.all() {
            let key = IdempotencyKey::for_order(order.id);
            if let Some(record) = order.captured.filter(|c| c.captured_at.is_some()) {
                assert_eq!(
                    gateway.captured_amounts.get(&key),
                    Some(&record.amount),
                    "{} records a capture the gateway did not make",
                    order.id
                );
            }
            let captured = gateway.captures.get(&key).copied().unwrap_or(0);
            let taken = gateway
                .captured_amounts
                .get(&key)
                .copied()
                .filter(|_| captured > 0)
                .unwrap_or(Money::ZERO);
            let refunded = gateway.refunds.get(&key).map_or(Money::ZERO, |(_, m)| *m);
            // What the gateway gave back for the order's refunds asked for on their own
            // lies between what the order records as given and what it holds as reserved
            // (a refund whose answer was lost may have been made).
            let partial: Money = order
                .partial_refunds
                .iter()
                .filter_map(|r| match gateway.refund_outcomes.get(&r.key) {
                    Some(order_core::payment::RefundReceipt::Refunded { amount, .. }) => {
                        Some(*amount)
                    }
                    _ => None,
                })
                .sum();
            let given: Money = order.partial_refunds.iter().map(PartialRefund::given).sum();
            assert!(
                given <= partial && partial <= order.partially_refunded(),
                "{}: the order records {given} given and {} reserved, the gateway gave {partial}",
                order.id,
                order.partially_refunded()
            );
            let before = self
                .seen
                .insert(order.id, order.status)
                .unwrap_or(OrderStatus::Pending);
            if before.is_final() {
                assert_eq!(order.status, before, "final status of {} changed", order.id);
            }
            if before == OrderStatus::Confirmed && order.status != before {
                assert_eq!(
                    order.status,
                    OrderStatus::Cancelling,
                    "a confirmed order changes only by cancellation"
                );
            }
            assert!(
                reachable(before, order.status),
                "{} moved {before} -> {}",
                order.id,
                order.status
            );
            match order.status {
                OrderStatus::Confirmed if order.capture == CaptureMethod::Manual => {
                    assert!(
                        gateway.authorized.contains_key(&key),
                        "confirmed {} without an authorization",
                        order.id
                    );
                    assert_eq!(refunded, partial, "confirmed {} was refunded", order.id);
                }
                OrderStatus::Confirmed => {
                    assert_eq!(captured, 1, "confirmed {} without capture", order.id);
                    assert_eq!(refunded, partial, "confirmed {} was refunded", order.id);
                }
                OrderStatus::PaymentFailed => {
                    assert_eq!(captured, 0, "failed {} was captured", order.id);
                }
                OrderStatus::Cancelled => {
                    assert_eq!(
                        refunded, taken,
                        "cancelled {} had {taken} captured and {refunded} given back",
                        order.id
                    );
                }
                _ => {}
            }
            if let Some(charges) = self.charges_at_cancel.get(&order.id) {
                assert_eq!(
                    order.payment_attempts.len(),
                    *charges,
                    "a charge started after {} was cancelled",
                    order.id
                );
                assert!(order.cancellation.is_some(), "the cancellation is recorded");
            }
            for (i, attempt) in order.payment_attempts.iter().enumerate() {
                assert_eq!(
                    attempt.number.get() as usize,
                    i + 1,
                    "attempts numbered in order"
                );
            }
            for (i, attempt) in order.refund_attempts.iter().enumerate() {
                assert_eq!(
                    attempt.number.get() as usize,
                    i + 1,
                    "refunds numbered in order"
                );
            }
            if order.status == OrderStatus::Confirmed {
                assert!(
                    order
                        .payment_attempts
                        .last()
                        .is_some_and(|a| a.outcome.is_success())
                );
            }
            if order.status == OrderStatus::PaymentFailed {
                assert!(
                    !order
                        .payment_attempts
                        .iter()
                        .any(|a| matches!(a.outcome, AttemptOutcome::Succeeded { .. }))
                );
            }
            if order.status == OrderStatus::Cancelled && !order.refund_attempts.is_empty() {
                // Settled by the gateway's answer, or with nothing left to send once the
                // refunds asked for on their own were answered.
                let nothing_left = order.refundable() == Money::ZERO
                    && !order.partial_refunds.iter().any(PartialRefund::is_pending);
                assert!(
                    nothing_left
                        || order
                            .refund_attempts
                            .last()
                            .is_some_and(|a| a.outcome.is_definitive()),
                    "{} cancelled before its refund was settled",
                    order.id
                );
            }
        }
    }

    /// Faults stop: the gateway approves, time passes, workers reconcile, reclaim and
    /// process until every order is terminal.
    fn settle(&mut self) {
        self.gateway.state.lock().unwrap().mode = Mode::Approve;
        for _ in 0..40 {
            if self.repo.all().iter().all(|o| o.status.is_terminal()) {
                return;
            }
            self.clock.advance(Duration::from_secs(61));
            for w in 0..2 {
                self.run(&Step::Reconcile(w));
                self.run(&Step::Reclaim(w));
                while self
                    .rt
                    .block_on(self.workers[w].process_next(Duration::ZERO))
                    .unwrap()
                    .is_some()
                {}
            }
            self.check();
        }
        let stuck: Vec<_> = self
            .repo
            .all()
            .into_iter()
            .filter(|o| !o.status.is_terminal())
            .map(|o| (o.id, o.status, o.payment_attempts.len()))
            .collect();
        panic!("orders never reached a terminal status: {stuck:?}");
    }
}

struct Model;

impl StateMachineTest for Model {
    type SystemUnderTest = System;
    type Reference = Reference;

    fn init_test(_: &Reference) -> System {
        System::new()
    }

    fn apply(mut system: System, _: &Reference, step: Step) -> System {
        system.run(&step);
        system.check();
        system
    }

    fn teardown(mut system: System) {
        system.check();
        system.settle();
        system.check();
        assert_eq!(
            system.repo.all().len(),
            system.placed.len(),
            "no order lost"
        );
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 400, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn orders_are_charged_and_refunded_at_most_once_and_all_end_terminal(sequential 1..120 => Model);
}
