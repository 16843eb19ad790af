//! Payments: charge requests, gateway outcomes and the record of every attempt.

use std::fmt;
use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, OrderId, PaymentMethod};
use crate::money::Money;

/// The key a gateway deduplicates charges by. It is derived from the order alone, so every
/// attempt, worker and restart sends the same key and an order can be charged at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key for paying `order`.
    pub fn for_order(order: OrderId) -> Self {
        Self(format!("order-{order}"))
    }

    /// The key for refunding `order`'s payment: like the charge's, the same for every
    /// attempt, worker and restart, so a capture is refunded at most once.
    pub fn for_refund(order: OrderId) -> Self {
        Self(format!("refund-order-{order}"))
    }

    /// The key for a refund of part of `order`'s payment asked for on its own, told apart
    /// from the order's other such refunds by `token` (derived from the client's own key
    /// when it gave one, so that its retries send the same refund).
    pub fn for_partial_refund(order: OrderId, token: &str) -> Self {
        Self(format!("refund-order-{order}-{token}"))
    }

    /// The key for capturing `order`'s authorized payment: one capture per order, so the
    /// same for every attempt at it.
    pub fn for_capture(order: OrderId) -> Self {
        Self(format!("capture-order-{order}"))
    }

    /// Wraps a key received from elsewhere (a gateway's client, say).
    pub fn from_raw(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a payment is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    /// With the charge: the worker's charge captures the payment (the default).
    #[default]
    Automatic,
    /// Later: the worker's charge only authorizes the amount; a capture (of at most that
    /// amount, once) takes the money, and a refund before it voids the authorization.
    Manual,
}

impl CaptureMethod {
    /// Both methods.
    pub const ALL: [Self; 2] = [Self::Automatic, Self::Manual];

    /// `automatic` or `manual`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Manual => "manual",
        }
    }
}

impl fmt::Display for CaptureMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CaptureMethod {
    type Err = crate::Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| crate::Invalid::Malformed("must be automatic or manual".into()))
    }
}

/// What the worker asks the gateway to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// Same for every attempt at the same order.
    pub idempotency_key: IdempotencyKey,
    /// The order paid for.
    pub order_id: OrderId,
    /// Who pays.
    pub customer_id: CustomerId,
    /// How much.
    pub amount: Money,
    /// The processor's token for how the customer pays, when the order named one. A
    /// gateway that needs one declines a charge without it
    /// ([`DeclineReason::InvalidPaymentMethod`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    /// Whether the charge captures the payment, or only authorizes it.
    #[serde(default)]
    pub capture: CaptureMethod,
}

/// A captured payment (or, for a [`CaptureMethod::Manual`] charge, an authorized one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    /// The gateway's id of the charge.
    pub transaction_id: String,
}

/// What is asked of the gateway to capture an authorized payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// Same for every attempt at the capture ([`IdempotencyKey::for_capture`]).
    pub idempotency_key: IdempotencyKey,
    /// The charge that authorized the payment, exactly as it was sent.
    pub charge: ChargeRequest,
    /// The gateway's id of the payment ([`ChargeReceipt::transaction_id`]), when a charge
    /// answered with one: a gateway looks the payment up by it rather than by the charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// How much to take: more than zero, at most what was authorized.
    pub amount: Money,
}

impl CaptureRequest {
    /// The key the payment was authorized under.
    pub fn charge_key(&self) -> &IdempotencyKey {
        &self.charge.idempotency_key
    }
}

/// A capture made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureReceipt {
    /// How much was taken.
    pub amount: Money,
}

/// What the gateway is asked to give back: what is left of a cancelled order's payment
/// (under [`IdempotencyKey::for_refund`]), or part of it asked for on its own (under
/// [`IdempotencyKey::for_partial_refund`]). A payment may be refunded several times, each
/// refund under a key of its own; a gateway gives back at most what is left of what it
/// captured, whatever is asked, and each key at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The refund's own key, the same for every attempt at it.
    pub idempotency_key: IdempotencyKey,
    /// The charge whose payment is given back, exactly as it is (or was, or will be) sent:
    /// a gateway that finds a payment by repeating its request under the charge key, as
    /// Stripe's replays do, needs the whole of it.
    pub charge: ChargeRequest,
    /// The gateway's id of the payment ([`ChargeReceipt::transaction_id`]), when a charge
    /// answered with one: a gateway looks the payment up by it rather than by the charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// How much to give back: more than zero, at most what is left of what was captured.
    pub amount: Money,
}

impl RefundRequest {
    /// The key the payment was charged under.
    pub fn charge_key(&self) -> &IdempotencyKey {
        &self.charge.idempotency_key
    }

    /// The order refunded.
    pub fn order_id(&self) -> OrderId {
        self.charge.order_id
    }
}

/// A definitive answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefundReceipt {
    /// The capture was refunded (now or by an earlier call with the same key).
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// How much was given back.
        amount: Money,
    },
    /// Nothing was captured under the charge key, and the key is now void: no later charge
    /// with it can capture, so there is nothing to give back, ever.
    NothingCaptured,
}

/// What is asked to look a payment up: the charge whose key names it, exactly as it is (or
/// was, or will be) sent, and the processor's own id of the payment when a charge answered
/// with one. A gateway finds the payment by whichever of the two it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    /// The charge, whose idempotency key names the payment.
    pub charge: ChargeRequest,
    /// The gateway's id of the payment ([`ChargeReceipt::transaction_id`]), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
}

impl LookupRequest {
    /// The key the payment is (or would be) charged under.
    pub fn charge_key(&self) -> &IdempotencyKey {
        &self.charge.idempotency_key
    }
}

/// Where a payment stands at the processor, as a look-up finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PaymentState {
    /// Nothing was charged under the key and nothing is on its way that could be: a charge
    /// with it may be sent (again).
    NotCharged,
    /// The processor has not decided yet (a charge still in flight, a bank still
    /// answering): ask again later; sending the charge again is safe but not needed.
    Processing,
    /// Authorized and not (yet) captured: a manual capture's charge succeeded.
    Authorized {
        /// The gateway's id of the payment.
        payment_id: String,
        /// How much is held.
        amount: Money,
    },
    /// Captured (some or all of it may have been given back since).
    Captured {
        /// The gateway's id of the payment.
        payment_id: String,
        /// How much was taken.
        amount: Money,
        /// How much of it refunds gave back, in all.
        refunded: Money,
    },
    /// Declined, or voided before anything was captured: nothing is or ever will be taken
    /// under the key.
    Declined {
        /// Why.
        reason: DeclineReason,
    },
}

impl PaymentState {
    /// What a charge with the key would answer now, when the processor has decided:
    /// the receipt of an authorized or captured payment, or its decline. `None` while it
    /// has not (nothing charged, or still processing).
    pub fn charge_outcome(&self) -> Option<Result<ChargeReceipt, GatewayError>> {
        match self {
            Self::NotCharged | Self::Processing => None,
            Self::Authorized { payment_id, .. } | Self::Captured { payment_id, .. } => {
                Some(Ok(ChargeReceipt {
                    transaction_id: payment_id.clone(),
                }))
            }
            Self::Declined { reason } => Some(Err(GatewayError::Declined(*reason))),
        }
    }

    /// Whether the processor has decided the payment (see [`Self::charge_outcome`]).
    pub fn is_settled(&self) -> bool {
        !matches!(self, Self::NotCharged | Self::Processing)
    }
}

/// Why a gateway refused a charge. Declines are final: retrying cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// Not enough money on the account.
    InsufficientFunds,
    /// The issuer declined the card.
    CardDeclined,
    /// The payment method cannot be charged.
    InvalidPaymentMethod,
    /// The charge's key was voided by a refund request before anything was captured (the
    /// order was cancelled): no charge with it can capture any more.
    Voided,
    /// The issuer wants the customer to authenticate (3-D Secure), which a charge made
    /// without the customer cannot do.
    AuthenticationRequired,
    /// The processor refused the request itself as invalid (an amount it does not take, a
    /// currency it does not support): retrying the same request cannot help.
    ProcessorRefused,
}

impl DeclineReason {
    /// Every reason.
    pub const ALL: [Self; 6] = [
        Self::InsufficientFunds,
        Self::CardDeclined,
        Self::InvalidPaymentMethod,
        Self::Voided,
        Self::AuthenticationRequired,
        Self::ProcessorRefused,
    ];

    /// The reasons an issuer gives for declining a card.
    pub const CARD: [Self; 3] = [
        Self::InsufficientFunds,
        Self::CardDeclined,
        Self::InvalidPaymentMethod,
    ];

    /// The reason as snake_case text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient_funds",
            Self::CardDeclined => "card_declined",
            Self::InvalidPaymentMethod => "invalid_payment_method",
            Self::Voided => "voided",
            Self::AuthenticationRequired => "authentication_required",
            Self::ProcessorRefused => "processor_refused",
        }
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A charge that did not capture a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The gateway refused the charge; final.
    #[error("payment declined: {0}")]
    Declined(DeclineReason),
    /// The gateway says it did not process the charge; safe to retry.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
    /// No answer in time: the charge may or may not have happened. Retry only with the same
    /// idempotency key, which makes the gateway replay the first outcome.
    #[error("payment gateway timed out: {0}")]
    Timeout(String),
}

/// How a failed charge may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Never: the outcome is final.
    Final,
    /// Yes: nothing happened.
    Retryable,
    /// Only with the same idempotency key: something may have happened.
    Ambiguous,
}

impl GatewayError {
    /// How this failure may be retried.
    pub const fn retry_class(&self) -> RetryClass {
        match self {
            Self::Declined(_) => RetryClass::Final,
            Self::Unavailable(_) => RetryClass::Retryable,
            Self::Timeout(_) => RetryClass::Ambiguous,
        }
    }

    /// Whether retrying (with the same key) may succeed.
    pub const fn is_retryable(&self) -> bool {
        !matches!(self.retry_class(), RetryClass::Final)
    }

    /// Whether the failure says the gateway is unhealthy (and counts toward opening the
    /// circuit breaker). A decline is a healthy answer.
    pub const fn is_gateway_fault(&self) -> bool {
        self.is_retryable()
    }
}

/// How one payment attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The payment was captured.
    Succeeded {
        /// The gateway's id of the charge.
        transaction_id: String,
    },
    /// The gateway declined the payment.
    Declined {
        /// Why.
        reason: DeclineReason,
    },
    /// The gateway did not process the payment.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// No answer in time; the outcome was unknown.
    TimedOut {
        /// What went wrong.
        error: String,
    },
}

impl AttemptOutcome {
    /// The outcome of a charge.
    pub fn from_charge(result: &Result<ChargeReceipt, GatewayError>) -> Self {
        match result {
            Ok(receipt) => Self::Succeeded {
                transaction_id: receipt.transaction_id.clone(),
            },
            Err(GatewayError::Declined(reason)) => Self::Declined { reason: *reason },
            Err(GatewayError::Unavailable(e)) => Self::Failed { error: e.clone() },
            Err(GatewayError::Timeout(e)) => Self::TimedOut { error: e.clone() },
        }
    }

    /// Whether the payment was captured.
    pub const fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }

    /// The status name: `succeeded`, `declined`, `failed` or `timed_out`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "succeeded",
            Self::Declined { .. } => "declined",
            Self::Failed { .. } => "failed",
            Self::TimedOut { .. } => "timed_out",
        }
    }
}

/// How one refund attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefundOutcome {
    /// The capture was refunded.
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// How much was given back.
        amount: Money,
    },
    /// Nothing had been captured; the charge key is void.
    NothingCaptured,
    /// The gateway refused the refund.
    Refused {
        /// Why.
        error: String,
    },
    /// The gateway did not process the refund.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// No answer in time; the outcome was unknown.
    TimedOut {
        /// What went wrong.
        error: String,
    },
}

impl RefundOutcome {
    /// The outcome of a refund call.
    pub fn from_refund(result: &Result<RefundReceipt, GatewayError>) -> Self {
        match result {
            Ok(RefundReceipt::Refunded { refund_id, amount }) => Self::Refunded {
                refund_id: refund_id.clone(),
                amount: *amount,
            },
            Ok(RefundReceipt::NothingCaptured) => Self::NothingCaptured,
            Err(GatewayError::Declined(reason)) => Self::Refused {
                error: reason.to_string(),
            },
            Err(GatewayError::Unavailable(e)) => Self::Failed { error: e.clone() },
            Err(GatewayError::Timeout(e)) => Self::TimedOut { error: e.clone() },
        }
    }

    /// Whether the refund is settled: given back, or nothing to give back.
    pub const fn is_definitive(&self) -> bool {
        matches!(self, Self::Refunded { .. } | Self::NothingCaptured)
    }

    /// The status name: `refunded`, `nothing_captured`, `refused`, `failed` or `timed_out`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Refunded { .. } => "refunded",
            Self::NothingCaptured => "nothing_captured",
            Self::Refused { .. } => "refused",
            Self::Failed { .. } => "failed",
            Self::TimedOut { .. } => "timed_out",
        }
    }
}

/// One refund attempt, as recorded on the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAttempt {
    /// 1 for the first refund attempt at the order, then 2, 3, ...
    pub number: NonZeroU32,
    /// How it ended.
    pub outcome: RefundOutcome,
    /// When the refund was sent.
    pub started_at: DateTime<Utc>,
    /// When its outcome was known.
    pub finished_at: DateTime<Utc>,
}

/// An attempt a worker records when its lease ends: a charge or a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// An attempt at charging.
    Charge(PaymentAttempt),
    /// An attempt at refunding.
    Refund(RefundAttempt),
}

/// One payment attempt, as recorded on the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttempt {
    /// 1 for the first attempt at the order, then 2, 3, ...
    pub number: NonZeroU32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// When the charge was sent.
    pub started_at: DateTime<Utc>,
    /// When its outcome was known.
    pub finished_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idempotency_key_depends_on_the_order_only() {
        let id = OrderId::new();
        assert_eq!(IdempotencyKey::for_order(id), IdempotencyKey::for_order(id));
        assert_ne!(
            IdempotencyKey::for_order(id),
            IdempotencyKey::for_order(OrderId::new())
        );
    }

    #[test]
    fn declines_are_final_and_timeouts_ambiguous() {
        assert_eq!(
            GatewayError::Declined(DeclineReason::CardDeclined).retry_class(),
            RetryClass::Final
        );
        assert_eq!(
            GatewayError::Unavailable("x".into()).retry_class(),
            RetryClass::Retryable
        );
        assert_eq!(
            GatewayError::Timeout("x".into()).retry_class(),
            RetryClass::Ambiguous
        );
    }
}
