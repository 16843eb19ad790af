//! The [`ApiKeyStore`](crate::ports::ApiKeyStore) suite.

use std::future::Future;

use chrono::{DateTime, Utc};

/// Checks an [`ApiKeyStore`](crate::ports::ApiKeyStore) against its contract. `make` returns
/// an empty store.
pub async fn api_key_store<S, F, Fut>(make: F)
where
    S: crate::ports::ApiKeyStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    use crate::access::{NewApiKey, Scope, issue};

    let store = make().await;
    let t = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a time");
    let secs = |n| t + chrono::Duration::seconds(n);
    let (first, first_plain) = issue(
        NewApiKey {
            name: "ops".into(),
            scopes: vec![Scope::KeysManage, Scope::OrdersRead],
            customer_id: None,
            expires_at: Some(secs(3600)),
        },
        t,
    )
    .expect("a valid key");
    let (second, _) = issue(
        NewApiKey {
            name: "app".into(),
            scopes: vec![Scope::OrdersWrite],
            customer_id: Some(crate::ids::CustomerId::parse("alice").expect("an id")),
            expires_at: None,
        },
        secs(1),
    )
    .expect("a valid key");
    store.insert_key(&first).await.expect("insert");
    store.insert_key(&second).await.expect("insert");
    let stored = store.key(&first.id).await.expect("key").expect("stored");
    assert_eq!(stored, first, "stored as given");
    assert!(
        stored
            .authenticate(&first_plain.parse().expect("a key"), t)
            .is_ok(),
        "the stored hash still proves the key"
    );
    assert_eq!(
        store
            .keys()
            .await
            .expect("keys")
            .iter()
            .map(|k| k.id.clone())
            .collect::<Vec<_>>(),
        [second.id.clone(), first.id.clone()],
        "newest first"
    );

    let revoked = store
        .revoke_key(&first.id, secs(10))
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(revoked.revoked_at, Some(secs(10)));
    let again = store
        .revoke_key(&first.id, secs(20))
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(
        again.revoked_at,
        Some(secs(10)),
        "the first revocation counts"
    );
    let (unknown, _) = issue(
        NewApiKey {
            name: "never stored".into(),
            scopes: vec![Scope::OrdersRead],
            customer_id: None,
            expires_at: None,
        },
        t,
    )
    .expect("a valid key");
    assert!(
        store
            .revoke_key(&unknown.id, t)
            .await
            .expect("revoke")
            .is_none()
    );
    assert!(store.key(&unknown.id).await.expect("key").is_none());

    store.touch_key(&second.id, secs(30)).await.expect("touch");
    store.touch_key(&second.id, secs(25)).await.expect("touch");
    store
        .touch_key(&unknown.id, secs(30))
        .await
        .expect("touching no key is fine");
    assert_eq!(
        store
            .key(&second.id)
            .await
            .expect("key")
            .expect("stored")
            .last_used_at,
        Some(secs(30)),
        "last use never moves back"
    );
}
