//! The conformance suite of [`WebhookStore`]: the outbox an order store writes, and the
//! endpoints and deliveries of webhooks.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{acquire, attempt, base_time, secs};
use crate::money::Money;
use crate::order::{CancelReason, OrderEvent, OrderStatus, Transition};
use crate::payment::{Attempt, AttemptOutcome, RefundAttempt, RefundOutcome};
use crate::ports::{
    ClaimedDelivery, DeliveryNext, FinishedDelivery, OrderRepo, RepoError, WebhookStore,
};
use crate::testing::placed_order;
use crate::webhook::{DeliveryAttempt, Endpoint, EndpointUrl, EventType, NewEndpoint, event_types};

const LEASE: Duration = Duration::from_secs(30);

fn endpoint(events: &[EventType], at: DateTime<Utc>) -> Endpoint {
    Endpoint::create(
        NewEndpoint {
            url: EndpointUrl::parse("https://hooks.example.com/orders", false).expect("a URL"),
            events: events.iter().copied().collect(),
            description: "kitchen".into(),
        },
        at,
    )
}

fn transition(from: OrderStatus, event: OrderEvent) -> Transition {
    Transition::apply(from, event).expect("an allowed transition")
}

fn tried(claimed: &ClaimedDelivery, at: DateTime<Utc>, status: Option<u16>) -> DeliveryAttempt {
    DeliveryAttempt {
        event_id: claimed.event.id,
        event_type: claimed.event.kind,
        endpoint_id: claimed.endpoint.id,
        attempt: claimed.attempt,
        attempted_at: at,
        status_code: status,
        error: status.is_none().then(|| "connection refused".to_owned()),
        latency: Duration::from_millis(12),
        response_excerpt: "ok".into(),
        delivered: status.is_some_and(|s| (200..300).contains(&s)),
    }
}

/// Records one attempt through the batch call; a result not recorded is a lost lease.
async fn finish<S: WebhookStore>(
    store: &S,
    claimed: &ClaimedDelivery,
    attempt: &DeliveryAttempt,
    next: DeliveryNext,
    disable: Option<String>,
) -> Result<(), RepoError> {
    let recorded = store
        .finish_deliveries(&[FinishedDelivery {
            claimed: claimed.clone(),
            attempt: attempt.clone(),
            next,
            disable,
        }])
        .await?;
    assert_eq!(recorded.len(), 1, "one answer per delivery");
    if recorded[0] {
        Ok(())
    } else {
        Err(RepoError::LeaseLost(claimed.event.order_id))
    }
}

/// Fans out until `want` events have been taken, as a dispatcher's rounds would: an
/// adapter may hold an event back while a write begun before it is still running (in any
/// test sharing the server). Fails if a call takes more than asked or `want` are not all
/// taken within 10 s.
async fn fan_out_all<S: WebhookStore>(store: &S, now: DateTime<Utc>, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut taken = 0;
    while taken < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {taken} of {want} events fanned out within 10 s"
        );
        let now_taken = store.fan_out(now, want - taken).await.expect("fan out");
        assert!(now_taken <= want - taken, "up to the limit");
        if now_taken == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        taken += now_taken;
    }
}

async fn streak<S: WebhookStore>(
    store: &S,
    id: crate::webhook::EndpointId,
) -> Option<DateTime<Utc>> {
    let endpoint = store.endpoint(id).await.expect("get");
    endpoint.expect("stored").failing_since
}

async fn kinds<S: WebhookStore>(store: &S, order: crate::ids::OrderId) -> Vec<EventType> {
    store
        .events_of(order)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Checks a [`WebhookStore`] (with the [`OrderRepo`] that writes its outbox) against its
/// contract. `make` returns a fresh, empty store.
pub async fn webhook_store<S, F, Fut>(make: F)
where
    S: WebhookStore + OrderRepo,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    every_status_change_records_one_event(&make().await).await;
    a_refunded_cancellation_records_the_refund_after_the_cancellation(&make().await).await;
    endpoints_are_stored_as_given(&make().await).await;
    events_fan_out_to_enabled_subscribers_once(&make().await).await;
    deliveries_are_claimed_once_under_a_lease(&make().await).await;
    attempts_schedule_retries_and_end_the_failure_streak(&make().await).await;
    giving_up_ends_a_delivery_and_disabling_holds_the_rest_back(&make().await).await;
    events_can_be_delivered_again(&make().await).await;
    a_batch_records_what_is_still_leased_and_sums_each_endpoints_streak(&make().await).await;
    purging_forgets_settled_history_and_keeps_what_is_still_owed(&make().await).await;
    an_orders_events_never_go_back_in_time(&make().await).await;
}

async fn every_status_change_records_one_event<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    let others = [placed_order("bob", t), placed_order("carol", t)];
    store.insert_many(&others).await.expect("insert many");
    assert!(matches!(
        store.insert(&order).await,
        Err(RepoError::Duplicate(_))
    ));
    assert_eq!(
        kinds(store, order.id).await,
        [EventType::Created],
        "one event per insert; a refused duplicate records none"
    );
    for other in &others {
        assert_eq!(kinds(store, other.id).await, [EventType::Created]);
    }
    let created = &store.events_of(order.id).await.expect("events")[0];
    assert_eq!(created.occurred_at, order.created_at);
    assert_eq!(created.order_id, order.id);
    assert_eq!(
        store.event(created.id).await.expect("event").as_ref(),
        Some(created)
    );

    let (lease, _) = acquire(store, order.id, "w1", t + secs(1)).await;
    store
        .release(
            &lease,
            Some(Attempt::Charge(attempt(
                1,
                AttemptOutcome::Failed {
                    error: "boom".into(),
                },
                t + secs(1),
            ))),
            t + secs(5),
            t + secs(2),
        )
        .await
        .expect("release");
    let (lease, _) = acquire(store, order.id, "w1", t + secs(5)).await;
    assert_eq!(
        kinds(store, order.id).await,
        [EventType::Created, EventType::PaymentProcessing],
        "only the claim that changed the status records an event"
    );
    store
        .settle(
            &lease,
            Some(Attempt::Charge(attempt(
                2,
                AttemptOutcome::Succeeded {
                    transaction_id: "txn_1".into(),
                },
                t + secs(5),
            ))),
            transition(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured),
            t + secs(6),
        )
        .await
        .expect("settle");
    let events = store.events_of(order.id).await.expect("events");
    assert_eq!(events[2].kind, EventType::Confirmed);
    assert_eq!(events[2].occurred_at, t + secs(6), "at the change's time");

    store
        .cancel(order.id, CancelReason::Other, t + secs(7))
        .await
        .expect("cancel");
    store
        .cancel(order.id, CancelReason::Other, t + secs(8))
        .await
        .expect("cancel again changes nothing");
    let pending = &others[0];
    store
        .cancel(pending.id, CancelReason::Duplicate, t + secs(9))
        .await
        .expect("cancel");
    assert_eq!(
        kinds(store, order.id).await,
        [
            EventType::Created,
            EventType::PaymentProcessing,
            EventType::Confirmed,
            EventType::Cancelling
        ]
    );
    assert_eq!(
        kinds(store, pending.id).await,
        [EventType::Created, EventType::Cancelled]
    );
    let ids: std::collections::HashSet<_> = store
        .events_of(order.id)
        .await
        .expect("events")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), 4, "every event has its own id");
}

async fn a_refunded_cancellation_records_the_refund_after_the_cancellation<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let refund = |number: u32, outcome: RefundOutcome| {
        Some(Attempt::Refund(RefundAttempt {
            number: NonZeroU32::new(number).expect("from 1"),
            outcome,
            started_at: t + secs(3),
            finished_at: t + secs(3),
        }))
    };
    let mut settled = Vec::new();
    for outcome in [
        RefundOutcome::Refunded {
            refund_id: "re_1".into(),
            amount: Money::ZERO,
        },
        RefundOutcome::NothingCaptured,
    ] {
        let order = placed_order("alice", t);
        store.insert(&order).await.expect("insert");
        acquire(store, order.id, "w1", t + secs(1)).await;
        store
            .cancel(order.id, CancelReason::Other, t + secs(2))
            .await
            .expect("cancel");
        // The paying worker's lease is still live: the refund waits for it to run out.
        let (lease, _) = acquire(store, order.id, "w2", t + secs(40)).await;
        store
            .settle(
                &lease,
                refund(1, outcome),
                transition(OrderStatus::Cancelling, OrderEvent::Refunded),
                t + secs(41),
            )
            .await
            .expect("settle");
        settled.push(kinds(store, order.id).await);
    }
    let start = [
        EventType::Created,
        EventType::PaymentProcessing,
        EventType::Cancelling,
        EventType::Cancelled,
    ];
    assert_eq!(
        settled[0],
        [start.as_slice(), &[EventType::Refunded]].concat(),
        "a refund that gave money back is an event of its own, after the cancellation"
    );
    assert_eq!(settled[1], start, "a voided charge refunded nothing");
}

async fn endpoints_are_stored_as_given<S: WebhookStore>(store: &S) {
    let t = base_time();
    let mut first = endpoint(&EventType::ALL, t);
    let second = endpoint(&[EventType::Confirmed], t + secs(1));
    store.insert_endpoint(&first).await.expect("insert");
    store.insert_endpoint(&second).await.expect("insert");
    assert_eq!(
        store.endpoint(first.id).await.expect("get").as_ref(),
        Some(&first)
    );
    assert_eq!(
        store.endpoints().await.expect("list"),
        [first.clone(), second.clone()],
        "oldest first"
    );
    first.rotate_secret(t + secs(2), Duration::from_secs(3600));
    first.url = EndpointUrl::parse("https://other.example.com/", false).expect("a URL");
    first.events = event_types(Some(&["order.cancelled".into()])).expect("types");
    first.set_enabled(false, t + secs(2));
    assert!(store.update_endpoint(&first).await.expect("update"));
    assert_eq!(
        store.endpoint(first.id).await.expect("get").as_ref(),
        Some(&first),
        "an update keeps everything, the retiring secret included"
    );
    let unknown = endpoint(&EventType::ALL, t);
    assert!(!store.update_endpoint(&unknown).await.expect("update"));
    assert!(store.delete_endpoint(first.id).await.expect("delete"));
    assert!(!store.delete_endpoint(first.id).await.expect("delete"));
    assert_eq!(store.endpoints().await.expect("list"), [second]);
}

async fn events_fan_out_to_enabled_subscribers_once<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let all = endpoint(&EventType::ALL, t);
    let confirmed_only = endpoint(&[EventType::Confirmed], t);
    let mut disabled = endpoint(&EventType::ALL, t);
    disabled.set_enabled(false, t);
    for e in [&all, &confirmed_only, &disabled] {
        store.insert_endpoint(e).await.expect("insert");
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
    let claimed = store.claim_deliveries(t, LEASE, 10).await.expect("claim");
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

async fn deliveries_are_claimed_once_under_a_lease<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook).await.expect("insert");
    let orders: Vec<_> = (0..6).map(|_| placed_order("alice", t)).collect();
    store.insert_many(&orders).await.expect("insert");
    fan_out_all(store, t, orders.len()).await;
    let (a, b) = tokio::join!(
        store.claim_deliveries(t, LEASE, 4),
        store.claim_deliveries(t, LEASE, 4)
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    let mut ids: Vec<_> = a.iter().chain(&b).map(|c| c.event.id).collect();
    assert_eq!(ids.len(), 6, "every due delivery, within the limits");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "none handed out twice");
    assert!(
        store
            .claim_deliveries(t + secs(29), LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased deliveries are not handed out again while the lease lives"
    );
    let again = store
        .claim_deliveries(t + secs(30), LEASE, 10)
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

async fn attempts_schedule_retries_and_end_the_failure_streak<S: WebhookStore + OrderRepo>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook).await.expect("insert");
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    fan_out_all(store, t, 1).await;
    let first = store.claim_deliveries(t, LEASE, 10).await.expect("claim");
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
            .claim_deliveries(t + secs(4), LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due before the retry time"
    );
    let second = store
        .claim_deliveries(t + secs(5), LEASE, 10)
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
        .claim_deliveries(t + secs(10), LEASE, 10)
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
            .claim_deliveries(t + secs(99), LEASE, 10)
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

async fn giving_up_ends_a_delivery_and_disabling_holds_the_rest_back<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&EventType::ALL, t);
    store.insert_endpoint(&hook).await.expect("insert");
    let more = [placed_order("bob", t), placed_order("carol", t)];
    store.insert_many(&more).await.expect("insert");
    fan_out_all(store, t + secs(20), more.len()).await;
    let claimed = store
        .claim_deliveries(t + secs(20), LEASE, 1)
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
            .claim_deliveries(t + secs(99), LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a disabled endpoint gets nothing"
    );
    let mut enabled = disabled.clone();
    enabled.set_enabled(true, t + secs(30));
    store.update_endpoint(&enabled).await.expect("update");
    let resumed = store
        .claim_deliveries(t + secs(99), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(
        resumed.len(),
        1,
        "enabled again, it gets what waited; not what was given up"
    );
    assert_ne!(resumed[0].event.id, gone.event.id);
}

async fn events_can_be_delivered_again<S: WebhookStore + OrderRepo>(store: &S) {
    let t = base_time();
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    // No endpoint yet: fanned out to none.
    fan_out_all(store, t, 1).await;
    let event = store.events_of(order.id).await.expect("events")[0].clone();
    assert_eq!(
        store.redeliver(event.id, t).await.expect("redeliver"),
        Some(0),
        "no subscriber"
    );
    let hook = endpoint(&[EventType::Created], t);
    store.insert_endpoint(&hook).await.expect("insert");
    let other = endpoint(&[EventType::Confirmed], t);
    store.insert_endpoint(&other).await.expect("insert");
    assert_eq!(
        store
            .redeliver(event.id, t + secs(1))
            .await
            .expect("redeliver"),
        Some(1)
    );
    let claimed = store
        .claim_deliveries(t + secs(1), LEASE, 10)
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
            .redeliver(event.id, t + secs(2))
            .await
            .expect("redeliver"),
        Some(1)
    );
    let again = store
        .claim_deliveries(t + secs(2), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1, "a delivered event goes out again");
    assert_eq!(again[0].attempt, 2, "counting on from its attempts");
    assert_eq!(again[0].event, event);
    let unknown = crate::webhook::EventId::new();
    assert_eq!(store.redeliver(unknown, t).await.expect("redeliver"), None);
    assert_eq!(store.event(unknown).await.expect("event"), None);
}

async fn a_batch_records_what_is_still_leased_and_sums_each_endpoints_streak<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let (works, fails) = (endpoint(&EventType::ALL, t), endpoint(&EventType::ALL, t));
    store.insert_endpoint(&works).await.expect("insert");
    store.insert_endpoint(&fails).await.expect("insert");
    let orders: Vec<_> = (0..2).map(|_| placed_order("alice", t)).collect();
    store.insert_many(&orders).await.expect("insert");
    fan_out_all(store, t, orders.len()).await;
    // One delivery is taken over by another dispatcher before this one records it.
    let lost = store.claim_deliveries(t, LEASE, 1).await.expect("claim");
    let rest = store
        .claim_deliveries(t + secs(29), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 3, "two events to two endpoints");
    let taken = store
        .claim_deliveries(t + secs(30), LEASE, 10)
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

async fn purging_forgets_settled_history_and_keeps_what_is_still_owed<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let hook = endpoint(&[EventType::Created], t);
    store.insert_endpoint(&hook).await.expect("insert");
    let (delivered, owed, recent) = (
        placed_order("alice", t),
        placed_order("bob", t),
        placed_order("carol", t + secs(100)),
    );
    store.insert(&delivered).await.expect("insert");
    store.insert(&owed).await.expect("insert");
    fan_out_all(store, t, 2).await;
    let claimed = store.claim_deliveries(t, LEASE, 10).await.expect("claim");
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
        .claim_deliveries(t + secs(600), LEASE, 10)
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
async fn an_orders_events_never_go_back_in_time<S: WebhookStore + OrderRepo>(store: &S) {
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
