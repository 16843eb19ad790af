//! The protocol of the HTTP payment gateway: what `order-gateway-http` sends and what
//! `order-gateway-mock`'s server answers, written once for both.
//!
//! - `POST /charges` with an [`IDEMPOTENCY_KEY`] header and a [`ChargeBody`]: the answer is
//!   a [`ChargeAnswer`] whose [`ChargeAnswer::http_status`] is the response status:
//!   `200` captured, `402` declined (final), `503` unavailable (nothing was charged), `504`
//!   timed out (may have charged), `400` invalid.
//! - `GET`/`PUT /admin/config`: the simulation's [`Behaviour`].
//! - `PUT /admin/outage` with an [`Outage`] fails every charge for that long ([`OutageAnswer`]);
//!   `DELETE` ends it.
//! - `POST /refunds` with an [`IDEMPOTENCY_KEY`] header (the refund's own key) and a
//!   [`RefundBody`] naming the charge key: a [`RefundAnswer`] whose
//!   [`RefundAnswer::http_status`] is the response status: `200` refunded, or nothing was
//!   captured and the charge key is now void (every later charge with it is declined
//!   `voided`); `402` refused (nothing is left of the capture: a capture may be refunded
//!   several times, each under its own key, never for more in all than was captured);
//!   `503` unavailable, `504` timed out (may have refunded), `400` invalid.
//! - `POST /captures` with an [`IDEMPOTENCY_KEY`] header (the capture's own key) and a
//!   [`CaptureBody`] naming the charge key of a payment authorized with
//!   `"capture_method": "manual"`: a [`CaptureAnswer`] whose [`CaptureAnswer::http_status`]
//!   is the response status: `200` captured (now or earlier: once per charge key), `402`
//!   refused (`voided`, or nothing to capture), `503`, `504`, `400` as for charges.
//! - `GET /payments/{charge_key}`: where the payment charged (or not) under that key stands,
//!   a [`PaymentAnswer`] whose [`PaymentAnswer::http_status`] is the response status: `200`
//!   with the state (`not_charged`, `processing`, `authorized`, `captured`, `declined`), or
//!   `503`, `504`, `400` as for charges. It moves no money.
//! - `GET /audit/charges`: the [`Audit`], one [`AuditEntry`] per idempotency key.
//! - `GET /health`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::exact;

/// Charges.
pub const CHARGES: &str = "/charges";
/// Refunds.
pub const REFUNDS: &str = "/refunds";
/// Captures of authorized payments.
pub const CAPTURES: &str = "/captures";
/// Look-ups of payments, by charge key: `GET {PAYMENTS}/{charge_key}`.
pub const PAYMENTS: &str = "/payments";
/// The simulation's behaviour.
pub const ADMIN_CONFIG: &str = "/admin/config";
/// Switching an outage on and off.
pub const ADMIN_OUTAGE: &str = "/admin/outage";
/// The ledger.
pub const AUDIT_CHARGES: &str = "/audit/charges";
/// Liveness.
pub const HEALTH: &str = "/health";
/// The charge's idempotency key: the same for every attempt at one order's payment.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeBody {
    /// The order paid for.
    pub order_id: Uuid,
    /// Who pays.
    pub customer_id: String,
    /// How much, exact.
    #[serde(with = "exact")]
    pub amount: Decimal,
    /// The processor's token for how the customer pays, when the order named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// `manual` to only authorize the amount (captured by `POST /captures`); absent or
    /// `automatic` captures it with the charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_method: Option<String>,
}

/// The answer to a charge, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChargeAnswer {
    /// Captured.
    Succeeded {
        /// The gateway's id of the payment.
        transaction_id: String,
    },
    /// Declined: final.
    Declined {
        /// Why, as a decline code (`insufficient_funds`, `card_declined`, ...).
        reason: String,
    },
    /// Not processed: nothing was charged, retrying is safe.
    Unavailable {
        /// What failed.
        error: String,
    },
    /// No definite answer in time: the charge may have happened.
    Timeout {
        /// What failed.
        error: String,
    },
    /// The request itself was wrong.
    Invalid {
        /// What is wrong.
        error: String,
    },
}

impl ChargeAnswer {
    /// The HTTP status this answer is sent with.
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::Succeeded { .. } => 200,
            Self::Declined { .. } => 402,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Invalid { .. } => 400,
        }
    }
}

/// A refund of part or all of what was captured under `charge_key`; the request's
/// `Idempotency-Key` is the refund's own, so a capture may be refunded several times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundBody {
    /// The idempotency key the payment was charged under.
    pub charge_key: String,
    /// The charge whose payment is given back, as it was sent under `charge_key`.
    pub charge: ChargeBody,
    /// How much to give back, exact; never more than was captured.
    #[serde(with = "exact")]
    pub amount: Decimal,
}

/// The answer to a refund, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefundAnswer {
    /// Given back (now or by an earlier refund of the same capture).
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// How much was given back.
        #[serde(with = "exact")]
        amount: Decimal,
    },
    /// Nothing was captured under the charge key, which is now void.
    NothingCaptured,
    /// Refused for good: nothing is left of the capture to give back.
    Declined {
        /// Why (`processor_refused`).
        reason: String,
    },
    /// Not processed: nothing was refunded, retrying is safe.
    Unavailable {
        /// What failed.
        error: String,
    },
    /// No definite answer in time: the refund may have happened.
    Timeout {
        /// What failed.
        error: String,
    },
    /// The request itself was wrong.
    Invalid {
        /// What is wrong.
        error: String,
    },
}

impl RefundAnswer {
    /// The HTTP status this answer is sent with.
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::Refunded { .. } | Self::NothingCaptured => 200,
            Self::Declined { .. } => 402,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Invalid { .. } => 400,
        }
    }
}

/// Where a payment stands, tagged by `status`: the answer to a look-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PaymentAnswer {
    /// Nothing was charged under the key, and nothing is on its way.
    NotCharged,
    /// Not decided yet: ask again later.
    Processing,
    /// Authorized, not captured.
    Authorized {
        /// The gateway's id of the payment.
        payment_id: String,
        /// How much is held, exact.
        #[serde(with = "exact")]
        amount: Decimal,
    },
    /// Captured; `refunded` of it given back since.
    Captured {
        /// The gateway's id of the payment.
        payment_id: String,
        /// How much was taken, exact.
        #[serde(with = "exact")]
        amount: Decimal,
        /// How much refunds gave back, exact.
        #[serde(with = "exact")]
        refunded: Decimal,
    },
    /// Declined or voided: nothing is or will be taken under the key.
    Declined {
        /// Why, as a decline code.
        reason: String,
    },
    /// Not answered: nothing is known, asking again is safe.
    Unavailable {
        /// What failed.
        error: String,
    },
    /// No answer in time.
    Timeout {
        /// What failed.
        error: String,
    },
    /// The request itself was wrong.
    Invalid {
        /// What is wrong.
        error: String,
    },
}

impl PaymentAnswer {
    /// The HTTP status this answer is sent with.
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::NotCharged
            | Self::Processing
            | Self::Authorized { .. }
            | Self::Captured { .. }
            | Self::Declined { .. } => 200,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Invalid { .. } => 400,
        }
    }
}

/// A capture of what was authorized under `charge_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureBody {
    /// The idempotency key the payment was authorized under.
    pub charge_key: String,
    /// The charge that authorized it, as it was sent under `charge_key`.
    pub charge: ChargeBody,
    /// How much to take, exact; at most what was authorized.
    #[serde(with = "exact")]
    pub amount: Decimal,
}

/// The answer to a capture, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaptureAnswer {
    /// Taken (now or by an earlier capture of the same authorization).
    Captured {
        /// How much.
        #[serde(with = "exact")]
        amount: Decimal,
    },
    /// Refused for good: the authorization was voided, or there is nothing to capture.
    Declined {
        /// Why (`voided`, `processor_refused`).
        reason: String,
    },
    /// Not processed: nothing was captured, retrying is safe.
    Unavailable {
        /// What failed.
        error: String,
    },
    /// No definite answer in time: the capture may have happened.
    Timeout {
        /// What failed.
        error: String,
    },
    /// The request itself was wrong.
    Invalid {
        /// What is wrong.
        error: String,
    },
}

impl CaptureAnswer {
    /// The HTTP status this answer is sent with.
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::Captured { .. } => 200,
            Self::Declined { .. } => 402,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Invalid { .. } => 400,
        }
    }
}

/// How the simulated gateway behaves; read and written at `/admin/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// Share of charges that succeed.
    pub success_rate: f64,
    /// Shortest simulated latency, ms.
    pub latency_min_ms: u64,
    /// Longest simulated latency, ms.
    pub latency_max_ms: u64,
    /// Share of failures that are declines.
    pub decline_share: f64,
    /// Share of failures that are time-outs.
    pub timeout_share: f64,
    /// How long a simulated time-out keeps the client waiting, ms.
    pub timeout_delay_ms: u64,
}

impl Default for Behaviour {
    /// The original service's mock: 95 % success, 50 to 200 ms.
    fn default() -> Self {
        Self {
            success_rate: 0.95,
            latency_min_ms: 50,
            latency_max_ms: 200,
            decline_share: 0.5,
            timeout_share: 0.1,
            timeout_delay_ms: 5_000,
        }
    }
}

/// `PUT /admin/outage`: fail every charge for this long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// Length of the outage.
    pub seconds: f64,
}

/// The answer to [`Outage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutageAnswer {
    /// When the outage ends.
    pub outage_until: DateTime<Utc>,
}

/// The definitive outcome of a key's charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Captured.
    Succeeded {
        /// The gateway's id of the payment.
        transaction_id: String,
    },
    /// Declined.
    Declined {
        /// Why.
        error: String,
    },
}

/// What the gateway did under one idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Calls made with the key.
    pub calls: u32,
    /// Payments captured under the key (0 or 1).
    pub captures: u32,
    /// Amount of the first call.
    #[serde(with = "exact")]
    pub amount: Decimal,
    /// The definitive outcome, once there is one.
    pub outcome: Option<AuditOutcome>,
    /// Refunds made of the capture.
    #[serde(default)]
    pub refunds: u32,
    /// The definitive answer to each refund of the key, by the refund's own key.
    #[serde(default)]
    pub refund_answers: std::collections::BTreeMap<String, AuditRefund>,
}

/// The definitive answer to refunding a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AuditRefund {
    /// Given back.
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// How much.
        #[serde(with = "exact")]
        amount: Decimal,
    },
    /// Nothing was captured; the key is void.
    NothingCaptured,
}

/// `GET /audit/charges`: the whole ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Calls received, outage rejections included.
    pub calls: u64,
    /// Payments captured, over all keys.
    pub captures: u64,
    /// Refunds made, over all keys.
    #[serde(default)]
    pub refunds: u64,
    /// One entry per idempotency key.
    pub charges: BTreeMap<String, AuditEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_answers_are_tagged_by_status() {
        let answer = ChargeAnswer::Declined {
            reason: "insufficient_funds".into(),
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"status": "declined", "reason": "insufficient_funds"})
        );
        assert_eq!(answer.http_status(), 402);
    }
}
