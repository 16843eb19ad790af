//! Keys of placed requests: reserve, replay, reject, take over, abandon, purge.

use std::time::Duration;

use super::super::{base_time, secs};
use crate::ports::{OrderRepo, RepoError};

pub(super) async fn request_keys_reserve_replay_and_reject<R: OrderRepo>(repo: &R) {
    use crate::request::{Fingerprint, KeyedRequest, RequestKey};
    use crate::testing::new_order;

    let t = base_time();
    let minute = Duration::from_secs(60);
    let fresh_key =
        || RequestKey::parse(format!("key-{}", uuid::Uuid::now_v7().simple())).expect("valid key");
    let new = new_order("c-key");
    let fp = Fingerprint::of(&new);

    let key = fresh_key();
    let KeyedRequest::New(token) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("an unknown key is reserved");
    };
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(1), minute)
            .await
            .expect("begin"),
        KeyedRequest::InFlight
    );
    let other = Fingerprint::of(&new_order("c-key-other"));
    assert_eq!(
        repo.begin_request(&key, &other, t + secs(1), minute)
            .await
            .expect("begin"),
        KeyedRequest::Mismatch,
        "another order under the same key"
    );
    let order = new.clone().place(crate::ids::OrderId::new(), t);
    repo.insert_for_request(&order, &key, token)
        .await
        .expect("insert_for_request");
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(2), minute)
            .await
            .expect("begin"),
        KeyedRequest::Completed(order.id)
    );
    assert_eq!(
        repo.get(order.id).await.expect("get").as_ref(),
        Some(&order)
    );
    assert_eq!(
        repo.begin_request(&key, &fp, t + secs(3600), minute)
            .await
            .expect("begin"),
        KeyedRequest::Completed(order.id),
        "a completed key never goes stale"
    );
}

pub(super) async fn stale_request_keys_are_taken_over_abandoned_ones_freed_old_ones_purged<
    R: OrderRepo,
>(
    repo: &R,
) {
    use crate::request::{Fingerprint, KeyedRequest, RequestKey};
    use crate::testing::new_order;

    let t = base_time();
    let minute = Duration::from_secs(60);
    let fresh_key =
        || RequestKey::parse(format!("key-{}", uuid::Uuid::now_v7().simple())).expect("valid key");
    let new = new_order("c-key");
    let fp = Fingerprint::of(&new);

    // A stale reservation is taken over; the old holder can no longer store its order.
    let key = fresh_key();
    let KeyedRequest::New(old) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("reserved");
    };
    let KeyedRequest::New(new_token) = repo
        .begin_request(&key, &fp, t + secs(61), minute)
        .await
        .expect("begin")
    else {
        panic!("a stale reservation is taken over");
    };
    assert_ne!(old, new_token);
    let late = new.clone().place(crate::ids::OrderId::new(), t);
    assert!(matches!(
        repo.insert_for_request(&late, &key, old).await,
        Err(RepoError::RequestSuperseded(_))
    ));
    assert_eq!(
        repo.get(late.id).await.expect("get"),
        None,
        "a superseded request stores nothing"
    );
    let current = new.clone().place(crate::ids::OrderId::new(), t + secs(61));
    repo.insert_for_request(&current, &key, new_token)
        .await
        .expect("insert_for_request");

    // An abandoned reservation frees the key.
    let key = fresh_key();
    let KeyedRequest::New(token) = repo
        .begin_request(&key, &fp, t, minute)
        .await
        .expect("begin")
    else {
        panic!("reserved");
    };
    repo.abandon_request(&key, token).await.expect("abandon");
    assert!(matches!(
        repo.begin_request(&key, &fp, t, minute)
            .await
            .expect("begin"),
        KeyedRequest::New(_)
    ));

    // Past retention, keys are forgotten.
    assert!(repo.purge_requests(t + secs(3600)).await.expect("purge") >= 2);
    let first = RequestKey::parse(key.as_str()).expect("valid");
    assert!(matches!(
        repo.begin_request(&first, &fp, t + secs(3601), minute)
            .await
            .expect("begin"),
        KeyedRequest::New(_)
    ));
}
