//! Each endpoint's share of the deliveries under a lease: a receiver that hangs holds a
//! few posts of every dispatcher, never all of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::super::{base_time, secs};
use super::{LEASE, endpoint, fan_out_all, finish, tried};
use crate::ports::{ClaimLimits, ClaimedDelivery, DeliveryNext, OrderRepo, WebhookStore};
use crate::testing::placed_order;
use crate::webhook::{Endpoint, EndpointId, EventType};

const SHARE: ClaimLimits = ClaimLimits {
    total: 100,
    per_endpoint: 2,
};

/// Two endpoints subscribed to every event, and `orders` orders fanned out to both.
async fn two_endpoints_with_deliveries<S: WebhookStore + OrderRepo>(
    store: &S,
    orders: usize,
    t: DateTime<Utc>,
) -> (Endpoint, Endpoint) {
    let first = endpoint(&EventType::ALL, t);
    let second = endpoint(&EventType::ALL, t + secs(1));
    for e in [&first, &second] {
        store.insert_endpoint(e, 100).await.expect("insert");
    }
    let placed: Vec<_> = (0..orders).map(|_| placed_order("alice", t)).collect();
    store.insert_many(&placed).await.expect("insert");
    fan_out_all(store, t, orders).await;
    (first, second)
}

/// One claim at `at` within [`SHARE`].
async fn claim<S: WebhookStore>(store: &S, at: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(at, LEASE, SHARE)
        .await
        .expect("claim")
}

/// Records one of `endpoint`'s deliveries among `claimed` as delivered at `at`.
async fn delivered<S: WebhookStore>(
    store: &S,
    claimed: &[ClaimedDelivery],
    endpoint: EndpointId,
    at: DateTime<Utc>,
) {
    let one = claimed
        .iter()
        .find(|c| c.endpoint.id == endpoint)
        .expect("one of the endpoint's deliveries");
    finish(
        store,
        one,
        &tried(one, at, Some(204)),
        DeliveryNext::Delivered,
        None,
    )
    .await
    .expect("record");
}

fn per_endpoint(claimed: &[ClaimedDelivery]) -> HashMap<EndpointId, usize> {
    let mut counts = HashMap::new();
    for c in claimed {
        *counts.entry(c.endpoint.id).or_default() += 1;
    }
    counts
}

pub(super) async fn an_endpoint_has_at_most_its_share_of_deliveries_leased<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let (first, second) = two_endpoints_with_deliveries(store, 5, t).await;
    let claimed = claim(store, t).await;
    let counts = per_endpoint(&claimed);
    assert_eq!(
        (counts.get(&first.id), counts.get(&second.id)),
        (Some(&2), Some(&2)),
        "each endpoint's share, however many are due"
    );
    assert!(
        claim(store, t + secs(1)).await.is_empty(),
        "leased deliveries count against the share"
    );
    delivered(store, &claimed, first.id, t + secs(1)).await;
    let next = claim(store, t + secs(2)).await;
    assert_eq!(next.len(), 1, "a recorded attempt frees its place");
    assert_eq!(next[0].endpoint.id, first.id);
    let after_leases = claim(store, t + secs(40)).await;
    assert_eq!(
        per_endpoint(&after_leases)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [2, 2],
        "an expired lease frees its place"
    );
    let few = store
        .claim_deliveries(t + secs(80), LEASE, ClaimLimits { total: 3, ..SHARE })
        .await
        .expect("claim");
    assert_eq!(few.len(), 3, "and the total still bounds the claim");
}

pub(super) async fn a_failing_endpoint_has_one_delivery_leased_at_a_time<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let (first, second) = two_endpoints_with_deliveries(store, 5, t).await;
    let claimed = claim(store, t).await;
    let failed: Vec<_> = claimed
        .iter()
        .filter(|c| c.endpoint.id == second.id)
        .collect();
    assert_eq!(failed.len(), 2);
    for c in &failed {
        finish(
            store,
            c,
            &tried(c, t + secs(1), Some(500)),
            DeliveryNext::RetryAt(t + secs(2)),
            None,
        )
        .await
        .expect("record");
    }
    let next = claim(store, t + secs(3)).await;
    assert_eq!(
        per_endpoint(&next).get(&second.id),
        Some(&1),
        "a failing endpoint gets one delivery under a lease"
    );
    assert_eq!(
        per_endpoint(&next).get(&first.id),
        None,
        "the healthy one still holds its share"
    );
    delivered(store, &next, second.id, t + secs(4)).await;
    let healed = claim(store, t + secs(5)).await;
    assert_eq!(
        per_endpoint(&healed).get(&second.id),
        Some(&2),
        "a delivery that got through gives it its share back"
    );
    assert_eq!(
        store
            .endpoint(first.id)
            .await
            .expect("get")
            .map(|e| e.failing_since),
        Some(None)
    );
}

pub(super) async fn concurrent_claims_keep_every_endpoint_within_its_share<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let (first, second) = two_endpoints_with_deliveries(store, 8, t).await;
    let claims =
        futures::future::join_all((0..6).map(|_| store.claim_deliveries(t, LEASE, SHARE))).await;
    let all: Vec<ClaimedDelivery> = claims.into_iter().flat_map(|c| c.expect("claim")).collect();
    let counts = per_endpoint(&all);
    assert!(
        counts.get(&first.id).copied().unwrap_or(0) <= 2
            && counts.get(&second.id).copied().unwrap_or(0) <= 2,
        "six claims at once hand out no more than each endpoint's share: {counts:?}"
    );
    let later = claim(store, t + secs(1)).await;
    let total = all.len() + later.len();
    assert_eq!(total, 4, "and one claim after them fills every share");
}
