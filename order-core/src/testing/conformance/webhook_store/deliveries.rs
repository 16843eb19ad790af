//! Fan-out, claims, attempts, retries, giving up, redelivery, purging and ordering of
//! webhook deliveries.

use super::super::{acquire, base_time, secs};
use super::{LEASE, endpoint, fan_out_all, finish, streak, tried, up_to};
use crate::order::CancelReason;
use crate::ports::{DeliveryNext, FinishedDelivery, OrderRepo, RepoError, WebhookStore};
use crate::testing::placed_order;
use crate::webhook::EventType;

pub(super) async fn events_fan_out_to_enabled_subscribers_once<S: WebhookStore + OrderRepo>(
    store: &S,
) {
    let t = base_time();
    let all = endpoint(&EventType::ALL, t);
    let confirmed_only = endpoint(&[EventType::Confirmed], t);
    let mut disabled = endpoint(&EventType::ALL, t);
    disabled.set_enabled(false, t);
    for e in [&all, &confirmed_only, &disabled] {
        store.insert_endpoint(e, 100).await.expect("insert");
    }
    assert_eq!(
        store.oldest_waiting_event().await.expect("oldest"),
        None,
        "nothing waits"
    );
    let orders = [placed_order("alice", t), placed_order("bob", t + secs(1))];
    store.insert(&orders[0]).await.expect("insert");
    store.insert(&orders[1]).await.expect("insert");
    assert_eq!(
        store.oldest_waiting_event().await.expect("oldest"),
        Some(t),
        "the first event waits"
    );
    fan_out_all(store, t, 1).await;
    assert_eq!(
        store.oldest_waiting_event().await.expect("oldest"),
        Some(t + secs(1)),
        "then the second"
    );
    fan_out_all(store, t, 1).await;
    assert_eq!(
        store.oldest_waiting_event().await.expect("oldest"),
        None,
        "all fanned out"
    );
    assert_eq!(
        store.fan_out(t, 10).await.expect("fan out"),
        0,
        "each event once"
    );
    let claimed = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        2,
        "one per created event, to the one subscriber enabled"
    );
    for c in &claimed {
        assert_eq!(c.endpoint.id, all.id);
        assert_eq!(c.event.kind, EventType::Created);
        assert_eq!(c.attempt, 1);
        assert_eq!(c.endpoint, all, "the endpoint as stored, secret included");
    }
    let mut got: Vec<_> = claimed.iter().map(|c| c.event.order_id).collect();
    got.sort_unstable();
    let mut want: Vec<_> = orders.iter().map(|o| o.id).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

pub(super) async fn deliveries_are_claimed_once_under_a_lease<S: WebhookStore + OrderRepo>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook, 100).await.expect("insert");
    let orders: Vec<_> = (0..6).map(|_| placed_order("alice", t)).collect();
    store.insert_many(&orders).await.expect("insert");
    fan_out_all(store, t, orders.len()).await;
    let (a, b) = tokio::join!(
        store.claim_deliveries(t, LEASE, up_to(4)),
        store.claim_deliveries(t, LEASE, up_to(4))
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    assert!(a.len() <= 4 && b.len() <= 4, "within the limit");
    // A claim may pass over an endpoint another claim is counting: the rest is there for
    // the next one.
    let rest = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    let mut ids: Vec<_> = a
        .iter()
        .chain(&b)
        .chain(&rest)
        .map(|c| c.event.id)
        .collect();
    assert_eq!(ids.len(), 6, "every due delivery");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "none handed out twice");
    assert!(
        store
            .claim_deliveries(t + secs(29), LEASE, up_to(10))
            .await
            .expect("claim")
            .is_empty(),
        "leased deliveries are not handed out again while the lease lives"
    );
    let again = store
        .claim_deliveries(t + secs(30), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(again.len(), 6, "an expired lease frees the delivery");
    assert!(
        again.iter().all(|c| c.attempt == 1),
        "no attempt was recorded"
    );
    let stale = &a[0];
    assert!(
        matches!(
            finish(
                store,
                stale,
                &tried(stale, t + secs(31), Some(200)),
                DeliveryNext::Delivered,
                None
            )
            .await,
            Err(RepoError::LeaseLost(_))
        ),
        "the old lease's result is refused"
    );
    assert!(
        store
            .attempts(hook.id, 10)
            .await
            .expect("attempts")
            .is_empty(),
        "and not recorded"
    );
}

pub(super) async fn attempts_schedule_retries_and_end_the_failure_streak<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook, 100).await.expect("insert");
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    fan_out_all(store, t, 1).await;
    let first = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    let first = &first[0];
    finish(
        store,
        first,
        &tried(first, t, Some(500)),
        DeliveryNext::RetryAt(t + secs(5)),
        None,
    )
    .await
    .expect("finish");
    let failing = store
        .endpoint(hook.id)
        .await
        .expect("get")
        .map(|e| e.failing_since);
    assert_eq!(failing, Some(Some(t)), "a failure starts the streak");
    assert!(
        store
            .claim_deliveries(t + secs(4), LEASE, up_to(10))
            .await
            .expect("claim")
            .is_empty(),
        "not due before the retry time"
    );
    let second = store
        .claim_deliveries(t + secs(5), LEASE, up_to(10))
        .await
        .expect("claim");
    let second = &second[0];
    assert_eq!(second.attempt, 2);
    assert_eq!(second.event.id, first.event.id);
    assert_eq!(second.endpoint.failing_since, Some(t));
    finish(
        store,
        second,
        &tried(second, t + secs(5), None),
        DeliveryNext::RetryAt(t + secs(10)),
        None,
    )
    .await
    .expect("finish");
    assert_eq!(
        streak(store, hook.id).await,
        Some(t),
        "a streak keeps its start"
    );
    let third = store
        .claim_deliveries(t + secs(10), LEASE, up_to(10))
        .await
        .expect("claim");
    let third = &third[0];
    finish(
        store,
        third,
        &tried(third, t + secs(10), Some(204)),
        DeliveryNext::Delivered,
        None,
    )
    .await
    .expect("finish");
    assert_eq!(
        streak(store, hook.id).await,
        None,
        "a delivery ends the streak"
    );
    assert!(
        store
            .claim_deliveries(t + secs(99), LEASE, up_to(10))
            .await
            .expect("claim")
            .is_empty(),
        "a delivered event is done"
    );
    let attempts = store.attempts(hook.id, 10).await.expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status_code))
            .collect::<Vec<_>>(),
        [(3, Some(204)), (2, None), (1, Some(500))],
        "newest first"
    );
    assert_eq!(attempts[1], tried(second, t + secs(5), None), "as recorded");
    assert_eq!(store.attempts(hook.id, 1).await.expect("attempts").len(), 1);
}

pub(super) async fn giving_up_ends_a_delivery_and_disabling_holds_the_rest_back<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook, 100).await.expect("insert");
    let more = [placed_order("bob", t), placed_order("carol", t)];
    store.insert_many(&more).await.expect("insert");
    fan_out_all(store, t + secs(20), more.len()).await;
    let claimed = store
        .claim_deliveries(t + secs(20), LEASE, up_to(1))
        .await
        .expect("claim");
    let gone = &claimed[0];
    finish(
        store,
        gone,
        &tried(gone, t + secs(20), Some(410)),
        DeliveryNext::GiveUp,
        Some("the endpoint answered 410 Gone".into()),
    )
    .await
    .expect("finish");
    let disabled = store.endpoint(hook.id).await.expect("get").expect("stored");
    assert!(!disabled.enabled);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert!(
        store
            .claim_deliveries(t + secs(99), LEASE, up_to(10))
            .await
            .expect("claim")
            .is_empty(),
        "a disabled endpoint gets nothing"
    );
    let enable = crate::webhook::EndpointChange {
        enabled: Some(true),
        ..Default::default()
    };
    let enabled = store
        .change_endpoint(disabled.id, &enable, t + secs(30))
        .await
        .expect("change")
        .expect("stored");
    assert!(
        enabled.enabled && enabled.disabled_reason.is_none() && enabled.failing_since.is_none(),
        "enabling clears the reason and the streak: {enabled:?}"
    );
    let resumed = store
        .claim_deliveries(t + secs(99), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(
        resumed.len(),
        1,
        "enabled again, it gets what waited; not what was given up"
    );
    assert_ne!(resumed[0].event.id, gone.event.id);
}

pub(super) async fn events_can_be_delivered_again<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    // No endpoint yet: fanned out to none.
    fan_out_all(store, t, 1).await;
    let event = store.events_of(order.id).await.expect("events")[0].clone();
    assert_eq!(
        store.redeliver(event.id, t, None).await.expect("redeliver"),
        Some(0),
        "no subscriber"
    );
    let hook = endpoint(&[EventType::Created], t);
    store.insert_endpoint(&hook, 100).await.expect("insert");
    let other = endpoint(&[EventType::Confirmed], t);
    store.insert_endpoint(&other, 100).await.expect("insert");
    assert_eq!(
        store
            .redeliver(event.id, t + secs(1), None)
            .await
            .expect("redeliver"),
        Some(1)
    );
    let claimed = store
        .claim_deliveries(t + secs(1), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    finish(
        store,
        &claimed[0],
        &tried(&claimed[0], t + secs(1), Some(200)),
        DeliveryNext::Delivered,
        None,
    )
    .await
    .expect("finish");
    assert_eq!(
        store
            .redeliver(event.id, t + secs(2), None)
            .await
            .expect("redeliver"),
        Some(1)
    );
    let again = store
        .claim_deliveries(t + secs(2), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(again.len(), 1, "a delivered event goes out again");
    assert_eq!(again[0].attempt, 2, "counting on from its attempts");
    assert_eq!(again[0].event, event);
    let unknown = crate::webhook::EventId::new();
    assert_eq!(
        store.redeliver(unknown, t, None).await.expect("redeliver"),
        None
    );
    assert_eq!(store.event(unknown).await.expect("event"), None);
}

pub(super) async fn a_batch_records_what_is_still_leased_and_sums_each_endpoints_streak<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let (works, fails) = (endpoint(&EventType::ALL, t), endpoint(&EventType::ALL, t));
    store.insert_endpoint(&works, 100).await.expect("insert");
    store.insert_endpoint(&fails, 100).await.expect("insert");
    let orders: Vec<_> = (0..2).map(|_| placed_order("alice", t)).collect();
    store.insert_many(&orders).await.expect("insert");
    fan_out_all(store, t, orders.len()).await;
    // One delivery is taken over by another dispatcher before this one records it.
    let lost = store
        .claim_deliveries(t, LEASE, up_to(1))
        .await
        .expect("claim");
    let rest = store
        .claim_deliveries(t + secs(29), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(rest.len(), 3, "two events to two endpoints");
    let taken = store
        .claim_deliveries(t + secs(30), LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1, "only the first lease ran out");
    assert_eq!(
        (taken[0].event.id, taken[0].endpoint.id),
        (lost[0].event.id, lost[0].endpoint.id)
    );
    let claimed: Vec<_> = lost.into_iter().chain(rest).collect();
    let finished: Vec<FinishedDelivery> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let works_here = c.endpoint.id == works.id;
            let at = t + secs(i64::try_from(i).expect("small"));
            FinishedDelivery {
                claimed: c.clone(),
                attempt: tried(c, at, Some(if works_here { 200 } else { 500 })),
                next: if works_here {
                    DeliveryNext::Delivered
                } else {
                    DeliveryNext::RetryAt(t + secs(60))
                },
                disable: None,
            }
        })
        .collect();
    let recorded = store.finish_deliveries(&finished).await.expect("finish");
    assert_eq!(
        recorded,
        [false, true, true, true],
        "all but the one taken over"
    );
    let recorded_attempts = store.attempts(works.id, 10).await.expect("attempts").len()
        + store.attempts(fails.id, 10).await.expect("attempts").len();
    assert_eq!(recorded_attempts, 3);
    assert_eq!(streak(store, works.id).await, None, "it delivered");
    let first_failure = finished
        .iter()
        .skip(1)
        .filter(|f| !f.attempt.delivered)
        .map(|f| f.attempt.attempted_at)
        .min();
    assert_eq!(
        streak(store, fails.id).await,
        first_failure,
        "its streak starts at its earliest recorded failure"
    );
    assert!(
        store
            .finish_deliveries(&[])
            .await
            .expect("finish")
            .is_empty(),
        "an empty batch is fine"
    );
}

pub(super) async fn no_bytes_a_receiver_sends_fail_a_batch<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let (poisoned, plain) = (endpoint(&EventType::ALL, t), endpoint(&EventType::ALL, t));
    store.insert_endpoint(&poisoned, 100).await.expect("insert");
    store.insert_endpoint(&plain, 100).await.expect("insert");
    store
        .insert(&placed_order("alice", t))
        .await
        .expect("insert");
    fan_out_all(store, t, 1).await;
    let claimed = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let nasty = "a\0b\u{1}c\u{7f}d\te\u{9b}";
    let finished: Vec<FinishedDelivery> = claimed
        .iter()
        .map(|c| {
            let mut attempt = tried(c, t, Some(500));
            if c.endpoint.id == poisoned.id {
                nasty.clone_into(&mut attempt.response_excerpt);
                attempt.error = Some(nasty.to_owned());
            }
            FinishedDelivery {
                claimed: c.clone(),
                attempt,
                next: DeliveryNext::RetryAt(t + secs(60)),
                disable: None,
            }
        })
        .collect();
    let recorded = store.finish_deliveries(&finished).await.expect("finish");
    assert_eq!(recorded, [true, true], "every row is recorded");
    let kept = store.attempts(poisoned.id, 10).await.expect("attempts");
    assert_eq!(kept.len(), 1);
    let clean = "a\u{fffd}b\u{fffd}c\u{fffd}d\te\u{fffd}";
    assert_eq!(kept[0].response_excerpt, clean);
    assert_eq!(kept[0].error.as_deref(), Some(clean));
    assert_eq!(
        store.attempts(plain.id, 10).await.expect("attempts").len(),
        1
    );
    assert!(
        store
            .claim_deliveries(t + secs(1), LEASE, up_to(10))
            .await
            .expect("claim")
            .is_empty(),
        "both wait for their retry: nothing is resent at once"
    );
}

pub(super) async fn purging_forgets_settled_history_and_keeps_what_is_still_owed<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&[EventType::Created], t);
    store.insert_endpoint(&hook, 100).await.expect("insert");
    let (delivered, owed, recent) = (
        placed_order("alice", t),
        placed_order("bob", t),
        placed_order("carol", t + secs(100)),
    );
    store.insert(&delivered).await.expect("insert");
    store.insert(&owed).await.expect("insert");
    fan_out_all(store, t, 2).await;
    let claimed = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    let done = claimed
        .iter()
        .find(|c| c.event.order_id == delivered.id)
        .expect("claimed");
    finish(
        store,
        done,
        &tried(done, t, Some(200)),
        DeliveryNext::Delivered,
        None,
    )
    .await
    .expect("finish");
    let retry = claimed
        .iter()
        .find(|c| c.event.order_id == owed.id)
        .expect("claimed");
    finish(
        store,
        retry,
        &tried(retry, t, Some(500)),
        DeliveryNext::RetryAt(t + secs(600)),
        None,
    )
    .await
    .expect("finish");
    store.insert(&recent).await.expect("insert");
    let unfanned = placed_order("dave", t);
    store
        .insert(&unfanned)
        .await
        .expect("insert: its event is not fanned out yet");

    assert_eq!(store.purge(t + secs(50), 100).await.expect("purge"), 1);
    assert!(
        store
            .events_of(delivered.id)
            .await
            .expect("events")
            .is_empty(),
        "delivered: forgotten"
    );
    assert_eq!(
        store.events_of(owed.id).await.expect("events").len(),
        1,
        "still owed a delivery"
    );
    assert_eq!(
        store.events_of(recent.id).await.expect("events").len(),
        1,
        "too recent"
    );
    assert_eq!(
        store.events_of(unfanned.id).await.expect("events").len(),
        1,
        "not fanned out"
    );
    assert!(
        store
            .attempts(hook.id, 10)
            .await
            .expect("attempts")
            .is_empty(),
        "old attempts go"
    );
    let due = store
        .claim_deliveries(t + secs(600), LEASE, up_to(10))
        .await
        .expect("claim");
    assert!(
        due.iter().any(|c| c.event.order_id == owed.id),
        "the owed delivery is still due"
    );
    // The rest still fan out.
    fan_out_all(store, t + secs(600), 2).await;
    assert_eq!(
        store.fan_out(t + secs(600), 10).await.expect("fan out"),
        0,
        "each event once"
    );
}

/// A cancellation whose `now` was taken before a claim that committed first (two processes)
/// must not report an earlier time than the claim: receivers order events by time.
pub(super) async fn an_orders_events_never_go_back_in_time<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    acquire(store, order.id, "w1", t + secs(10)).await;
    store
        .cancel(order.id, CancelReason::Other, t + secs(5))
        .await
        .expect("cancel");
    let times: Vec<_> = store
        .events_of(order.id)
        .await
        .expect("events")
        .iter()
        .map(|e| e.occurred_at)
        .collect();
    assert_eq!(
        times,
        [t, t + secs(10), t + secs(10)],
        "never earlier than the last change"
    );
    let stored = store.get(order.id).await.expect("get").expect("stored");
    assert_eq!(
        stored.updated_at,
        t + secs(10),
        "updated_at never moves back"
    );
}
