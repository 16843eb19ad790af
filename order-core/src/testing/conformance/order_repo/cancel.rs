//! Cancellation: at once when pending, through a refund when paid, fenced mid-payment.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::{acquire, attempt, base_time, secs, worker};
use crate::order::{CancelReason, Cancellation, OrderEvent, OrderStatus, Transition};
use crate::payment::{Attempt, AttemptOutcome, RefundAttempt, RefundOutcome};
use crate::ports::{CancelResult, Claim, Job, OrderRepo, RepoError};
use crate::testing::placed_order;

pub(super) async fn a_pending_order_is_cancelled_at_once_and_never_claimed<R: OrderRepo>(repo: &R) {
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

pub(super) fn refund_attempt(
    number: u32,
    outcome: RefundOutcome,
    at: DateTime<Utc>,
) -> RefundAttempt {
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
pub(super) async fn a_cancellation_mid_payment_fences_the_charge_and_ends_with_the_refund<
    R: OrderRepo,
>(
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

pub(super) async fn a_confirmed_order_is_cancelled_through_its_refund_and_a_failed_one_not_at_all<
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

pub(super) async fn a_claim_racing_a_cancellation_either_acquires_or_finds_it_cancelled<
    R: OrderRepo,
>(
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
