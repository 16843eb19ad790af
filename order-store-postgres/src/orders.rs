//! Storing, reading and listing orders.

use std::collections::HashSet;

use order_core::ports::{OrderFilter, OrderPage, PageRequest, RepoError};
use order_core::request::RequestKey;
use order_core::{CustomerId, Order, OrderId, OrderStatus, PaymentMethod};
use rust_decimal::Decimal;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::{CorruptRow, is_unique_violation, translate};
use crate::rows::{OrderTreeRow, TreeRowKind};

/// Stores a batch of orders in one statement; with a key, only while the key's reservation
/// is the caller's (and completes the key with the first order in the same statement).
///
/// Binds: `$1` ids, `$2` customers, `$3` totals, `$4` creation times (one per order);
/// `$5` order ids, `$6` positions, `$7` item ids, `$8` names, `$9` quantities, `$10` prices
/// (one per item); `$11` the key or null, `$12` its reservation token, `$13` the first
/// order's id; `$14` the status of a new order; `$15` the orders' `traceparent`s (text or
/// null, one per order); `$16` their payment methods (text or null, one per order); `$17`
/// their capture methods.
const INSERT_ORDERS: &str = "WITH k AS ( \
       UPDATE request_keys SET order_id = $13 \
       WHERE $11::text IS NOT NULL AND key = $11 AND token = $12 AND order_id IS NULL RETURNING 1), \
     ok AS (SELECT 1 AS go WHERE $11::text IS NULL OR EXISTS (SELECT 1 FROM k)), \
     o AS ( \
       INSERT INTO orders (id, customer_id, total_amount, status, created_at, updated_at, due_at, traceparent, payment_method, capture_method) \
       SELECT id, customer_id, total, $14, created, created, created, trace, method, capture \
       FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::timestamptz[], $15::text[], $16::text[], $17::text[]) \
         AS u(id, customer_id, total, created, trace, method, capture) \
       WHERE EXISTS (SELECT 1 FROM ok) \
       RETURNING id), \
     i AS ( \
       INSERT INTO order_items (order_id, position, item_id, item_name, quantity, price) \
       SELECT * FROM UNNEST($5::uuid[], $6::int2[], $7::text[], $8::text[], $9::int4[], $10::numeric[]) \
       WHERE EXISTS (SELECT 1 FROM ok)) \
     SELECT count(*) FROM ok";

/// Which of the given ids exist already. Binds: `$1` ids.
const FIND_EXISTING: &str = "SELECT id FROM orders WHERE id = ANY($1) LIMIT 1";

/// The columns of `orders` every order-tree statement picks.
pub const ORDER_COLUMNS: &str = "id, customer_id, total_amount, status, created_at, updated_at, \
     charge_uncertain, cancel_requested_at, cancel_reason, traceparent::text AS traceparent, payment_method, \
     capture_method, capture_amount, capture_requested_at, captured_at";

/// One statement that returns whole orders: `picked` is a query yielding order rows with
/// [`ORDER_COLUMNS`] and a bigint `rank` (their order in the answer); the statement adds
/// their items and attempts (payment and refund), so an order is read, or claimed and read,
/// in one round trip. Refunds asked for on their own come last (kind 4).
/// Its rows are [`OrderTreeRow`]s.
///
/// Items and attempts are looked up order by order (a lateral subquery the planner may not
/// flatten, so by their primary keys): joined the plain way, a planner without statistics
/// of `order_id`'s distinct values (a table autovacuum has not analyzed yet, such as one
/// that filled in the last minute) expects hundreds of rows per order and hashes the
/// whole table for a claim of a few orders.
pub fn order_tree(picked: &str) -> String {
    format!(
        "WITH picked AS ({picked}) \
         SELECT 0 AS kind, p.rank, p.id, p.customer_id, p.total_amount, p.status, p.created_at, p.updated_at, \
                p.charge_uncertain, p.cancel_requested_at, p.cancel_reason, p.traceparent, p.payment_method, \
                p.capture_method, p.capture_amount, p.capture_requested_at, p.captured_at, \
                0 AS n, NULL::text AS item_id, NULL::text AS item_name, NULL::int4 AS quantity, NULL::numeric AS price, \
                NULL::text AS outcome, NULL::text AS transaction_id, NULL::numeric AS amount, NULL::text AS decline_reason, \
                NULL::text AS error, NULL::timestamptz AS started_at, NULL::timestamptz AS finished_at, \
                NULL::text AS refund_key, NULL::text AS reason, NULL::text AS refund_items, NULL::numeric AS given \
         FROM picked p \
         UNION ALL \
         SELECT 1, p.rank, p.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, NULL, NULL, NULL, \
                i.position, i.item_id, i.item_name, i.quantity, i.price, \
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM picked p CROSS JOIN LATERAL \
           (SELECT * FROM order_items WHERE order_id = p.id OFFSET 0) i \
         UNION ALL \
         SELECT CASE a.kind WHEN 'refund' THEN 3 ELSE 2 END, p.rank, p.id, \
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, NULL, NULL, NULL, \
                a.number, NULL, NULL, NULL, NULL, \
                a.outcome, a.transaction_id, a.amount, a.decline_reason, a.error, a.started_at, a.finished_at, \
                NULL, NULL, NULL, NULL \
         FROM picked p CROSS JOIN LATERAL \
           (SELECT * FROM payment_attempts WHERE order_id = p.id OFFSET 0) a \
         UNION ALL \
         SELECT 4, p.rank, p.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, NULL, NULL, NULL, \
                r.number, NULL, NULL, NULL, NULL, \
                COALESCE(r.outcome, 'pending'), r.refund_id, r.amount, NULL, r.error, r.requested_at, r.answered_at, \
                r.key, r.reason, r.items::text, r.given \
         FROM picked p CROSS JOIN LATERAL \
           (SELECT * FROM order_refunds WHERE order_id = p.id OFFSET 0) r \
         ORDER BY rank, kind, n"
    )
}

/// The filter of a listing. Binds: `$1` customer or null, `$2` status or null.
const LIST_CONDITION: &str =
    "($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)";

/// An order-tree query over rows of [`OrderTreeRow`].
pub type TreeQuery<'q> = QueryAs<'q, Postgres, OrderTreeRow, PgArguments>;

/// Builds orders, each with its `charge_uncertain` flag, from an order-tree statement's
/// rows, in rank order.
pub fn assemble(rows: &[OrderTreeRow]) -> Result<Vec<(Order, bool)>, RepoError> {
    let mut orders: Vec<(Order, bool)> = Vec::new();
    for row in rows {
        let kind = TreeRowKind::from_column(row.kind)?;
        if kind == TreeRowKind::Order {
            orders.push(row.order()?);
            continue;
        }
        let id = OrderId::from_uuid(row.id);
        let (order, _) = orders
            .last_mut()
            .filter(|(o, _)| o.id == id)
            .ok_or_else(|| CorruptRow::new("order tree", "id", "child row before its order"))?;
        match kind {
            TreeRowKind::Item => order.items.push(row.item()?),
            TreeRowKind::Attempt => order.payment_attempts.push(row.attempt()?),
            TreeRowKind::RefundAttempt => order.refund_attempts.push(row.refund_attempt()?),
            TreeRowKind::PartialRefund => order.partial_refunds.push(row.partial_refund()?),
            TreeRowKind::Order => unreachable!("handled above"),
        }
    }
    Ok(orders)
}

impl PgOrderRepo {
    /// Runs an order-tree query and assembles its rows into orders.
    pub(crate) async fn fetch_tree(
        &self,
        query: TreeQuery<'_>,
    ) -> Result<Vec<(Order, bool)>, RepoError> {
        let rows = query.fetch_all(self.db()?).await.map_err(translate)?;
        assemble(&rows)
    }

    /// The order `id`, if stored.
    pub(crate) async fn fetch_one(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        let sql = order_tree(&format!(
            "SELECT {ORDER_COLUMNS}, 1::bigint AS rank FROM orders WHERE id = $1"
        ));
        let query = sqlx::query_as(&sql).bind(id.as_uuid()); // $1 the order
        Ok(self.fetch_tree(query).await?.pop().map(|(order, _)| order))
    }

    /// The stored orders among `ids`, in one statement.
    pub(crate) async fn fetch_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, RepoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = order_tree(&format!(
            "SELECT {ORDER_COLUMNS}, row_number() OVER (ORDER BY id) AS rank \
             FROM orders WHERE id = ANY($1)"
        ));
        let ids: Vec<Uuid> = ids.iter().map(OrderId::as_uuid).collect();
        let query = sqlx::query_as(&sql).bind(ids); // $1 the ids
        Ok(self
            .fetch_tree(query)
            .await?
            .into_iter()
            .map(|(order, _)| order)
            .collect())
    }

    /// A page of the orders `filter` matches, newest first, and how many match in all.
    pub(crate) async fn fetch_page(
        &self,
        filter: &OrderFilter,
        page: PageRequest,
    ) -> Result<OrderPage, RepoError> {
        let customer = filter.customer_id.as_ref().map(CustomerId::as_str);
        let status = filter.status.map(OrderStatus::as_str);
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM orders WHERE {LIST_CONDITION}"
        ))
        .bind(customer) // $1
        .bind(status) // $2
        .fetch_one(self.db()?)
        .await
        .map_err(translate)?;
        // Binds: the condition's, then `$3` rows to read, `$4` offset, `$5` and `$6` the
        // cursor's creation time and id (or null: from the start). The row comparison is a
        // seek on the listing indexes, at any depth.
        let sql = order_tree(&format!(
            "SELECT {ORDER_COLUMNS}, row_number() OVER (ORDER BY created_at DESC, id DESC) AS rank \
             FROM orders WHERE {LIST_CONDITION} \
               AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6::uuid)) \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ));
        let cursor = page.cursor();
        let query = sqlx::query_as(&sql)
            .bind(customer)
            .bind(status)
            .bind(i64::from(page.fetch()))
            .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX))
            .bind(cursor.map(|c| c.created_at))
            .bind(cursor.map(|c| c.id.as_uuid()));
        let orders = self.fetch_tree(query).await?;
        Ok(OrderPage::new(
            orders.into_iter().map(|(order, _)| order).collect(),
            u64::try_from(total).unwrap_or(0),
            &page,
        ))
    }

    /// Stores `orders` in one statement ([`INSERT_ORDERS`]). With `key`, stores them only
    /// while `token` holds the key's reservation; returns whether they were stored.
    pub(crate) async fn insert_orders(
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
        let columns = InsertColumns::of(orders);
        let result: Result<i64, _> = sqlx::query_scalar(INSERT_ORDERS)
            .bind(&columns.ids)
            .bind(&columns.customers)
            .bind(&columns.totals)
            .bind(&columns.created)
            .bind(&columns.item_orders)
            .bind(&columns.positions)
            .bind(&columns.item_ids)
            .bind(&columns.item_names)
            .bind(&columns.quantities)
            .bind(&columns.prices)
            .bind(key.map(|(k, _)| k.as_str()))
            .bind(key.map(|(_, t)| t))
            .bind(columns.ids[0])
            .bind(OrderStatus::Pending.as_str())
            .bind(&columns.traces)
            .bind(&columns.methods)
            .bind(&columns.captures)
            .fetch_one(self.db()?)
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
                let existing: Option<Uuid> = sqlx::query_scalar(FIND_EXISTING)
                    .bind(&columns.ids)
                    .fetch_optional(self.db()?)
                    .await
                    .map_err(translate)?;
                Err(RepoError::Duplicate(OrderId::from_uuid(
                    existing.unwrap_or(columns.ids[0]),
                )))
            }
            Err(e) => Err(translate(e)),
        }
    }
}

/// A batch of orders as the column arrays [`INSERT_ORDERS`] unnests.
struct InsertColumns<'a> {
    ids: Vec<Uuid>,
    customers: Vec<&'a str>,
    totals: Vec<Decimal>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    traces: Vec<Option<String>>,
    methods: Vec<Option<&'a str>>,
    captures: Vec<&'static str>,
    item_orders: Vec<Uuid>,
    positions: Vec<i16>,
    item_ids: Vec<&'a str>,
    item_names: Vec<&'a str>,
    quantities: Vec<i32>,
    prices: Vec<Decimal>,
}

impl<'a> InsertColumns<'a> {
    fn of(orders: &'a [Order]) -> Self {
        let n = orders.len();
        let items: usize = orders.iter().map(|o| o.items.len()).sum();
        let mut c = Self {
            ids: Vec::with_capacity(n),
            customers: Vec::with_capacity(n),
            totals: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            traces: Vec::with_capacity(n),
            methods: Vec::with_capacity(n),
            captures: Vec::with_capacity(n),
            item_orders: Vec::with_capacity(items),
            positions: Vec::with_capacity(items),
            item_ids: Vec::with_capacity(items),
            item_names: Vec::with_capacity(items),
            quantities: Vec::with_capacity(items),
            prices: Vec::with_capacity(items),
        };
        for order in orders {
            c.ids.push(order.id.as_uuid());
            c.customers.push(order.customer_id.as_str());
            c.totals.push(order.total_amount.amount());
            c.created.push(order.created_at);
            c.traces.push(order.trace.map(|t| t.to_string()));
            c.methods
                .push(order.payment_method.as_ref().map(PaymentMethod::as_str));
            c.captures.push(order.capture.as_str());
            for (pos, item) in order.items.iter().enumerate() {
                c.item_orders.push(order.id.as_uuid());
                c.positions.push(i16::try_from(pos).unwrap_or(i16::MAX));
                c.item_ids.push(item.item_id.as_str());
                c.item_names.push(item.item_name.as_str());
                c.quantities
                    .push(i32::try_from(item.quantity.get()).unwrap_or(i32::MAX));
                c.prices.push(Decimal::from(item.price));
            }
        }
        c
    }
}
