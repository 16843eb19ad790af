//! Driver errors translated into the port's: the one place that reads SQLSTATEs.

use order_core::ports::{BoxError, RepoError};

/// A stored row the domain rejects: which table and column, and why. Reaches callers as
/// [`RepoError::Other`] with this as its source (downcast to inspect it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {table}.{column} is invalid: {detail}")]
pub struct CorruptRow {
    /// The table (or result) the row came from.
    pub table: &'static str,
    /// The offending column.
    pub column: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

impl CorruptRow {
    /// A corrupt `column` of `table`.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "callers hand over the error they are done with"
    )]
    pub fn new(table: &'static str, column: &'static str, detail: impl ToString) -> Self {
        Self {
            table,
            column,
            detail: detail.to_string(),
        }
    }
}

impl From<CorruptRow> for RepoError {
    fn from(e: CorruptRow) -> Self {
        Self::Other(Box::new(e))
    }
}

/// Whether `e` is a violation of the unique constraint `constraint`.
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}

/// Whether `e` is PostgreSQL breaking a deadlock (`40P01`): the statement did nothing and
/// may be run again.
pub fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// Translates a driver error into the port's error: connection trouble is retryable
/// `Unavailable`, everything else `Other`. The SQL text stays in the source chain, for logs.
pub fn translate(e: sqlx::Error) -> RepoError {
    let retryable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57014: cancelled (the
            // statement timeout); 57P0x: server shutting down; 40001/40P01: serialization
            // failure, deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code == "57014"
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    };
    let source: BoxError = Box::new(e);
    if retryable {
        RepoError::Unavailable(source)
    } else {
        RepoError::Other(source)
    }
}
