//! The service on PostgreSQL and Redis that speak only TLS, with certificates of a private
//! authority: `sslmode=verify-full&sslrootcert=` in `DATABASE_URL`, `rediss://` and
//! `REDIS_CA_FILE`. Orders are taken and paid, and both sessions are encrypted.

use std::time::Duration;

use order_api::orders::OrderStatus;
use order_core::testing::TestCertificates;
use order_http::Role;
use order_http::testing::{TestApp, free_port, sample_order};
use order_queue_redis::testing::PrivateRedis;
use order_store_postgres::testing::PrivatePostgres;

#[tokio::test]
async fn orders_are_taken_and_paid_over_tls_to_postgres_and_redis() {
    let certificates = TestCertificates::make();
    let (cert, key, ca) = (
        certificates.server_cert(),
        certificates.server_key(),
        certificates.ca(),
    );
    let port = free_port();
    let mut postgres = PrivatePostgres::create(port);
    postgres.enable_tls(&cert, &key);
    postgres.start();
    let redis = PrivateRedis::start_tls(&cert, &key);
    let database_url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let env = vec![
        ("DATABASE_URL".into(), database_url.clone()),
        ("REDIS_URL".into(), redis.tls_url()),
        ("REDIS_CA_FILE".into(), ca.display().to_string()),
    ];
    let app = TestApp::spawn_role(Role::All, env, &[]).await;
    let order = app.place(&sample_order("over-tls")).await;
    let paid = app.wait_terminal(order.id, Duration::from_secs(15)).await;
    assert_eq!(paid.status, OrderStatus::Confirmed);

    // Every session the service holds on PostgreSQL is encrypted.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&database_url)
        .await
        .unwrap();
    let (sessions, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) \
         WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        sessions > 0 && sessions == encrypted,
        "{encrypted} of {sessions} encrypted"
    );
    app.stop().await;
}
