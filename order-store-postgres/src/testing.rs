//! Test support: a fresh, migrated schema per test on the local PostgreSQL, so tests run in
//! parallel and leave nothing behind that the next run trips over.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::{PgOrderRepo, PoolConfig, connect_options, lazy_pool, migrate};

/// The server tests use: `TEST_DATABASE_URL`, else the local default.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema made for one test; drop it with [`TestSchema::drop`] when the test is done.
#[derive(Debug)]
pub struct TestSchema {
    /// The schema's name.
    pub name: String,
    /// A pool whose connections use the schema.
    pub pool: PgPool,
    /// The connection options, schema included (for other pools of the same test).
    pub options: PgConnectOptions,
}

impl TestSchema {
    /// Creates and migrates a new schema. Panics, saying how to start PostgreSQL, if the
    /// server does not answer: a test needing it must never pass without it.
    pub async fn create() -> Self {
        let url = database_url();
        let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}). Start it with \
                 `scripts/ensure-services.sh` (or `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start`), or point TEST_DATABASE_URL at a server."
            )
        });
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        let _ = admin.close().await;
        let options = connect_options(&url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", name.as_str())]);
        let pool = lazy_pool(options.clone(), &PoolConfig::default());
        migrate(&pool).await.expect("migrate test schema");
        Self {
            name,
            pool,
            options,
        }
    }

    /// A repo on this schema.
    pub fn repo(&self) -> PgOrderRepo {
        PgOrderRepo::new(self.pool.clone())
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&database_url()).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }
}
