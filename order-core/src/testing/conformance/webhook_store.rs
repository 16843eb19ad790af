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
    ClaimLimits, ClaimedDelivery, DeliveryNext, FinishedDelivery, OrderRepo, RepoError,
    WebhookStore,
};
use crate::testing::placed_order;
use crate::webhook::{
    DeliveryAttempt, Endpoint, EndpointChange, EndpointUrl, EventType, NewEndpoint, Secret,
    event_types,
};

mod deliveries;
mod owners;
mod shares;

use deliveries::{
    a_batch_records_what_is_still_leased_and_sums_each_endpoints_streak,
    an_orders_events_never_go_back_in_time, attempts_schedule_retries_and_end_the_failure_streak,
    deliveries_are_claimed_once_under_a_lease, events_can_be_delivered_again,
    events_fan_out_to_enabled_subscribers_once,
    giving_up_ends_a_delivery_and_disabling_holds_the_rest_back,
    no_bytes_a_receiver_sends_fail_a_batch,
    purging_forgets_settled_history_and_keeps_what_is_still_owed,
};
use owners::{
    a_customers_endpoint_receives_only_that_customers_events,
    an_owner_has_at_most_its_quota_of_endpoints,
};
use shares::{
    a_failing_endpoint_has_one_delivery_leased_at_a_time,
    an_endpoint_has_at_most_its_share_of_deliveries_leased,
    concurrent_claims_keep_every_endpoint_within_its_share,
};

const LEASE: Duration = Duration::from_secs(30);

/// Limits of a claim that are only about the total: no endpoint here has that many.
const fn up_to(total: usize) -> ClaimLimits {
    ClaimLimits {
        total,
        per_endpoint: 1_000,
    }
}

fn endpoint(events: &[EventType], at: DateTime<Utc>) -> Endpoint {
    Endpoint::create(
        NewEndpoint {
            url: EndpointUrl::parse("https://hooks.example.com/orders", false).expect("a URL"),
            events: events.iter().copied().collect(),
            owner: None,
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
    a_refund_asked_for_on_its_own_that_gave_money_back_is_an_event(&make().await).await;
    endpoints_are_stored_as_given(&make().await).await;
    events_fan_out_to_enabled_subscribers_once(&make().await).await;
    deliveries_are_claimed_once_under_a_lease(&make().await).await;
    attempts_schedule_retries_and_end_the_failure_streak(&make().await).await;
    giving_up_ends_a_delivery_and_disabling_holds_the_rest_back(&make().await).await;
    events_can_be_delivered_again(&make().await).await;
    a_batch_records_what_is_still_leased_and_sums_each_endpoints_streak(&make().await).await;
    no_bytes_a_receiver_sends_fail_a_batch(&make().await).await;
    purging_forgets_settled_history_and_keeps_what_is_still_owed(&make().await).await;
    an_orders_events_never_go_back_in_time(&make().await).await;
    a_customers_endpoint_receives_only_that_customers_events(&make().await).await;
    an_owner_has_at_most_its_quota_of_endpoints(&make().await).await;
    an_endpoint_has_at_most_its_share_of_deliveries_leased(&make().await).await;
    a_failing_endpoint_has_one_delivery_leased_at_a_time(&make().await).await;
    concurrent_claims_keep_every_endpoint_within_its_share(&make().await).await;
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
    store.insert_endpoint(&first, 100).await.expect("insert");
    store.insert_endpoint(&second, 100).await.expect("insert");
    assert_eq!(
        store.endpoint(first.id).await.expect("get").as_ref(),
        Some(&first)
    );
    assert_eq!(
        store.endpoints(None).await.expect("list"),
        [first.clone(), second.clone()],
        "oldest first"
    );
    // A rotation and a change, each from the same stale read: neither loses the other.
    let stale = first.clone();
    let secret = Secret::generate();
    let until = t + secs(3600);
    let rotated = store
        .rotate_secret(first.id, &secret, until, t + secs(2))
        .await
        .expect("rotate")
        .expect("stored");
    first.rotate_to(secret.clone(), until, t + secs(2));
    assert_eq!(
        rotated, first,
        "the stored secret retires, the new one signs"
    );
    let change = EndpointChange {
        url: Some(EndpointUrl::parse("https://other.example.com/", false).expect("a URL")),
        events: Some(event_types(Some(&["order.cancelled".into()])).expect("types")),
        description: None,
        enabled: Some(false),
    };
    let changed = store
        .change_endpoint(stale.id, &change, t + secs(3))
        .await
        .expect("change")
        .expect("stored");
    first.apply(&change, t + secs(3));
    assert_eq!(changed, first, "the change keeps the rotated secrets");
    assert_eq!(changed.secret, secret);
    assert_eq!(
        store.endpoint(first.id).await.expect("get").as_ref(),
        Some(&first),
        "as the writes left it, the retiring secret included"
    );
    let unknown = endpoint(&EventType::ALL, t);
    assert!(
        store
            .change_endpoint(unknown.id, &change, t)
            .await
            .expect("change")
            .is_none()
    );
    assert!(
        store
            .rotate_secret(unknown.id, &secret, until, t)
            .await
            .expect("rotate")
            .is_none()
    );
    assert!(store.delete_endpoint(first.id).await.expect("delete"));
    assert!(!store.delete_endpoint(first.id).await.expect("delete"));
    assert_eq!(store.endpoints(None).await.expect("list"), [second]);
}

async fn a_refund_asked_for_on_its_own_that_gave_money_back_is_an_event<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    use crate::order::{RefundDraft, RefundSettlement};
    use crate::ports::RefundStart;

    let t = base_time();
    let order = placed_order("alice", t);
    store.insert(&order).await.expect("insert");
    let (lease, _) = acquire(store, order.id, "w1", t + secs(1)).await;
    store
        .settle(
            &lease,
            None,
            transition(OrderStatus::PaymentProcessing, OrderEvent::PaymentCaptured),
            t + secs(2),
        )
        .await
        .expect("settle");
    let cents = |n| Money::new(rust_decimal::Decimal::new(n, 2)).expect("money");
    let mut drafts = Vec::new();
    for (name, at) in [("given", 3), ("refused", 4)] {
        let draft = RefundDraft {
            key: crate::payment::IdempotencyKey::for_partial_refund(order.id, name),
            amount: cents(500),
            items: Vec::new(),
            reason: None,
        };
        let started = store
            .begin_refund(order.id, &draft, t + secs(at))
            .await
            .expect("begin");
        assert!(matches!(started, RefundStart::Begun(_)), "{started:?}");
        drafts.push(draft);
    }
    let given = RefundSettlement::Refunded {
        refund_id: "re_1".into(),
        amount: cents(500),
    };
    let refused = RefundSettlement::Refused { error: "no".into() };
    for (draft, settlement, at) in [(&drafts[0], &given, 5), (&drafts[1], &refused, 6)] {
        for _ in 0..2 {
            store
                .finish_refund(order.id, &draft.key, settlement, t + secs(at))
                .await
                .expect("finish");
        }
    }
    let start = [
        EventType::Created,
        EventType::PaymentProcessing,
        EventType::Confirmed,
    ];
    assert_eq!(
        kinds(store, order.id).await,
        [start.as_slice(), &[EventType::PartiallyRefunded]].concat(),
        "once for the refund that gave money back, none for the refused one"
    );
    let events = store.events_of(order.id).await.expect("events");
    assert_eq!(events.last().map(|e| e.occurred_at), Some(t + secs(5)));
}
