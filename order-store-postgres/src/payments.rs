//! Claims, settlements and releases: every write is one conditional statement, fenced by
//! the order's status and the lease token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::order::CancelReason;
use order_core::payment::Attempt;
use order_core::ports::{CancelResult, Claim, Job, Lease, RepoError};
use order_core::{OrderEvent, OrderId, OrderStatus, Transition, WorkerId};
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::translate;
use crate::orders::{ORDER_COLUMNS, order_tree};
use crate::rows::{self, AttemptColumns, ClaimMissRow, LeaseRow};

/// Claims a due, unleased order (one with work pending: its `due_at` is set), returning it
/// whole (an order-tree statement); a `pending` order becomes `payment_processing`.
///
/// Binds: `$1` order, `$2` the status a claim starts from, `$3` the status it moves to, `$4`
/// now, `$5` lease token, `$6` worker, `$7` lease expiry.
fn claim_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET \
           status = CASE WHEN status = $2 THEN $3 ELSE status END, \
           updated_at = CASE WHEN status = $2 THEN GREATEST(updated_at, $4) ELSE updated_at END, \
           charge_uncertain = charge_uncertain OR lease_token IS NOT NULL, \
           lease_token = $5, lease_owner = $6, lease_expires_at = $7 \
         WHERE id = $1 AND due_at <= $4 \
           AND (lease_expires_at IS NULL OR lease_expires_at <= $4) \
         RETURNING {ORDER_COLUMNS}, 1::bigint AS rank"
    ))
}

/// Cancels a `pending` order, or makes a paying or `confirmed` one `cancelling` and due at
/// once; any lease stays, so a charge in flight is fenced by the status. Returns the order
/// whole (an order-tree statement), or nothing when its status allows neither.
///
/// Binds: `$1` order, `$2` `pending`, `$3` what a pending order becomes, `$4` the statuses
/// a cancellation is requested from, `$5` what they become, `$6` now, `$7` the reason.
fn cancel_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET \
           status = CASE WHEN status = $2 THEN $3 ELSE $5 END, \
           due_at = CASE WHEN status = $2 THEN NULL ELSE $6 END, \
           updated_at = GREATEST(updated_at, $6), cancel_requested_at = $6, cancel_reason = $7 \
         WHERE id = $1 AND (status = $2 OR status = ANY($4)) \
         RETURNING {ORDER_COLUMNS}, 1::bigint AS rank"
    ))
}

/// Why a claim took nothing. Binds: `$1` order.
const CLAIM_MISS: &str = "SELECT status, lease_expires_at, due_at FROM orders WHERE id = $1";

/// Why a fenced write matched nothing. Binds: `$1` order.
const LEASE_NOW: &str = "SELECT status, lease_token FROM orders WHERE id = $1";

/// A statement that ends a lease with `update` (a fenced `UPDATE orders ... RETURNING id`)
/// and, in the same statement, appends the attempt bound as `$1`..`$9` when `$2` is not null
/// (see [`AttemptColumns::bind`]). It returns how many orders were updated: 0 or 1.
fn end_lease_sql(update: &str) -> String {
    format!(
        "WITH upd AS ({update}), \
         ins AS ( \
           INSERT INTO payment_attempts (order_id, kind, number, outcome, transaction_id, \
             decline_reason, error, amount, started_at, finished_at) \
           SELECT upd.id, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM upd WHERE $2::int IS NOT NULL) \
         SELECT count(*) FROM upd"
    )
}

/// Ends a lease with a transition to a terminal status: nothing is left to do, so the order
/// is due never again. Binds: the attempt's `$1`..`$9`, then `$10` order, `$11` lease token,
/// `$12` new status, `$13` now, `$14` the status the transition starts from.
const SETTLE_UPDATE: &str = "UPDATE orders SET status = $12, updated_at = GREATEST(updated_at, $13), due_at = NULL, \
       lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $10 AND lease_token = $11 AND status = $14 RETURNING id";

/// Ends a lease with the next attempt scheduled. Binds: the attempt's `$1`..`$9`, then `$10`
/// order, `$11` lease token, `$12` when the next attempt is due, `$13` now (the order's
/// `updated_at` moves only when an attempt is recorded).
const RELEASE_UPDATE: &str = "UPDATE orders SET due_at = $12, \
       updated_at = CASE WHEN $2::int IS NULL THEN updated_at ELSE GREATEST(updated_at, $13) END, \
       lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $10 AND lease_token = $11 RETURNING id";

/// Orders with work pending, due by a time and not leased, oldest first. Binds: `$1` the
/// time, `$2` the limit.
const DUE: &str = "SELECT id, traceparent::text FROM orders \
     WHERE due_at <= $1 \
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
            .bind(lease.expires_at);
        if let Some((order, uncertain)) = self.fetch_tree(query).await?.into_iter().next() {
            return Ok(Claim::Acquired {
                lease,
                order,
                uncertain,
            });
        }
        let row: ClaimMissRow = sqlx::query_as(CLAIM_MISS)
            .bind(id.as_uuid())
            .fetch_optional(self.db()?)
            .await
            .map_err(translate)?
            .ok_or(RepoError::NotFound(id))?;
        if rows::status("orders", &row.status)?.is_terminal() {
            let order = self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))?;
            return Ok(Claim::Settled(order));
        }
        match (row.lease_expires_at, row.due_at) {
            (Some(until), _) if until > now => Ok(Claim::Busy { until }),
            (_, Some(at)) if at > now => Ok(Claim::NotDue { at }),
            // Changed between the two statements: report it busy briefly; the caller retries.
            _ => Ok(Claim::Busy { until: now }),
        }
    }

    pub(crate) async fn settle_order(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
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
            .fetch_one(self.db()?)
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
        attempt: Option<&Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let sql = end_lease_sql(RELEASE_UPDATE);
        let updated: i64 = AttemptColumns::bind(attempt, sqlx::query_scalar(&sql))
            .bind(lease.order_id.as_uuid())
            .bind(lease.token)
            .bind(retry_at)
            .bind(now)
            .fetch_one(self.db()?)
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
    ) -> Result<Vec<Job>, RepoError> {
        let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(DUE)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?;
        Ok(rows
            .into_iter()
            .map(|(id, trace)| Job {
                order_id: OrderId::from_uuid(id),
                // A trace that does not read is only a lost link, never a reason to leave an
                // order unpaid.
                trace: trace.and_then(|t| t.parse().ok()),
            })
            .collect())
    }

    pub(crate) async fn cancel_order(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError> {
        let cancelled = transition(OrderStatus::Pending, OrderEvent::Cancelled)?;
        let requested_from = [OrderStatus::PaymentProcessing, OrderStatus::Confirmed];
        let cancelling = requested_from
            .map(|from| transition(from, OrderEvent::CancelRequested).map(|t| t.to()));
        let cancelling = match cancelling {
            [Ok(a), Ok(b)] if a == b => a,
            _ => {
                return Err(RepoError::Other(
                    "the state machine no longer sends paying and confirmed orders to one status"
                        .into(),
                ));
            }
        };
        let sql = cancel_sql();
        // A claim can move a pending order on between the two statements: try again then.
        for _ in 0..3 {
            let query = sqlx::query_as(&sql)
                .bind(id.as_uuid())
                .bind(cancelled.from().as_str())
                .bind(cancelled.to().as_str())
                .bind(requested_from.map(OrderStatus::as_str).to_vec())
                .bind(cancelling.as_str())
                .bind(now)
                .bind(reason.as_str());
            if let Some((order, _)) = self.fetch_tree(query).await?.pop() {
                return Ok(if order.status == cancelled.to() {
                    CancelResult::Cancelled(order)
                } else {
                    CancelResult::Cancelling(order)
                });
            }
            let order = self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))?;
            match order.status {
                OrderStatus::Cancelling | OrderStatus::Cancelled => {
                    return Ok(CancelResult::Unchanged(order));
                }
                OrderStatus::PaymentFailed => return Ok(CancelResult::NotCancellable(order)),
                OrderStatus::Pending | OrderStatus::PaymentProcessing | OrderStatus::Confirmed => {}
            }
        }
        Err(RepoError::Unavailable(
            format!("order {id} kept changing while being cancelled").into(),
        ))
    }

    /// Says why a fenced write matched no row: the order is gone, the lease was taken
    /// over, or the status differs.
    async fn explain_miss(&self, lease: &Lease, expected: Option<OrderStatus>) -> RepoError {
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return e,
        };
        let row: Result<Option<LeaseRow>, _> = sqlx::query_as(LEASE_NOW)
            .bind(lease.order_id.as_uuid())
            .fetch_optional(db)
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

/// The transition `event` makes from `from`, as the state machine says.
fn transition(from: OrderStatus, event: OrderEvent) -> Result<Transition, RepoError> {
    Transition::apply(from, event).map_err(|e| RepoError::Other(e.into()))
}
