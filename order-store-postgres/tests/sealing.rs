//! Webhook signing secrets sealed at rest with `WEBHOOK_SECRET_KEY`: the store honours its
//! contract with a key, no stored byte is a secret, secrets written before the key are
//! sealed at start, and a sealed secret cannot be read without its key.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use order_core::ports::WebhookStore;
use order_core::testing::conformance;
use order_core::webhook::{Endpoint, EndpointUrl, EventType, NewEndpoint, Secret};
use order_store_postgres::testing::TestSchema;
use order_store_postgres::{PgOrderRepo, PoolConfig, SecretKey, SecretKeys};

fn key(byte: &str) -> SecretKeys {
    SecretKey::from_hex(&byte.repeat(32)).unwrap().into()
}

/// A migrator on `schema`'s tables, run to completion with `keys`.
async fn migrate_with(schema: &TestSchema, keys: SecretKeys) {
    let url = format!(
        "{}?options=-csearch_path%3D{}",
        order_store_postgres::testing::database_url(),
        schema.name
    );
    let (_, migrator) = PgOrderRepo::lazy(&url, &PoolConfig::default()).unwrap();
    assert!(
        migrator
            .with_secret_keys(Some(keys))
            .run(std::future::pending())
            .await
    );
}

fn endpoint() -> Endpoint {
    Endpoint::create(
        NewEndpoint {
            url: EndpointUrl::parse("https://receiver.example.com/hooks", false).unwrap(),
            events: EventType::ALL.into_iter().collect(),
            owner: None,
            description: String::new(),
        },
        Utc::now(),
    )
}

/// What the table holds for `endpoint`: its secret and retiring secret as stored.
async fn stored(repo: &PgOrderRepo, endpoint: &Endpoint) -> (Vec<u8>, Option<Vec<u8>>) {
    sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1")
        .bind(endpoint.id.as_uuid())
        .fetch_one(repo.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sealed_store_honours_the_webhook_store_contract() {
    let schemas: Arc<Mutex<Vec<TestSchema>>> = Arc::default();
    conformance::webhook_store(|| async {
        let schema = TestSchema::create().await;
        let repo = schema.repo().with_secret_keys(Some(key("3c")));
        schemas.lock().unwrap().push(schema);
        repo
    })
    .await;
    let made = std::mem::take(&mut *schemas.lock().unwrap());
    for schema in made {
        schema.drop().await;
    }
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_the_older_ones_sealed_at_start() {
    let schema = TestSchema::create().await;
    // Written before a key was set: stored as it is.
    let plain = schema.repo();
    let early = endpoint();
    plain.insert_endpoint(&early, 100).await.unwrap();
    assert_eq!(stored(&plain, &early).await.0, early.secret.as_bytes());

    // A key from now on: new secrets, and rotated ones, are sealed.
    let sealed = schema.repo().with_secret_keys(Some(key("5e")));
    let late = endpoint();
    sealed.insert_endpoint(&late, 100).await.unwrap();
    let next = Secret::generate();
    sealed
        .rotate_secret(late.id, &next, Utc::now(), Utc::now())
        .await
        .unwrap();
    let (secret, previous) = stored(&sealed, &late).await;
    for (value, clear) in [
        (&secret, next.as_bytes()),
        (&previous.unwrap(), late.secret.as_bytes()),
    ] {
        assert!(value.len() > 64, "sealed");
        assert!(
            !value.windows(clear.len()).any(|w| w == clear),
            "no secret in the clear"
        );
    }
    let read = sealed.endpoint(late.id).await.unwrap().unwrap();
    assert_eq!(read.secret, next);
    assert_eq!(read.previous_secret.unwrap().secret, late.secret);
    // The older, unsealed one still reads with the key.
    assert_eq!(sealed.endpoint(early.id).await.unwrap().unwrap(), early);

    // At start, the migrator seals what was stored before.
    migrate_with(&schema, key("5e")).await;
    let (secret, _) = stored(&sealed, &early).await;
    assert!(secret.len() > 64, "sealed at start");
    assert_eq!(sealed.endpoint(early.id).await.unwrap().unwrap(), early);

    // Without the key, or with another, a sealed secret is an error naming it, never a
    // secret a receiver would not trust.
    for repo in [
        schema.repo(),
        schema.repo().with_secret_keys(Some(key("77"))),
    ] {
        let refused = repo.endpoint(early.id).await;
        let error = refused.expect_err("a sealed secret needs its key");
        let detail = format!("{error:?}");
        assert!(
            detail.contains("webhook_endpoints") && detail.contains("secret"),
            "{detail}"
        );
    }
    schema.drop().await;
}

#[tokio::test]
async fn a_rotated_key_opens_with_the_previous_one_until_the_start_seals_everything_again() {
    let schema = TestSchema::create().await;
    let (old, new) = (
        SecretKey::from_hex(&"a1".repeat(32)).unwrap(),
        SecretKey::from_hex(&"b2".repeat(32)).unwrap(),
    );
    let before = schema.repo().with_secret_keys(Some(old.clone().into()));
    let rotated = endpoint();
    before.insert_endpoint(&rotated, 100).await.unwrap();
    let next = Secret::generate();
    before
        .rotate_secret(
            rotated.id,
            &next,
            Utc::now() + chrono::Duration::hours(1),
            Utc::now(),
        )
        .await
        .unwrap();
    let rotated = before.endpoint(rotated.id).await.unwrap().unwrap();
    // A row as the first sealing format wrote it: version 1, no key id.
    let first_format = endpoint();
    before.insert_endpoint(&first_format, 100).await.unwrap();
    sqlx::query(
        "UPDATE webhook_endpoints SET secret = '\\x01'::bytea || substring(secret FROM 6) \
         WHERE id = $1",
    )
    .bind(first_format.id.as_uuid())
    .execute(before.pool())
    .await
    .unwrap();
    assert_eq!(stored(&before, &first_format).await.0[0], 1);

    // The key is rotated: the new one seals, the old one still opens.
    let both = SecretKeys::from(new.clone()).with_previous(vec![old.clone()]);
    let during = schema.repo().with_secret_keys(Some(both.clone()));
    assert_eq!(during.endpoint(rotated.id).await.unwrap().unwrap(), rotated);
    assert_eq!(
        during.endpoint(first_format.id).await.unwrap().unwrap(),
        first_format
    );
    let new_only = schema.repo().with_secret_keys(Some(new.clone().into()));
    let refused = format!("{:?}", new_only.endpoint(rotated.id).await.unwrap_err());
    assert!(
        refused.contains("WEBHOOK_SECRET_KEY_PREVIOUS"),
        "says which variable is missing the key: {refused}"
    );

    // At start everything is sealed again with the new key; then the old one may go.
    migrate_with(&schema, both).await;
    for e in [&rotated, &first_format] {
        let (secret, previous) = stored(&new_only, e).await;
        for value in std::iter::once(&secret).chain(previous.as_ref()) {
            assert_eq!(value[0], 2, "the format naming its key");
        }
        assert_eq!(&new_only.endpoint(e.id).await.unwrap().unwrap(), e);
    }
    let old_only = schema.repo().with_secret_keys(Some(old.into()));
    assert!(
        old_only.endpoint(rotated.id).await.is_err(),
        "the old key opens nothing any more"
    );
    schema.drop().await;
}
