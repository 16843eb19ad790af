//! Conformance suites: one per port, run by every adapter against itself.
//!
//! Each suite takes a factory that makes a fresh, empty adapter (for the queue, two
//! consumers of one fresh queue) and panics naming the broken rule of the contract.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::ids::{CustomerId, WorkerId};
use crate::order::{CancelReason, Cancellation, OrderEvent, OrderStatus, Transition};
use crate::payment::{
    Attempt, AttemptOutcome, ChargeRequest, GatewayError, PaymentAttempt, RefundAttempt,
    RefundOutcome,
};
use crate::ports::{
    CancelResult, Claim, Delivery, Job, OrderFilter, OrderRepo, PageRequest, PageSize,
    PaymentGateway, PaymentQueue, RepoError,
};
use crate::testing::placed_order;

mod webhook_store;
pub use webhook_store::webhook_store;

fn base_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

fn worker(name: &str) -> WorkerId {
    WorkerId::parse(name).expect("valid worker id")
}

fn attempt(number: u32, outcome: AttemptOutcome, at: DateTime<Utc>) -> PaymentAttempt {
    PaymentAttempt {
        number: NonZeroU32::new(number).expect("attempt numbers start at 1"),
        outcome,
        started_at: at,
        finished_at: at + chrono::Duration::milliseconds(120),
    }
}

fn page(n: u32, size: i64) -> PageRequest {
    PageRequest {
        page: NonZeroU32::new(n).expect("pages start at 1"),
        size: PageSize::new(size).expect("valid page size"),
    }
}

async fn acquire<R: OrderRepo + ?Sized>(
    repo: &R,
    order: crate::ids::OrderId,
    who: &str,
    now: DateTime<Utc>,
) -> (crate::ports::Lease, crate::order::Order) {
    match repo
        .claim(order, &worker(who), now, Duration::from_secs(30))
        .await
    {
        Ok(Claim::Acquired { lease, order, .. }) => (lease, order),
        other => panic!("claim of a due, free order must acquire it, got {other:?}"),
    }
}

/// Checks an [`OrderRepo`] against its contract. `make` returns a fresh, empty store.
pub async fn order_repo<R, F, Fut>(make: F)
where
    R: OrderRepo,
    F: Fn() -> Fut,
    Fut: Future<Output = R>,
{
    inserted_orders_read_back_equal(&make().await).await;
    duplicates_are_rejected_and_change_nothing(&make().await).await;
    listing_filters_pages_and_sorts_newest_first(&make().await).await;
    claims_lease_fence_and_settle(&make().await).await;
    released_orders_are_not_due_until_their_retry_time(&make().await).await;
    settle_refuses_a_transition_from_another_status(&make().await).await;
    due_lists_orders_needing_a_job_oldest_first(&make().await).await;
    concurrent_claims_acquire_at_most_once(&make().await).await;
    a_claim_batch_answers_each_order_as_if_claimed_alone(&make().await).await;
    concurrent_claim_batches_acquire_each_order_once(&make().await).await;
    a_batch_of_lease_ends_writes_each_end_or_fails_it_alone(&make().await).await;
    a_pending_order_is_cancelled_at_once_and_never_claimed(&make().await).await;
    a_cancellation_mid_payment_fences_the_charge_and_ends_with_the_refund(&make().await).await;
    a_confirmed_order_is_cancelled_through_its_refund_and_a_failed_one_not_at_all(&make().await)
        .await;
    a_claim_racing_a_cancellation_either_acquires_or_finds_it_cancelled(&make().await).await;
    request_keys_reserve_replay_and_reject(&make().await).await;
    stale_request_keys_are_taken_over_abandoned_ones_freed_old_ones_purged(&make().await).await;
}

async fn inserted_orders_read_back_equal<R: OrderRepo>(repo: &R) {
    let order = placed_order("c-read", base_time());
    repo.insert(&order).await.expect("insert");
    assert_eq!(
        repo.get(order.id).await.expect("get"),
        Some(order.clone()),
        "get returns the order as inserted"
    );
    assert_eq!(
        repo.get(crate::ids::OrderId::new()).await.expect("get"),
        None,
        "unknown id reads as None"
    );
    let other = placed_order("c-read-2", base_time());
    repo.insert(&other).await.expect("insert");
    let mut many = repo
        .get_many(&[other.id, crate::ids::OrderId::new(), order.id])
        .await
        .expect("get many");
    many.sort_by_key(|o| o.id);
    let mut want = vec![order.clone(), other];
    want.sort_by_key(|o| o.id);
    assert_eq!(many, want, "get_many returns the stored ones, whole");
    assert!(repo.get_many(&[]).await.expect("get many").is_empty());
    repo.ping().await.expect("ping");
}

async fn duplicates_are_rejected_and_change_nothing<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let first = placed_order("c-dup", t);
    repo.insert(&first).await.expect("insert");
    let mut again = placed_order("c-dup-other", t);
    again.id = first.id;
    let result = repo.insert(&again).await;
    assert!(
        matches!(result, Err(RepoError::Duplicate(id)) if id == first.id),
        "a second order with the same id must be a Duplicate, got {result:?}"
    );
    let fresh = placed_order("c-dup", t);
    assert!(
        matches!(
            repo.insert_many(&[fresh.clone(), again]).await,
            Err(RepoError::Duplicate(_))
        ),
        "a batch with a duplicate is rejected"
    );
    assert_eq!(
        repo.get(fresh.id).await.expect("get"),
        None,
        "insert_many is all or nothing"
    );
    assert_eq!(
        repo.get(first.id).await.expect("get"),
        Some(first),
        "the original stays"
    );
    let batch: Vec<_> = (0..50)
        .map(|i| placed_order("c-batch", t + secs(i)))
        .collect();
    repo.insert_many(&batch).await.expect("insert_many");
    for order in &batch {
        assert_eq!(repo.get(order.id).await.expect("get").as_ref(), Some(order));
    }
}

async fn listing_filters_pages_and_sorts_newest_first<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let mine: Vec<_> = (0..5)
        .map(|i| placed_order("c-list", t + secs(i)))
        .collect();
    let other = placed_order("c-list-other", t + secs(10));
    for order in mine.iter().chain([&other]) {
        repo.insert(order).await.expect("insert");
    }
    let (lease, _) = acquire(repo, mine[0].id, "w", t + secs(20)).await;
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    repo.settle(&lease, None, confirm, t + secs(20))
        .await
        .expect("settle");

    let by_customer = OrderFilter {
        customer_id: Some(CustomerId::parse("c-list").expect("valid")),
        status: None,
    };
    let first = repo.list(&by_customer, page(1, 2)).await.expect("list");
    assert_eq!(first.total, 5, "total counts every match");
    let ids: Vec<_> = first.orders.iter().map(|o| o.id).collect();
    assert_eq!(ids, [mine[4].id, mine[3].id], "newest first");
    let last = repo.list(&by_customer, page(3, 2)).await.expect("list");
    assert_eq!(
        last.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        [mine[0].id]
    );
    let beyond = repo.list(&by_customer, page(9, 2)).await.expect("list");
    assert!(
        beyond.orders.is_empty() && beyond.total == 5,
        "a page past the end is empty"
    );

    let confirmed = OrderFilter {
        customer_id: Some(CustomerId::parse("c-list").expect("valid")),
        status: Some(OrderStatus::Confirmed),
    };
    let page1 = repo
        .list(&confirmed, PageRequest::FIRST)
        .await
        .expect("list");
    assert_eq!(page1.total, 1);
    assert_eq!(page1.orders[0].status, OrderStatus::Confirmed);
    let pending = OrderFilter {
        customer_id: None,
        status: Some(OrderStatus::Pending),
    };
    let all_pending = repo.list(&pending, page(1, 100)).await.expect("list");
    assert_eq!(all_pending.total, 5, "status filter alone");
    let everything = repo
        .list(&OrderFilter::default(), page(1, 100))
        .await
        .expect("list");
    assert_eq!(everything.total, 6);
}

/// Claims an order whose lease ran out unended; the claim must say the order is uncertain.
async fn take_over<R: OrderRepo + ?Sized>(
    repo: &R,
    order: crate::ids::OrderId,
    who: &str,
    now: DateTime<Utc>,
) -> crate::ports::Lease {
    let takeover = repo
        .claim(order, &worker(who), now, Duration::from_secs(30))
        .await
        .expect("claim");
    let Claim::Acquired {
        lease, uncertain, ..
    } = takeover
    else {
        panic!("an expired lease can be taken over, got {takeover:?}");
    };
    assert!(
        uncertain,
        "taking over a lease that was never ended makes the order uncertain"
    );
    lease
}

async fn claims_lease_fence_and_settle<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = placed_order("c-claim", t);
    repo.insert(&order).await.expect("insert");
    assert!(matches!(
        repo.claim(
            crate::ids::OrderId::new(),
            &worker("a"),
            t,
            Duration::from_secs(30)
        )
        .await,
        Err(RepoError::NotFound(_))
    ));

    let (lease_a, claimed) = acquire(repo, order.id, "a", t).await;
    assert_eq!(
        claimed.status,
        OrderStatus::PaymentProcessing,
        "claim starts the payment"
    );
    assert_eq!(lease_a.expires_at, t + secs(30));
    assert_eq!(
        repo.claim(
            order.id,
            &worker("b"),
            t + secs(29),
            Duration::from_secs(30)
        )
        .await
        .expect("claim"),
        Claim::Busy {
            until: t + secs(30)
        },
        "a live lease keeps others out"
    );

    let lease_b = take_over(repo, order.id, "b", t + secs(31)).await;
    assert_ne!(lease_a.token, lease_b.token);
    let failed = attempt(
        1,
        AttemptOutcome::Failed {
            error: "503".into(),
        },
        t,
    );
    assert!(
        matches!(
            repo.release(
                &lease_a,
                Some(Attempt::Charge(failed.clone())),
                t + secs(40),
                t + secs(32)
            )
            .await,
            Err(RepoError::LeaseLost(_))
        ),
        "an expired lease taken over cannot write"
    );
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    assert!(matches!(
        repo.settle(&lease_a, None, confirm, t + secs(32)).await,
        Err(RepoError::LeaseLost(_))
    ));

    let won = attempt(
        1,
        AttemptOutcome::Succeeded {
            transaction_id: "txn_1".into(),
        },
        t + secs(32),
    );
    repo.settle(
        &lease_b,
        Some(Attempt::Charge(won.clone())),
        confirm,
        t + secs(33),
    )
    .await
    .expect("settle");
    let settled = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(settled.status, OrderStatus::Confirmed);
    assert_eq!(settled.payment_attempts, [won]);
    assert_eq!(settled.updated_at, t + secs(33));
    assert_eq!(settled.created_at, order.created_at);
    assert!(matches!(
        repo.claim(order.id, &worker("c"), t + secs(99), Duration::from_secs(30)).await,
        Ok(Claim::Settled(o)) if o.status == OrderStatus::Confirmed
    ));
    assert!(
        matches!(
            repo.settle(&lease_b, None, confirm, t + secs(34)).await,
            Err(RepoError::LeaseLost(_))
        ),
        "settling ends the lease"
    );
}

async fn released_orders_are_not_due_until_their_retry_time<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = placed_order("c-release", t);
    repo.insert(&order).await.expect("insert");
    let (lease, _) = acquire(repo, order.id, "a", t).await;
    let first = attempt(
        1,
        AttemptOutcome::TimedOut {
            error: "timeout".into(),
        },
        t,
    );
    repo.release(
        &lease,
        Some(Attempt::Charge(first.clone())),
        t + secs(5),
        t + secs(1),
    )
    .await
    .expect("release");
    assert_eq!(
        repo.claim(order.id, &worker("b"), t + secs(4), Duration::from_secs(30))
            .await
            .expect("claim"),
        Claim::NotDue { at: t + secs(5) }
    );
    let again = repo
        .claim(order.id, &worker("b"), t + secs(5), Duration::from_secs(30))
        .await
        .expect("claim");
    let Claim::Acquired {
        lease,
        order: claimed,
        uncertain,
    } = again
    else {
        panic!("a released order is claimable when due, got {again:?}");
    };
    assert!(!uncertain, "a released lease leaves nothing uncertain");
    assert_eq!(claimed.status, OrderStatus::PaymentProcessing);
    assert_eq!(
        claimed.payment_attempts,
        std::slice::from_ref(&first),
        "attempts survive the release"
    );
    repo.release(&lease, None, t + secs(6), t + secs(5))
        .await
        .expect("release without attempt");
    let (lease, _) = acquire(repo, order.id, "c", t + secs(6)).await;
    let second = attempt(
        2,
        AttemptOutcome::Declined {
            reason: crate::payment::DeclineReason::CardDeclined,
        },
        t + secs(6),
    );
    let fail = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentFailed)
        .expect("allowed");
    repo.settle(
        &lease,
        Some(Attempt::Charge(second.clone())),
        fail,
        t + secs(7),
    )
    .await
    .expect("settle");
    let done = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(done.status, OrderStatus::PaymentFailed);
    assert_eq!(done.payment_attempts, [first, second], "attempts in order");
}

async fn settle_refuses_a_transition_from_another_status<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = placed_order("c-conflict", t);
    repo.insert(&order).await.expect("insert");
    let (lease, _) = acquire(repo, order.id, "a", t).await;
    let cancel = Transition::apply(OrderStatus::Pending, OrderEvent::Cancelled).expect("allowed");
    assert!(matches!(
        repo.settle(&lease, None, cancel, t).await,
        Err(RepoError::StatusConflict {
            expected: OrderStatus::Pending,
            actual: OrderStatus::PaymentProcessing,
            ..
        })
    ));
    assert_eq!(
        repo.get(order.id)
            .await
            .expect("get")
            .expect("exists")
            .status,
        OrderStatus::PaymentProcessing,
        "a refused transition changes nothing"
    );
}

async fn due_lists_orders_needing_a_job_oldest_first<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let mut orders: Vec<_> = (0..4).map(|i| placed_order("c-due", t + secs(i))).collect();
    orders[3].trace = Some(sample_trace());
    repo.insert_many(&orders).await.expect("insert_many");
    assert_eq!(
        repo.get(orders[3].id).await.expect("get").map(|o| o.trace),
        Some(Some(sample_trace())),
        "an order's trace is stored with it"
    );
    // 0: settled; 1: leased until t+100; 2: released until t+50; 3: untouched.
    let (lease0, _) = acquire(repo, orders[0].id, "a", t + secs(10)).await;
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    repo.settle(&lease0, None, confirm, t + secs(10))
        .await
        .expect("settle");
    let _lease1 = repo
        .claim(
            orders[1].id,
            &worker("a"),
            t + secs(10),
            Duration::from_secs(90),
        )
        .await
        .expect("claim");
    let (lease2, _) = acquire(repo, orders[2].id, "a", t + secs(10)).await;
    repo.release(&lease2, None, t + secs(50), t + secs(10))
        .await
        .expect("release");

    let ids = |v: &[Job]| v.iter().map(|j| j.order_id).collect::<Vec<_>>();
    assert_eq!(
        repo.due(t + secs(20), 10).await.expect("due"),
        [Job::of(&orders[3])],
        "a due order's job carries the order's trace"
    );
    assert_eq!(
        ids(&repo.due(t + secs(20), 10).await.expect("due")),
        [orders[3].id]
    );
    assert_eq!(
        ids(&repo.due(t + secs(60), 10).await.expect("due")),
        [orders[3].id, orders[2].id]
    );
    assert_eq!(
        ids(&repo.due(t + secs(100), 10).await.expect("due")),
        [orders[1].id, orders[3].id, orders[2].id],
        "an expired lease makes the order due again, oldest due first"
    );
    assert_eq!(
        repo.due(t + secs(100), 1).await.expect("due").len(),
        1,
        "limit"
    );
}

async fn concurrent_claims_acquire_at_most_once<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = placed_order("c-race", t);
    repo.insert(&order).await.expect("insert");
    let (wa, wb, wc, wd) = (worker("a"), worker("b"), worker("c"), worker("d"));
    let lease = Duration::from_secs(30);
    let results = tokio::join!(
        repo.claim(order.id, &wa, t, lease),
        repo.claim(order.id, &wb, t, lease),
        repo.claim(order.id, &wc, t, lease),
        repo.claim(order.id, &wd, t, lease),
    );
    let all = [results.0, results.1, results.2, results.3];
    let acquired = all
        .iter()
        .filter(|r| matches!(r, Ok(Claim::Acquired { .. })))
        .count();
    assert_eq!(
        acquired, 1,
        "exactly one of concurrent claims wins: {all:?}"
    );
    assert!(
        all.iter()
            .all(|r| matches!(r, Ok(Claim::Acquired { .. } | Claim::Busy { .. })))
    );
}

/// Orders for a claim batch at `t`, stored: one free, one leased to another worker until
/// `t + 29 s`, one settled, one released until `t + 60 s`, one whose holder died (its lease
/// ran out).
async fn claim_batch_fixture<R: OrderRepo>(repo: &R, t: DateTime<Utc>) -> [crate::order::Order; 5] {
    let orders = [
        placed_order("c-batch-free", t - secs(5)),
        placed_order("c-batch-busy", t - secs(5)),
        placed_order("c-batch-settled", t - secs(5)),
        placed_order("c-batch-later", t - secs(5)),
        placed_order("c-batch-expired", t - secs(90)),
    ];
    repo.insert_many(&orders).await.expect("insert");
    let [_, busy, settled, later, expired] = &orders;
    acquire(repo, busy.id, "other", t - secs(1)).await;
    let (settling, _) = acquire(repo, settled.id, "other", t - secs(1)).await;
    let fail = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentFailed)
        .expect("allowed");
    repo.settle(&settling, None, fail, t - secs(1))
        .await
        .expect("settle");
    let (releasing, _) = acquire(repo, later.id, "other", t - secs(1)).await;
    repo.release(&releasing, None, t + secs(60), t - secs(1))
        .await
        .expect("release");
    // Its holder died: the lease ran out unended.
    acquire(repo, expired.id, "dead", t - secs(90)).await;
    orders
}

async fn a_claim_batch_answers_each_order_as_if_claimed_alone<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let lease = Duration::from_secs(30);
    let [free, busy, settled, later, expired] = claim_batch_fixture(repo, t).await;
    let unknown = crate::ids::OrderId::new();
    let ids = [
        free.id, busy.id, settled.id, unknown, later.id, free.id, expired.id,
    ];
    let claims = repo
        .claim_many(&ids, &worker("batch"), t, lease)
        .await
        .expect("claim many");
    assert_eq!(claims.len(), ids.len(), "one result per id: {claims:?}");
    let mut claims = claims.into_iter();
    let mut next = || claims.next().expect("counted above");
    match next() {
        Ok(Claim::Acquired {
            lease,
            order,
            uncertain: false,
        }) => {
            assert_eq!(
                (lease.order_id, lease.owner.as_str(), lease.expires_at),
                (free.id, "batch", t + secs(30)),
                "a free order of a batch is leased to the caller"
            );
            assert_eq!(order.status, OrderStatus::PaymentProcessing);
        }
        other => panic!("a due, free order of a batch is acquired, got {other:?}"),
    }
    let busy_until = Claim::Busy {
        until: t + secs(29),
    };
    assert_eq!(
        next().expect("busy"),
        busy_until,
        "an order leased to another worker is busy in a batch too"
    );
    assert!(
        matches!(next(), Ok(Claim::Settled(o)) if o.id == settled.id && o.status == OrderStatus::PaymentFailed),
        "a settled order of a batch is reported settled, whole"
    );
    assert!(
        matches!(next(), Err(RepoError::NotFound(id)) if id == unknown),
        "an unknown id fails its own entry only"
    );
    assert_eq!(
        next().expect("not due"),
        Claim::NotDue { at: t + secs(60) },
        "a released order is not due in a batch either"
    );
    assert_eq!(
        next().expect("repeat"),
        Claim::Busy {
            until: t + secs(30)
        },
        "an id listed twice is acquired once: the repeat finds the first entry's lease"
    );
    assert!(
        matches!(next(), Ok(Claim::Acquired { uncertain: true, ref order, .. }) if order.id == expired.id),
        "an order whose holder died is acquired in a batch, and uncertain"
    );
    // The batch changed only what it acquired.
    assert_eq!(
        repo.claim(busy.id, &worker("third"), t, lease)
            .await
            .expect("claim"),
        busy_until,
        "the other worker's lease stands"
    );
    assert!(
        repo.claim_many(&[], &worker("batch"), t, lease)
            .await
            .expect("an empty batch")
            .is_empty()
    );
}

async fn concurrent_claim_batches_acquire_each_order_once<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let orders: Vec<_> = (0..40)
        .map(|i| placed_order(&format!("c-batches-{i}"), t))
        .collect();
    repo.insert_many(&orders).await.expect("insert");
    let ids: Vec<_> = orders.iter().map(|o| o.id).collect();
    // The same orders in four orders: batches that lock rows as they come could deadlock.
    let mut reversed = ids.clone();
    reversed.reverse();
    let mut rotated = ids.clone();
    rotated.rotate_left(17);
    let evens_first: Vec<_> = ids
        .iter()
        .step_by(2)
        .chain(ids.iter().skip(1).step_by(2))
        .copied()
        .collect();
    let lease = Duration::from_secs(30);
    let (wa, wb, wc, wd) = (worker("a"), worker("b"), worker("c"), worker("d"));
    let results = tokio::join!(
        repo.claim_many(&ids, &wa, t, lease),
        repo.claim_many(&reversed, &wb, t, lease),
        repo.claim_many(&rotated, &wc, t, lease),
        repo.claim_many(&evens_first, &wd, t, lease),
    );
    let mut acquired = std::collections::HashMap::new();
    for batch in [results.0, results.1, results.2, results.3] {
        for claim in batch.expect("concurrent batches all answer") {
            match claim {
                Ok(Claim::Acquired { lease, .. }) => {
                    *acquired.entry(lease.order_id).or_insert(0) += 1;
                }
                Ok(Claim::Busy { .. }) => {}
                other => panic!("a claim racing others acquires or finds it busy, got {other:?}"),
            }
        }
    }
    for id in &ids {
        assert_eq!(
            acquired.get(id),
            Some(&1),
            "each order is acquired by exactly one of the concurrent batches"
        );
    }
}

async fn a_batch_of_lease_ends_writes_each_end_or_fails_it_alone<R: OrderRepo>(repo: &R) {
    use crate::ports::{EndLease, LeaseEnd};
    let t = base_time();
    let orders: Vec<_> = (0..4)
        .map(|i| placed_order(&format!("c-ends-{i}"), t))
        .collect();
    let mut leases = Vec::new();
    for order in &orders {
        repo.insert(order).await.expect("insert");
        leases.push(acquire(repo, order.id, "w", t).await.0);
    }
    let ids = [0, 1, 2, 3].map(|i| orders[i].id);
    let [paid, lost, cancelled, _] = ids;
    // One lease is taken over after it ran out; one order is cancelled mid-payment.
    let taken = take_over(repo, lost, "x", t + secs(31)).await;
    repo.cancel(cancelled, CancelReason::RequestedByCustomer, t + secs(32))
        .await
        .expect("cancel");
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    let won = attempt(
        1,
        AttemptOutcome::Succeeded {
            transaction_id: "txn_batch".into(),
        },
        t + secs(33),
    );
    let failed = attempt(
        1,
        AttemptOutcome::Failed {
            error: "503".into(),
        },
        t + secs(33),
    );
    let end = |i: usize, attempt: &PaymentAttempt, end| EndLease {
        lease: leases[i].clone(),
        attempt: Some(Attempt::Charge(attempt.clone())),
        end,
        now: t + secs(34),
    };
    let retry = |s| LeaseEnd::Release {
        retry_at: t + secs(s),
    };
    let ends = [
        end(0, &won, LeaseEnd::Settle(confirm)),
        end(1, &failed, retry(40)),
        end(2, &won, LeaseEnd::Settle(confirm)),
        end(3, &failed, retry(60)),
        end(0, &won, LeaseEnd::Settle(confirm)),
    ];
    let ended = repo.end_leases(&ends).await.expect("end leases");
    assert_eq!(ended.len(), ends.len(), "one result per end: {ended:?}");
    assert!(ended[0].is_ok(), "a held lease settles: {:?}", ended[0]);
    assert!(
        matches!(ended[1], Err(RepoError::LeaseLost(id)) if id == lost),
        "a lease taken over fails its own end: {:?}",
        ended[1]
    );
    assert!(
        matches!(
            ended[2],
            Err(RepoError::StatusConflict {
                expected: OrderStatus::PaymentProcessing,
                actual: OrderStatus::Cancelling,
                ..
            })
        ),
        "a settlement from another status fails its own end: {:?}",
        ended[2]
    );
    assert!(ended[3].is_ok(), "a held lease is released: {:?}", ended[3]);
    assert!(
        matches!(ended[4], Err(RepoError::LeaseLost(id)) if id == paid),
        "a lease ended earlier in the batch is gone for the repeat: {:?}",
        ended[4]
    );
    after_the_batch_of_ends(repo, ids, &taken, (&won, &failed), t).await;
    assert!(
        repo.end_leases(&[])
            .await
            .expect("an empty batch")
            .is_empty()
    );
}

/// What the batch of `a_batch_of_lease_ends_writes_each_end_or_fails_it_alone` must have
/// left in the store.
async fn after_the_batch_of_ends<R: OrderRepo>(
    repo: &R,
    [paid, lost, cancelled, retried]: [crate::ids::OrderId; 4],
    taken: &crate::ports::Lease,
    (won, failed): (&PaymentAttempt, &PaymentAttempt),
    t: DateTime<Utc>,
) {
    let read = |id| async move { repo.get(id).await.expect("get").expect("exists") };
    let done = read(paid).await;
    assert_eq!(
        (done.status, done.payment_attempts.clone(), done.updated_at),
        (OrderStatus::Confirmed, vec![won.clone()], t + secs(34)),
        "the settled order has its one attempt"
    );
    assert!(
        read(lost).await.payment_attempts.is_empty(),
        "a lost lease's attempt is not recorded"
    );
    let still = read(cancelled).await;
    assert_eq!(
        (still.status, still.payment_attempts.len()),
        (OrderStatus::Cancelling, 0),
        "a refused settlement writes nothing"
    );
    assert_eq!(
        read(retried).await.payment_attempts,
        std::slice::from_ref(failed)
    );
    assert_eq!(
        repo.claim(retried, &worker("y"), t + secs(59), Duration::from_secs(30))
            .await
            .expect("claim"),
        Claim::NotDue { at: t + secs(60) },
        "the released order is due at its retry time"
    );
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    repo.settle(taken, None, confirm, t + secs(35))
        .await
        .expect("the new holder's lease was untouched by the batch");
}

/// Checks a [`PaymentQueue`] against its contract. `make` returns two consumers of one
/// fresh, empty queue.
pub async fn payment_queue<Q, F, Fut>(make: F)
where
    Q: PaymentQueue,
    F: Fn() -> Fut,
    Fut: Future<Output = (Q, Q)>,
{
    jobs_go_to_one_consumer_in_order_until_acked(make().await).await;
    jobs_queued_and_acked_in_batches(make().await).await;
    unacked_jobs_are_reclaimed_with_their_count_and_dead_lettered(make().await).await;
    deferred_jobs_come_back_at_their_time(make().await).await;
    receive_waits_for_a_job(make().await).await;
    stats_count_jobs_where_they_are(make().await).await;
    a_jobs_trace_travels_with_every_delivery(make().await).await;
}

/// The `traceparent` of W3C Trace Context's example.
pub fn sample_trace() -> crate::trace::TraceParent {
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("a valid traceparent")
}

async fn a_jobs_trace_travels_with_every_delivery<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(500);
    let traced = Job {
        order_id: crate::ids::OrderId::new(),
        trace: Some(sample_trace()),
    };
    let plain = Job::untraced(crate::ids::OrderId::new());
    a.enqueue(&traced).await.expect("enqueue");
    a.enqueue(&plain).await.expect("enqueue");
    let got = a.receive(2, short).await.expect("receive");
    let find = |got: &[Delivery], id| {
        got.iter()
            .find(|d| d.order_id == id)
            .map(|d| d.trace)
            .expect("delivered")
    };
    assert_eq!(find(&got, traced.order_id), traced.trace, "received");
    assert_eq!(find(&got, plain.order_id), None, "an untraced job has none");
    let reclaimed = b.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(find(&reclaimed, traced.order_id), traced.trace, "reclaimed");
    for d in &reclaimed {
        b.defer(d, Utc::now() - chrono::Duration::seconds(1))
            .await
            .expect("defer");
    }
    let mut back = Vec::new();
    for _ in 0..10 {
        back.extend(b.receive(2, short).await.expect("receive"));
        if back.len() == 2 {
            break;
        }
    }
    assert_eq!(
        find(&back, traced.order_id),
        traced.trace,
        "deferred and back"
    );
    assert_eq!(
        find(&back, plain.order_id),
        None,
        "deferred and back, untraced"
    );
    for d in &back {
        b.ack(d).await.expect("ack");
    }
}

async fn stats_count_jobs_where_they_are<Q: PaymentQueue>((queue, _other): (Q, Q)) {
    let empty = queue.stats().await.expect("stats");
    assert_eq!(
        (
            empty.waiting,
            empty.pending,
            empty.deferred,
            empty.dead,
            empty.oldest_age
        ),
        (0, 0, 0, 0, None),
        "a new queue holds nothing"
    );
    for _ in 0..4 {
        queue
            .enqueue(&Job::untraced(crate::ids::OrderId::new()))
            .await
            .expect("enqueue");
    }
    let got = queue
        .receive(2, Duration::from_millis(500))
        .await
        .expect("receive");
    assert_eq!(got.len(), 2);
    queue
        .defer(&got[0], Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("defer");
    queue
        .dead_letter(&got[1], "test")
        .await
        .expect("dead letter");
    let got = queue
        .receive(1, Duration::from_millis(500))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.pending, stats.deferred, stats.dead),
        (1, 1, 1, 1),
        "one of each: {stats:?}"
    );
    assert!(
        stats
            .oldest_age
            .is_some_and(|age| age < Duration::from_secs(60)),
        "the oldest job's age: {stats:?}"
    );
    queue.ack(&got[0]).await.expect("ack");
    let rest = queue
        .receive(1, Duration::from_millis(500))
        .await
        .expect("receive");
    queue.ack(&rest[0]).await.expect("ack");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.pending, stats.oldest_age),
        (0, 0, None),
        "settled jobs are gone: {stats:?}"
    );
}

async fn jobs_go_to_one_consumer_in_order_until_acked<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    a.ping().await.expect("ping");
    assert!(
        a.receive(10, short).await.expect("receive").is_empty(),
        "a new queue is empty"
    );
    let orders: Vec<_> = (0..3).map(|_| crate::ids::OrderId::new()).collect();
    for id in &orders {
        a.enqueue(&Job::untraced(*id)).await.expect("enqueue");
    }
    let got = a.receive(2, short).await.expect("receive");
    assert_eq!(got.len(), 2, "at most max, as many as there are");
    assert!(got.iter().all(|d| d.deliveries == 1));
    let rest = b.receive(10, short).await.expect("receive");
    let mut all: Vec<_> = got.iter().chain(&rest).map(|d| d.order_id).collect();
    all.sort_unstable();
    let mut expected = orders.clone();
    expected.sort_unstable();
    assert_eq!(all, expected, "each job goes to exactly one consumer");
    assert!(b.receive(10, short).await.expect("receive").is_empty());
    for d in got.iter().chain(&rest) {
        a.ack(d).await.expect("ack");
    }
    a.ack(&got[0]).await.expect("acking twice is fine");
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "acked jobs are gone"
    );
}

async fn jobs_queued_and_acked_in_batches<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    let orders: Vec<_> = (0..6).map(|_| crate::ids::OrderId::new()).collect();
    let jobs: Vec<Job> = orders
        .iter()
        .enumerate()
        .map(|(i, id)| Job {
            order_id: *id,
            trace: (i % 2 == 0).then(sample_trace),
        })
        .collect();
    a.enqueue_many(&jobs).await.expect("a batch of jobs");
    a.enqueue_many(&[]).await.expect("an empty batch");
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() == orders.len() {
            break;
        }
        got.extend(a.receive(10, short).await.expect("receive"));
    }
    assert_eq!(got.len(), orders.len(), "every job received");
    let mut received: Vec<_> = got.iter().map(|d| (d.order_id, d.trace)).collect();
    received.sort_unstable_by_key(|(id, _)| *id);
    let mut queued: Vec<_> = jobs.iter().map(|j| (j.order_id, j.trace)).collect();
    queued.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(
        received, queued,
        "a batch queues each job once, with its trace"
    );
    let (acked, left) = got.split_at(4);
    let mut batch = acked.to_vec();
    batch.push(acked[0].clone());
    a.ack_many(&batch)
        .await
        .expect("a batch of acks, one of them twice");
    a.ack_many(&[]).await.expect("an empty batch");
    let mut pending: Vec<_> = b
        .reclaim(Duration::ZERO, 10)
        .await
        .expect("reclaim")
        .into_iter()
        .map(|d| d.order_id)
        .collect();
    pending.sort_unstable();
    let mut want: Vec<_> = left.iter().map(|d| d.order_id).collect();
    want.sort_unstable();
    assert_eq!(pending, want, "the batch acked its jobs and only those");
}

async fn unacked_jobs_are_reclaimed_with_their_count_and_dead_lettered<Q: PaymentQueue>(
    (a, b): (Q, Q),
) {
    let short = Duration::from_millis(50);
    let id = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(id)).await.expect("enqueue");
    let first = a.receive(1, short).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert!(
        b.reclaim(Duration::from_secs(3600), 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "jobs idle less than min_idle stay with their consumer"
    );
    let taken = b.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(taken.len(), 1, "an unacked job can be reclaimed");
    assert_eq!((taken[0].order_id, taken[0].deliveries), (id, 2));
    let again = a.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(again[0].deliveries, 3, "each reclaim counts a delivery");
    a.dead_letter(&again[0], "poison")
        .await
        .expect("dead_letter");
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "dead letters leave the queue"
    );
    assert!(b.receive(10, short).await.expect("receive").is_empty());
}

async fn deferred_jobs_come_back_at_their_time<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    let id = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(id)).await.expect("enqueue");
    let d = a.receive(1, short).await.expect("receive").remove(0);
    a.defer(&d, Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("defer");
    assert!(
        b.receive(10, short).await.expect("receive").is_empty(),
        "deferred jobs wait for their time"
    );
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "deferring acks the job"
    );
    let other = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(other)).await.expect("enqueue");
    let d = a.receive(1, short).await.expect("receive").remove(0);
    a.defer(&d, Utc::now() - chrono::Duration::seconds(1))
        .await
        .expect("defer");
    let back = b.receive(10, short).await.expect("receive");
    assert_eq!(
        back.len(),
        1,
        "a job deferred to the past is delivered again"
    );
    assert_eq!(
        (back[0].order_id, back[0].deliveries),
        (other, 1),
        "with its count reset"
    );
    b.ack(&back[0]).await.expect("ack");
}

async fn receive_waits_for_a_job<Q: PaymentQueue>((a, b): (Q, Q)) {
    let id = crate::ids::OrderId::new();
    let (got, ()) = tokio::join!(a.receive(1, Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.enqueue(&Job::untraced(id)).await.expect("enqueue");
    });
    let got = got.expect("receive");
    assert_eq!(got.len(), 1, "receive waits for a job to arrive");
    assert_eq!(got[0].order_id, id);
}

/// What a gateway's own books say about one charge key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayBooks {
    /// Payments captured under the key.
    pub captures: u32,
    /// Refunds made of that capture.
    pub refunds: u32,
}

/// Calls `call` until it gives a definitive answer (at most 50 times).
async fn until_definitive<T, F, Fut>(mut call: F) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, GatewayError>>,
{
    for _ in 0..50 {
        match call().await {
            Err(GatewayError::Unavailable(_) | GatewayError::Timeout(_)) => {}
            outcome => return outcome,
        }
    }
    panic!("the gateway gives a definitive outcome within 50 calls");
}

/// Checks a [`PaymentGateway`] against its contract: whatever happens, at most one capture
/// per idempotency key and at most one refund per capture, never more than captured; a
/// definitive outcome is replayed; a refund of a key with nothing captured voids it.
/// `gateway` must eventually give definitive outcomes (its outage, if any, over).
///
/// `books` reads the gateway's own books for a charge key: how many payments were really
/// captured and refunded under it. Receipts alone cannot show a gateway that charges twice
/// and answers with the same receipt; its books can.
pub async fn payment_gateway<G: PaymentGateway + ?Sized>(
    gateway: &G,
    books: impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{DeclineReason, RefundReceipt, RefundRequest};

    let at_most_once = |key: &crate::payment::IdempotencyKey| {
        let b = books(key);
        assert!(b.captures <= 1, "key {key} captured {} times", b.captures);
        assert!(
            b.refunds <= b.captures,
            "key {key}: {b:?}: more refunds than captures"
        );
    };
    for i in 0..20 {
        let order = placed_order(&format!("c-gw-{i}"), base_time());
        let request = ChargeRequest::for_order(&order);
        let key = &request.idempotency_key;
        let definitive = until_definitive(|| async {
            let outcome = gateway.charge(&request).await;
            at_most_once(key);
            outcome
        })
        .await;
        for _ in 0..3 {
            assert_eq!(
                gateway.charge(&request).await,
                definitive,
                "the same key replays the first definitive outcome"
            );
            at_most_once(key);
        }
        let expected = u32::from(definitive.is_ok());
        assert_eq!(
            books(key).captures,
            expected,
            "key {key}: the books must show exactly {expected} capture(s) after {definitive:?}"
        );

        // Refund it, twice over under two refund keys: one refund at most, of the capture.
        let refund = RefundRequest::for_order(&order);
        let refunded = until_definitive(|| async {
            let outcome = gateway.refund(&refund).await;
            at_most_once(key);
            outcome
        })
        .await
        .expect("a refund is never refused for a valid request");
        match (&definitive, &refunded) {
            (Ok(_), RefundReceipt::Refunded { amount, .. }) => {
                assert!(*amount <= order.total_amount, "never more than captured");
            }
            (Err(_), RefundReceipt::NothingCaptured) => {}
            _ => panic!("charge {definitive:?} was refunded as {refunded:?}"),
        }
        assert_eq!(
            gateway.refund(&refund).await,
            Ok(refunded.clone()),
            "the same refund key replays"
        );
        let again = RefundRequest {
            idempotency_key: crate::payment::IdempotencyKey::from_raw(format!("again-{i}")),
            ..refund.clone()
        };
        until_definitive(|| gateway.refund(&again)).await.ok();
        assert_eq!(
            books(key).refunds,
            expected,
            "one refund per capture, whatever the key"
        );
    }

    // A refund that comes first voids the charge key: no later charge with it captures.
    let order = placed_order("c-gw-void", base_time());
    let refund = RefundRequest::for_order(&order);
    let voided = until_definitive(|| gateway.refund(&refund)).await;
    assert_eq!(voided, Ok(RefundReceipt::NothingCaptured));
    let charge = ChargeRequest::for_order(&order);
    assert_eq!(
        until_definitive(|| gateway.charge(&charge)).await,
        Err(GatewayError::Declined(DeclineReason::Voided))
    );
    assert_eq!(books(&charge.idempotency_key), GatewayBooks::default());
}

async fn a_pending_order_is_cancelled_at_once_and_never_claimed<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = placed_order("c-cancel-pending", t);
    repo.insert(&order).await.expect("insert");
    assert!(matches!(
        repo.cancel(crate::ids::OrderId::new(), CancelReason::Other, t)
            .await,
        Err(RepoError::NotFound(_))
    ));

    let result = repo
        .cancel(order.id, CancelReason::Duplicate, t + secs(1))
        .await
        .expect("cancel");

    let CancelResult::Cancelled(cancelled) = result else {
        panic!("a pending order is cancelled at once, got {result:?}");
    };
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation,
        Some(Cancellation {
            requested_at: t + secs(1),
            reason: CancelReason::Duplicate
        })
    );
    assert_eq!(
        repo.get(order.id).await.expect("get"),
        Some(cancelled.clone())
    );
    assert!(matches!(
        repo.claim(order.id, &worker("a"), t + secs(2), Duration::from_secs(30)).await,
        Ok(Claim::Settled(o)) if o.status == OrderStatus::Cancelled
    ));
    assert!(repo.due(t + secs(99), 10).await.expect("due").is_empty());
    assert_eq!(
        repo.cancel(order.id, CancelReason::Other, t + secs(3))
            .await
            .expect("cancel"),
        CancelResult::Unchanged(cancelled),
        "cancelling again changes nothing, not even the reason"
    );
}

fn refund_attempt(number: u32, outcome: RefundOutcome, at: DateTime<Utc>) -> RefundAttempt {
    RefundAttempt {
        number: NonZeroU32::new(number).expect("attempt numbers start at 1"),
        outcome,
        started_at: at,
        finished_at: at + chrono::Duration::milliseconds(80),
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one order's whole story, from the fenced charge to the refund"
)]
async fn a_cancellation_mid_payment_fences_the_charge_and_ends_with_the_refund<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let order = placed_order("c-cancel-mid", t);
    repo.insert(&order).await.expect("insert");
    let (lease, _) = acquire(repo, order.id, "a", t).await;

    let result = repo
        .cancel(order.id, CancelReason::RequestedByCustomer, t + secs(1))
        .await
        .expect("cancel");

    assert!(
        matches!(&result, CancelResult::Cancelling(o) if o.status == OrderStatus::Cancelling),
        "{result:?}"
    );
    let captured = attempt(
        1,
        AttemptOutcome::Succeeded {
            transaction_id: "txn_mid".into(),
        },
        t,
    );
    let confirm = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    assert!(
        matches!(
            repo.settle(
                &lease,
                Some(Attempt::Charge(captured.clone())),
                confirm,
                t + secs(2)
            )
            .await,
            Err(RepoError::StatusConflict {
                actual: OrderStatus::Cancelling,
                ..
            })
        ),
        "a charge in flight cannot confirm a cancelled order"
    );
    repo.release(
        &lease,
        Some(Attempt::Charge(captured.clone())),
        t + secs(2),
        t + secs(2),
    )
    .await
    .expect("the lease still records its attempt");
    assert_eq!(
        repo.due(t + secs(2), 10).await.expect("due"),
        [Job::untraced(order.id)],
        "due for its refund"
    );

    let (refund_lease, claimed) = acquire(repo, order.id, "b", t + secs(3)).await;
    assert_eq!(
        claimed.status,
        OrderStatus::Cancelling,
        "a claim keeps it cancelling"
    );
    assert_eq!(claimed.payment_attempts, std::slice::from_ref(&captured));
    let failed = refund_attempt(
        1,
        RefundOutcome::Failed {
            error: "503".into(),
        },
        t + secs(3),
    );
    repo.release(
        &refund_lease,
        Some(Attempt::Refund(failed.clone())),
        t + secs(5),
        t + secs(4),
    )
    .await
    .expect("release");
    let (refund_lease, _) = acquire(repo, order.id, "b", t + secs(5)).await;
    let refunded = refund_attempt(
        2,
        RefundOutcome::Refunded {
            refund_id: "re_1".into(),
            amount: order.total_amount,
        },
        t + secs(5),
    );
    let done = Transition::apply(OrderStatus::Cancelling, OrderEvent::Refunded).expect("allowed");
    repo.settle(
        &refund_lease,
        Some(Attempt::Refund(refunded.clone())),
        done,
        t + secs(6),
    )
    .await
    .expect("settle");

    let cancelled = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.payment_attempts, [captured]);
    assert_eq!(cancelled.refund_attempts, [failed, refunded]);
    assert_eq!(
        cancelled.cancellation.map(|c| c.reason),
        Some(CancelReason::RequestedByCustomer)
    );
    assert!(repo.due(t + secs(99), 10).await.expect("due").is_empty());
}

async fn a_confirmed_order_is_cancelled_through_its_refund_and_a_failed_one_not_at_all<
    R: OrderRepo,
>(
    repo: &R,
) {
    let t = base_time();
    let confirmed = placed_order("c-cancel-confirmed", t);
    let failed = placed_order("c-cancel-failed", t);
    repo.insert_many(&[confirmed.clone(), failed.clone()])
        .await
        .expect("insert");
    for (order, event) in [
        (&confirmed, OrderEvent::PaymentCaptured),
        (&failed, OrderEvent::PaymentFailed),
    ] {
        let (lease, _) = acquire(repo, order.id, "a", t).await;
        let end = Transition::apply(OrderStatus::PaymentProcessing, event).expect("allowed");
        repo.settle(&lease, None, end, t).await.expect("settle");
    }

    let result = repo
        .cancel(
            confirmed.id,
            CancelReason::RestaurantUnavailable,
            t + secs(10),
        )
        .await
        .expect("cancel");
    let refused = repo
        .cancel(failed.id, CancelReason::Other, t + secs(10))
        .await
        .expect("cancel");

    assert!(
        matches!(&result, CancelResult::Cancelling(o) if o.status == OrderStatus::Cancelling),
        "{result:?}"
    );
    assert_eq!(
        repo.due(t + secs(10), 10).await.expect("due"),
        [Job::untraced(confirmed.id)],
        "a confirmed order is due again, for its refund"
    );
    assert!(
        matches!(&refused, CancelResult::NotCancellable(o) if o.status == OrderStatus::PaymentFailed),
        "{refused:?}"
    );
    let unchanged = repo.get(failed.id).await.expect("get").expect("exists");
    assert_eq!(
        unchanged.cancellation, None,
        "a refused cancellation is not recorded"
    );
}

async fn a_claim_racing_a_cancellation_either_acquires_or_finds_it_cancelled<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let orders: Vec<_> = (0..20).map(|_| placed_order("c-cancel-race", t)).collect();
    repo.insert_many(&orders).await.expect("insert");
    let a = worker("a");
    for order in &orders {
        let (claimed, cancelled) = tokio::join!(
            repo.claim(order.id, &a, t, Duration::from_secs(30)),
            repo.cancel(order.id, CancelReason::Other, t),
        );
        let stored = repo.get(order.id).await.expect("get").expect("exists");
        match (claimed.expect("claim"), cancelled.expect("cancel")) {
            (Claim::Acquired { .. }, CancelResult::Cancelling(_)) => {
                assert_eq!(stored.status, OrderStatus::Cancelling);
            }
            (Claim::Settled(_), CancelResult::Cancelled(_)) => {
                assert_eq!(stored.status, OrderStatus::Cancelled);
            }
            other => panic!("a claim and a cancellation both won or both lost: {other:?}"),
        }
    }
}

async fn request_keys_reserve_replay_and_reject<R: OrderRepo>(repo: &R) {
    use crate::request::{Fingerprint, KeyedRequest, RequestKey};
    use crate::testing::new_order;

    let t = base_time();
    let minute = Duration::from_secs(60);
    let fresh_key =
        || RequestKey::parse(format!("key-{}", uuid::Uuid::now_v7().simple())).expect("valid key");
    let new = new_order("c-key");
    let fp = Fingerprint::of(&new);

    let key = fresh_key();
    let KeyedRequest::New(token) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("an unknown key is reserved");
    };
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(1), minute)
            .await
            .expect("begin"),
        KeyedRequest::InFlight
    );
    let other = Fingerprint::of(&new_order("c-key-other"));
    assert_eq!(
        repo.begin_request(&key, &other, t + secs(1), minute)
            .await
            .expect("begin"),
        KeyedRequest::Mismatch,
        "another order under the same key"
    );
    let order = new.clone().place(crate::ids::OrderId::new(), t);
    repo.insert_for_request(&order, &key, token)
        .await
        .expect("insert_for_request");
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(2), minute)
            .await
            .expect("begin"),
        KeyedRequest::Completed(order.id)
    );
    assert_eq!(
        repo.get(order.id).await.expect("get").as_ref(),
        Some(&order)
    );
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(3600), minute)
            .await
            .expect("begin"),
        KeyedRequest::Completed(order.id),
        "a completed key never goes stale"
    );
}

async fn stale_request_keys_are_taken_over_abandoned_ones_freed_old_ones_purged<R: OrderRepo>(
    repo: &R,
) {
    use crate::request::{Fingerprint, KeyedRequest, RequestKey};
    use crate::testing::new_order;

    let t = base_time();
    let minute = Duration::from_secs(60);
    let fresh_key =
        || RequestKey::parse(format!("key-{}", uuid::Uuid::now_v7().simple())).expect("valid key");
    let new = new_order("c-key");
    let fp = Fingerprint::of(&new);

    // A stale reservation is taken over; the old holder can no longer store its order.
    let key = fresh_key();
    let KeyedRequest::New(old) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("reserved");
    };
    let KeyedRequest::New(new_token) = repo
        .begin_request(&key, &fp, t + secs(61), minute)
        .await
        .expect("begin")
    else {
        panic!("a stale reservation is taken over");
    };
    assert_ne!(old, new_token);
    let late = new.clone().place(crate::ids::OrderId::new(), t);
    assert!(matches!(
        repo.insert_for_request(&late, &key, old).await,
        Err(RepoError::RequestSuperseded(_))
    ));
    assert_eq!(
        repo.get(late.id).await.expect("get"),
        None,
        "a superseded request stores nothing"
    );
    let current = new.clone().place(crate::ids::OrderId::new(), t + secs(61));
    repo.insert_for_request(&current, &key, new_token)
        .await
        .expect("insert_for_request");

    // An abandoned reservation frees the key.
    let key = fresh_key();
    let KeyedRequest::New(token) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("reserved");
    };
    repo.abandon_request(&key, token).await.expect("abandon");
    assert!(matches!(
        repo.begin_request(&key, &fp, t, minute)
            .await
            .expect("begin"),
        KeyedRequest::New(_)
    ));

    // Past retention, keys are forgotten.
    assert!(repo.purge_requests(t + secs(3600)).await.expect("purge") >= 2);
    let first = RequestKey::parse(key.as_str()).expect("valid");
    assert!(matches!(
        repo.begin_request(&first, &fp, t + secs(3601), minute)
            .await
            .expect("begin"),
        KeyedRequest::New(_)
    ));
}

/// Checks a [`RateLimiter`](crate::ports::RateLimiter) against its contract, in real time:
/// `make` returns two values sharing one store (two processes on one Redis), each call a
/// store no earlier call used.
pub async fn rate_limiter<L, F, Fut>(make: F)
where
    L: crate::ports::RateLimiter + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (L, L)>,
{
    use crate::policy::rate_limit::Quota;

    // One request per 200 ms, three at once.
    let quota = Quota::new(5.0, 3).expect("a valid quota");
    let (a, b) = make().await;
    let mut remaining = Vec::new();
    for limiter in [&a, &b, &a] {
        let v = limiter.check("client-1", &quota).await.expect("check");
        assert!(v.allowed, "the burst is allowed, from either value");
        remaining.push(v.remaining);
    }
    assert_eq!(remaining, [2, 1, 0], "both values count together");
    let denied = b.check("client-1", &quota).await.expect("check");
    assert!(!denied.allowed, "past the burst");
    assert!(
        denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_millis(200),
        "retry after at most one interval: {:?}",
        denied.retry_after
    );
    assert!(
        a.check("client-2", &quota).await.expect("check").allowed,
        "buckets are independent"
    );
    tokio::time::sleep(denied.retry_after + Duration::from_millis(5)).await;
    assert!(
        a.check("client-1", &quota).await.expect("check").allowed,
        "waiting out retry_after is enough"
    );

    // Checks of one bucket are atomic: 40 at once, from both values, allow the burst only.
    let (a, b) = make().await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let slow = Quota::new(0.1, 5).expect("a valid quota");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { limiter.check("crowd", &slow).await.expect("check").allowed });
    }
    let mut allowed = 0;
    while let Some(ok) = tasks.join_next().await {
        allowed += usize::from(ok.expect("task"));
    }
    assert_eq!(allowed, 5, "no more than the burst, however many at once");
}

/// Checks an [`ApiKeyStore`](crate::ports::ApiKeyStore) against its contract. `make` returns
/// an empty store.
pub async fn api_key_store<S, F, Fut>(make: F)
where
    S: crate::ports::ApiKeyStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    use crate::access::{NewApiKey, Scope, issue};

    let store = make().await;
    let t = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a time");
    let secs = |n| t + chrono::Duration::seconds(n);
    let (first, first_plain) = issue(
        NewApiKey {
            name: "ops".into(),
            scopes: vec![Scope::KeysManage, Scope::OrdersRead],
            customer_id: None,
            expires_at: Some(secs(3600)),
        },
        t,
    )
    .expect("a valid key");
    let (second, _) = issue(
        NewApiKey {
            name: "app".into(),
            scopes: vec![Scope::OrdersWrite],
            customer_id: Some(crate::ids::CustomerId::parse("alice").expect("an id")),
            expires_at: None,
        },
        secs(1),
    )
    .expect("a valid key");
    store.insert_key(&first).await.expect("insert");
    store.insert_key(&second).await.expect("insert");
    let stored = store.key(&first.id).await.expect("key").expect("stored");
    assert_eq!(stored, first, "stored as given");
    assert!(
        stored
            .authenticate(&first_plain.parse().expect("a key"), t)
            .is_ok(),
        "the stored hash still proves the key"
    );
    assert_eq!(
        store
            .keys()
            .await
            .expect("keys")
            .iter()
            .map(|k| k.id.clone())
            .collect::<Vec<_>>(),
        [second.id.clone(), first.id.clone()],
        "newest first"
    );

    let revoked = store
        .revoke_key(&first.id, secs(10))
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(revoked.revoked_at, Some(secs(10)));
    let again = store
        .revoke_key(&first.id, secs(20))
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(
        again.revoked_at,
        Some(secs(10)),
        "the first revocation counts"
    );
    let (unknown, _) = issue(
        NewApiKey {
            name: "never stored".into(),
            scopes: vec![Scope::OrdersRead],
            customer_id: None,
            expires_at: None,
        },
        t,
    )
    .expect("a valid key");
    assert!(
        store
            .revoke_key(&unknown.id, t)
            .await
            .expect("revoke")
            .is_none()
    );
    assert!(store.key(&unknown.id).await.expect("key").is_none());

    store.touch_key(&second.id, secs(30)).await.expect("touch");
    store.touch_key(&second.id, secs(25)).await.expect("touch");
    store
        .touch_key(&unknown.id, secs(30))
        .await
        .expect("touching no key is fine");
    assert_eq!(
        store
            .key(&second.id)
            .await
            .expect("key")
            .expect("stored")
            .last_used_at,
        Some(secs(30)),
        "last use never moves back"
    );
}
