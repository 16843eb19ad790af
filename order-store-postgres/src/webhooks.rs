//! Webhooks: the [`WebhookStore`] port on `order_events` (the outbox the triggers of the
//! migration fill in the statements that change orders), `webhook_endpoints`,
//! `webhook_deliveries` and `webhook_attempts`. Every write is one statement.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::{
    ClaimLimits, ClaimedDelivery, DeliveryNext, FinishedDelivery, RepoError, WebhookStore,
};
use order_core::webhook::{
    DeliveryAttempt, Endpoint, EndpointChange, EndpointId, EndpointUrl, Event, EventId, Secret,
    printable,
};
use order_core::{CustomerId, OrderId};
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::{CorruptRow, translate};
use crate::sealing;

mod rows;

use rows::{
    AttemptRow, ClaimRow, ENDPOINT_COLUMNS, EVENT_COLUMNS, EndpointRow, EventRow, bind_endpoint,
};

/// Takes up to `$1` events past the outbox cursor, in cursor order (transaction, then
/// `seq`), of transactions older than every one still running, gives each a delivery due at
/// `$2` for every enabled endpoint subscribed to its type and serving its order's customer
/// (the order is read only for endpoints that belong to a customer), and moves the cursor to the last
/// one taken. Returns how many it took. A concurrent call, finding the cursor locked, takes
/// nothing; one that locks it after another call moved it reads it where that call left it
/// (the newest version of a locked row), and its snapshot sees every event below its horizon.
///
/// The horizon (the snapshot's `xmin`) is what makes a cursor safe: every transaction older
/// than it has ended, so no event can still appear behind the cursor. An event therefore
/// waits while any transaction that began writing before it runs on. The cursor is read
/// through scalar subqueries so that the row comparison is a bound of the index scan (joined,
/// it was a filter over every event from the first).
const FAN_OUT: &str = "WITH c AS (SELECT xid, seq FROM webhook_fan_out FOR UPDATE SKIP LOCKED), \
     ev AS ( \
       SELECT e.xid, e.seq, e.id, e.type, e.order_id FROM order_events e \
       WHERE (e.xid, e.seq) > ((SELECT xid FROM c), (SELECT seq FROM c)) \
         AND e.xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())) \
       ORDER BY e.xid, e.seq LIMIT $1), \
     d AS ( \
       INSERT INTO webhook_deliveries (event_id, endpoint_id, due_at) \
       SELECT ev.id, e.id, $2 FROM ev JOIN webhook_endpoints e \
         ON e.enabled AND ev.type = ANY(e.events) \
           AND (e.owner IS NULL \
                OR e.owner = (SELECT o.customer_id FROM orders o WHERE o.id = ev.order_id)) \
       ON CONFLICT (event_id, endpoint_id) DO NOTHING), \
     u AS ( \
       UPDATE webhook_fan_out f SET xid = last.xid, seq = last.seq \
       FROM (SELECT xid, seq FROM ev ORDER BY xid DESC, seq DESC LIMIT 1) AS last) \
     SELECT count(*) FROM ev";

/// When the first event past the cursor happened (one index probe).
const OLDEST_WAITING: &str = "SELECT e.occurred_at FROM order_events e \
     WHERE (e.xid, e.seq) > ((SELECT xid FROM webhook_fan_out), (SELECT seq FROM webhook_fan_out)) \
     ORDER BY e.xid, e.seq LIMIT 1";

/// The first statement of a claim: locks the enabled endpoints with deliveries due by `$1`
/// (`NO KEY UPDATE`, which inserting deliveries does not wait for), skipping those another
/// claim holds, and returns their ids with how many of their deliveries may be leased at
/// once: `$2`, or 1 while failing.
const LOCK_ENDPOINTS: &str = "SELECT e.id, CASE WHEN e.failing_since IS NULL THEN $2 ELSE 1 END \
     FROM webhook_endpoints e \
     WHERE e.enabled AND EXISTS (SELECT 1 FROM webhook_deliveries d \
       WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.due_at <= $1) \
     ORDER BY e.id FOR NO KEY UPDATE OF e SKIP LOCKED";

/// The second statement of a claim, whose snapshot is taken once the endpoints `$4` (with
/// their shares `$5`) are locked, so it sees every lease any claim gave them: leases up to
/// `$3` pending deliveries of them due by `$1`, unleased at `$1`, oldest due first, under a
/// new lease until `$2`, and of each endpoint only as many as leave it at most its share
/// leased. One probe per endpoint: a backlog of one endpoint never hides another's
/// deliveries. Returns each with its event and endpoint.
fn claim_sql() -> String {
    format!(
        "WITH ep AS (SELECT * FROM unnest($4::uuid[], $5::bigint[]) AS t(id, cap)), \
         c AS ( \
           SELECT x.event_id, x.endpoint_id, x.due_at FROM ep \
           CROSS JOIN LATERAL (SELECT count(*) AS n FROM webhook_deliveries b \
             WHERE b.endpoint_id = ep.id AND b.state = 'pending' \
               AND b.lease_expires_at IS NOT NULL AND b.lease_expires_at > $1) AS busy \
           CROSS JOIN LATERAL (SELECT d.event_id, d.endpoint_id, d.due_at \
             FROM webhook_deliveries d \
             WHERE d.endpoint_id = ep.id AND d.state = 'pending' AND d.due_at <= $1 \
               AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $1) \
             ORDER BY d.due_at LIMIT greatest(ep.cap - busy.n, 0)) AS x \
           ORDER BY x.due_at LIMIT $3), \
         u AS ( \
           UPDATE webhook_deliveries d SET lease_token = gen_random_uuid(), lease_expires_at = $2 \
           FROM c WHERE d.event_id = c.event_id AND d.endpoint_id = c.endpoint_id \
             AND d.state = 'pending' AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $1) \
           RETURNING d.event_id, d.endpoint_id, d.attempts, d.lease_token, d.due_at) \
         SELECT u.attempts, u.lease_token, {EVENT_COLUMNS}, {ENDPOINT_COLUMNS} \
         FROM u JOIN order_events ev ON ev.id = u.event_id \
         JOIN webhook_endpoints e ON e.id = u.endpoint_id \
         ORDER BY u.due_at"
    )
}

/// Records a batch of attempts, one per row of the unnested arrays: `$1` event, `$2`
/// endpoint, `$3` lease token, `$4` attempt number, `$5` new state, `$6` next due time (or
/// null), `$7` attempt time, `$8` status (or null), `$9` error (or null), `$10` latency in
/// µs, `$11` excerpt, `$12` delivered, `$13` event type, `$14` reason to disable the
/// endpoint (or null). Only rows whose delivery still holds that lease are applied; per
/// endpoint, a delivery in the batch clears the failure streak, else the earliest failure
/// starts it if unset, and a reason disables it. Returns the (event, endpoint) pairs applied.
const FINISH: &str = "WITH f AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int4[], $5::text[], \
         $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::text[], $10::int8[], $11::text[], \
         $12::bool[], $13::text[], $14::text[]) \
       AS f(event_id, endpoint_id, token, attempt, state, due_at, attempted_at, status_code, \
         error, latency_us, excerpt, delivered, event_type, disable)), \
     d AS ( \
       UPDATE webhook_deliveries w SET lease_token = NULL, lease_expires_at = NULL, \
         attempts = f.attempt, state = f.state, due_at = COALESCE(f.due_at, w.due_at) \
       FROM f WHERE w.event_id = f.event_id AND w.endpoint_id = f.endpoint_id \
         AND w.lease_token = f.token \
       RETURNING w.event_id, w.endpoint_id), \
     ok AS (SELECT f.* FROM f JOIN d ON d.event_id = f.event_id AND d.endpoint_id = f.endpoint_id), \
     a AS ( \
       INSERT INTO webhook_attempts (event_id, event_type, endpoint_id, attempt, attempted_at, \
         status_code, error, latency_us, response_excerpt, delivered) \
       SELECT event_id, event_type, endpoint_id, attempt, attempted_at, status_code, error, \
         latency_us, excerpt, delivered FROM ok ORDER BY attempted_at), \
     per AS ( \
       SELECT endpoint_id, bool_or(delivered) AS delivered, \
         min(attempted_at) FILTER (WHERE NOT delivered) AS first_failure, min(disable) AS disable \
       FROM ok GROUP BY endpoint_id), \
     e AS ( \
       UPDATE webhook_endpoints e SET \
         failing_since = CASE WHEN per.delivered THEN NULL \
                              ELSE COALESCE(e.failing_since, per.first_failure) END, \
         enabled = e.enabled AND per.disable IS NULL, \
         disabled_reason = COALESCE(per.disable, e.disabled_reason) \
       FROM per WHERE e.id = per.endpoint_id) \
     SELECT event_id, endpoint_id FROM d";

/// Makes event `$1` due at `$2` for every enabled endpoint subscribed to its type that serves
/// the customer of the event's order, and, when `$3` names an owner, only for that owner's
/// endpoints. Returns whether the event exists and how many deliveries are due.
const REDELIVER: &str = "WITH ev AS ( \
       SELECT ev.id, ev.type, o.customer_id FROM order_events ev \
       LEFT JOIN orders o ON o.id = ev.order_id WHERE ev.id = $1), \
     d AS ( \
       INSERT INTO webhook_deliveries (event_id, endpoint_id, due_at) \
       SELECT ev.id, e.id, $2 FROM ev JOIN webhook_endpoints e \
         ON e.enabled AND ev.type = ANY(e.events) \
           AND (e.owner IS NULL OR e.owner = ev.customer_id) \
           AND ($3::text IS NULL OR e.owner = $3) \
       ORDER BY e.id \
       ON CONFLICT (event_id, endpoint_id) DO UPDATE SET state = 'pending', due_at = EXCLUDED.due_at \
       RETURNING 1) \
     SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM d)";

/// Forgets history before `$1`: every attempt made before it, and, among the `$2` first
/// events in the outbox's order (so the statement reads a bounded slice of the table, however
/// large it is), those
/// that happened before it, were fanned out and have no delivery pending, with their
/// deliveries (the foreign key is checked at the end of the statement, when both are gone).
/// Returns how many events it deleted.
const PURGE: &str = "WITH oldest AS (SELECT id FROM order_events ORDER BY xid, seq LIMIT $2), \
     old AS ( \
       SELECT e.id FROM order_events e JOIN oldest USING (id) \
       WHERE (e.xid, e.seq) <= (SELECT xid, seq FROM webhook_fan_out) AND e.occurred_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                         WHERE d.event_id = e.id AND d.state = 'pending')), \
     d AS (DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM old)), \
     a AS (DELETE FROM webhook_attempts WHERE attempted_at < $1), \
     e AS (DELETE FROM order_events WHERE id IN (SELECT id FROM old) RETURNING 1) \
     SELECT count(*) FROM e";

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl WebhookStore for PgOrderRepo {
    async fn insert_endpoint(
        &self,
        endpoint: &Endpoint,
        at_most: usize,
    ) -> Result<bool, RepoError> {
        let owner = endpoint.owner.as_ref().map(CustomerId::as_str);
        let mut tx = self.db()?.begin().await.map_err(translate)?;
        // One insert per owner at a time, so the count below cannot be outrun.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('webhook_endpoints:' || coalesce($1, ''), 0))")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        let inserted = bind_endpoint(
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, url, events, description, enabled, \
                 disabled_reason, secret, previous_secret, previous_secret_expires_at, \
                 failing_since, created_at, updated_at, owner) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
                 WHERE (SELECT count(*) FROM webhook_endpoints WHERE owner IS NOT DISTINCT FROM $13) < $14",
            ),
            endpoint,
            self.secret_keys(),
        )
        .bind(endpoint.created_at)
        .bind(endpoint.updated_at)
        .bind(owner)
        .bind(limit(at_most))
        .execute(&mut *tx)
        .await
        .map_err(translate)?;
        tx.commit().await.map_err(translate)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, RepoError> {
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(self.db()?)
        .await
        .map_err(translate)?;
        Ok(row
            .map(|r| r.into_endpoint(self.secret_keys()))
            .transpose()?)
    }

    async fn endpoints(&self, owner: Option<&CustomerId>) -> Result<Vec<Endpoint>, RepoError> {
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e \
             WHERE $1::text IS NULL OR e.owner = $1 ORDER BY e.id"
        ))
        .bind(owner.map(CustomerId::as_str))
        .fetch_all(self.db()?)
        .await
        .map_err(translate)?;
        Ok(rows
            .into_iter()
            .map(|r| r.into_endpoint(self.secret_keys()))
            .collect::<Result<_, _>>()?)
    }

    async fn change_endpoint(
        &self,
        id: EndpointId,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, RepoError> {
        // Only the settings given; enabling also clears the reason and the failure streak
        // (`Endpoint::set_enabled`), which the dispatcher may have written meanwhile.
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "UPDATE webhook_endpoints e SET url = COALESCE($2, e.url), \
               events = COALESCE($3, e.events), description = COALESCE($4, e.description), \
               enabled = COALESCE($5, e.enabled), \
               disabled_reason = CASE WHEN $5 THEN NULL ELSE e.disabled_reason END, \
               failing_since = CASE WHEN $5 THEN NULL ELSE e.failing_since END, \
               updated_at = $6 \
             WHERE e.id = $1 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(change.url.as_ref().map(EndpointUrl::as_str))
        .bind(
            change
                .events
                .as_ref()
                .map(|events| events.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
        )
        .bind(change.description.as_deref())
        .bind(change.enabled)
        .bind(now)
        .fetch_optional(self.db()?)
        .await
        .map_err(translate)?;
        Ok(row
            .map(|r| r.into_endpoint(self.secret_keys()))
            .transpose()?)
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &Secret,
        retiring_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, RepoError> {
        // The secret it replaces is the stored one, whatever the caller read before.
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "UPDATE webhook_endpoints e SET previous_secret = e.secret, \
               previous_secret_expires_at = $3, secret = $2, updated_at = $4 \
             WHERE e.id = $1 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(sealing::stored(self.secret_keys(), id, secret.as_bytes()))
        .bind(retiring_until)
        .bind(now)
        .fetch_optional(self.db()?)
        .await
        .map_err(translate)?;
        Ok(row
            .map(|r| r.into_endpoint(self.secret_keys()))
            .transpose()?)
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, RepoError> {
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_uuid())
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, RepoError> {
        let row: Option<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM order_events ev WHERE ev.id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(self.db()?)
        .await
        .map_err(translate)?;
        Ok(row.map(Event::try_from).transpose()?)
    }

    async fn events_of(&self, order: OrderId) -> Result<Vec<Event>, RepoError> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM order_events ev WHERE ev.order_id = $1 ORDER BY ev.seq"
        ))
        .bind(order.as_uuid())
        .fetch_all(self.db()?)
        .await
        .map_err(translate)?;
        Ok(rows
            .into_iter()
            .map(Event::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn fan_out(&self, now: DateTime<Utc>, max: usize) -> Result<usize, RepoError> {
        let taken: i64 = sqlx::query_scalar(FAN_OUT)
            .bind(limit(max))
            .bind(now)
            .fetch_one(self.db()?)
            .await
            .map_err(translate)?;
        Ok(usize::try_from(taken).unwrap_or(0))
    }

    async fn oldest_waiting_event(&self) -> Result<Option<DateTime<Utc>>, RepoError> {
        sqlx::query_scalar(OLDEST_WAITING)
            .fetch_optional(self.db()?)
            .await
            .map_err(translate)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_for: Duration,
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedDelivery>, RepoError> {
        let until = order_core::time::later(now, lease_for);
        // Two statements in one transaction: the second's snapshot is taken after the first
        // has locked the endpoints, so no lease given to them is missed.
        let mut tx = self.db()?.begin().await.map_err(translate)?;
        let shares: Vec<(Uuid, i64)> = sqlx::query_as(LOCK_ENDPOINTS)
            .bind(now)
            .bind(limit(limits.per_endpoint.max(1)))
            .fetch_all(&mut *tx)
            .await
            .map_err(translate)?;
        if shares.is_empty() {
            tx.commit().await.map_err(translate)?;
            return Ok(Vec::new());
        }
        let (ids, caps): (Vec<Uuid>, Vec<i64>) = shares.into_iter().unzip();
        let rows: Vec<ClaimRow> = sqlx::query_as(&claim_sql())
            .bind(now)
            .bind(until)
            .bind(limit(limits.total))
            .bind(ids)
            .bind(caps)
            .fetch_all(&mut *tx)
            .await
            .map_err(translate)?;
        tx.commit().await.map_err(translate)?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    event: row.event.try_into()?,
                    endpoint: row.endpoint.into_endpoint(self.secret_keys())?,
                    attempt: u32::try_from(row.attempts).unwrap_or(0) + 1,
                    token: row.lease_token,
                })
            })
            .collect::<Result<_, CorruptRow>>()
            .map_err(RepoError::from)
    }

    async fn finish_deliveries(
        &self,
        finished: &[FinishedDelivery],
    ) -> Result<Vec<bool>, RepoError> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&FinishedDelivery) -> Uuid| finished.iter().map(f).collect::<Vec<_>>();
        let state_and_due = |f: &FinishedDelivery| match f.next {
            DeliveryNext::Delivered => ("delivered", None),
            DeliveryNext::RetryAt(at) => ("pending", Some(at)),
            DeliveryNext::GiveUp => ("failed", None),
        };
        let applied: Vec<(Uuid, Uuid)> = sqlx::query_as(FINISH)
            .bind(column(|f| f.claimed.event.id.as_uuid()))
            .bind(column(|f| f.claimed.endpoint.id.as_uuid()))
            .bind(column(|f| f.claimed.token))
            .bind(
                finished
                    .iter()
                    .map(|f| i32::try_from(f.attempt.attempt).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| state_and_due(f).0)
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| state_and_due(f).1)
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.attempt.attempted_at)
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.attempt.status_code.map(i32::from))
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.attempt.error.as_deref().map(printable))
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| i64::try_from(f.attempt.latency.as_micros()).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| printable(&f.attempt.response_excerpt))
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.attempt.delivered)
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.attempt.event_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                finished
                    .iter()
                    .map(|f| f.disable.clone())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(self.db()?)
            .await
            .map_err(translate)?;
        let applied: std::collections::HashSet<(Uuid, Uuid)> = applied.into_iter().collect();
        Ok(finished
            .iter()
            .map(|f| {
                applied.contains(&(
                    f.claimed.event.id.as_uuid(),
                    f.claimed.endpoint.id.as_uuid(),
                ))
            })
            .collect())
    }

    async fn attempts(
        &self,
        endpoint: EndpointId,
        max: usize,
    ) -> Result<Vec<DeliveryAttempt>, RepoError> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT event_id, event_type, endpoint_id, attempt, attempted_at, status_code, error, \
             latency_us, response_excerpt, delivered FROM webhook_attempts \
             WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(endpoint.as_uuid())
        .bind(limit(max))
        .fetch_all(self.db()?)
        .await
        .map_err(translate)?;
        Ok(rows
            .into_iter()
            .map(DeliveryAttempt::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn purge(&self, before: DateTime<Utc>, max: usize) -> Result<u64, RepoError> {
        let purged: i64 = sqlx::query_scalar(PURGE)
            .bind(before)
            .bind(limit(max))
            .fetch_one(self.db()?)
            .await
            .map_err(translate)?;
        Ok(u64::try_from(purged).unwrap_or(0))
    }

    async fn redeliver(
        &self,
        event: EventId,
        now: DateTime<Utc>,
        owner: Option<&CustomerId>,
    ) -> Result<Option<usize>, RepoError> {
        // The statement rewrites delivery rows the dispatcher may be recording at the same
        // moment; PostgreSQL breaks such a deadlock by failing one side, and the statement
        // is idempotent (the deliveries become due now), so it is simply run again.
        let mut attempts = 0;
        let (found, due): (i64, i64) = loop {
            attempts += 1;
            let answer = sqlx::query_as(REDELIVER)
                .bind(event.as_uuid())
                .bind(now)
                .bind(owner.map(CustomerId::as_str))
                .fetch_one(self.db()?)
                .await;
            match answer {
                Err(e) if attempts < 3 && crate::error::is_deadlock(&e) => {}
                answer => break answer.map_err(translate)?,
            }
        };
        Ok((found == 1).then(|| usize::try_from(due).unwrap_or(0)))
    }
}
