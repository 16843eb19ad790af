//! The rows of the webhook tables as types: each decodes with `sqlx::FromRow` and converts to
//! its domain type with an error naming the bad column; an endpoint is bound for writing in
//! one place, its secrets sealed there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use order_core::webhook::{
    DeliveryAttempt, Endpoint, EndpointId, EndpointUrl, Event, EventId, EventType, RetiringSecret,
    Secret,
};
use order_core::{CustomerId, OrderId};
use uuid::Uuid;

use crate::error::CorruptRow;
use crate::sealing::{self, SecretKeys};

/// The columns of an endpoint row, from `webhook_endpoints e`.
pub(super) const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.events, e.owner, e.description, e.enabled, \
     e.disabled_reason, e.secret, e.previous_secret, e.previous_secret_expires_at, \
     e.failing_since, e.created_at, e.updated_at";

pub(super) const EVENT_COLUMNS: &str = "ev.id AS event_id, ev.order_id, ev.type, ev.occurred_at";

#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: Uuid,
    url: String,
    events: Vec<String>,
    owner: Option<String>,
    description: String,
    enabled: bool,
    disabled_reason: Option<String>,
    secret: Vec<u8>,
    previous_secret: Option<Vec<u8>>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EndpointRow {
    /// The endpoint, its secrets opened with `keys` where they are sealed.
    pub(super) fn into_endpoint(self, keys: Option<&SecretKeys>) -> Result<Endpoint, CorruptRow> {
        let row = self;
        let corrupt = |column, e| CorruptRow::new("webhook_endpoints", column, e);
        let id = EndpointId::from_uuid(row.id);
        let secret = |column, stored| {
            let bytes = sealing::open(keys, id, stored)
                .map_err(|e| CorruptRow::new("webhook_endpoints", column, e))?;
            Secret::from_bytes(bytes).map_err(|e| CorruptRow::new("webhook_endpoints", column, e))
        };
        let previous_secret = match (row.previous_secret, row.previous_secret_expires_at) {
            (Some(stored), Some(expires_at)) => Some(RetiringSecret {
                secret: secret("previous_secret", stored)?,
                expires_at,
            }),
            _ => None,
        };
        Ok(Endpoint {
            id: EndpointId::from_uuid(row.id),
            // Stored URLs were checked when written; `http` ones only where allowed then.
            url: EndpointUrl::parse(&row.url, true).map_err(|e| corrupt("url", e))?,
            events: row
                .events
                .iter()
                .map(|t| t.parse::<EventType>())
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("events", e))?,
            owner: row
                .owner
                .map(CustomerId::parse)
                .transpose()
                .map_err(|e| corrupt("owner", e))?,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            secret: secret("secret", row.secret)?,
            previous_secret,
            failing_since: row.failing_since,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    event_id: Uuid,
    order_id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    occurred_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for Event {
    type Error = CorruptRow;

    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: EventId::from_uuid(row.event_id),
            order_id: OrderId::from_uuid(row.order_id),
            kind: row
                .kind
                .parse()
                .map_err(|e| CorruptRow::new("order_events", "type", e))?,
            occurred_at: row.occurred_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ClaimRow {
    pub(super) attempts: i32,
    pub(super) lease_token: Uuid,
    #[sqlx(flatten)]
    pub(super) event: EventRow,
    #[sqlx(flatten)]
    pub(super) endpoint: EndpointRow,
}

#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    event_id: Uuid,
    event_type: String,
    endpoint_id: Uuid,
    attempt: i32,
    attempted_at: DateTime<Utc>,
    status_code: Option<i32>,
    error: Option<String>,
    latency_us: i64,
    response_excerpt: String,
    delivered: bool,
}

impl TryFrom<AttemptRow> for DeliveryAttempt {
    type Error = CorruptRow;

    fn try_from(row: AttemptRow) -> Result<Self, Self::Error> {
        let corrupt = |column, e: String| CorruptRow::new("webhook_attempts", column, e);
        Ok(Self {
            event_id: EventId::from_uuid(row.event_id),
            event_type: row
                .event_type
                .parse()
                .map_err(|e: order_core::Invalid| corrupt("event_type", e.to_string()))?,
            endpoint_id: EndpointId::from_uuid(row.endpoint_id),
            attempt: u32::try_from(row.attempt).map_err(|e| corrupt("attempt", e.to_string()))?,
            attempted_at: row.attempted_at,
            status_code: row
                .status_code
                .map(u16::try_from)
                .transpose()
                .map_err(|e| corrupt("status_code", e.to_string()))?,
            error: row.error,
            latency: Duration::from_micros(row.latency_us.unsigned_abs()),
            response_excerpt: row.response_excerpt,
            delivered: row.delivered,
        })
    }
}

/// Binds an endpoint's columns as `$1` to `$10`: id, url, events, description, enabled,
/// disabled_reason, secret, previous_secret, previous_secret_expires_at, failing_since.
pub(super) fn bind_endpoint<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    endpoint: &'q Endpoint,
    keys: Option<&SecretKeys>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let retiring = endpoint.previous_secret.as_ref();
    query
        .bind(endpoint.id.as_uuid())
        .bind(endpoint.url.as_str())
        .bind(
            endpoint
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&endpoint.description)
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(sealing::stored(
            keys,
            endpoint.id,
            endpoint.secret.as_bytes(),
        ))
        .bind(retiring.map(|p| sealing::stored(keys, endpoint.id, p.secret.as_bytes())))
        .bind(retiring.map(|p| p.expires_at))
        .bind(endpoint.failing_since)
}
