//! PostgreSQL over TLS: `sslmode` and `sslrootcert` in `DATABASE_URL` are honoured, and a
//! server whose certificate is not trusted is refused.

use order_core::ports::{OrderFilter, OrderRepo, PageRequest, RepoError};
use order_core::testing::TestCertificates;
use order_store_postgres::testing::PrivatePostgres;
use order_store_postgres::{PgOrderRepo, PoolConfig};

#[tokio::test]
async fn a_server_with_a_private_ca_is_reached_over_tls_and_an_untrusted_one_refused() {
    let certificates = TestCertificates::make();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = PrivatePostgres::create(port);
    server.enable_tls(&certificates.server_cert(), &certificates.server_key());
    server.start();
    let ca = certificates.ca();
    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let repo = PgOrderRepo::connect(&url, &PoolConfig::default())
        .await
        .expect("verified against the private CA");
    let over_tls: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(repo.pool())
            .await
            .unwrap();
    assert!(over_tls, "the session is encrypted");
    let listed = repo.list(&OrderFilter::default(), PageRequest::FIRST).await;
    assert_eq!(listed.unwrap().total, 0);

    // Without the CA, the public roots do not vouch for the server: no connection.
    let untrusted = format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full");
    let refused = PgOrderRepo::connect(&untrusted, &PoolConfig::default()).await;
    assert!(
        matches!(refused, Err(RepoError::Unavailable(_))),
        "{refused:?}"
    );
}
