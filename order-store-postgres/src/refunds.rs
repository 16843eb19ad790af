//! Refunds asked for on their own: recorded once under their key while what is left of the
//! capture allows, then settled once.

use chrono::{DateTime, Utc};
use order_core::order::{RefundDraft, RefundSettlement};
use order_core::payment::IdempotencyKey;
use order_core::ports::{RefundStart, RepoError};
use order_core::{Order, OrderId, OrderStatus};

use crate::PgOrderRepo;
use crate::error::{is_unique_violation, translate};

/// Records a pending refund, numbered after the order's others: only for a `confirmed`
/// order with no cancellation, whose captured payment less what its refunds hold back
/// covers the amount, and with no refund under the key yet. One statement: the update
/// locks the order's row, so of concurrent refunds each sees what the ones before it
/// reserved, and a cancellation either comes before (and the refund is refused) or after
/// (and its refund sees this one). Binds: `$1` the order, `$2` the key, `$3` the amount,
/// `$4` the items (JSON), `$5` the reason or null, `$6` now, `$7` the status `confirmed`.
const BEGIN: &str = "WITH o AS ( \
       UPDATE orders SET refunds_reserved = refunds_reserved + $3, \
         refund_count = refund_count + 1, updated_at = GREATEST(updated_at, $6) \
       WHERE id = $1 AND status = $7 AND cancel_requested_at IS NULL \
         AND (CASE WHEN capture_method = 'automatic' THEN total_amount \
                   WHEN captured_at IS NOT NULL THEN capture_amount \
                   ELSE 0 END) - refunds_reserved >= $3 \
         AND NOT EXISTS (SELECT 1 FROM order_refunds WHERE order_id = $1 AND key = $2) \
       RETURNING id, refund_count), \
     r AS ( \
       INSERT INTO order_refunds (order_id, number, key, amount, items, reason, requested_at) \
       SELECT id, refund_count, $2, $3, $4::jsonb, $5, $6 FROM o RETURNING 1) \
     SELECT count(*) FROM r";

/// Settles the pending refund under `$2` once, and gives back to what is left of the
/// capture what it held back beyond what it gave. Binds: `$1` the order, `$2` the key,
/// `$3` `refunded` or `refused`, `$4` the refund id or null, `$5` what was given or null,
/// `$6` the error or null, `$7` now. A refund that gave money back while the order is
/// `confirmed` records `order.partially_refunded` in the outbox, in the same statement.
const FINISH: &str = "WITH r AS ( \
       UPDATE order_refunds SET outcome = $3, refund_id = $4, given = $5, error = $6, \
         answered_at = $7 \
       WHERE order_id = $1 AND key = $2 AND outcome IS NULL \
       RETURNING amount, outcome), \
     o AS ( \
       UPDATE orders SET \
         refunds_reserved = refunds_reserved - (SELECT amount FROM r) + COALESCE($5::numeric, 0), \
         updated_at = GREATEST(updated_at, $7) \
       WHERE id = $1 AND EXISTS (SELECT 1 FROM r) \
       RETURNING id, status) \
     INSERT INTO order_events (id, order_id, type, occurred_at) \
     SELECT gen_random_uuid(), o.id, 'order.partially_refunded', $7 FROM o, r \
     WHERE r.outcome = 'refunded' AND o.status = 'confirmed'";

/// Orders with a refund pending since before `$1`, the longest waiting first, at most `$2`
/// (by the partial index of pending refunds).
const PENDING: &str = "SELECT order_id FROM order_refunds \
     WHERE outcome IS NULL AND requested_at < $1 \
     GROUP BY order_id ORDER BY min(requested_at) LIMIT $2";

/// Orders still paying whose last charge attempt timed out before `$1`, longest waiting
/// first. The status index narrows it to orders being paid, a handful at any time.
const UNRESOLVED: &str = "SELECT o.id FROM orders o \
     CROSS JOIN LATERAL (SELECT a.outcome, a.finished_at FROM payment_attempts a \
         WHERE a.order_id = o.id AND a.kind = 'charge' ORDER BY a.number DESC LIMIT 1) last \
     WHERE o.status = 'payment_processing' AND o.cancel_requested_at IS NULL \
       AND last.outcome = 'timed_out' AND last.finished_at < $1 \
     ORDER BY last.finished_at, o.id LIMIT $2";

impl PgOrderRepo {
    /// The ids `query` lists for `$1` = `before` and `$2` = `limit`.
    async fn orders_waiting(
        &self,
        query: &'static str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(query)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }

    pub(crate) async fn unresolved_charges_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.orders_waiting(UNRESOLVED, before, limit).await
    }

    pub(crate) async fn pending_refunds_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.orders_waiting(PENDING, before, limit).await
    }

    pub(crate) async fn begin_refund_of(
        &self,
        id: OrderId,
        draft: &RefundDraft,
        now: DateTime<Utc>,
    ) -> Result<RefundStart, RepoError> {
        let items =
            serde_json::to_string(&draft.items).map_err(|e| RepoError::Other(Box::new(e)))?;
        let recorded: Result<i64, _> = sqlx::query_scalar(BEGIN)
            .bind(id.as_uuid())
            .bind(draft.key.as_str())
            .bind(draft.amount.amount())
            .bind(items)
            .bind(draft.reason.as_ref().map(order_core::RefundReason::as_str))
            .bind(now)
            .bind(OrderStatus::Confirmed.as_str())
            .fetch_one(self.db()?)
            .await;
        let began = match recorded {
            Ok(n) => n > 0,
            // The same key recorded meanwhile by a concurrent request: judged below.
            Err(e) if is_unique_violation(&e, "order_refunds_order_id_key_key") => false,
            Err(e) => return Err(translate(e)),
        };
        let order = self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))?;
        if began {
            return Ok(RefundStart::Begun(order));
        }
        Ok(RefundStart::found(order, draft))
    }

    pub(crate) async fn finish_refund_of(
        &self,
        id: OrderId,
        key: &IdempotencyKey,
        settlement: &RefundSettlement,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        let (outcome, refund_id, given, error) = match settlement {
            RefundSettlement::Refunded { refund_id, amount } => (
                "refunded",
                Some(refund_id.as_str()),
                Some(amount.amount()),
                None,
            ),
            RefundSettlement::Refused { error } => ("refused", None, None, Some(error.as_str())),
        };
        sqlx::query(FINISH)
            .bind(id.as_uuid())
            .bind(key.as_str())
            .bind(outcome)
            .bind(refund_id)
            .bind(given)
            .bind(error)
            .bind(now)
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        self.fetch_one(id).await?.ok_or(RepoError::NotFound(id))
    }
}
