//! `PgOrderRepo` against the real PostgreSQL on this machine, each test in its own schema.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use order_core::ports::{Claim, OrderRepo, RepoError};
use order_core::testing::{conformance, placed_order};
use order_core::{OrderId, WorkerId};
use order_store_postgres::testing::TestSchema;
use order_store_postgres::{CorruptRow, PgOrderRepo, PoolConfig, connect_options, lazy_pool};

/// Fresh stores, each in a schema of its own, for a conformance suite; the schemas are
/// dropped with this value's `drop_all`.
#[derive(Default, Clone)]
struct FreshSchemas(Arc<Mutex<Vec<TestSchema>>>);

impl FreshSchemas {
    /// A store in a new, empty schema.
    async fn make(&self) -> PgOrderRepo {
        let schema = TestSchema::create().await;
        let repo = schema.repo();
        self.0.lock().unwrap().push(schema);
        repo
    }

    async fn drop_all(self) {
        let schemas = std::mem::take(&mut *self.0.lock().unwrap());
        for schema in schemas {
            schema.drop().await;
        }
    }
}

#[tokio::test]
async fn the_postgres_repo_honours_the_order_repo_contract() {
    let schemas = FreshSchemas::default();
    conformance::order_repo(|| schemas.make()).await;
    schemas.drop_all().await;
}

#[tokio::test]
async fn the_postgres_repo_honours_the_api_key_store_contract() {
    let schema = TestSchema::create().await;
    let repo = schema.repo();
    conformance::api_key_store(|| async { repo.clone() }).await;
    // Only hashes are stored: no column holds anything shaped like a secret.
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT id, secret_sha256 FROM api_keys")
        .fetch_all(repo.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, hash)| hash.len() == 32));
    schema.drop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_unavailable_within_the_acquire_timeout() {
    let options = connect_options("postgres://postgres@127.0.0.1:1/postgres").unwrap();
    let config = PoolConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
    };
    let repo = PgOrderRepo::new(lazy_pool(options, &config));
    let start = Instant::now();

    let err = repo.get(OrderId::new()).await.unwrap_err();

    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        !err.to_string().contains("SELECT"),
        "no SQL in the message: {err}"
    );
}

#[tokio::test]
async fn two_workers_on_separate_connections_racing_for_orders_each_win_once() {
    let schema = TestSchema::create().await;
    let config = PoolConfig::default();
    let a = PgOrderRepo::new(lazy_pool(schema.options.clone(), &config));
    let b = PgOrderRepo::new(lazy_pool(schema.options.clone(), &config));
    let orders: Vec<_> = (0..50).map(|_| placed_order("race", Utc::now())).collect();
    a.insert_many(&orders).await.unwrap();
    let (wa, wb) = (WorkerId::parse("a").unwrap(), WorkerId::parse("b").unwrap());
    let now = Utc::now();

    let mut wins = 0;
    for order in &orders {
        let (ra, rb) = tokio::join!(
            a.claim(order.id, &wa, now, Duration::from_secs(30)),
            b.claim(order.id, &wb, now, Duration::from_secs(30)),
        );
        let acquired = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|c| matches!(c, Claim::Acquired { .. }))
            .count();
        assert_eq!(acquired, 1, "exactly one worker claims {}", order.id);
        wins += acquired;
    }

    assert_eq!(wins, 50);
    schema.drop().await;
}

#[tokio::test]
async fn a_batch_of_a_thousand_orders_is_stored_in_one_statement() {
    let schema = TestSchema::create().await;
    let repo = schema.repo();
    let orders: Vec<_> = (0..1000)
        .map(|i| placed_order(&format!("bulk-{}", i % 7), Utc::now()))
        .collect();

    repo.insert_many(&orders).await.unwrap();

    for order in orders.iter().step_by(97) {
        assert_eq!(repo.get(order.id).await.unwrap().as_ref(), Some(order));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM order_items")
        .fetch_one(repo.pool())
        .await
        .unwrap();
    assert_eq!(stored, 2000);
    schema.drop().await;
}

#[tokio::test]
async fn migrations_can_run_again_at_every_start() {
    let schema = TestSchema::create().await;
    order_store_postgres::migrate(&schema.pool).await.unwrap();
    order_store_postgres::migrate(&schema.pool).await.unwrap();
    schema.drop().await;
}

#[tokio::test]
async fn a_stored_value_the_domain_rejects_is_a_typed_error_naming_its_column() {
    let schema = TestSchema::create().await;
    let repo = schema.repo();
    let order = placed_order("c-corrupt", Utc::now());
    repo.insert(&order).await.unwrap();
    // A control character passes the table's CHECK but not the domain's CustomerId.
    sqlx::query("UPDATE orders SET customer_id = E'bad\\x01id' WHERE id = $1")
        .bind(order.id.as_uuid())
        .execute(&schema.pool)
        .await
        .unwrap();

    let err = repo.get(order.id).await.unwrap_err();

    let RepoError::Other(source) = &err else {
        panic!("expected Other, got {err:?}");
    };
    let corrupt = source
        .downcast_ref::<CorruptRow>()
        .unwrap_or_else(|| panic!("expected a CorruptRow, got {source:?}"));
    assert_eq!((corrupt.table, corrupt.column), ("orders", "customer_id"));
    assert!(!err.is_retryable());
    schema.drop().await;
}

#[tokio::test]
async fn a_column_of_an_unexpected_type_is_an_error_not_a_panic() {
    let schema = TestSchema::create().await;
    let repo = schema.repo();
    let order = placed_order("c-retyped", Utc::now());
    repo.insert(&order).await.unwrap();
    sqlx::query("ALTER TABLE order_items ALTER COLUMN quantity TYPE bigint")
        .execute(&schema.pool)
        .await
        .unwrap();

    let err = repo.get(order.id).await.unwrap_err();

    assert!(matches!(err, RepoError::Other(_)), "{err:?}");
    schema.drop().await;
}

#[tokio::test]
async fn the_postgres_repo_honours_the_webhook_store_contract() {
    let schemas = FreshSchemas::default();
    conformance::webhook_store(|| schemas.make()).await;
    schemas.drop_all().await;
}
