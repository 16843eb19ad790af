//! # order-store-postgres
//!
//! [`PgOrderRepo`]: the [`order_core::ports::OrderRepo`] port on PostgreSQL with
//! sqlx.
//!
//! ## Layout
//! - [`pool`]: the connection pool and the embedded migrations, applied at start-up.
//! - [`orders`]: storing orders (one statement for a whole batch, through `UNNEST` arrays,
//!   which is what lets the service group-commit concurrent requests), reading and listing.
//! - [`payments`]: claims, settlements and releases: conditional updates fenced by status
//!   and lease token, so a lost race is a typed error, never a silent overwrite.
//! - [`requests`]: client idempotency keys.
//! - [`rows`]: every row a statement returns, as a type, and its conversion into the domain;
//!   a row the domain rejects is a [`CorruptRow`], never a panic.
//! - [`error`]: driver errors translated at the boundary: unique violations become
//!   `Duplicate`, connection trouble `Unavailable` (retryable); no SQL text travels upward.
//!
//! Each statement is a named constant with its binds listed beside it, and status values
//! are bound from the domain's [`OrderStatus`](order_core::OrderStatus), never spelled in
//! SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::order::CancelReason;
use order_core::payment::Attempt;
use order_core::ports::{
    CancelResult, CaptureStart, Claim, EndLease, Job, Lease, LeaseEnd, OrderFilter, OrderPage,
    OrderRepo, PageRequest, RepoError,
};
use order_core::request::{Fingerprint, KeyedRequest, RequestKey};
use order_core::{Money, Order, OrderId, Transition, WorkerId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use uuid::Uuid;

mod captures;
pub mod error;
pub mod keys;
pub mod orders;
pub mod payments;
pub mod pool;
mod refunds;
pub mod requests;
pub mod rows;
pub mod sealing;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use error::{CorruptRow, translate};
pub use pool::{PoolConfig, connect_options, lazy_pool, migrate};
pub use sealing::{Resealed, SecretKey, SecretKeys};

/// [`OrderRepo`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderRepo {
    pool: PgPool,
    /// Whether the migrations are known to be applied; until then every call is
    /// [`RepoError::Unavailable`], never a query against a schema that may not exist.
    schema: Arc<AtomicBool>,
    /// What webhook signing secrets are sealed with at rest, if anything.
    secret_keys: Option<SecretKeys>,
}

impl PgOrderRepo {
    /// A repo over `pool` (migrations must have been applied: see [`migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            schema: Arc::new(AtomicBool::new(true)),
            secret_keys: None,
        }
    }

    /// The same repo, writing webhook signing secrets sealed with the current one of `keys`
    /// and reading sealed ones with whichever of them sealed them (see [`sealing`]).
    #[must_use]
    pub fn with_secret_keys(mut self, keys: Option<SecretKeys>) -> Self {
        self.secret_keys = keys;
        self
    }

    /// The keys secrets are sealed with, if any.
    pub(crate) fn secret_keys(&self) -> Option<&SecretKeys> {
        self.secret_keys.as_ref()
    }

    /// Connects to `url`, applies the migrations and returns the repo.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, RepoError> {
        let pool = lazy_pool(connect_options(url)?, config);
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// A repo on `url` that needs no server yet, and the [`Migrator`] that makes it usable:
    /// until the migrator has applied the migrations, every call answers
    /// [`RepoError::Unavailable`]. A process can start, and report itself not ready, while
    /// PostgreSQL is down.
    pub fn lazy(url: &str, config: &PoolConfig) -> Result<(Self, Migrator), RepoError> {
        let pool = lazy_pool(connect_options(url)?, config);
        let schema = Arc::new(AtomicBool::new(false));
        let migrator = Migrator {
            pool: pool.clone(),
            schema: Arc::clone(&schema),
            secret_keys: None,
        };
        Ok((
            Self {
                pool,
                schema,
                secret_keys: None,
            },
            migrator,
        ))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, once the schema is migrated.
    pub(crate) fn db(&self) -> Result<&PgPool, RepoError> {
        if self.schema.load(Ordering::Acquire) {
            Ok(&self.pool)
        } else {
            Err(RepoError::Unavailable(
                "the schema is not migrated yet: waiting for PostgreSQL".into(),
            ))
        }
    }
}

/// How long [`OrderRepo::ping`] waits for PostgreSQL.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Applies the migrations of a [`PgOrderRepo::lazy`] repo, retrying until they are.
#[derive(Debug)]
pub struct Migrator {
    pool: PgPool,
    schema: Arc<AtomicBool>,
    secret_keys: Option<SecretKeys>,
}

impl Migrator {
    /// The same migrator, sealing with the current one of `keys`, once the migrations are
    /// applied, every webhook secret stored unsealed or sealed with another key.
    #[must_use]
    pub fn with_secret_keys(mut self, keys: Option<SecretKeys>) -> Self {
        self.secret_keys = keys;
        self
    }

    /// Tries to migrate, again and again with backoff (0.25 s doubling to 5 s), until it
    /// succeeds or `stop` completes; then the repo serves. Returns whether it migrated.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> bool {
        let mut stop = std::pin::pin!(stop);
        let mut wait = std::time::Duration::from_millis(250);
        loop {
            let migrated =
                match (migrate(&self.pool).await, &self.secret_keys) {
                    (Ok(()), Some(keys)) => sealing::seal_stored_secrets(&self.pool, keys)
                        .await
                        .map(|done| {
                            if done.sealed > 0 {
                                tracing::info!(
                                    endpoints = done.sealed,
                                    "sealed webhook secrets with the current WEBHOOK_SECRET_KEY"
                                );
                            }
                            if done.unreadable > 0 {
                                tracing::warn!(
                                    endpoints = done.unreadable,
                                    "webhook secrets no key opens: give the key that sealed them \
                                 in WEBHOOK_SECRET_KEY_PREVIOUS"
                                );
                            }
                        }),
                    (done, _) => done,
                };
            match migrated {
                Ok(()) => {
                    self.schema.store(true, Ordering::Release);
                    tracing::info!("PostgreSQL is ready: migrations applied");
                    return true;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in = ?wait,
                    "PostgreSQL is not ready; trying the migrations again"
                ),
            }
            tokio::select! {
                () = &mut stop => return false,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
    }
}

/// The one result of a batch of one.
fn only<T>(batch: Result<Vec<Result<T, RepoError>>, RepoError>) -> Result<T, RepoError> {
    batch?
        .pop()
        .unwrap_or_else(|| Err(RepoError::Other("a batch of one gave no result".into())))
}

#[async_trait]
impl OrderRepo for PgOrderRepo {
    async fn insert(&self, order: &Order) -> Result<(), RepoError> {
        self.insert_many(std::slice::from_ref(order)).await
    }

    async fn insert_many(&self, orders: &[Order]) -> Result<(), RepoError> {
        self.insert_orders(orders, None).await.map(|_| ())
    }

    async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        self.fetch_one(id).await
    }

    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, RepoError> {
        self.fetch_many(ids).await
    }

    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError> {
        self.fetch_page(filter, page).await
    }

    async fn claim(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> Result<Claim, RepoError> {
        only(self.claim_orders(&[id], worker, now, lease_for).await)
    }

    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let end = EndLease {
            lease: lease.clone(),
            attempt,
            end: LeaseEnd::Settle(transition),
            now,
        };
        only(self.end_leases_now(&[end]).await)
    }

    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let end = EndLease {
            lease: lease.clone(),
            attempt,
            end: LeaseEnd::Release { retry_at },
            now,
        };
        only(self.end_leases_now(&[end]).await)
    }

    async fn claim_many(
        &self,
        ids: &[OrderId],
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> Result<Vec<Result<Claim, RepoError>>, RepoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.claim_orders(ids, worker, now, lease_for).await
    }

    async fn end_leases(&self, ends: &[EndLease]) -> Result<Vec<Result<(), RepoError>>, RepoError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        self.end_leases_now(ends).await
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, RepoError> {
        self.due_orders(before, limit).await
    }

    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: std::time::Duration,
    ) -> Result<KeyedRequest, RepoError> {
        self.reserve_key(key, fingerprint, now, stale_after).await
    }

    async fn insert_for_request(
        &self,
        order: &Order,
        key: &RequestKey,
        token: Uuid,
    ) -> Result<(), RepoError> {
        if self
            .insert_orders(std::slice::from_ref(order), Some((key, token)))
            .await?
        {
            Ok(())
        } else {
            Err(RepoError::RequestSuperseded(key.clone()))
        }
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError> {
        self.cancel_order(id, reason, now).await
    }

    async fn begin_capture(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<CaptureStart, RepoError> {
        self.begin_capture_of(id, amount, now).await
    }

    async fn finish_capture(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        self.finish_capture_of(id, amount, now).await
    }

    async fn begin_refund(
        &self,
        id: OrderId,
        draft: &order_core::order::RefundDraft,
        now: DateTime<Utc>,
    ) -> Result<order_core::ports::RefundStart, RepoError> {
        self.begin_refund_of(id, draft, now).await
    }

    async fn finish_refund(
        &self,
        id: OrderId,
        key: &order_core::payment::IdempotencyKey,
        settlement: &order_core::order::RefundSettlement,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        self.finish_refund_of(id, key, settlement, now).await
    }

    async fn pending_refunds(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.pending_refunds_before(before, limit).await
    }

    async fn unresolved_charges(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.unresolved_charges_before(before, limit).await
    }

    async fn hasten(&self, id: OrderId, now: DateTime<Utc>) -> Result<Option<Order>, RepoError> {
        self.hasten_order(id, now).await
    }

    async fn record_processor_event(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.record_event(event_id, now).await
    }

    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError> {
        self.complete_key(key, token, order).await
    }

    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        self.release_key(key, token).await
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        self.purge_keys(before).await
    }

    async fn ping(&self) -> Result<(), RepoError> {
        // A connection of its own: every one of the pool's may be busy, which is no outage.
        use sqlx::Connection as _;
        let options = self.db()?.connect_options();
        let answered = tokio::time::timeout(PING_TIMEOUT, async {
            let mut connection = sqlx::PgConnection::connect_with(&options).await?;
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            connection.close().await
        })
        .await;
        match answered {
            Ok(result) => result.map_err(translate),
            Err(_) => Err(RepoError::Unavailable(
                format!("PostgreSQL did not answer a ping within {PING_TIMEOUT:?}").into(),
            )),
        }
    }
}
