//! Client idempotency keys: reserved before an order is stored, completed in the statement
//! that stores it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::OrderId;
use order_core::ports::RepoError;
use order_core::request::{Fingerprint, KeyedRequest, RequestKey};
use uuid::Uuid;

use crate::PgOrderRepo;
use crate::error::translate;
use crate::rows::RequestKeyRow;

/// Reserves a new key, or takes over an abandoned reservation of the same request.
///
/// Binds: `$1` key, `$2` fingerprint, `$3` new token, `$4` now, `$5` the time before which
/// an uncompleted reservation is stale.
const RESERVE_KEY: &str = "INSERT INTO request_keys (key, fingerprint, token, reserved_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, reserved_at = EXCLUDED.reserved_at \
     WHERE request_keys.fingerprint = EXCLUDED.fingerprint AND request_keys.order_id IS NULL \
       AND request_keys.reserved_at <= $5 \
     RETURNING token";

/// A key as stored. Binds: `$1` key.
const KEY: &str = "SELECT fingerprint, order_id FROM request_keys WHERE key = $1";

/// Gives up a reservation that never completed. Binds: `$1` key, `$2` token.
const ABANDON_KEY: &str =
    "DELETE FROM request_keys WHERE key = $1 AND token = $2 AND order_id IS NULL";

/// Completes a reservation with an existing order. Binds: `$1` key, `$2` token, `$3` order.
const COMPLETE_KEY: &str = "UPDATE request_keys SET order_id = $3 \
     WHERE key = $1 AND token = $2 AND order_id IS NULL";

/// Forgets keys reserved before a time. Binds: `$1` the time.
/// Forgets the processor's events received before `$1`.
const PURGE_PROCESSOR_EVENTS: &str = "DELETE FROM processor_events WHERE received_at < $1";

/// Records event `$1` at `$2`, unless it is recorded already.
const RECORD_PROCESSOR_EVENT: &str =
    "INSERT INTO processor_events (id, received_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

const PURGE_KEYS: &str = "DELETE FROM request_keys WHERE reserved_at < $1";

impl PgOrderRepo {
    pub(crate) async fn reserve_key(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError> {
        let stale_before = now - order_core::time::to_chrono(stale_after);
        let token = Uuid::now_v7();
        let reserved: Option<Uuid> = sqlx::query_scalar(RESERVE_KEY)
            .bind(key.as_str())
            .bind(fingerprint.as_bytes().as_slice())
            .bind(token)
            .bind(now)
            .bind(stale_before)
            .fetch_optional(self.db()?)
            .await
            .map_err(translate)?;
        if reserved.is_some() {
            return Ok(KeyedRequest::New(token));
        }
        let row: Option<RequestKeyRow> = sqlx::query_as(KEY)
            .bind(key.as_str())
            .fetch_optional(self.db()?)
            .await
            .map_err(translate)?;
        let Some(row) = row else {
            // Purged in between: as good as in flight; the client retries.
            return Ok(KeyedRequest::InFlight);
        };
        if row.fingerprint.as_slice() != fingerprint.as_bytes() {
            return Ok(KeyedRequest::Mismatch);
        }
        Ok(match row.order_id {
            Some(order) => KeyedRequest::Completed(OrderId::from_uuid(order)),
            None => KeyedRequest::InFlight,
        })
    }

    pub(crate) async fn release_key(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        sqlx::query(ABANDON_KEY)
            .bind(key.as_str())
            .bind(token)
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    pub(crate) async fn complete_key(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError> {
        let done = sqlx::query(COMPLETE_KEY)
            .bind(key.as_str())
            .bind(token)
            .bind(order.as_uuid())
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(RepoError::RequestSuperseded(key.clone()))
        }
    }

    pub(crate) async fn purge_keys(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let done = sqlx::query(PURGE_KEYS)
            .bind(before)
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        sqlx::query(PURGE_PROCESSOR_EVENTS)
            .bind(before)
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn record_event(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let done = sqlx::query(RECORD_PROCESSOR_EVENT)
            .bind(event_id)
            .bind(now)
            .execute(self.db()?)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() == 1)
    }
}
