//! Claims and lease ends in batches.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::{acquire, attempt, base_time, secs, worker};
use super::take_over;
use crate::order::{CancelReason, OrderEvent, OrderStatus, Transition};
use crate::payment::{Attempt, AttemptOutcome, PaymentAttempt};
use crate::ports::{Claim, OrderRepo, RepoError};
use crate::testing::placed_order;

/// Orders for a claim batch at `t`, stored: one free, one leased to another worker until
/// `t + 29 s`, one settled, one released until `t + 60 s`, one whose holder died (its lease
/// ran out).
pub(super) async fn claim_batch_fixture<R: OrderRepo>(
    repo: &R,
    t: DateTime<Utc>,
) -> [crate::order::Order; 5] {
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

pub(super) async fn a_claim_batch_answers_each_order_as_if_claimed_alone<R: OrderRepo>(repo: &R) {
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

pub(super) async fn concurrent_claim_batches_acquire_each_order_once<R: OrderRepo>(repo: &R) {
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

pub(super) async fn a_batch_of_lease_ends_writes_each_end_or_fails_it_alone<R: OrderRepo>(
    repo: &R,
) {
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
pub(super) async fn after_the_batch_of_ends<R: OrderRepo>(
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
