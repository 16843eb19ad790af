//! The connection pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use order_core::ports::RepoError;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::translate;

/// Applies the embedded migrations (idempotent; safe to run from every process at start).
pub async fn migrate(pool: &PgPool) -> Result<(), RepoError> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => translate(e),
            other => RepoError::Other(other.into()),
        })
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long a caller waits for a connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool without connecting yet: the first query connects, and fails with
/// [`RepoError::Unavailable`] within `acquire_timeout` if the server cannot be reached.
pub fn lazy_pool(options: PgConnectOptions, config: &PoolConfig) -> PgPool {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options)
}

/// Parses a `postgres://` URL.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, RepoError> {
    PgConnectOptions::from_str(url).map_err(|e| RepoError::Other(e.into()))
}
