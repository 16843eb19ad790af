//! The connection pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use order_core::ports::RepoError;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::translate;

/// Applies the embedded migrations (idempotent; safe to run from every process at start),
/// then renumbers the outbox's transaction ids if they came from another cluster (a logical
/// restore): see `OUTBOX_IDS_OFF`.
///
/// Runs on a connection of its own, opened with `pool`'s options and no statement timeout:
/// an index built on a large table may take longer than any request should.
pub async fn migrate(pool: &PgPool) -> Result<(), RepoError> {
    let options = (*pool.connect_options())
        .clone()
        .options([("statement_timeout", "0")]);
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_with(options)
        .await
        .map_err(translate)?;
    let migrated = migrate_on(&own).await;
    own.close().await;
    migrated
}

async fn migrate_on(pool: &PgPool) -> Result<(), RepoError> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => translate(e),
            other => RepoError::Other(other.into()),
        })?;
    repair_outbox(pool).await?;
    Ok(())
}

/// Whether the outbox holds a transaction id at or past the next one this cluster will
/// assign: the cursor, or the newest event (one index probe each).
///
/// The fan-out orders events by the id of the transaction that wrote them. After a logical
/// restore (a dump loaded into another cluster, whose counter may be far behind the one that
/// wrote the events), such ids would hide every new event behind the cursor, or hold the
/// events that carry them back until the counter caught up.
const OUTBOX_IDS_OFF: &str = "SELECT (SELECT xid FROM webhook_fan_out) >= n.next \
       OR COALESCE((SELECT max(xid) FROM order_events) >= n.next, false) \
     FROM (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS next) AS n";

/// Gives every event already fanned out id 0 and every one still waiting with an id past
/// the counter id 1 (so they come, in `seq` order, before any event written from now on),
/// and moves the cursor to the last event fanned out. Nothing is fanned out twice, nothing
/// is lost.
const OUTBOX_REPAIR: &str = "WITH h AS (SELECT xid, seq FROM webhook_fan_out), \
     ev AS ( \
       UPDATE order_events e SET xid = CASE WHEN (e.xid, e.seq) <= (h.xid, h.seq) \
                                            THEN '0'::xid8 ELSE '1'::xid8 END \
       FROM h \
       WHERE (e.xid, e.seq) <= (h.xid, h.seq) \
          OR e.xid >= pg_snapshot_xmax(pg_current_snapshot()) \
       RETURNING e.xid, e.seq) \
     UPDATE webhook_fan_out SET xid = '0'::xid8, \
       seq = COALESCE((SELECT max(ev.seq) FROM ev WHERE ev.xid = '0'::xid8), 0)";

/// Repairs the outbox's transaction ids when `OUTBOX_IDS_OFF`; returns whether it did.
/// The check is made again with the cursor locked, so concurrent starts repair once and a
/// fan-out waits for the repair.
async fn repair_outbox(pool: &PgPool) -> Result<bool, RepoError> {
    let off: bool = sqlx::query_scalar(OUTBOX_IDS_OFF)
        .fetch_one(pool)
        .await
        .map_err(translate)?;
    if !off {
        return Ok(false);
    }
    let mut tx = pool.begin().await.map_err(translate)?;
    sqlx::query("SELECT 1 FROM webhook_fan_out FOR UPDATE")
        .execute(&mut *tx)
        .await
        .map_err(translate)?;
    let off: bool = sqlx::query_scalar(OUTBOX_IDS_OFF)
        .fetch_one(&mut *tx)
        .await
        .map_err(translate)?;
    if off {
        sqlx::query(OUTBOX_REPAIR)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        tracing::warn!("the outbox held transaction ids of another cluster; renumbered them");
    }
    tx.commit().await.map_err(translate)?;
    Ok(off)
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long a caller waits for a connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
    /// How long one statement may run before the server cancels it (PostgreSQL's
    /// `statement_timeout`, set on every connection); zero: no limit. A cancelled statement
    /// is [`RepoError::Unavailable`] and changed nothing.
    pub statement_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens a pool without connecting yet: the first query connects, and fails with
/// [`RepoError::Unavailable`] within `acquire_timeout` if the server cannot be reached.
pub fn lazy_pool(options: PgConnectOptions, config: &PoolConfig) -> PgPool {
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options.options([("statement_timeout", timeout_ms)]))
}

/// Parses a `postgres://` URL.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, RepoError> {
    PgConnectOptions::from_str(url).map_err(|e| RepoError::Other(e.into()))
}
