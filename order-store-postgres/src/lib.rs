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
    CancelResult, Claim, Lease, OrderFilter, OrderPage, OrderRepo, PageRequest, RepoError,
};
use order_core::request::{Fingerprint, KeyedRequest, RequestKey};
use order_core::{Order, OrderId, Transition, WorkerId};
use sqlx::PgPool;
use uuid::Uuid;

pub mod error;
pub mod orders;
pub mod payments;
pub mod pool;
pub mod requests;
pub mod rows;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{CorruptRow, translate};
pub use pool::{PoolConfig, connect_options, lazy_pool, migrate};

/// [`OrderRepo`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderRepo {
    pool: PgPool,
}

impl PgOrderRepo {
    /// A repo over `pool` (migrations must have been applied: see [`migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Connects to `url`, applies the migrations and returns the repo.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, RepoError> {
        let pool = lazy_pool(connect_options(url)?, config);
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
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
        self.claim_order(id, worker, now, lease_for).await
    }

    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.settle_order(lease, attempt.as_ref(), transition, now)
            .await
    }

    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.release_order(lease, attempt.as_ref(), retry_at, now)
            .await
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<OrderId>, RepoError> {
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
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }
}
