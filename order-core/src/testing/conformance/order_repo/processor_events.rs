//! Word from the processor: an event is recorded once, and hastens only an order whose
//! payment a worker still has to do.

use std::time::Duration;

use super::super::{acquire, base_time, secs};
use crate::order::{OrderEvent, OrderStatus, Transition};
use crate::ports::{Claim, OrderRepo};
use crate::testing::placed_order;

pub(super) async fn a_processor_event_is_recorded_once_until_purged<R: OrderRepo>(repo: &R) {
    let t = base_time();
    assert!(
        repo.record_processor_event("evt_1", t)
            .await
            .expect("record")
    );
    assert!(
        !repo
            .record_processor_event("evt_1", t + secs(1))
            .await
            .expect("again")
    );
    assert!(
        repo.record_processor_event("evt_2", t + secs(5))
            .await
            .expect("another")
    );
    repo.purge_requests(t + secs(2)).await.expect("purge");
    assert!(
        repo.record_processor_event("evt_1", t + secs(6))
            .await
            .expect("after the purge"),
        "a purged event is new again"
    );
    assert!(
        !repo
            .record_processor_event("evt_2", t + secs(6))
            .await
            .expect("kept")
    );
}

pub(super) async fn hastening_makes_a_waiting_payment_due_now_and_leaves_the_rest<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let waiting = placed_order("c-hasten-waiting", t);
    let confirmed = placed_order("c-hasten-confirmed", t);
    repo.insert_many(&[waiting.clone(), confirmed.clone()])
        .await
        .expect("insert");
    // One attempt failed and the next is an hour away.
    let (lease, _) = acquire(repo, waiting.id, "a", t).await;
    repo.release(&lease, None, t + secs(3600), t)
        .await
        .expect("release");
    let (lease, _) = acquire(repo, confirmed.id, "a", t).await;
    let paid = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    repo.settle(&lease, None, paid, t).await.expect("settle");
    let claim = || {
        let b = super::super::worker("b");
        async move {
            repo.claim(waiting.id, &b, t + secs(10), Duration::from_secs(30))
                .await
        }
    };
    assert!(matches!(claim().await, Ok(Claim::NotDue { .. })));

    let hastened = repo
        .hasten(waiting.id, t + secs(10))
        .await
        .expect("hasten")
        .expect("exists");
    assert_eq!(hastened.status, OrderStatus::PaymentProcessing);
    assert!(
        matches!(claim().await, Ok(Claim::Acquired { .. })),
        "due at once"
    );
    let left = repo
        .hasten(confirmed.id, t + secs(10))
        .await
        .expect("hasten")
        .expect("exists");
    assert_eq!(
        left.status,
        OrderStatus::Confirmed,
        "a settled order is left as it is"
    );
    assert!(
        repo.due(t + secs(11), 10)
            .await
            .expect("due")
            .iter()
            .all(|j| j.order_id != confirmed.id)
    );
    assert_eq!(
        repo.hasten(crate::ids::OrderId::new(), t)
            .await
            .expect("hasten"),
        None
    );
}

pub(super) async fn unresolved_charges_are_those_still_paid_whose_last_attempt_timed_out<
    R: OrderRepo,
>(
    repo: &R,
) {
    use crate::order::CancelReason;
    use crate::payment::{Attempt, AttemptOutcome};

    let t = base_time();
    let timed_out = || AttemptOutcome::TimedOut {
        error: "no answer".into(),
    };
    let orders: Vec<_> = (0..5)
        .map(|i| placed_order(&format!("c-unresolved-{i}"), t))
        .collect();
    repo.insert_many(&orders).await.expect("insert");
    let [early, failed_after, cancelled, late, confirmed] = [0, 1, 2, 3, 4].map(|i| orders[i].id);
    // Each order's charge is attempted once, at t + i seconds, and times out.
    for (i, id) in [early, failed_after, cancelled, late, confirmed]
        .into_iter()
        .enumerate()
    {
        let at = t + secs(i64::try_from(i).expect("small"));
        let (lease, _) = acquire(repo, id, "a", at).await;
        let first = Attempt::Charge(super::super::attempt(1, timed_out(), at));
        if id == confirmed {
            let paid =
                Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
                    .expect("allowed");
            repo.settle(&lease, Some(first), paid, at)
                .await
                .expect("settle");
        } else {
            repo.release(&lease, Some(first), at + secs(600), at)
                .await
                .expect("release");
        }
    }
    // A later attempt that got a clean answer: no longer waiting on an unknown outcome.
    let at = t + secs(30);
    let (lease, _) = acquire(repo, failed_after, "b", t + secs(700)).await;
    let failed = AttemptOutcome::Failed {
        error: "processor error".into(),
    };
    repo.release(
        &lease,
        Some(Attempt::Charge(super::super::attempt(2, failed, at))),
        at + secs(600),
        at,
    )
    .await
    .expect("release");
    repo.cancel(cancelled, CancelReason::RequestedByCustomer, t + secs(40))
        .await
        .expect("cancel");

    let unresolved = |before, limit| repo.unresolved_charges(before, limit);
    assert_eq!(
        unresolved(t + secs(800), 10).await.expect("unresolved"),
        vec![early, late],
        "still being paid, last attempt timed out, longest waiting first"
    );
    assert_eq!(
        unresolved(t + secs(800), 1).await.expect("unresolved"),
        vec![early]
    );
    assert_eq!(
        unresolved(t + secs(2), 10).await.expect("unresolved"),
        vec![early],
        "only those waiting since before `before`"
    );
}
