//! Captures of authorized payments (asked for once, then recorded once taken), and word
//! from the processor that hastens an order's payment.

use chrono::{DateTime, Utc};
use order_core::ports::{CaptureStart, RepoError};
use order_core::{Money, Order, OrderId, OrderStatus};

use crate::PgOrderRepo;
use crate::orders::{ORDER_COLUMNS, order_tree};

/// Asks for the capture of `$2` at `$3`, once: only a `confirmed` order with manual
/// capture and no cancellation, whose capture was not asked for, or was asked for the same
/// amount and is not known to be taken yet. Binds: `$1` the order, `$2` the amount, `$3`
/// now, `$4` the status `confirmed`.
fn begin_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET \
           capture_amount = $2, \
           capture_requested_at = COALESCE(capture_requested_at, $3), \
           updated_at = GREATEST(updated_at, $3) \
         WHERE id = $1 AND status = $4 AND capture_method = 'manual' \
           AND cancel_requested_at IS NULL \
           AND (capture_amount IS NULL OR (capture_amount = $2 AND captured_at IS NULL)) \
         RETURNING {ORDER_COLUMNS}, 1::bigint AS rank"
    ))
}

/// Records the capture asked for as taken: `$2` at `$3`, once. Binds: `$1` the order.
fn finish_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET capture_amount = $2, captured_at = $3, \
           updated_at = GREATEST(updated_at, $3) \
         WHERE id = $1 AND capture_requested_at IS NOT NULL AND captured_at IS NULL \
         RETURNING {ORDER_COLUMNS}, 1::bigint AS rank"
    ))
}

/// Makes a paying or cancelling order due at `$2`. Binds: `$1` the order, `$3` the
/// statuses whose payment a worker still has to do.
const HASTEN: &str =
    "UPDATE orders SET due_at = LEAST(due_at, $2) WHERE id = $1 AND status = ANY($3)";

impl PgOrderRepo {
    pub(crate) async fn hasten_order(
        &self,
        id: OrderId,
        now: DateTime<Utc>,
    ) -> Result<Option<Order>, RepoError> {
        let working = [OrderStatus::PaymentProcessing, OrderStatus::Cancelling];
        sqlx::query(HASTEN)
            .bind(id.as_uuid())
            .bind(now)
            .bind(working.map(OrderStatus::as_str).to_vec())
            .execute(self.db()?)
            .await
            .map_err(crate::error::translate)?;
        self.fetch_one(id).await
    }

    pub(crate) async fn begin_capture_of(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<CaptureStart, RepoError> {
        let sql = begin_sql();
        let query = sqlx::query_as(&sql)
            .bind(id.as_uuid())
            .bind(amount.amount())
            .bind(now)
            .bind(OrderStatus::Confirmed.as_str());
        if let Some((order, _)) = self.fetch_tree(query).await?.pop() {
            return Ok(CaptureStart::Begun(order));
        }
        let order = self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))?;
        Ok(match order.captured {
            Some(c) if c.amount == amount && c.captured_at.is_some() => {
                CaptureStart::Captured(order)
            }
            _ => CaptureStart::Refused(order),
        })
    }

    pub(crate) async fn finish_capture_of(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        let sql = finish_sql();
        let query = sqlx::query_as(&sql)
            .bind(id.as_uuid())
            .bind(amount.amount())
            .bind(now);
        if let Some((order, _)) = self.fetch_tree(query).await?.pop() {
            return Ok(order);
        }
        self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))
    }
}
