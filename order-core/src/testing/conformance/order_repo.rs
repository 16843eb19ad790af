//! The [`OrderRepo`] suite: orders, leases, batches, cancellations, captures, refunds and
//! request keys.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{acquire, attempt, base_time, page, sample_trace, secs, worker};
use crate::ids::CustomerId;
use crate::order::{Order, OrderEvent, OrderStatus, Transition};
use crate::payment::{Attempt, AttemptOutcome};
use crate::ports::{
    Claim, Job, OrderFilter, OrderRepo, PageRequest, PageSize, PageStart, RepoError,
};
use crate::testing::placed_order;

mod batches;
mod cancel;
mod captures;
mod processor_events;
mod refunds;
mod request_keys;

use batches::{
    a_batch_of_lease_ends_writes_each_end_or_fails_it_alone,
    a_claim_batch_answers_each_order_as_if_claimed_alone,
    concurrent_claim_batches_acquire_each_order_once,
};
use cancel::{
    a_cancellation_mid_payment_fences_the_charge_and_ends_with_the_refund,
    a_claim_racing_a_cancellation_either_acquires_or_finds_it_cancelled,
    a_confirmed_order_is_cancelled_through_its_refund_and_a_failed_one_not_at_all,
    a_pending_order_is_cancelled_at_once_and_never_claimed,
};
use captures::{
    a_capture_is_asked_for_once_for_one_amount_and_recorded_once,
    of_concurrent_captures_of_different_amounts_one_begins,
    only_a_confirmed_uncancelled_order_with_manual_capture_is_captured,
};
use processor_events::{
    a_processor_event_is_recorded_once_until_purged,
    hastening_makes_a_waiting_payment_due_now_and_leaves_the_rest,
    unresolved_charges_are_those_still_paid_whose_last_attempt_timed_out,
};
use refunds::{
    a_refund_is_settled_once_and_a_refused_one_holds_nothing_back,
    of_concurrent_refunds_none_passes_the_capture,
    only_a_confirmed_captured_uncancelled_order_is_refunded,
    refunds_are_recorded_once_per_key_and_never_past_the_capture,
};
use request_keys::{
    request_keys_reserve_replay_and_reject,
    stale_request_keys_are_taken_over_abandoned_ones_freed_old_ones_purged,
};

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
    a_capture_is_asked_for_once_for_one_amount_and_recorded_once(&make().await).await;
    only_a_confirmed_uncancelled_order_with_manual_capture_is_captured(&make().await).await;
    of_concurrent_captures_of_different_amounts_one_begins(&make().await).await;
    refunds_are_recorded_once_per_key_and_never_past_the_capture(&make().await).await;
    a_refund_is_settled_once_and_a_refused_one_holds_nothing_back(&make().await).await;
    only_a_confirmed_captured_uncancelled_order_is_refunded(&make().await).await;
    of_concurrent_refunds_none_passes_the_capture(&make().await).await;
    a_processor_event_is_recorded_once_until_purged(&make().await).await;
    hastening_makes_a_waiting_payment_due_now_and_leaves_the_rest(&make().await).await;
    unresolved_charges_are_those_still_paid_whose_last_attempt_timed_out(&make().await).await;
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
    assert_eq!(last.next, None, "the last page has no next");
    let beyond = repo.list(&by_customer, page(9, 2)).await.expect("list");
    assert!(
        beyond.orders.is_empty() && beyond.total == 5 && beyond.next.is_none(),
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
    pages_follow_their_cursors(repo, &by_customer, &first, &mine).await;
}

/// From `first` (page 1 of 2 orders of `mine`'s customer), each page's `next` leads to the
/// following one with its number, the same orders as the numbered pages, to the last;
/// orders created at the same instant are neither skipped nor repeated.
async fn pages_follow_their_cursors<R: OrderRepo>(
    repo: &R,
    filter: &OrderFilter,
    first: &crate::ports::OrderPage,
    mine: &[Order],
) {
    let mut seen: Vec<_> = first.orders.iter().map(|o| o.id).collect();
    let mut next = first.next;
    let mut number = 1;
    while let Some(cursor) = next {
        number += 1;
        assert_eq!(cursor.page.get(), number, "a cursor names its page");
        let request = PageRequest {
            start: PageStart::After(cursor),
            size: PageSize::new(2).expect("valid"),
        };
        let after = repo.list(filter, request).await.expect("list");
        let numbered = repo.list(filter, page(number, 2)).await.expect("list");
        assert_eq!(after.orders, numbered.orders, "page {number} either way");
        assert_eq!(after.total, 5);
        seen.extend(after.orders.iter().map(|o| o.id));
        next = after.next;
    }
    let newest_first: Vec<_> = mine.iter().rev().map(|o| o.id).collect();
    assert_eq!(seen, newest_first, "every order once, newest first");

    // Three orders of one instant: the id breaks the tie, the cursor keeps to it.
    let t = base_time() + secs(100);
    let mut tied: Vec<_> = (0..3).map(|_| placed_order("c-tied", t)).collect();
    for order in &tied {
        repo.insert(order).await.expect("insert");
    }
    tied.sort_by_key(|o| std::cmp::Reverse(o.id));
    let tie = OrderFilter {
        customer_id: Some(CustomerId::parse("c-tied").expect("valid")),
        status: None,
    };
    let one = |start| PageRequest {
        start,
        size: PageSize::new(1).expect("valid"),
    };
    let mut start = PageStart::Number(std::num::NonZeroU32::MIN);
    for expected in &tied {
        let listed = repo.list(&tie, one(start)).await.expect("list");
        assert_eq!(
            listed.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
            [expected.id]
        );
        let Some(cursor) = listed.next else {
            assert_eq!(expected.id, tied[2].id, "only the last page ends");
            return;
        };
        start = PageStart::After(cursor);
    }
    panic!("the last of the tied orders still had a next page");
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
