//! # order-store-postgres
//!
//! [`PgOrderRepo`]: the [`OrderRepo`] port on PostgreSQL with sqlx.
//!
//! - The schema lives in embedded migrations ([`migrate`]), applied at start-up.
//! - Every write is one SQL statement, so it is atomic and costs one round trip; batches of
//!   orders go in one statement through `UNNEST` arrays ([`OrderRepo::insert_many`]), which
//!   is what lets the service group-commit concurrent requests.
//! - Claims, settlements and releases are conditional updates (status, lease token); a lost
//!   race is a typed error, never a silent overwrite.
//! - Driver errors are translated here: unique violations become `Duplicate`, connection
//!   trouble `Unavailable` (retryable); no SQL text travels upward.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::payment::{AttemptOutcome, DeclineReason, PaymentAttempt};
use order_core::ports::{
    BoxError, Claim, Lease, OrderFilter, OrderPage, OrderRepo, PageRequest, RepoError,
};
use order_core::request::{Fingerprint, KeyedRequest, RequestKey};
use order_core::{
    CustomerId, ItemId, ItemName, Money, Order, OrderEvent, OrderId, OrderItem, OrderStatus, Price,
    Quantity, Transition, WorkerId,
};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[cfg(feature = "testing")]
pub mod testing;

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

    /// Runs an order-tree query ([`order_tree`]) and assembles its rows into orders.
    async fn fetch_orders(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<(Order, bool)>, RepoError> {
        let rows = query.fetch_all(&self.pool).await.map_err(translate)?;
        assemble(&rows)
    }

    /// Says why a fenced write matched no row: the order is gone, the lease was taken
    /// over, or the status differs.
    async fn explain_miss(&self, lease: &Lease, expected: Option<OrderStatus>) -> RepoError {
        let row = sqlx::query("SELECT status, lease_token FROM orders WHERE id = $1")
            .bind(lease.order_id.as_uuid())
            .fetch_optional(&self.pool)
            .await;
        match row {
            Err(e) => translate(e),
            Ok(None) => RepoError::NotFound(lease.order_id),
            Ok(Some(row)) => {
                let token: Option<Uuid> = row.get("lease_token");
                if token != Some(lease.token) {
                    return RepoError::LeaseLost(lease.order_id);
                }
                match (expected, parse_status(row.get("status"))) {
                    (Some(expected), Ok(actual)) => RepoError::StatusConflict {
                        id: lease.order_id,
                        expected,
                        actual,
                    },
                    (_, Err(e)) => e,
                    (None, Ok(_)) => RepoError::LeaseLost(lease.order_id),
                }
            }
        }
    }
}

/// Stores orders in one statement; with a key, only if the key's reservation is `token`'s
/// (and the key is completed with the first order in the same statement).
const INSERT_ORDERS: &str = "WITH k AS ( \
       UPDATE request_keys SET order_id = $13 \
       WHERE $11::text IS NOT NULL AND key = $11 AND token = $12 AND order_id IS NULL RETURNING 1), \
     ok AS (SELECT 1 AS go WHERE $11::text IS NULL OR EXISTS (SELECT 1 FROM k)), \
     o AS ( \
       INSERT INTO orders (id, customer_id, total_amount, status, created_at, updated_at, due_at) \
       SELECT id, customer_id, total, 'pending', created, created, created \
       FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::timestamptz[]) \
         AS u(id, customer_id, total, created) \
       WHERE EXISTS (SELECT 1 FROM ok) \
       RETURNING id), \
     i AS ( \
       INSERT INTO order_items (order_id, position, item_id, item_name, quantity, price) \
       SELECT * FROM UNNEST($5::uuid[], $6::int2[], $7::text[], $8::text[], $9::int4[], $10::numeric[]) \
       WHERE EXISTS (SELECT 1 FROM ok)) \
     SELECT count(*) FROM ok";

impl PgOrderRepo {
    /// Stores `orders` in one statement. With `key`, stores them only while `token` holds the
    /// key's reservation, and completes the key with the first order; returns whether stored.
    async fn insert_orders(
        &self,
        orders: &[Order],
        key: Option<(&RequestKey, Uuid)>,
    ) -> Result<bool, RepoError> {
        if orders.is_empty() {
            return Ok(true);
        }
        let mut seen = HashSet::with_capacity(orders.len());
        if let Some(dup) = orders.iter().find(|o| !seen.insert(o.id)) {
            return Err(RepoError::Duplicate(dup.id));
        }
        let n = orders.len();
        let (mut ids, mut customers, mut totals, mut created) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut i_order, mut i_pos, mut i_id, mut i_name, mut i_qty, mut i_price) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for order in orders {
            ids.push(order.id.as_uuid());
            customers.push(order.customer_id.as_str());
            totals.push(order.total_amount.amount());
            created.push(order.created_at);
            for (pos, item) in order.items.iter().enumerate() {
                i_order.push(order.id.as_uuid());
                i_pos.push(i16::try_from(pos).unwrap_or(i16::MAX));
                i_id.push(item.item_id.as_str());
                i_name.push(item.item_name.as_str());
                i_qty.push(i32::try_from(item.quantity.get()).unwrap_or(i32::MAX));
                i_price.push(Decimal::from(item.price));
            }
        }
        let result: Result<i64, _> = sqlx::query_scalar(INSERT_ORDERS)
            .bind(&ids)
            .bind(&customers)
            .bind(&totals)
            .bind(&created)
            .bind(&i_order)
            .bind(&i_pos)
            .bind(&i_id)
            .bind(&i_name)
            .bind(&i_qty)
            .bind(&i_price)
            .bind(key.map(|(k, _)| k.as_str()))
            .bind(key.map(|(_, t)| t))
            .bind(ids[0])
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(stored) => Ok(stored == 1),
            // The CTE's inserts run in no fixed order: either key can trip first, and an
            // item key can only clash with an item of an existing order.
            Err(e)
                if is_unique_violation(&e, "orders_pkey")
                    || is_unique_violation(&e, "order_items_pkey") =>
            {
                // The statement changed nothing; name one of the ids that exist already.
                let existing: Option<Uuid> =
                    sqlx::query_scalar("SELECT id FROM orders WHERE id = ANY($1) LIMIT 1")
                        .bind(&ids)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(translate)?;
                Err(RepoError::Duplicate(OrderId::from_uuid(
                    existing.unwrap_or(ids[0]),
                )))
            }
            Err(e) => Err(translate(e)),
        }
    }
}

/// One statement that returns whole orders: `picked` is a CTE yielding order rows with a
/// `rank` (their order in the answer); the statement adds their items and attempts, so an
/// order is read, or claimed and read, in a single round trip. Row kinds: 0 order, 1 item,
/// 2 attempt.
fn order_tree(picked: &str) -> String {
    format!(
        "WITH picked AS ({picked}) \
         SELECT 0 AS kind, p.rank, p.id, p.customer_id, p.total_amount, p.status, p.created_at, p.updated_at, \
                p.charge_uncertain, 0 AS n, NULL::text AS item_id, NULL::text AS item_name, NULL::int4 AS quantity, NULL::numeric AS price, \
                NULL::text AS outcome, NULL::text AS transaction_id, NULL::text AS decline_reason, NULL::text AS error, \
                NULL::timestamptz AS started_at, NULL::timestamptz AS finished_at \
         FROM picked p \
         UNION ALL \
         SELECT 1, p.rank, p.id, NULL, NULL, NULL, NULL, NULL, NULL, i.position, i.item_id, i.item_name, i.quantity, i.price, \
                NULL, NULL, NULL, NULL, NULL, NULL \
         FROM picked p JOIN order_items i ON i.order_id = p.id \
         UNION ALL \
         SELECT 2, p.rank, p.id, NULL, NULL, NULL, NULL, NULL, NULL, a.number, NULL, NULL, NULL, NULL, \
                a.outcome, a.transaction_id, a.decline_reason, a.error, a.started_at, a.finished_at \
         FROM picked p JOIN payment_attempts a ON a.order_id = p.id \
         ORDER BY rank, kind, n"
    )
}

/// Builds orders, each with its `charge_uncertain` flag, from the rows of an
/// [`order_tree`] statement, in rank order.
fn assemble(rows: &[PgRow]) -> Result<Vec<(Order, bool)>, RepoError> {
    let mut orders: Vec<(Order, bool)> = Vec::new();
    for row in rows {
        match row.get::<i32, _>("kind") {
            0 => orders.push((
                order_from_row(row, Vec::new(), Vec::new())?,
                row.get::<Option<bool>, _>("charge_uncertain")
                    .unwrap_or(false),
            )),
            kind => {
                let id = OrderId::from_uuid(row.get("id"));
                let (order, _) = orders
                    .last_mut()
                    .filter(|(o, _)| o.id == id)
                    .ok_or_else(|| corrupt("order tree", "child row before its order"))?;
                if kind == 1 {
                    order.items.push(item_from_row(row)?);
                } else {
                    order.payment_attempts.push(attempt_from_row(row)?);
                }
            }
        }
    }
    Ok(orders)
}

const ORDER_COLUMNS: &str =
    "id, customer_id, total_amount, status, created_at, updated_at, charge_uncertain";

/// The attempt as bind parameters: number, outcome, transaction id, decline reason, error,
/// started, finished.
type AttemptParams = (
    Option<i32>,
    Option<&'static str>,
    Option<String>,
    Option<&'static str>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn attempt_params(attempt: Option<&PaymentAttempt>) -> AttemptParams {
    let Some(a) = attempt else {
        return (None, None, None, None, None, None, None);
    };
    let (transaction_id, reason, error) = match &a.outcome {
        AttemptOutcome::Succeeded { transaction_id } => (Some(transaction_id.clone()), None, None),
        AttemptOutcome::Declined { reason } => (None, Some(reason.as_str()), None),
        AttemptOutcome::Failed { error } | AttemptOutcome::TimedOut { error } => {
            (None, None, Some(error.clone()))
        }
    };
    (
        Some(i32::try_from(a.number.get()).unwrap_or(i32::MAX)),
        Some(a.outcome.as_str()),
        transaction_id,
        reason,
        error,
        Some(a.started_at),
        Some(a.finished_at),
    )
}

/// Appends the attempt (if `$2` is not null) for the order the CTE `upd` returned.
const INSERT_ATTEMPT_FROM_UPD: &str = "INSERT INTO payment_attempts \
    (order_id, number, outcome, transaction_id, decline_reason, error, started_at, finished_at) \
    SELECT upd.id, $2, $3, $4, $5, $6, $7, $8 FROM upd WHERE $2::int IS NOT NULL";

/// A statement ending a lease, with its first nine parameters bound: `$1` the order,
/// `$2`..`$8` the attempt (all null without one), `$9` the lease token.
fn end_lease<'q>(
    sql: &'q str,
    lease: &Lease,
    attempt: Option<&PaymentAttempt>,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments> {
    let (number, outcome, txn, reason, error, started, finished) = attempt_params(attempt);
    sqlx::query_scalar(sql)
        .bind(lease.order_id.as_uuid())
        .bind(number)
        .bind(outcome)
        .bind(txn)
        .bind(reason)
        .bind(error)
        .bind(started)
        .bind(finished)
        .bind(lease.token)
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
        let sql = order_tree(&format!(
            "SELECT {ORDER_COLUMNS}, 1 AS rank FROM orders WHERE id = $1"
        ));
        Ok(self
            .fetch_orders(sqlx::query(&sql).bind(id.as_uuid()))
            .await?
            .pop()
            .map(|(order, _)| order))
    }

    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError> {
        let customer = filter.customer_id.as_ref().map(CustomerId::as_str);
        let status = filter.status.map(OrderStatus::as_str);
        let condition =
            "($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM orders WHERE {condition}"))
                .bind(customer)
                .bind(status)
                .fetch_one(&self.pool)
                .await
                .map_err(translate)?;
        let sql = order_tree(&format!(
            "SELECT {ORDER_COLUMNS}, row_number() OVER (ORDER BY created_at DESC, id DESC) AS rank \
             FROM orders WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ));
        let orders = self
            .fetch_orders(
                sqlx::query(&sql)
                    .bind(customer)
                    .bind(status)
                    .bind(i64::from(page.size.get()))
                    .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX)),
            )
            .await?;
        Ok(OrderPage {
            orders: orders.into_iter().map(|(order, _)| order).collect(),
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn claim(
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
        let sql = order_tree(&format!(
            "UPDATE orders SET \
               status = CASE WHEN status = $2 THEN $3 ELSE status END, \
               updated_at = CASE WHEN status = $2 THEN $4 ELSE updated_at END, \
               charge_uncertain = charge_uncertain OR lease_token IS NOT NULL, \
               lease_token = $5, lease_owner = $6, lease_expires_at = $7 \
             WHERE id = $1 AND status IN ('pending', 'payment_processing') \
               AND (lease_expires_at IS NULL OR lease_expires_at <= $4) AND due_at <= $4 \
             RETURNING {ORDER_COLUMNS}, 1 AS rank"
        ));
        let claimed = self
            .fetch_orders(
                sqlx::query(&sql)
                    .bind(id.as_uuid())
                    .bind(start.from().as_str())
                    .bind(start.to().as_str())
                    .bind(now)
                    .bind(lease.token)
                    .bind(worker.as_str())
                    .bind(lease.expires_at),
            )
            .await?;
        if let Some((order, uncertain)) = claimed.into_iter().next() {
            return Ok(Claim::Acquired {
                lease,
                order,
                uncertain,
            });
        }
        let row = sqlx::query("SELECT status, lease_expires_at, due_at FROM orders WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .ok_or(RepoError::NotFound(id))?;
        let status = parse_status(row.get("status"))?;
        let lease_until: Option<DateTime<Utc>> = row.get("lease_expires_at");
        let due_at: DateTime<Utc> = row.get("due_at");
        if status.is_terminal() {
            let order = self.get(id).await?.ok_or(RepoError::NotFound(id))?;
            return Ok(Claim::Settled(order));
        }
        match lease_until {
            Some(until) if until > now => Ok(Claim::Busy { until }),
            _ if due_at > now => Ok(Claim::NotDue { at: due_at }),
            // Changed between the two statements: report it busy briefly; the caller retries.
            _ => Ok(Claim::Busy { until: now }),
        }
    }

    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<PaymentAttempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let sql = format!(
            "WITH upd AS ( \
               UPDATE orders SET status = $10, updated_at = $11, \
                 lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
               WHERE id = $1 AND lease_token = $9 AND status = $12 RETURNING id), \
             ins AS ({INSERT_ATTEMPT_FROM_UPD}) \
             SELECT count(*) FROM upd"
        );
        let updated: i64 = end_lease(&sql, lease, attempt.as_ref())
            .bind(transition.to().as_str())
            .bind(now)
            .bind(transition.from().as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(translate)?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(lease, Some(transition.from())).await)
        }
    }

    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<PaymentAttempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let sql = format!(
            "WITH upd AS ( \
               UPDATE orders SET due_at = $10, \
                 updated_at = CASE WHEN $2::int IS NULL THEN updated_at ELSE $11 END, \
                 lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL \
               WHERE id = $1 AND lease_token = $9 RETURNING id), \
             ins AS ({INSERT_ATTEMPT_FROM_UPD}) \
             SELECT count(*) FROM upd"
        );
        let updated: i64 = end_lease(&sql, lease, attempt.as_ref())
            .bind(retry_at)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(translate)?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(lease, None).await)
        }
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<OrderId>, RepoError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM orders \
             WHERE status IN ('pending', 'payment_processing') AND due_at <= $1 \
               AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
             ORDER BY due_at, id LIMIT $2",
        )
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }

    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError> {
        let stale_before =
            now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        let token = Uuid::now_v7();
        // Reserve a new key, or take over an abandoned reservation of the same request.
        let reserved: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO request_keys (key, fingerprint, token, reserved_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, reserved_at = EXCLUDED.reserved_at \
             WHERE request_keys.fingerprint = EXCLUDED.fingerprint AND request_keys.order_id IS NULL \
               AND request_keys.reserved_at <= $5 \
             RETURNING token",
        )
        .bind(key.as_str())
        .bind(fingerprint.as_bytes().as_slice())
        .bind(token)
        .bind(now)
        .bind(stale_before)
        .fetch_optional(&self.pool)
        .await
        .map_err(translate)?;
        if reserved.is_some() {
            return Ok(KeyedRequest::New(token));
        }
        let row = sqlx::query("SELECT fingerprint, order_id FROM request_keys WHERE key = $1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?;
        let Some(row) = row else {
            // Purged in between: as good as in flight; the client retries.
            return Ok(KeyedRequest::InFlight);
        };
        let stored: Vec<u8> = row.get("fingerprint");
        if stored.as_slice() != fingerprint.as_bytes() {
            return Ok(KeyedRequest::Mismatch);
        }
        Ok(match row.get::<Option<Uuid>, _>("order_id") {
            Some(order) => KeyedRequest::Completed(OrderId::from_uuid(order)),
            None => KeyedRequest::InFlight,
        })
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

    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM request_keys WHERE key = $1 AND token = $2 AND order_id IS NULL")
            .bind(key.as_str())
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let done = sqlx::query("DELETE FROM request_keys WHERE reserved_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RepoError {
    RepoError::Other(format!("stored {what} is invalid: {e}").into())
}

fn parse_status(s: &str) -> Result<OrderStatus, RepoError> {
    s.parse().map_err(|e| corrupt("status", e))
}

fn order_from_row(
    row: &PgRow,
    items: Vec<OrderItem>,
    attempts: Vec<PaymentAttempt>,
) -> Result<Order, RepoError> {
    Ok(Order {
        id: OrderId::from_uuid(row.get("id")),
        customer_id: CustomerId::parse(row.get::<String, _>("customer_id"))
            .map_err(|e| corrupt("customer_id", e))?,
        items,
        total_amount: Money::new(row.get("total_amount"))
            .map_err(|e| corrupt("total_amount", e))?,
        status: parse_status(row.get("status"))?,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        payment_attempts: attempts,
    })
}

fn item_from_row(row: &PgRow) -> Result<OrderItem, RepoError> {
    Ok(OrderItem {
        item_id: ItemId::parse(row.get::<String, _>("item_id"))
            .map_err(|e| corrupt("item_id", e))?,
        item_name: ItemName::parse(row.get::<String, _>("item_name"))
            .map_err(|e| corrupt("item_name", e))?,
        quantity: Quantity::new(i64::from(row.get::<i32, _>("quantity")))
            .map_err(|e| corrupt("quantity", e))?,
        price: Price::new(row.get("price")).map_err(|e| corrupt("price", e))?,
    })
}

fn attempt_from_row(row: &PgRow) -> Result<PaymentAttempt, RepoError> {
    let text = |col: &str| row.get::<Option<String>, _>(col).unwrap_or_default();
    let outcome = match row.get::<&str, _>("outcome") {
        "succeeded" => AttemptOutcome::Succeeded {
            transaction_id: text("transaction_id"),
        },
        "declined" => {
            let stored = text("decline_reason");
            let reason = DeclineReason::ALL
                .into_iter()
                .find(|r| r.as_str() == stored)
                .ok_or_else(|| corrupt("decline_reason", &stored))?;
            AttemptOutcome::Declined { reason }
        }
        "failed" => AttemptOutcome::Failed {
            error: text("error"),
        },
        "timed_out" => AttemptOutcome::TimedOut {
            error: text("error"),
        },
        other => return Err(corrupt("attempt outcome", other)),
    };
    let number = u32::try_from(row.get::<i32, _>("n"))
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| corrupt("attempt number", "not positive"))?;
    Ok(PaymentAttempt {
        number,
        outcome,
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
    })
}

fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
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
            // 08: connection exception; 53: insufficient resources; 57P0x: server shutting
            // down; 40001/40P01: serialization failure, deadlock.
            code.starts_with("08")
                || code.starts_with("53")
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
