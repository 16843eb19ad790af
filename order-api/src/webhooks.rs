//! Webhooks on the wire: endpoints (`POST`/`GET /api/v1/webhook-endpoints`,
//! `GET`/`PATCH`/`DELETE /api/v1/webhook-endpoints/{endpoint_id}`, `POST .../rotate-secret`),
//! their delivery attempts (`GET .../deliveries`), replay
//! (`POST /api/v1/events/{event_id}/redeliver`), and the [`WebhookEvent`] envelope every
//! delivery carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::orders::OrderResponse;

/// What happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// The order was accepted (`pending`).
    #[serde(rename = "order.created")]
    Created,
    /// A worker took it for payment.
    #[serde(rename = "order.payment_processing")]
    PaymentProcessing,
    /// Its payment was captured.
    #[serde(rename = "order.confirmed")]
    Confirmed,
    /// Its payment was declined or given up on.
    #[serde(rename = "order.payment_failed")]
    PaymentFailed,
    /// A cancellation after payment started: the payment is being refunded or voided.
    #[serde(rename = "order.cancelling")]
    Cancelling,
    /// It was cancelled.
    #[serde(rename = "order.cancelled")]
    Cancelled,
    /// The captured payment of the cancelled order was given back.
    #[serde(rename = "order.refunded")]
    Refunded,
    /// A refund asked for on its own gave back part of the confirmed order's payment.
    #[serde(rename = "order.partially_refunded")]
    PartiallyRefunded,
}

impl EventType {
    /// Every type.
    pub const ALL: [Self; 8] = [
        Self::Created,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::PaymentFailed,
        Self::Cancelling,
        Self::Cancelled,
        Self::Refunded,
        Self::PartiallyRefunded,
    ];

    /// Its name, as in `order.confirmed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "order.created",
            Self::PaymentProcessing => "order.payment_processing",
            Self::Confirmed => "order.confirmed",
            Self::PaymentFailed => "order.payment_failed",
            Self::Cancelling => "order.cancelling",
            Self::Cancelled => "order.cancelled",
            Self::Refunded => "order.refunded",
            Self::PartiallyRefunded => "order.partially_refunded",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown event type {s:?}; expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// A new endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWebhookEndpointRequest {
    /// Where events are posted: `https`, a host, an optional port, path, query and
    /// fragment (the service takes `http` too where `WEBHOOKS_ALLOW_HTTP` is on).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "https://kitchen.example.com/hooks/orders",
            max_length = 2000,
            pattern = r"^https://[^\s\x00-\x1F\x7F-\x9F/?#:@\[\]]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][^\s\x00-\x1F\x7F-\x9F]*)?$"
        )
    )]
    pub url: String,
    /// The event types it receives; every type if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Option<Vec<EventType>>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 500, pattern = r"^[^\x00-\x09\x0B-\x1F\x7F-\x9F]*$")
    )]
    pub description: Option<String>,
    /// The customer it belongs to: it then receives only that customer's orders' events.
    /// A key bound to a customer makes endpoints of that customer (absent means its own);
    /// for other keys absent means every customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub customer_id: Option<String>,
}

/// Changes to an endpoint: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateWebhookEndpointRequest {
    /// A new URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = r"^https://[^\s\x00-\x1F\x7F-\x9F/?#:@\[\]]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?#][^\s\x00-\x1F\x7F-\x9F]*)?$"
        )
    )]
    pub url: Option<String>,
    /// New event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Option<Vec<EventType>>,
    /// Enable (clearing why it was disabled) or disable it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 500, pattern = r"^[^\x00-\x09\x0B-\x1F\x7F-\x9F]*$")
    )]
    pub description: Option<String>,
}

/// An endpoint as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpointResponse {
    /// Its id: `ep_` and 32 hex digits.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "ep_019ac1f2c3d47e8f9a0b1c2d3e4f5a6b")
    )]
    pub id: String,
    /// Where events are posted.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// The customer whose orders' events it receives; absent: every customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// What it is for.
    pub description: String,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// Why the service disabled it (`410 Gone`, or failing for too long).
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed, if the last one did.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret a rotation replaced still signs beside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// An endpoint just created, with its signing secret: shown here and on rotation only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhookEndpoint {
    /// The signing secret: `whsec_` and base64.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
    )]
    pub secret: String,
    /// The endpoint as stored.
    #[serde(flatten)]
    pub endpoint: WebhookEndpointResponse,
}

/// How a rotation treats the secret it replaces (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotateSecretRequest {
    /// Seconds the old secret keeps signing beside the new one, 0 to 2,147,483,647: `0`
    /// stops it at once (a leaked secret); absent, or more than the service's
    /// `WEBHOOK_SECRET_GRACE_SECONDS`, that many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2_147_483_647))]
    pub previous_secret_grace_seconds: Option<u32>,
}

/// A new signing secret, and until when the old one still signs beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotatedSecret {
    /// The new secret.
    pub secret: String,
    /// When the old secret stops signing.
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// Every endpoint, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpointList {
    /// The endpoints.
    pub endpoints: Vec<WebhookEndpointResponse>,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttemptResponse {
    /// The event (its `webhook-id`).
    pub event_id: String,
    /// Its type.
    pub event_type: EventType,
    /// Which attempt at this event (1-based).
    pub attempt: u32,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The status the endpoint answered, if it did.
    pub status_code: Option<u16>,
    /// What went wrong when it did not answer (`timed out`, a refused connection...).
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// The start of the answer's body (at most 256 bytes).
    pub response_excerpt: String,
    /// Whether it delivered the event (a `2xx` answer).
    pub delivered: bool,
}

/// An endpoint's attempts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttemptList {
    /// The attempts.
    pub attempts: Vec<DeliveryAttemptResponse>,
}

/// An event queued to be sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedeliverResponse {
    /// The event.
    pub event_id: String,
    /// How many endpoints it is due to now (every enabled one subscribed to its type).
    pub deliveries: usize,
}

/// The body of every delivery (the Standard Webhooks envelope). Its `id` is also the
/// `webhook-id` header, the same on every attempt: deduplicate by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEvent {
    /// The event's id: `evt_` and 32 hex digits.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The order as it was then, as `GET /api/v1/orders/{id}` returns it.
    pub data: OrderResponse,
}
