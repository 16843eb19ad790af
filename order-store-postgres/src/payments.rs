//! Claims, settlements and releases: every write is one conditional statement, fenced by
//! the order's status and the lease token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::payment::PaymentAttempt;
use order_core::ports::{Claim, Lease, RepoError};
use order_core::{OrderEvent, OrderId, OrderStatus, Transition, WorkerId};
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::translate;
use crate::orders::{ORDER_COLUMNS, order_tree};
use crate::rows::{self, AttemptColumns, ClaimMissRow, LeaseRow};

/// The statuses in which an order still waits to be paid, bound where SQL needs them.
fn live_statuses() -> Vec<&'static str> {
    OrderStatus::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .map(OrderStatus::as_str)
        .collect()
}

/// Claims a live, due, unleased order, returning it whole (an order-tree statement).
///
/// Binds: `$1` order, `$2` the status a claim starts from, `$3` the status it moves to, `$4`
/// now, `$5` lease token, `$6` worker, `$7` lease expiry, `$8` live statuses.
fn claim_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET \
           status = CASE WHEN status = $2 THEN $3 ELSE status END, \
           updated_at = CASE WHEN status = $2 THEN $4 ELSE updated_at END, \
           charge_uncertain = charge_uncertain OR lease_token IS NOT NULL, \
           lease_token = $5, lease_owner = $6, lease_expires_at = $7 \
         WHERE id = $1 AND status = ANY($8) \
           AND (lease_expires_at IS NULL OR lease_expires_at <= $4) AND due_at <= $4 \
         RETURNING {ORDER_COLUMNS}, 1::bigint AS rank"
    ))
}

/// Why a claim took nothing. Binds: `$1` order.
const CLAIM_MISS: &str = "SELECT status, lease_expires_at, due_at FROM orders WHERE id = $1";

/// Why a fenced write matched nothing. Binds: `$1` order.
const LEASE_NOW: &str = "SELECT status, lease_token FROM orders WHERE id = $1";

/// A statement that ends a lease with `update` (a fenced `UPDATE orders ... RETURNING id`)
/// and, in the same statement, appends the attempt bound as `$1`..`$7` when `$1` is not null
/// (see [`AttemptColumns::bind`]). It returns how many orders were updated: 0 or 1.
fn end_lease_sql(update: &str) -> String {
    format!(
        "WITH upd AS ({update}), \
         ins AS ( \
           INSERT INTO payment_attempts \
             (order_id, number, outcome, transaction_id, decline_reason, error, started_at, finished_at) \
           SELECT upd.id, $1, $2, $3, $4, $5, $6, $7 FROM upd WHERE $1::int IS NOT NULL) \
         SELECT count(*) FROM upd"
    )
}

/// Ends a lease with a transition. Binds: the attempt's `$1`..`$7`, then `$8` order, `$9`
/// lease token, `$10` new status, `$11` now, `$12` the status the transition starts from.
const SETTLE_UPDATE: &str = "UPDATE orders SET status = $10, updated_at = $11, \
       lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $8 AND lease_token = $9 AND status = $12 RETURNING id";

/// Ends a lease with the next attempt scheduled. Binds: the attempt's `$1`..`$7`, then `$8`
/// order, `$9` lease token, `$10` when the next attempt is due, `$11` now (the order's
/// `updated_at` moves only when an attempt is recorded).
const RELEASE_UPDATE: &str = "UPDATE orders SET due_at = $10, \
       updated_at = CASE WHEN $1::int IS NULL THEN updated_at ELSE $11 END, \
       lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $8 AND lease_token = $9 RETURNING id";

/// Live orders due by a time and not leased, oldest first. Binds: `$1` the time, `$2` the
/// limit, `$3` live statuses.
const DUE: &str = "SELECT id FROM orders \
     WHERE status = ANY($3) AND due_at <= $1 \
       AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
     ORDER BY due_at, id LIMIT $2";

impl PgOrderRepo {
    pub(crate) async fn claim_order(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Claim, RepoError> {
        let start = Transition::apply(OrderStatus::Pending, OrderEvent::PaymentStarted)
            .map_err(|e| RepoError::Other(e.into()))?;
        let lease = Lease {
            order_id: id,
            owner: worker.clone(),
            token: Uuid::now_v7(),
            expires_at: now
                + chrono::Duration::from_std(lease_for).unwrap_or(chrono::Duration::MAX),
        };
        let sql = claim_sql();
        let query = sqlx::query_as(&sql)
            .bind(id.as_uuid())
            .bind(start.from().as_str())
            .bind(start.to().as_str())
            .bind(now)
            .bind(lease.token)
            .bind(worker.as_str())
            .bind(lease.expires_at)
            .bind(live_statuses());
        if let Some((order, uncertain)) = self.fetch_tree(query).await?.into_iter().next() {
            return Ok(Claim::Acquired {
                lease,
                order,
                uncertain,
            });
        }
        let row: ClaimMissRow = sqlx::query_as(CLAIM_MISS)
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(translate)?
            .ok_or(RepoError::NotFound(id))?;
        if rows::status("orders", &row.status)?.is_terminal() {
            let order = self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))?;
            return Ok(Claim::Settled(order));
        }
        match row.lease_expires_at {
            Some(until) if until > now => Ok(Claim::Busy { until }),
            _ if row.due_at > now => Ok(Claim::NotDue { at: row.due_at }),
            // Changed between the two statements: report it busy briefly; the caller retries.
            _ => Ok(Claim::Busy { until: now }),
        }
    }

    pub(crate) async fn settle_order(
        &self,
        lease: &Lease,
        attempt: Option<&PaymentAttempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let sql = end_lease_sql(SETTLE_UPDATE);
        let updated: i64 = AttemptColumns::bind(attempt, sqlx::query_scalar(&sql))
            .bind(lease.order_id.as_uuid())
            .bind(lease.token)
            .bind(transition.to().as_str())
            .bind(now)
            .bind(transition.from().as_str())
            .fetch_one(self.pool())
            .await
            .map_err(translate)?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(lease, Some(transition.from())).await)
        }
    }

    pub(crate) async fn release_order(
        &self,
        lease: &Lease,
        attempt: Option<&PaymentAttempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let sql = end_lease_sql(RELEASE_UPDATE);
        let updated: i64 = AttemptColumns::bind(attempt, sqlx::query_scalar(&sql))
            .bind(lease.order_id.as_uuid())
            .bind(lease.token)
            .bind(retry_at)
            .bind(now)
            .fetch_one(self.pool())
            .await
            .map_err(translate)?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(lease, None).await)
        }
    }

    pub(crate) async fn due_orders(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(DUE)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(live_statuses())
            .fetch_all(self.pool())
            .await
            .map_err(translate)?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }

    /// Says why a fenced write matched no row: the order is gone, the lease was taken
    /// over, or the status differs.
    async fn explain_miss(&self, lease: &Lease, expected: Option<OrderStatus>) -> RepoError {
        let row: Result<Option<LeaseRow>, _> = sqlx::query_as(LEASE_NOW)
            .bind(lease.order_id.as_uuid())
            .fetch_optional(self.pool())
            .await;
        let row = match row {
            Err(e) => return translate(e),
            Ok(None) => return RepoError::NotFound(lease.order_id),
            Ok(Some(row)) => row,
        };
        if row.lease_token != Some(lease.token) {
            return RepoError::LeaseLost(lease.order_id);
        }
        match (expected, rows::status("orders", &row.status)) {
            (_, Err(e)) => e.into(),
            (Some(expected), Ok(actual)) => RepoError::StatusConflict {
                id: lease.order_id,
                expected,
                actual,
            },
            (None, Ok(_)) => RepoError::LeaseLost(lease.order_id),
        }
    }
}
