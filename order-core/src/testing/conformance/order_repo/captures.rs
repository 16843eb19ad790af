//! Captures of authorized payments: asked for once, for one amount, by a confirmed order
//! paid with manual capture; recorded once taken.

use chrono::{DateTime, Utc};

use super::super::{acquire, base_time, secs};
use crate::Money;
use crate::order::{CancelReason, Order, OrderEvent, OrderStatus, Transition};
use crate::payment::CaptureMethod;
use crate::ports::{CaptureStart, OrderRepo};
use crate::testing::placed_order;

/// `cents` hundredths.
pub(super) fn money(cents: i64) -> Money {
    Money::new(rust_decimal::Decimal::new(cents, 2)).expect("money")
}

/// A stored order paid with `capture`, `confirmed` at `t`.
pub(super) async fn confirmed<R: OrderRepo>(
    repo: &R,
    name: &str,
    capture: CaptureMethod,
    t: DateTime<Utc>,
) -> Order {
    let mut order = placed_order(name, t);
    order.capture = capture;
    repo.insert(&order).await.expect("insert");
    let (lease, _) = acquire(repo, order.id, "a", t).await;
    let paid = Transition::apply(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured)
        .expect("allowed");
    repo.settle(&lease, None, paid, t).await.expect("settle");
    repo.get(order.id).await.expect("get").expect("exists")
}

pub(super) async fn a_capture_is_asked_for_once_for_one_amount_and_recorded_once<R: OrderRepo>(
    repo: &R,
) {
    let t = base_time();
    let order = confirmed(repo, "c-capture", CaptureMethod::Manual, t).await;
    assert_eq!(
        order.capture,
        CaptureMethod::Manual,
        "the capture method reads back"
    );
    assert_eq!(order.captured, None);

    let begun = repo
        .begin_capture(order.id, money(1000), t + secs(1))
        .await
        .expect("begin");
    let CaptureStart::Begun(begun) = begun else {
        panic!("a confirmed manual order can be captured, got {begun:?}");
    };
    let record = begun.captured.expect("the capture is recorded");
    assert_eq!(
        (record.amount, record.requested_at, record.captured_at),
        (money(1000), t + secs(1), None)
    );
    assert!(
        matches!(
            repo.begin_capture(order.id, money(1000), t + secs(2)).await,
            Ok(CaptureStart::Begun(o)) if o.captured.map(|c| c.requested_at) == Some(t + secs(1))
        ),
        "asking again for the same amount resumes the capture"
    );
    assert!(
        matches!(
            repo.begin_capture(order.id, money(999), t + secs(2)).await,
            Ok(CaptureStart::Refused(_))
        ),
        "another amount is refused while one is being captured"
    );

    let done = repo
        .finish_capture(order.id, money(1000), t + secs(3))
        .await
        .expect("finish");
    assert_eq!(done.captured.and_then(|c| c.captured_at), Some(t + secs(3)));
    assert_eq!(repo.get(order.id).await.expect("get"), Some(done.clone()));
    assert_eq!(
        repo.finish_capture(order.id, money(1000), t + secs(9))
            .await
            .expect("finish again"),
        done,
        "recording it again changes nothing"
    );
    assert!(matches!(
        repo.begin_capture(order.id, money(1000), t + secs(4)).await,
        Ok(CaptureStart::Captured(_))
    ));
    assert!(matches!(
        repo.begin_capture(order.id, money(500), t + secs(4)).await,
        Ok(CaptureStart::Refused(_))
    ));
}

pub(super) async fn only_a_confirmed_uncancelled_order_with_manual_capture_is_captured<
    R: OrderRepo,
>(
    repo: &R,
) {
    let t = base_time();
    let automatic = confirmed(repo, "c-capture-auto", CaptureMethod::Automatic, t).await;
    let mut pending = placed_order("c-capture-pending", t);
    pending.capture = CaptureMethod::Manual;
    repo.insert(&pending).await.expect("insert");
    let cancelled = confirmed(repo, "c-capture-cancelled", CaptureMethod::Manual, t).await;
    repo.cancel(cancelled.id, CancelReason::Other, t + secs(1))
        .await
        .expect("cancel");

    for id in [automatic.id, pending.id, cancelled.id] {
        let start = repo
            .begin_capture(id, money(100), t + secs(2))
            .await
            .expect("begin");
        let CaptureStart::Refused(order) = start else {
            panic!("{id} cannot be captured, got {start:?}");
        };
        assert_eq!(order.captured, None, "nothing was written");
    }
    assert!(matches!(
        repo.begin_capture(crate::ids::OrderId::new(), money(100), t)
            .await,
        Err(crate::ports::RepoError::NotFound(_))
    ));
}

pub(super) async fn of_concurrent_captures_of_different_amounts_one_begins<R: OrderRepo>(repo: &R) {
    let t = base_time();
    let order = confirmed(repo, "c-capture-race", CaptureMethod::Manual, t).await;
    let attempts = (1..=8).map(|i| repo.begin_capture(order.id, money(100 * i), t + secs(1)));
    let results = futures::future::join_all(attempts).await;
    let begun = results
        .iter()
        .filter(|r| matches!(r, Ok(CaptureStart::Begun(_))))
        .count();
    assert_eq!(begun, 1, "{results:?}");
}
