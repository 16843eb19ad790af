//! Stripe's events, as it posts them to a webhook endpoint: the `Stripe-Signature` check
//! and the parts of an event the service reads.
//!
//! Stripe signs `{t}.{payload}` with HMAC-SHA256 under the endpoint's signing secret
//! (`whsec_...`) and sends `Stripe-Signature: t={t},v1={hex}[,v1={hex}...]`: one `v1` per
//! secret that is active while the secret rolls. An event is accepted when any `v1` is the
//! signature under any of our secrets, compared in constant time, and `t` is within the
//! tolerance of now (older ones may be replays).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// How far `t` may be from now: Stripe's libraries use five minutes.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// No `Stripe-Signature` header, or one without `t=` or `v1=`.
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    /// No `v1` signature is ours.
    #[error("no signature matches")]
    Mismatch,
    /// The timestamp is outside the tolerance.
    #[error("the signature's timestamp is {0} s away from now, outside the tolerance")]
    Stale(i64),
    /// Signed, but not an event this adapter can read.
    #[error("the event cannot be read: {0}")]
    Unreadable(String),
}

/// An event from Stripe, as far as the service reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// `evt_...`: Stripe sends an event more than once; the id tells.
    pub id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What it is about.
    pub data: EventData,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventData {
    /// The object (a PaymentIntent, a Charge, a Refund).
    pub object: EventObject,
}

/// The parts of an event's object the service reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventObject {
    /// Its id.
    pub id: String,
    /// Its metadata: this adapter sets `order_id` on every intent and refund it makes.
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

impl Event {
    /// The order the event is about, when its object names one (objects this adapter made).
    pub fn order_id(&self) -> Option<&str> {
        self.data
            .object
            .metadata
            .get("order_id")
            .map(String::as_str)
    }

    /// Whether the event may change what is known of an order's payment: the outcome of an
    /// intent, a capture, a cancellation or a refund.
    pub fn concerns_payment(&self) -> bool {
        self.kind.starts_with("payment_intent.") || self.kind.starts_with("charge.")
    }
}

fn signature(secret: &str, timestamp: &str, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks `header` (the `Stripe-Signature` value) against `payload` under any of `secrets`
/// at `now` (Unix seconds), and reads the event.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[String],
    now: i64,
    tolerance_seconds: i64,
) -> Result<Event, EventError> {
    let header = header.ok_or(EventError::Malformed)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", hex)) => candidates.extend(unhex(hex)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(EventError::Malformed)?;
    let at: i64 = timestamp.parse().map_err(|_| EventError::Malformed)?;
    if candidates.is_empty() {
        return Err(EventError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        candidates.iter().any(|candidate| {
            signature(secret, timestamp, payload)
                .verify_slice(candidate)
                .is_ok()
        })
    });
    if !matched {
        return Err(EventError::Mismatch);
    }
    let skew = (now - at).abs();
    if skew > tolerance_seconds {
        return Err(EventError::Stale(skew));
    }
    serde_json::from_slice(payload).map_err(|e| EventError::Unreadable(e.to_string()))
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `timestamp` under
/// `secret` (for tests, and for clients that replay events).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let t = timestamp.to_string();
    let bytes = signature(secret, &t, payload).finalize().into_bytes();
    format!("t={t},v1={}", order_core::hex::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"order_id":"o-1"}}}}"#;

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_signed_event_is_read_and_names_its_order() {
        let header = sign(EVENT, "whsec_a", 1_000);
        let event = verify(EVENT, Some(&header), &secrets(&["whsec_a"]), 1_010, 300).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, "payment_intent.succeeded");
        assert_eq!(event.order_id(), Some("o-1"));
        assert!(event.concerns_payment());
    }

    #[test]
    fn any_of_several_signatures_and_secrets_may_match_during_a_roll() {
        let ours = sign(EVENT, "whsec_new", 1_000);
        let theirs = sign(EVENT, "whsec_other", 1_000);
        let v1 = |h: &str| h.split_once(",v1=").unwrap().1.to_owned();
        let header = format!("t=1000,v1={},v1={}", v1(&theirs), v1(&ours));
        let keys = secrets(&["whsec_old", "whsec_new"]);
        assert!(verify(EVENT, Some(&header), &keys, 1_000, 300).is_ok());
    }

    #[test]
    fn a_wrong_secret_a_changed_payload_or_an_old_timestamp_is_refused() {
        let header = sign(EVENT, "whsec_a", 1_000);
        let keys = secrets(&["whsec_a"]);
        assert_eq!(
            verify(EVENT, Some(&header), &secrets(&["whsec_b"]), 1_000, 300),
            Err(EventError::Mismatch)
        );
        let changed = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_2","metadata":{}}}}"#;
        assert_eq!(
            verify(changed, Some(&header), &keys, 1_000, 300),
            Err(EventError::Mismatch)
        );
        assert_eq!(
            verify(EVENT, Some(&header), &keys, 1_301, 300),
            Err(EventError::Stale(301))
        );
        for bad in [
            None,
            Some(""),
            Some("t=1000"),
            Some("v1=00"),
            Some("t=x,v1=00"),
        ] {
            assert_eq!(
                verify(EVENT, bad, &keys, 1_000, 300),
                Err(EventError::Malformed),
                "{bad:?}"
            );
        }
    }
}
