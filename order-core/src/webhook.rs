//! Webhooks: the events an order's life produces, the endpoints that subscribe to them, and
//! how deliveries are signed and retried, to the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>).
//!
//! Every status change of an order is recorded as an [`Event`] by the order store, in the
//! same atomic step as the change itself (the outbox), so no crash between the two can lose
//! it. The [`crate::service::WebhookDispatcher`] then fans each event out to the
//! [`Endpoint`]s subscribed to its [`EventType`] and delivers it, at least once:
//!
//! - A request carries `webhook-id` (the event's id, the same on every attempt, so receivers
//!   deduplicate by it), `webhook-timestamp` (seconds since the epoch) and
//!   `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`
//!   under each secret the endpoint signs with, space-separated ([`signature_header`]).
//! - A `2xx` answer is a delivery. Anything else, a time-out or a refused connection is
//!   retried on the [`RetrySchedule`] (about a day, with jitter, never sooner than a
//!   `Retry-After` asks); `410 Gone` disables the endpoint, and so does failing everything
//!   for a set period.
//! - A rotated secret keeps signing beside the new one for a grace period
//!   ([`Endpoint::rotate_secret`]), so a receiver can roll its secret without losing events.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::Invalid;
use crate::ids::OrderId;
use crate::order::{Order, OrderStatus};

/// What happened to an order: one type per status an order can reach, and `order.refunded`
/// beside `order.cancelled` when a captured payment was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The order was accepted (`pending`).
    #[serde(rename = "order.created")]
    Created,
    /// A worker took the order for payment (`payment_processing`).
    #[serde(rename = "order.payment_processing")]
    PaymentProcessing,
    /// The payment was captured (`confirmed`).
    #[serde(rename = "order.confirmed")]
    Confirmed,
    /// The payment was declined or given up on (`payment_failed`).
    #[serde(rename = "order.payment_failed")]
    PaymentFailed,
    /// A cancellation was asked for after payment started: the payment is being refunded
    /// or voided (`cancelling`).
    #[serde(rename = "order.cancelling")]
    Cancelling,
    /// The order was cancelled (`cancelled`).
    #[serde(rename = "order.cancelled")]
    Cancelled,
    /// The captured payment of a cancelled order was given back (sent with, and after,
    /// `order.cancelled`; not sent when nothing had been captured).
    #[serde(rename = "order.refunded")]
    Refunded,
}

impl EventType {
    /// Every type.
    pub const ALL: [Self; 7] = [
        Self::Created,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::PaymentFailed,
        Self::Cancelling,
        Self::Cancelled,
        Self::Refunded,
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
        }
    }

    /// The event an order reaching `status` produces.
    pub const fn entering(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => Self::Created,
            OrderStatus::PaymentProcessing => Self::PaymentProcessing,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::PaymentFailed => Self::PaymentFailed,
            OrderStatus::Cancelling => Self::Cancelling,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }

    /// The order's status once this event happened.
    pub const fn status(self) -> OrderStatus {
        match self {
            Self::Created => OrderStatus::Pending,
            Self::PaymentProcessing => OrderStatus::PaymentProcessing,
            Self::Confirmed => OrderStatus::Confirmed,
            Self::PaymentFailed => OrderStatus::PaymentFailed,
            Self::Cancelling => OrderStatus::Cancelling,
            Self::Cancelled | Self::Refunded => OrderStatus::Cancelled,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Invalid::Malformed(format!(
                    "unknown event type {s:?}; expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// Declares an identifier shown as a prefix and a UUID's 32 hex digits.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// What every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read back from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix(Self::PREFIX)
                    .filter(|hex| hex.len() == 32)
                    .and_then(|hex| Uuid::try_parse(hex).ok())
                    .map(Self)
                    .ok_or_else(|| {
                        Invalid::Malformed(format!(
                            "must be {}{}",
                            Self::PREFIX,
                            "followed by 32 hex digits"
                        ))
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// The id of an event: `evt_` and 32 hex digits. It is the `webhook-id` of every
    /// delivery of the event, retries included.
    EventId,
    "evt_"
);

prefixed_id!(
    /// The id of a webhook endpoint: `ep_` and 32 hex digits.
    EndpointId,
    "ep_"
);

/// Something that happened to an order, as the outbox records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The order it happened to.
    pub order_id: OrderId,
    /// What happened.
    pub kind: EventType,
    /// When: the time of the status change.
    pub occurred_at: DateTime<Utc>,
}

impl Order {
    /// The order as it was when `event` happened: its status then, and only the attempts
    /// finished and the cancellation recorded by then. An order's history only grows, so
    /// this is what a read at that moment returned.
    #[must_use]
    pub fn as_of(&self, event: &Event) -> Self {
        let at = event.occurred_at;
        Self {
            status: event.kind.status(),
            updated_at: at,
            payment_attempts: self
                .payment_attempts
                .iter()
                .filter(|a| a.finished_at <= at)
                .cloned()
                .collect(),
            refund_attempts: self
                .refund_attempts
                .iter()
                .filter(|a| a.finished_at <= at)
                .cloned()
                .collect(),
            cancellation: self.cancellation.filter(|c| c.requested_at <= at),
            ..self.clone()
        }
    }
}

/// A signing secret: shown as `whsec_` and its bytes in base64. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// What a secret's text starts with.
    pub const PREFIX: &'static str = "whsec_";

    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads `whsec_` and base64 (24 to 64 bytes, as the specification allows).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad =
            || Invalid::Malformed("a secret is whsec_ and 24 to 64 bytes in base64".to_owned());
        let encoded = text.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(bad());
        }
        Ok(Self(bytes))
    }

    /// A secret from its stored bytes (24 to 64).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Invalid> {
        if (24..=64).contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(Invalid::Malformed("a secret has 24 to 64 bytes".into()))
        }
    }

    /// Its bytes, for storing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret's text, `whsec_...`: only for showing it once to its owner.
    pub fn expose(&self) -> String {
        format!("{}{}", Self::PREFIX, BASE64.encode(&self.0))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under this secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `header` (a `webhook-signature` value: space-separated `v1,<base64>`) holds a
    /// signature of `{id}.{timestamp}.{body}` under this secret. Compared in constant time.
    pub fn verifies(&self, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        header.split(' ').any(|sig| {
            let Some(encoded) = sig.strip_prefix("v1,") else {
                return false;
            };
            BASE64
                .decode(encoded)
                .is_ok_and(|given| mac.clone().verify_slice(&given).is_ok())
        })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

/// The `webhook-signature` header: one `v1,` signature per secret, space-separated.
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a received webhook was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A `webhook-*` header is missing or unreadable.
    #[error("missing or unreadable header {0}")]
    Header(&'static str),
    /// The timestamp is too far from now: a replay, or a clock far off.
    #[error("timestamp {0} is more than five minutes from now")]
    Stale(i64),
    /// No signature matches.
    #[error("no signature matches")]
    Signature,
}

/// How far a received timestamp may be from now.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

/// Checks a received webhook the way a receiver must: the headers are there, the timestamp
/// is within five minutes of `now`, and a signature matches one of `secrets`.
pub fn verify(
    secrets: &[&Secret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let id = id.ok_or(VerifyError::Header("webhook-id"))?;
    let timestamp: i64 = timestamp
        .and_then(|t| t.parse().ok())
        .ok_or(VerifyError::Header("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::Header("webhook-signature"))?;
    let tolerance = i64::try_from(TIMESTAMP_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if (now.timestamp() - timestamp).abs() > tolerance {
        return Err(VerifyError::Stale(timestamp));
    }
    if secrets
        .iter()
        .any(|s| s.verifies(signature, id, timestamp, body))
    {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

/// An endpoint's URL: absolute `https` (or `http` where allowed), with a host, at most 2,000
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Checks `url`; `allow_http` admits plain `http` (for local development).
    pub fn parse(url: &str, allow_http: bool) -> Result<Self, Invalid> {
        let url = url.trim();
        let malformed = |why: &str| Invalid::Malformed(why.to_owned());
        if url.chars().count() > 2000 {
            return Err(malformed("a URL is at most 2,000 characters"));
        }
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            if !allow_http {
                return Err(malformed(
                    "must be an https URL (http is allowed with WEBHOOKS_ALLOW_HTTP=true)",
                ));
            }
            rest
        } else {
            return Err(malformed("must be an absolute https URL"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let host_only = if host.starts_with('[') {
            host.split(']').next().map(|h| h.trim_start_matches('['))
        } else {
            host.split(':').next()
        };
        if host_only.is_none_or(str::is_empty)
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(malformed("must name a host, with no spaces"));
        }
        if let Some(port) = host
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|_| !host.ends_with(']'))
        {
            if port.parse::<u16>().is_err() {
                return Err(malformed("has an invalid port"));
            }
        }
        Ok(Self(url.to_owned()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret replaced by a rotation, still signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringSecret {
    /// The old secret.
    pub secret: Secret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

/// A receiver of webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where events are posted.
    pub url: EndpointUrl,
    /// The event types it receives (never empty).
    pub events: BTreeSet<EventType>,
    /// What it is for (at most 500 characters).
    pub description: String,
    /// Whether events are delivered to it. A disabled endpoint keeps its undelivered events
    /// and receives them once enabled again.
    pub enabled: bool,
    /// Why it was disabled by the dispatcher (`410 Gone`, or failing for too long).
    pub disabled_reason: Option<String>,
    /// The secret it is signed with.
    pub secret: Secret,
    /// The secret a rotation replaced, during its grace period.
    pub previous_secret: Option<RetiringSecret>,
    /// Since when every delivery to it has failed (`None` after a success).
    pub failing_since: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a new endpoint is made of, each part checked ([`EndpointUrl::parse`], [`event_types`],
/// [`description`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// Where events are posted.
    pub url: EndpointUrl,
    /// The event types it receives.
    pub events: BTreeSet<EventType>,
    /// What it is for.
    pub description: String,
}

/// Checks an endpoint's description: at most 500 characters, no control characters but
/// line breaks.
pub fn description(text: &str) -> Result<String, Invalid> {
    if text.chars().count() > 500 {
        return Err(Invalid::TooLong {
            max: 500,
            actual: text.chars().count(),
        });
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::Malformed("has control characters".into()));
    }
    Ok(text.to_owned())
}

/// Checks a list of event type names: an empty list is refused, a missing one means all.
pub fn event_types(names: Option<&[String]>) -> Result<BTreeSet<EventType>, Invalid> {
    match names {
        None => Ok(EventType::ALL.into_iter().collect()),
        Some([]) => Err(Invalid::TooFew { min: 1 }),
        Some(names) => names.iter().map(|n| n.parse()).collect(),
    }
}

impl Endpoint {
    /// A new, enabled endpoint with a fresh secret, created at `now`.
    pub fn create(new: NewEndpoint, now: DateTime<Utc>) -> Self {
        let now = micros(now);
        Self {
            id: EndpointId::new(),
            url: new.url,
            events: new.events,
            description: new.description,
            enabled: true,
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether it receives events of `kind` now.
    pub fn wants(&self, kind: EventType) -> bool {
        self.enabled && self.events.contains(&kind)
    }

    /// The secrets deliveries are signed with at `now`: the current one, and the one a
    /// rotation replaced while its grace period lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some(old) = self.previous_secret.as_ref().filter(|o| o.expires_at > now) {
            secrets.push(&old.secret);
        }
        secrets
    }

    /// Replaces the secret with a new one; the old one keeps signing beside it for `grace`.
    /// Returns the new secret.
    pub fn rotate_secret(&mut self, now: DateTime<Utc>, grace: Duration) -> Secret {
        let new = Secret::generate();
        let old = std::mem::replace(&mut self.secret, new.clone());
        self.previous_secret = Some(RetiringSecret {
            secret: old,
            expires_at: micros(now + chrono::Duration::from_std(grace).unwrap_or_default()),
        });
        self.updated_at = micros(now);
        new
    }

    /// Records a change made at `now`.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = micros(now);
    }

    /// Enables or disables it by hand: enabling clears the dispatcher's reason and its
    /// failure streak.
    pub fn set_enabled(&mut self, enabled: bool, now: DateTime<Utc>) {
        self.enabled = enabled;
        if enabled {
            self.disabled_reason = None;
            self.failing_since = None;
        }
        self.updated_at = micros(now);
    }
}

/// Times are kept to the microsecond, as PostgreSQL keeps them.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// When failed deliveries are tried again: after each failure, the next delay of the list,
/// give or take `jitter` of it; once the list is used up, the delivery has failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// The delay after the first, second, ... failed attempt.
    pub delays: Vec<Duration>,
    /// The fraction of each delay the actual one may differ by (0 to 1).
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// The specification's example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the
    /// first attempt (eight attempts over about 27.6 hours), ±10 %.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.1,
        }
    }
}

impl RetrySchedule {
    /// When to try again after attempt number `attempt` (1-based) failed at `now`, or `None`
    /// when no attempt is left. A `retry_after` the receiver asked for is honoured when it
    /// is later than the schedule.
    pub fn next_attempt(
        &self,
        attempt: u32,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<DateTime<Utc>> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let base = *self.delays.get(index)?;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rng.random_range((1.0 - jitter)..=(1.0 + jitter))
        } else {
            1.0
        };
        let delay = base.mul_f64(factor).max(retry_after.unwrap_or_default());
        Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
    }
}

/// What one attempt to deliver an event to an endpoint came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered with this status (2xx: delivered).
    Answered {
        /// The HTTP status.
        status: u16,
        /// When to try again at the earliest, from `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    TimedOut,
    /// No connection, or the request failed on the way: what went wrong.
    Failed(String),
}

impl AttemptOutcome {
    /// Whether the event was delivered.
    pub const fn delivered(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if *status >= 200 && *status < 300)
    }

    /// The error to show when nothing answered.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Answered { .. } => None,
            Self::TimedOut => Some("timed out".into()),
            Self::Failed(e) => Some(e.clone()),
        }
    }

    /// The HTTP status, if the endpoint answered.
    pub const fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::TimedOut | Self::Failed(_) => None,
        }
    }
}

/// How much of a receiver's answer is kept.
pub const RESPONSE_EXCERPT_BYTES: usize = 256;

/// The first [`RESPONSE_EXCERPT_BYTES`] of a receiver's answer, cut at a character boundary.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_EXCERPT_BYTES)]);
    text.trim_end_matches('\u{fffd}').to_owned()
}

/// One attempt to deliver an event to an endpoint, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Which attempt at this event and endpoint (1-based).
    pub attempt: u32,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The status the endpoint answered, if it did.
    pub status_code: Option<u16>,
    /// What went wrong when it did not answer.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
    /// The start of the answer's body.
    pub response_excerpt: String,
    /// Whether the event was delivered by it.
    pub delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::SeedableRng;

    /// The Standard Webhooks reference test vector.
    #[test]
    fn the_signature_matches_the_specifications_test_vector() {
        let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verification_accepts_either_signature_and_refuses_tampering_and_stale_timestamps() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let ts = now.timestamp();
        let header = signature_header(&[&a, &b], "evt_1", ts, b"{}");
        let ts_text = ts.to_string();
        let check = |secret: &Secret, body: &[u8], at: DateTime<Utc>| {
            verify(
                &[secret],
                Some("evt_1"),
                Some(&ts_text),
                Some(&header),
                body,
                at,
            )
        };
        assert_eq!(check(&a, b"{}", now), Ok(()));
        assert_eq!(check(&b, b"{}", now), Ok(()));
        assert_eq!(
            check(&Secret::generate(), b"{}", now),
            Err(VerifyError::Signature)
        );
        assert_eq!(check(&a, b"{ }", now), Err(VerifyError::Signature));
        assert_eq!(
            check(&a, b"{}", now + chrono::Duration::minutes(6)),
            Err(VerifyError::Stale(ts))
        );
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let url = EndpointUrl::parse("https://example.com/hooks", false).unwrap();
        let mut endpoint = Endpoint::create(
            NewEndpoint {
                url,
                events: event_types(None).unwrap(),
                description: String::new(),
            },
            now,
        );
        let old = endpoint.secret.clone();
        let new = endpoint.rotate_secret(now, Duration::from_secs(3600));
        assert_eq!(endpoint.signing_secrets(now), [&new, &old]);
        let later = now + chrono::Duration::seconds(3601);
        assert_eq!(endpoint.signing_secrets(later), [&new]);
    }

    #[test]
    fn secrets_read_back_what_they_show_and_hide_in_debug() {
        let secret = Secret::generate();
        assert_eq!(Secret::parse(&secret.expose()), Ok(secret.clone()));
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
    }

    #[test]
    fn urls_must_be_https_unless_http_is_allowed() {
        assert!(EndpointUrl::parse("https://hooks.example.com/x?y=1", false).is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/x", false).is_err());
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/x", true).is_ok());
        assert!(EndpointUrl::parse("http://[::1]:9000/x", true).is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "https://a b",
            "https://host:99999/",
            "hooks",
        ] {
            assert!(EndpointUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_types_default_to_all_and_refuse_unknown_and_empty_lists() {
        assert_eq!(event_types(None).unwrap().len(), EventType::ALL.len());
        assert!(event_types(Some(&[])).is_err());
        assert!(event_types(Some(&["order.shipped".into()])).is_err());
        let one = event_types(Some(&["order.confirmed".into()])).unwrap();
        assert_eq!(one.into_iter().collect::<Vec<_>>(), [EventType::Confirmed]);
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn ids_show_their_prefix_and_read_back() {
        let id = EventId::new();
        let text = id.to_string();
        assert!(text.starts_with("evt_") && text.len() == 36, "{text}");
        assert_eq!(text.parse(), Ok(id));
        assert!("ep_123".parse::<EndpointId>().is_err());
        assert!(text.parse::<EndpointId>().is_err());
    }

    #[test]
    fn the_schedule_spans_about_a_day_honours_retry_after_and_ends() {
        let schedule = RetrySchedule::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let total: i64 = (1..=7)
            .map(|n| (schedule.next_attempt(n, now, None, &mut rng).unwrap() - now).num_seconds())
            .sum();
        assert!((89_000..=110_000).contains(&total), "{total} s");
        assert_eq!(schedule.next_attempt(8, now, None, &mut rng), None);
        let first = schedule.next_attempt(1, now, None, &mut rng).unwrap() - now;
        assert!((4500..=5500).contains(&first.num_milliseconds()), "{first}");
        let asked = schedule
            .next_attempt(1, now, Some(Duration::from_secs(120)), &mut rng)
            .unwrap();
        assert_eq!(asked - now, chrono::Duration::seconds(120));
    }

    #[test]
    fn an_excerpt_is_short_and_valid_text() {
        let long = "é".repeat(400);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= RESPONSE_EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
