//! `PgOrderRepo` against the real PostgreSQL on this machine, each test in its own schema.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use order_core::ports::{Claim, ClaimLimits, OrderRepo, RepoError};
use order_core::testing::{conformance, placed_order};
use order_core::{OrderId, WorkerId};
use order_store_postgres::testing::TestSchema;
use order_store_postgres::{CorruptRow, PgOrderRepo, PoolConfig, connect_options, lazy_pool};

/// Claims of up to ten deliveries, whatever their endpoints.
const TEN: ClaimLimits = ClaimLimits {
    total: 10,
    per_endpoint: 100,
};

/// Fresh stores, each in a schema of its own, for a conformance suite; the schemas are
/// dropped with this value's `drop_all`.
#[derive(Default, Clone)]
struct FreshSchemas(Arc<Mutex<Vec<TestSchema>>>);

impl FreshSchemas {
    /// A store in a new, empty schema. The stores made before are done with (a suite runs
    /// one check at a time): their connections are closed, so a long suite holds a few.
    async fn make(&self) -> PgOrderRepo {
        let earlier: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.pool.clone())
            .collect();
        for pool in earlier {
            pool.close().await;
        }
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
async fn a_pool_with_every_connection_busy_is_no_outage_to_the_store_gate() {
    use order_core::OrderService;
    use order_core::memory::MemoryQueue;
    use order_core::ports::SystemClock;
    let schema = TestSchema::create().await;
    let config = PoolConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(100),
        ..PoolConfig::default()
    };
    let repo = Arc::new(PgOrderRepo::new(lazy_pool(schema.options.clone(), &config)));
    let clock = Arc::new(SystemClock);
    let orders = OrderService::new(
        Arc::clone(&repo),
        Arc::new(MemoryQueue::new(clock.clone())),
        clock,
    );
    // Every connection of the pool is held, for longer than many acquire timeouts.
    let held = vec![
        repo.pool().acquire().await.unwrap(),
        repo.pool().acquire().await.unwrap(),
    ];
    assert!(repo.ping().await.is_ok(), "PostgreSQL itself answers");
    for _ in 0..10 {
        let busy = orders.place(order_core::testing::new_order("busy")).await;
        assert!(matches!(busy, Err(RepoError::Unavailable(_))), "{busy:?}");
    }
    drop(held);
    let placed = orders.place(order_core::testing::new_order("busy")).await;
    assert!(
        placed.is_ok(),
        "the gate stayed closed: the first call once a connection is free goes through, \
         got {placed:?}"
    );
    schema.drop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_unavailable_within_the_acquire_timeout() {
    let options = connect_options("postgres://postgres@127.0.0.1:1/postgres").unwrap();
    let config = PoolConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
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

/// Sequence values are taken in one order and committed in another: an event whose
/// transaction commits after a later event's must still be fanned out, once.
#[tokio::test]
async fn an_event_committed_after_a_later_one_is_still_fanned_out() {
    use order_core::ports::WebhookStore;
    use order_core::webhook::EventType;

    let schema = TestSchema::create().await;
    let repo = schema.repo();
    let now = Utc::now();
    subscribe(&repo, &EventType::ALL, now).await;
    let (early, late) = (placed_order("alice", now), placed_order("bob", now));
    repo.insert(&early).await.unwrap();
    fan_out_all(&repo, now, 1).await;

    // A status change whose transaction stays open while a later event commits.
    let mut open = schema.pool.begin().await.unwrap();
    sqlx::query("UPDATE orders SET status = 'payment_processing' WHERE id = $1")
        .bind(early.id.as_uuid())
        .execute(&mut *open)
        .await
        .unwrap();
    repo.insert(&late).await.unwrap();
    assert_eq!(
        repo.fan_out(now, 10).await.unwrap(),
        0,
        "the later event waits while an earlier writer runs"
    );
    open.commit().await.unwrap();

    fan_out_all(&repo, now, 2).await;
    assert_eq!(repo.fan_out(now, 10).await.unwrap(), 0, "each event once");
    let mut delivered: Vec<_> = repo
        .claim_deliveries(now, Duration::from_secs(30), TEN)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.event.order_id, c.event.kind))
        .collect();
    delivered.sort_by_key(|(order, kind)| (*order == late.id, kind.as_str()));
    assert_eq!(
        delivered,
        [
            (early.id, EventType::Created),
            (early.id, EventType::PaymentProcessing),
            (late.id, EventType::Created)
        ]
    );
    schema.drop().await;
}

/// Fans out until `want` events are taken (other tests' writers may hold them back a moment).
async fn fan_out_all(repo: &PgOrderRepo, now: chrono::DateTime<Utc>, want: usize) {
    use order_core::ports::WebhookStore;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = 0;
    while taken < want {
        assert!(
            Instant::now() < deadline,
            "{taken} of {want} events fanned out"
        );
        taken += repo.fan_out(now, want - taken).await.unwrap();
    }
    assert_eq!(taken, want, "no more than asked");
}

/// The outbox-cursor migration on a store with history: an event already fanned out is
/// not fanned out again, one still waiting gets its deliveries, and the cursor starts
/// after both.
#[tokio::test]
async fn the_outbox_cursor_migration_fans_out_what_was_waiting_and_nothing_twice() {
    use order_core::ports::WebhookStore;
    use order_core::webhook::EventType;
    use sqlx::migrate::Migrator;

    let full: Migrator = sqlx::migrate!("./migrations");
    let cursor_at = full
        .iter()
        .position(|m| m.description == "outbox cursor")
        .expect("the outbox cursor migration");
    let mut before: Migrator = sqlx::migrate!("./migrations");
    before.migrations = full.migrations[..cursor_at].to_vec().into();

    let schema = TestSchema::empty().await;
    before.run(&schema.pool).await.unwrap();
    let repo = schema.repo();
    let now = Utc::now();
    // An endpoint as the schema of that time held it (no owner column yet).
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, events, description, enabled, secret, \
         created_at, updated_at) VALUES ($1, 'https://hooks.example.com/orders', $2, 'test', \
         true, $3, $4, $4)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(vec![EventType::Created.as_str()])
    .bind(vec![7_u8; 32])
    .bind(now)
    .execute(&schema.pool)
    .await
    .unwrap();
    let (fanned, waiting) = (placed_order("alice", now), placed_order("bob", now));
    // Orders as the schema of that time held them (the columns added since are not there).
    for order in [&fanned, &waiting] {
        sqlx::query(
            "INSERT INTO orders (id, customer_id, total_amount, status, created_at, updated_at, \
             due_at) VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
        )
        .bind(order.id.as_uuid())
        .bind(order.customer_id.as_str())
        .bind(order.total_amount.amount())
        .bind(now)
        .execute(&schema.pool)
        .await
        .unwrap();
    }
    // As the old fan-out would have left it (its delivery already delivered and purged).
    sqlx::query(
        "UPDATE order_events SET fanned_out = true WHERE order_id = $1 AND type = 'order.created'",
    )
    .bind(fanned.id.as_uuid())
    .execute(&schema.pool)
    .await
    .unwrap();

    full.run(&schema.pool).await.unwrap();
    let due: Vec<_> = repo
        .claim_deliveries(Utc::now(), Duration::from_secs(30), TEN)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.event.order_id)
        .collect();
    assert_eq!(due, [waiting.id], "the waiting event, and only it");
    assert_eq!(repo.fan_out(now, 10).await.unwrap(), 0, "nothing twice");
    let after = placed_order("carol", now);
    repo.insert(&after).await.unwrap();
    fan_out_all(&repo, now, 1).await;
    let due = repo
        .claim_deliveries(now, Duration::from_secs(30), TEN)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].event.order_id, after.id,
        "later events fan out as before"
    );
    schema.drop().await;
}

/// A logical restore into another cluster leaves the outbox with transaction ids ahead of
/// the new cluster's counter: the next start renumbers them, so what was fanned out is not
/// fanned out again and what was waiting, and everything written after, is.
#[tokio::test]
async fn outbox_ids_from_another_cluster_are_renumbered_at_start() {
    use order_core::ports::WebhookStore;
    use order_core::webhook::EventType;

    let schema = TestSchema::create().await;
    let repo = schema.repo();
    let now = Utc::now();
    subscribe(&repo, &[EventType::Created], now).await;
    let (fanned, waiting, after) = (
        placed_order("alice", now),
        placed_order("bob", now),
        placed_order("carol", now),
    );
    repo.insert(&fanned).await.unwrap();
    fan_out_all(&repo, now, 1).await;
    // Delivered and purged in the old cluster.
    sqlx::query("DELETE FROM webhook_deliveries")
        .execute(&schema.pool)
        .await
        .unwrap();
    repo.insert(&waiting).await.unwrap();
    // As a restore into a cluster whose counter is a million transactions behind leaves them.
    for table in ["order_events", "webhook_fan_out"] {
        sqlx::query(&format!(
            "UPDATE {table} SET xid = (xid::text::bigint + 1000000)::text::xid8"
        ))
        .execute(&schema.pool)
        .await
        .unwrap();
    }

    order_store_postgres::migrate(&schema.pool).await.unwrap();
    repo.insert(&after).await.unwrap();
    fan_out_all(&repo, now, 2).await;
    assert_eq!(repo.fan_out(now, 10).await.unwrap(), 0, "each event once");
    let mut due: Vec<_> = repo
        .claim_deliveries(now, Duration::from_secs(30), TEN)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.event.order_id)
        .collect();
    due.sort_unstable();
    let mut want = vec![waiting.id, after.id];
    want.sort_unstable();
    assert_eq!(
        due, want,
        "the waiting and the new event, not the fanned-out one"
    );
    order_store_postgres::migrate(&schema.pool).await.unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT xid::text FROM order_events ORDER BY seq")
        .fetch_all(&schema.pool)
        .await
        .unwrap();
    assert_eq!(&ids[..2], ["0", "1"], "renumbered once: {ids:?}");
    schema.drop().await;
}

/// Subscribes an endpoint to `events`.
async fn subscribe(
    repo: &PgOrderRepo,
    events: &[order_core::webhook::EventType],
    now: chrono::DateTime<Utc>,
) {
    use order_core::ports::WebhookStore;
    use order_core::webhook::{Endpoint, EndpointUrl, NewEndpoint};
    let hook = Endpoint::create(
        NewEndpoint {
            url: EndpointUrl::parse("https://hooks.example.com/orders", false).unwrap(),
            events: events.iter().copied().collect(),
            owner: None,
            description: "test".into(),
        },
        now,
    );
    repo.insert_endpoint(&hook, 100).await.unwrap();
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_and_reported_unavailable() {
    use order_core::ports::{OrderFilter, PageRequest};
    let schema = TestSchema::create().await;
    let config = PoolConfig {
        statement_timeout: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let pool = lazy_pool(schema.options.clone(), &config);
    // Migrations run without the timeout, and leave it in place for what follows.
    order_store_postgres::migrate(&pool).await.unwrap();
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(shown, "200ms");
    let repo = PgOrderRepo::new(pool);
    // Another session holds the table: the listing waits on it until it is cancelled.
    let mut blocker = schema.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let start = Instant::now();
    let listed = repo.list(&OrderFilter::default(), PageRequest::FIRST).await;
    assert!(
        matches!(listed, Err(RepoError::Unavailable(_))),
        "{listed:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    blocker.rollback().await.unwrap();
    assert!(
        repo.list(&OrderFilter::default(), PageRequest::FIRST)
            .await
            .is_ok()
    );
    schema.drop().await;
}
