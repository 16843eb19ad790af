//! Refunds asked for on their own: recorded once per key, never past what was captured
//! (pending ones counting), only for a confirmed, captured, uncancelled order; settled once.

use chrono::{DateTime, Utc};

use super::super::{base_time, secs};
use super::captures::{confirmed, money};
use crate::ids::{ItemId, RefundReason};
use crate::money::Quantity;
use crate::order::{
    CancelReason, Order, OrderStatus, PartialRefundState, RefundDraft, RefundSettlement,
    RefundedItem,
};
use crate::payment::{CaptureMethod, IdempotencyKey};
use crate::ports::{CaptureStart, OrderRepo, RefundStart};
use crate::testing::placed_order;

fn draft(order: &Order, token: &str, cents: i64) -> RefundDraft {
    RefundDraft {
        key: IdempotencyKey::for_partial_refund(order.id, token),
        amount: money(cents),
        items: Vec::new(),
        reason: None,
    }
}

async fn begin<R: OrderRepo>(
    repo: &R,
    id: crate::ids::OrderId,
    d: &RefundDraft,
    t: DateTime<Utc>,
) -> RefundStart {
    repo.begin_refund(id, d, t).await.expect("begin_refund")
}

pub(super) async fn refunds_are_recorded_once_per_key_and_never_past_the_capture<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let order = confirmed(repo, "c-refund", CaptureMethod::Automatic, t).await; // 30.97
    let first = RefundDraft {
        items: vec![RefundedItem {
            item_id: ItemId::parse("item_002").expect("id"),
            quantity: Quantity::new(1).expect("quantity"),
        }],
        reason: Some(RefundReason::parse("fries were cold").expect("reason")),
        ..draft(&order, "a", 499)
    };
    let RefundStart::Begun(begun) = begin(repo, order.id, &first, t + secs(1)).await else {
        panic!("a confirmed order's payment can be refunded");
    };
    let recorded = &begun.partial_refunds[0];
    assert_eq!(
        (
            recorded.number.get(),
            recorded.amount,
            recorded.requested_at
        ),
        (1, money(499), t + secs(1))
    );
    assert_eq!(recorded.items, first.items, "the items read back");
    assert_eq!(recorded.reason, first.reason, "the reason reads back");
    assert_eq!(recorded.state, PartialRefundState::Pending);
    assert_eq!(
        begun.status,
        OrderStatus::Confirmed,
        "the order keeps its status"
    );
    assert_eq!(repo.get(order.id).await.expect("get"), Some(begun.clone()));

    assert!(
        matches!(begin(repo, order.id, &first, t + secs(2)).await,
            RefundStart::Begun(o) if o.partial_refunds.len() == 1
                && o.partial_refunds[0].requested_at == t + secs(1)),
        "asking again under the key resumes the refund"
    );
    let other_amount = RefundDraft {
        items: Vec::new(),
        ..first.clone()
    };
    assert!(
        matches!(
            begin(repo, order.id, &other_amount, t + secs(2)).await,
            RefundStart::KeyReused(_)
        ),
        "the key names another refund"
    );
    assert!(
        matches!(begin(repo, order.id, &draft(&order, "b", 2599), t + secs(2)).await,
            RefundStart::Refused(o) if o.partial_refunds.len() == 1),
        "4.99 pending and 25.99 more is past the 30.97 captured"
    );
    let RefundStart::Begun(two) =
        begin(repo, order.id, &draft(&order, "b", 2598), t + secs(2)).await
    else {
        panic!("what is left can be refunded");
    };
    assert_eq!(two.partial_refunds[1].number.get(), 2);
    assert!(matches!(
        begin(repo, order.id, &draft(&order, "c", 1), t + secs(3)).await,
        RefundStart::Refused(_)
    ));
}

pub(super) async fn a_refund_is_settled_once_and_a_refused_one_holds_nothing_back<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let order = confirmed(repo, "c-refund-settle", CaptureMethod::Automatic, t).await;
    let first = draft(&order, "a", 499);
    let other = confirmed(repo, "c-refund-settle-other", CaptureMethod::Automatic, t).await;
    assert!(matches!(
        begin(repo, other.id, &draft(&other, "z", 100), t).await,
        RefundStart::Begun(_)
    ));
    for d in [&first, &draft(&order, "b", 2598)] {
        assert!(matches!(
            begin(repo, order.id, d, t + secs(1)).await,
            RefundStart::Begun(_)
        ));
    }
    let pending = |before, limit| repo.pending_refunds(before, limit);
    assert_eq!(
        pending(t + secs(2), 10).await.expect("pending"),
        [other.id, order.id],
        "the longest waiting first, each order once"
    );
    assert_eq!(pending(t + secs(1), 10).await.expect("pending"), [other.id]);
    assert_eq!(pending(t + secs(2), 1).await.expect("pending"), [other.id]);
    let given = RefundSettlement::Refunded {
        refund_id: "re_a".into(),
        amount: money(499),
    };
    let done = repo
        .finish_refund(order.id, &first.key, &given, t + secs(4))
        .await
        .expect("finish");
    assert_eq!(
        done.partial_refunds[0].state,
        PartialRefundState::Refunded {
            refund_id: "re_a".into(),
            amount: money(499),
            at: t + secs(4)
        }
    );
    let refused = RefundSettlement::Refused { error: "no".into() };
    assert_eq!(
        repo.finish_refund(order.id, &first.key, &refused, t + secs(5))
            .await
            .expect("again"),
        done,
        "recording an outcome again changes nothing"
    );
    assert!(matches!(
        begin(repo, order.id, &first, t + secs(5)).await,
        RefundStart::Settled(_)
    ));

    // A refused refund gives back what it held: 0.01 fits again.
    let b = draft(&order, "b", 2598);
    let after = repo
        .finish_refund(order.id, &b.key, &refused, t + secs(6))
        .await
        .expect("finish");
    assert!(matches!(
        after.partial_refunds[1].state,
        PartialRefundState::Refused { .. }
    ));
    assert_eq!(after.partially_refunded(), money(499));
    let RefundStart::Begun(three) =
        begin(repo, order.id, &draft(&order, "c", 2598), t + secs(7)).await
    else {
        panic!("a refused refund holds nothing back");
    };
    assert_eq!(three.partial_refunds[2].number.get(), 3);
    assert_eq!(repo.get(order.id).await.expect("get"), Some(three));
    assert_eq!(
        pending(t + secs(8), 10).await.expect("pending"),
        [other.id, order.id],
        "the third refund is pending"
    );
    let c = draft(&order, "c", 2598);
    repo.finish_refund(order.id, &c.key, &given, t + secs(8))
        .await
        .expect("finish");
    assert_eq!(
        pending(t + secs(9), 10).await.expect("pending"),
        [other.id],
        "settled refunds are not pending"
    );
}

pub(super) async fn only_a_confirmed_captured_uncancelled_order_is_refunded<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let pending = placed_order("c-refund-pending", t);
    repo.insert(&pending).await.expect("insert");
    let authorized = confirmed(repo, "c-refund-authorized", CaptureMethod::Manual, t).await;
    let cancelled = confirmed(repo, "c-refund-cancelled", CaptureMethod::Automatic, t).await;
    repo.cancel(cancelled.id, CancelReason::Other, t + secs(1))
        .await
        .expect("cancel");
    for order in [&pending, &authorized, &cancelled] {
        let start = begin(repo, order.id, &draft(order, "x", 100), t + secs(2)).await;
        let RefundStart::Refused(found) = start else {
            panic!("{} cannot be refunded, got {start:?}", order.id);
        };
        assert!(found.partial_refunds.is_empty(), "nothing was written");
    }

    // Captured for 10.00 of 30.97: at most 10.00 goes back.
    let captured = confirmed(repo, "c-refund-captured", CaptureMethod::Manual, t).await;
    assert!(matches!(
        repo.begin_capture(captured.id, money(1000), t + secs(1))
            .await,
        Ok(CaptureStart::Begun(_))
    ));
    repo.finish_capture(captured.id, money(1000), t + secs(1))
        .await
        .expect("captured");
    assert!(matches!(
        begin(repo, captured.id, &draft(&captured, "x", 1001), t + secs(2)).await,
        RefundStart::Refused(_)
    ));
    assert!(matches!(
        begin(repo, captured.id, &draft(&captured, "x", 1000), t + secs(2)).await,
        RefundStart::Begun(_)
    ));

    // A refund begun before a cancellation is seen by it; none begins after.
    let order = confirmed(repo, "c-refund-then-cancel", CaptureMethod::Automatic, t).await;
    assert!(matches!(
        begin(repo, order.id, &draft(&order, "a", 500), t + secs(1)).await,
        RefundStart::Begun(_)
    ));
    repo.cancel(order.id, CancelReason::Other, t + secs(2))
        .await
        .expect("cancel");
    let cancelling = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(cancelling.status, OrderStatus::Cancelling);
    assert_eq!(
        cancelling.refund_request().amount,
        money(2597),
        "the rest goes back"
    );
    assert!(matches!(
        begin(repo, order.id, &draft(&order, "b", 100), t + secs(3)).await,
        RefundStart::Refused(_)
    ));
    assert!(matches!(
        repo.begin_refund(crate::ids::OrderId::new(), &draft(&order, "z", 100), t)
            .await,
        Err(crate::ports::RepoError::NotFound(_))
    ));
}

pub(super) async fn of_concurrent_refunds_none_passes_the_capture<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = confirmed(repo, "c-refund-race", CaptureMethod::Automatic, t).await; // 30.97
    let drafts: Vec<RefundDraft> = (0..8)
        .map(|i| draft(&order, &format!("r{i}"), 500))
        .collect();
    let results = futures::future::join_all(
        drafts
            .iter()
            .map(|d| repo.begin_refund(order.id, d, t + secs(1))),
    )
    .await;
    let begun = results
        .iter()
        .filter(|r| matches!(r, Ok(RefundStart::Begun(_))))
        .count();
    assert_eq!(begun, 6, "six refunds of 5.00 fit in 30.97: {results:?}");
    let stored = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(stored.partial_refunds.len(), 6);
    let mut numbers: Vec<u32> = stored
        .partial_refunds
        .iter()
        .map(|r| r.number.get())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=6).collect::<Vec<_>>(), "numbered once each");

    let order = confirmed(repo, "c-refund-race-key", CaptureMethod::Automatic, t).await;
    let same = draft(&order, "same", 100);
    let results =
        futures::future::join_all((0..8).map(|_| repo.begin_refund(order.id, &same, t + secs(1))))
            .await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(RefundStart::Begun(_)))),
        "every request under one key resumes the one refund: {results:?}"
    );
    let stored = repo.get(order.id).await.expect("get").expect("exists");
    assert_eq!(stored.partial_refunds.len(), 1, "recorded once");
    assert_eq!(stored.partially_refunded(), money(100));
}
