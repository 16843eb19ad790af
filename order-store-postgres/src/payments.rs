//! Claims, settlements and releases: every write is one conditional statement, fenced by
//! the order's status and the lease token.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::order::CancelReason;
use order_core::ports::{CancelResult, Claim, EndLease, Job, Lease, LeaseEnd, RepoError};
use order_core::{Order, OrderEvent, OrderId, OrderStatus, Transition, WorkerId};
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::translate;
use crate::orders::{ORDER_COLUMNS, order_tree};
use crate::rows::{self, AttemptArrays, ClaimMissRow, LeaseRow};

/// Claims due, unleased orders (each with work pending: its `due_at` is set), returning them
/// whole (an order-tree statement); a `pending` one becomes `payment_processing`. The rows
/// are locked in id order, so concurrent batches wait for each other and never deadlock.
///
/// Binds: `$1` the orders (each once), `$2` their lease tokens, `$3` the status a claim
/// starts from, `$4` the status it moves to, `$5` now, `$6` worker, `$7` lease expiry.
fn claim_sql() -> String {
    order_tree(&format!(
        "UPDATE orders SET \
           status = CASE WHEN status = $3 THEN $4 ELSE status END, \
           updated_at = CASE WHEN status = $3 THEN GREATEST(updated_at, $5) ELSE updated_at END, \
           charge_uncertain = charge_uncertain OR lease_token IS NOT NULL, \
           lease_token = due.token, lease_owner = $6, lease_expires_at = $7 \
         FROM (SELECT o.id AS due_id, r.token, r.rank FROM orders o \
                 JOIN UNNEST($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(id, token, rank) \
                   ON r.id = o.id \
               WHERE o.due_at <= $5 AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= $5) \
               ORDER BY o.id FOR UPDATE OF o) AS due \
         WHERE id = due.due_id \
         RETURNING {ORDER_COLUMNS}, due.rank"
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

/// Why claims took nothing. Binds: `$1` the orders.
const CLAIM_MISSES: &str =
    "SELECT id, status, lease_expires_at, due_at FROM orders WHERE id = ANY($1)";

/// Why fenced writes matched nothing. Binds: `$1` the orders.
const LEASES_NOW: &str = "SELECT id, status, lease_token FROM orders WHERE id = ANY($1)";

/// Ends leases, each with a transition to a terminal status (a settlement: nothing is left
/// to do, so the order is due never again) or with its next attempt scheduled (a release:
/// the status stays, `updated_at` moves only when an attempt is recorded), and appends the
/// attempt made under each, if any. An end writes only while its token is the order's lease
/// and, for a settlement, the order is in the status the transition starts from. Rows are
/// locked in id order. Returns the order and token of each end written.
///
/// Binds, one entry per end: `$1` order, `$2` lease token, `$3` new status (null for a
/// release), `$4` the status a settlement starts from (null for a release), `$5` when the
/// order is next due (null for a settlement), `$6` now; then the attempt's columns (all null
/// without one): `$7` kind, `$8` number, `$9` outcome, `$10` transaction or refund id, `$11`
/// decline reason, `$12` error, `$13` amount, `$14` started, `$15` finished.
const END_LEASES: &str = "WITH r AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], \
           $6::timestamptz[], $7::text[], $8::int4[], $9::text[], $10::text[], $11::text[], \
           $12::text[], $13::numeric[], $14::timestamptz[], $15::timestamptz[]) \
         AS r(id, token, to_status, from_status, due, at, kind, number, outcome, transaction_id, \
           decline_reason, error, amount, started_at, finished_at)), \
     held AS ( \
       SELECT o.id FROM orders o JOIN r ON r.id = o.id AND r.token = o.lease_token \
       WHERE r.from_status IS NULL OR o.status = r.from_status \
       ORDER BY o.id FOR UPDATE OF o), \
     upd AS ( \
       UPDATE orders o SET status = COALESCE(r.to_status, o.status), due_at = r.due, \
         updated_at = CASE WHEN r.to_status IS NULL AND r.number IS NULL THEN o.updated_at \
                      ELSE GREATEST(o.updated_at, r.at) END, \
         lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
       FROM r WHERE o.id IN (SELECT id FROM held) AND r.id = o.id AND r.token = o.lease_token \
         AND (r.from_status IS NULL OR o.status = r.from_status) \
       RETURNING o.id, r.token), \
     ins AS ( \
       INSERT INTO payment_attempts (order_id, kind, number, outcome, transaction_id, \
         decline_reason, error, amount, started_at, finished_at) \
       SELECT r.id, r.kind, r.number, r.outcome, r.transaction_id, r.decline_reason, r.error, \
         r.amount, r.started_at, r.finished_at \
       FROM r JOIN upd ON upd.id = r.id AND upd.token = r.token WHERE r.number IS NOT NULL) \
     SELECT id, token FROM upd";

/// Orders with work pending, due by a time and not leased, oldest first. Binds: `$1` the
/// time, `$2` the limit.
const DUE: &str = "SELECT id, traceparent::text FROM orders \
     WHERE due_at <= $1 \
       AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
     ORDER BY due_at, id LIMIT $2";

impl PgOrderRepo {
    /// Claims the orders in one statement (see [`OrderRepo::claim_many`](order_core::ports::OrderRepo::claim_many)),
    /// then reads why the others took nothing in one more.
    pub(crate) async fn claim_orders(
        &self,
        ids: &[OrderId],
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Vec<Result<Claim, RepoError>>, RepoError> {
        let start = transition(OrderStatus::Pending, OrderEvent::PaymentStarted)?;
        let expires_at = order_core::time::later(now, lease_for);
        // Each order once; a repeat is answered below as a claim made just after.
        let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        for id in ids {
            if seen.insert(*id) {
                unique.push(id.as_uuid());
            }
        }
        let tokens: Vec<Uuid> = unique.iter().map(|_| Uuid::now_v7()).collect();
        let sql = claim_sql();
        // Planned for each batch (see `END_LEASES`' note on plans).
        let query = sqlx::query_as(&sql)
            .persistent(false)
            .bind(&unique)
            .bind(&tokens)
            .bind(start.from().as_str())
            .bind(start.to().as_str())
            .bind(now)
            .bind(worker.as_str())
            .bind(expires_at);
        let acquired: HashMap<OrderId, (Order, bool)> = self
            .fetch_tree(query)
            .await?
            .into_iter()
            .map(|(order, uncertain)| (order.id, (order, uncertain)))
            .collect();
        let token_of: HashMap<OrderId, Uuid> = unique
            .iter()
            .zip(&tokens)
            .map(|(id, token)| (OrderId::from_uuid(*id), *token))
            .collect();
        // The claims are committed: from here on a failure fails only the entries it leaves
        // unexplained, never the leases taken.
        let misses = self.claim_misses(&unique, &acquired, now).await;
        let mut answered: HashSet<OrderId> = HashSet::with_capacity(ids.len());
        Ok(ids
            .iter()
            .map(|&id| {
                let first = answered.insert(id);
                match acquired.get(&id) {
                    Some((order, uncertain)) if first => Ok(Claim::Acquired {
                        lease: Lease {
                            order_id: id,
                            owner: worker.clone(),
                            token: token_of[&id],
                            expires_at,
                        },
                        order: order.clone(),
                        uncertain: *uncertain,
                    }),
                    // A repeat of an order its first entry acquired: busy under that lease.
                    Some(_) => Ok(Claim::Busy { until: expires_at }),
                    None => match &misses {
                        Ok(misses) => misses.get(&id).cloned().ok_or(RepoError::NotFound(id)),
                        Err(e) => Err(e.replicate()),
                    },
                }
            })
            .collect())
    }

    /// Why each order in `ids` but not in `acquired` took nothing, read in one statement (and
    /// the settled ones whole in one more).
    async fn claim_misses(
        &self,
        ids: &[Uuid],
        acquired: &HashMap<OrderId, (Order, bool)>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<OrderId, Claim>, RepoError> {
        let unclaimed: Vec<Uuid> = ids
            .iter()
            .filter(|id| !acquired.contains_key(&OrderId::from_uuid(**id)))
            .copied()
            .collect();
        if unclaimed.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<ClaimMissRow> = sqlx::query_as(CLAIM_MISSES)
            .bind(&unclaimed)
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?;
        let mut terminal = Vec::new();
        let mut misses = HashMap::with_capacity(rows.len());
        for row in rows {
            let id = OrderId::from_uuid(row.id);
            if rows::status("orders", &row.status)?.is_terminal() {
                terminal.push(id);
                continue;
            }
            let claim = match (row.lease_expires_at, row.due_at) {
                (Some(until), _) if until > now => Claim::Busy { until },
                (_, Some(at)) if at > now => Claim::NotDue { at },
                // Changed between the two statements: report it busy briefly; the caller
                // retries.
                _ => Claim::Busy { until: now },
            };
            misses.insert(id, claim);
        }
        for order in self.fetch_many(&terminal).await? {
            misses.insert(order.id, Claim::Settled(order));
        }
        Ok(misses)
    }

    /// Ends the leases in one statement (see [`OrderRepo::end_leases`](order_core::ports::OrderRepo::end_leases)),
    /// then reads why the others wrote nothing in one more.
    pub(crate) async fn end_leases_now(
        &self,
        ends: &[EndLease],
    ) -> Result<Vec<Result<(), RepoError>>, RepoError> {
        let mut sent = Vec::with_capacity(ends.len());
        let mut tokens = HashSet::with_capacity(ends.len());
        let (mut ids, mut lease_tokens, mut to, mut from, mut due, mut at) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut attempts = AttemptArrays::default();
        for e in ends {
            // The same lease twice: the second finds it ended by the first.
            if !tokens.insert(e.lease.token) {
                continue;
            }
            sent.push(e);
            ids.push(e.lease.order_id.as_uuid());
            lease_tokens.push(e.lease.token);
            let (new, old, next) = match e.end {
                LeaseEnd::Settle(t) => (Some(t.to().as_str()), Some(t.from().as_str()), None),
                LeaseEnd::Release { retry_at } => (None, None, Some(retry_at)),
            };
            to.push(new);
            from.push(old);
            due.push(next);
            at.push(e.now);
            attempts.push(e.attempt.as_ref());
        }
        // Planned for each batch, from the table as it is: a plan cached while the table was
        // small scans it whole (a join of the batch's arrays with `orders`, costed for a few
        // pages), and no statistics arrive to replace it until autovacuum analyzes the table,
        // which on a fresh table that fills fast is long after it grew to thousands of pages.
        // A plan costs far less than that, once per batch.
        let written: Vec<(Uuid, Uuid)> = sqlx::query_as(END_LEASES)
            .persistent(false)
            .bind(&ids)
            .bind(&lease_tokens)
            .bind(&to)
            .bind(&from)
            .bind(&due)
            .bind(&at)
            .bind(&attempts.kind)
            .bind(&attempts.number)
            .bind(&attempts.outcome)
            .bind(&attempts.transaction_id)
            .bind(&attempts.decline_reason)
            .bind(&attempts.error)
            .bind(&attempts.amount)
            .bind(&attempts.started_at)
            .bind(&attempts.finished_at)
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?;
        let written: HashSet<Uuid> = written.into_iter().map(|(_, token)| token).collect();
        let missed: Vec<Uuid> = sent
            .iter()
            .filter(|e| !written.contains(&e.lease.token))
            .map(|e| e.lease.order_id.as_uuid())
            .collect();
        // The ends are committed: from here on a failure fails only the entries it leaves
        // unexplained.
        let now = self.leases_now(&missed).await;
        let mut answered = HashSet::with_capacity(ends.len());
        Ok(ends
            .iter()
            .map(|e| {
                let first = answered.insert(e.lease.token);
                if first && written.contains(&e.lease.token) {
                    Ok(())
                } else if !first {
                    Err(RepoError::LeaseLost(e.lease.order_id))
                } else {
                    match &now {
                        Ok(now) => Err(explain_miss(e, now.get(&e.lease.order_id.as_uuid()))),
                        Err(failed) => Err(failed.replicate()),
                    }
                }
            })
            .collect())
    }

    /// The status and lease now of each order in `ids`, read in one statement.
    async fn leases_now(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, LeaseRow>, RepoError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(sqlx::query_as::<_, LeaseRow>(LEASES_NOW)
            .bind(ids)
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?
            .into_iter()
            .map(|row| (row.id, row))
            .collect())
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
}

/// Why a fenced write matched no row, from the order's row now (`None`: it is gone): the
/// lease was taken over, or the status differs.
fn explain_miss(end: &EndLease, row: Option<&LeaseRow>) -> RepoError {
    let id = end.lease.order_id;
    let Some(row) = row else {
        return RepoError::NotFound(id);
    };
    if row.lease_token != Some(end.lease.token) {
        return RepoError::LeaseLost(id);
    }
    match (end.end, rows::status("orders", &row.status)) {
        (_, Err(e)) => e.into(),
        (LeaseEnd::Settle(t), Ok(actual)) => RepoError::StatusConflict {
            id,
            expected: t.from(),
            actual,
        },
        (LeaseEnd::Release { .. }, Ok(_)) => RepoError::LeaseLost(id),
    }
}

/// The transition `event` makes from `from`, as the state machine says.
fn transition(from: OrderStatus, event: OrderEvent) -> Result<Transition, RepoError> {
    Transition::apply(from, event).map_err(|e| RepoError::Other(e.into()))
}
