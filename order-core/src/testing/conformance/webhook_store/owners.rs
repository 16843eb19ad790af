//! Endpoints that belong to a customer: what reaches them, who lists them, how many one
//! customer has.

use std::collections::BTreeMap;

use super::super::{base_time, secs};
use super::{LEASE, endpoint, fan_out_all, up_to};
use crate::ids::CustomerId;
use crate::ports::{OrderRepo, WebhookStore};
use crate::testing::placed_order;
use crate::webhook::{Endpoint, EventType};

fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).expect("a customer id")
}

fn owned_by(owner: Option<&str>, at: chrono::DateTime<chrono::Utc>) -> Endpoint {
    let mut e = endpoint(&EventType::ALL, at);
    e.owner = owner.map(customer);
    e
}

pub(super) async fn a_customers_endpoint_receives_only_that_customers_events<
    S: WebhookStore + OrderRepo,
>(
    store: &S,
) {
    let t = base_time();
    let everyone = owned_by(None, t);
    let alices = owned_by(Some("alice"), t + secs(1));
    let bobs = owned_by(Some("bob"), t + secs(2));
    for e in [&everyone, &alices, &bobs] {
        store.insert_endpoint(e, 100).await.expect("insert");
    }
    let alice = placed_order("alice", t);
    let carol = placed_order("carol", t + secs(1));
    store.insert(&alice).await.expect("insert");
    store.insert(&carol).await.expect("insert");
    fan_out_all(store, t, 2).await;
    let claimed = store
        .claim_deliveries(t, LEASE, up_to(10))
        .await
        .expect("claim");
    let mut got: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for c in &claimed {
        got.entry(c.endpoint.id).or_default().push(c.event.order_id);
    }
    assert_eq!(
        got.get(&everyone.id).map(Vec::len),
        Some(2),
        "every customer's"
    );
    assert_eq!(got.get(&alices.id), Some(&vec![alice.id]), "alice's only");
    assert_eq!(got.get(&bobs.id), None, "bob has no order");

    assert_eq!(
        store
            .endpoints(Some(&customer("alice")))
            .await
            .expect("list"),
        std::slice::from_ref(&alices)
    );
    assert_eq!(
        store.endpoints(None).await.expect("list"),
        [everyone, alices, bobs],
        "every endpoint, oldest first"
    );
    assert!(
        store
            .endpoints(Some(&customer("carol")))
            .await
            .expect("list")
            .is_empty()
    );

    let event = store.events_of(alice.id).await.expect("events")[0].id;
    assert_eq!(
        store.redeliver(event, t, None).await.expect("redeliver"),
        Some(2),
        "to the endpoint of every customer's and to alice's"
    );
    assert_eq!(
        store
            .redeliver(event, t, Some(&customer("alice")))
            .await
            .expect("redeliver"),
        Some(1),
        "to alice's only"
    );
    assert_eq!(
        store
            .redeliver(event, t, Some(&customer("bob")))
            .await
            .expect("redeliver"),
        Some(0),
        "bob's never gets alice's events"
    );
}

pub(super) async fn an_owner_has_at_most_its_quota_of_endpoints<S: WebhookStore + OrderRepo>(
    store: &S,
) {
    let t = base_time();
    for owner in [Some("alice"), None] {
        assert!(
            store
                .insert_endpoint(&owned_by(owner, t), 2)
                .await
                .expect("insert")
        );
        assert!(
            store
                .insert_endpoint(&owned_by(owner, t), 2)
                .await
                .expect("insert")
        );
        assert!(
            !store
                .insert_endpoint(&owned_by(owner, t), 2)
                .await
                .expect("insert"),
            "{owner:?} has two already"
        );
    }
    assert!(
        store
            .insert_endpoint(&owned_by(Some("bob"), t), 2)
            .await
            .expect("insert"),
        "each owner has a quota of its own"
    );
    let racing: Vec<Endpoint> = (0..8).map(|_| owned_by(Some("carol"), t)).collect();
    let inserted =
        futures::future::join_all(racing.iter().map(|e| store.insert_endpoint(e, 3))).await;
    let stored = inserted
        .into_iter()
        .map(|r| r.expect("insert"))
        .filter(|stored| *stored)
        .count();
    assert_eq!(stored, 3, "concurrent inserts stop at the quota");
    assert_eq!(
        store
            .endpoints(Some(&customer("carol")))
            .await
            .expect("list")
            .len(),
        3
    );
}
