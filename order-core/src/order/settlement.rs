//! What an order asks of the gateway, and where its money stands: the requests paying,
//! capturing and refunding it, its capture, its refund and its payment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Order, OrderStatus};
use crate::money::Money;
use crate::payment::{CaptureMethod, ChargeRequest, IdempotencyKey, RefundOutcome, RefundRequest};

impl Order {
    /// The request paying for this order in full, under the key every attempt shares.
    pub fn charge_request(&self) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: IdempotencyKey::for_order(self.id),
            order_id: self.id,
            customer_id: self.customer_id.clone(),
            amount: self.total_amount,
            payment_method: self.payment_method.clone(),
            capture: self.capture,
        }
    }

    /// The request refunding what is left of this order's payment (all of it, less what
    /// refunds asked for on their own gave back or may have), charged under
    /// [`charge_request`](Self::charge_request)'s key: what a cancellation gives back.
    pub fn refund_request(&self) -> RefundRequest {
        RefundRequest {
            idempotency_key: IdempotencyKey::for_refund(self.id),
            charge: self.charge_request(),
            payment_id: self.payment_id(),
            amount: self.refundable(),
        }
    }

    /// The gateway's id of the order's payment, once a charge succeeded.
    pub fn payment_id(&self) -> Option<String> {
        self.payment_attempts.iter().find_map(|a| match &a.outcome {
            crate::payment::AttemptOutcome::Succeeded { transaction_id } => {
                Some(transaction_id.clone())
            }
            _ => None,
        })
    }

    /// What a cancellation's refund gives back: the total, or, for a payment captured
    /// later, what the capture takes (the gateway gives back no more than it took, whatever
    /// is asked), less what refunds asked for on their own gave back or may have.
    pub fn refundable(&self) -> Money {
        let whole = self.captured.map_or(self.total_amount, |c| c.amount);
        whole.saturating_sub(self.partially_refunded())
    }

    /// The refund of the order's payment as it stands, once a cancellation asked for one:
    /// `None` before (or for an order cancelled before payment started).
    pub fn refund(&self) -> Option<Refund> {
        let last = self.refund_attempts.last();
        let status = match last.map(|a| &a.outcome) {
            Some(RefundOutcome::Refunded { .. }) => RefundStatus::Succeeded,
            Some(RefundOutcome::NothingCaptured) => RefundStatus::NothingCaptured,
            _ if self.status == OrderStatus::Cancelling => RefundStatus::Pending,
            _ => return None,
        };
        let (refund_id, amount) = match last.map(|a| &a.outcome) {
            Some(RefundOutcome::Refunded { refund_id, amount }) => {
                (Some(refund_id.clone()), *amount)
            }
            Some(RefundOutcome::NothingCaptured) => (None, Money::ZERO),
            _ => (None, self.refundable()),
        };
        Some(Refund {
            amount,
            status,
            refund_id,
        })
    }
}

/// The capture of an order's authorized payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRecord {
    /// How much is (or was) taken: at most the authorized total.
    pub amount: Money,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When the gateway took it; `None` while its outcome is not known.
    pub captured_at: Option<DateTime<Utc>>,
}

/// Where an order's payment stands, as far as money goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Authorized, not captured (manual capture).
    Authorized,
    /// Captured.
    Captured,
    /// Captured, and part of it given back.
    PartiallyRefunded,
    /// Captured and then given back in full.
    Refunded,
    /// Authorized and then released: nothing was ever taken.
    Voided,
}

/// The money side of an order: what was authorized, captured and refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    /// Where it stands.
    pub status: PaymentStatus,
    /// What the gateway holds for the order (authorized, whether or not captured).
    pub authorized_amount: Money,
    /// What was taken.
    pub captured_amount: Money,
    /// What was given back.
    pub refunded_amount: Money,
}

impl Order {
    /// The order's payment once the gateway took or held money for it: `None` before (and
    /// for an order whose payment failed).
    pub fn payment(&self) -> Option<Payment> {
        let paid = self.payment_attempts.iter().any(|a| a.outcome.is_success());
        if !paid {
            return None;
        }
        let authorized = self.total_amount;
        let captured = self.captured_amount();
        let partial: Money = self
            .partial_refunds
            .iter()
            .map(super::PartialRefund::given)
            .sum();
        let (status, refunded) = match self.refund().map(|r| (r.status, r.amount)) {
            Some((RefundStatus::NothingCaptured, _)) => (PaymentStatus::Voided, Money::ZERO),
            Some((RefundStatus::Succeeded, amount)) => {
                let refunded = partial.checked_add(amount).unwrap_or(captured);
                (PaymentStatus::Refunded, refunded)
            }
            _ if captured == Money::ZERO => (PaymentStatus::Authorized, Money::ZERO),
            _ if partial == Money::ZERO => (PaymentStatus::Captured, Money::ZERO),
            _ if partial >= captured => (PaymentStatus::Refunded, partial),
            // A cancellation whose refund found nothing left to give back is refunded too.
            _ if self.status == OrderStatus::Cancelled => (PaymentStatus::Refunded, partial),
            _ => (PaymentStatus::PartiallyRefunded, partial),
        };
        Some(Payment {
            status,
            authorized_amount: authorized,
            captured_amount: if status == PaymentStatus::Voided {
                Money::ZERO
            } else {
                captured
            },
            refunded_amount: refunded,
        })
    }

    /// Whether a capture may take the order's payment: it is `confirmed`, paid with
    /// manual capture (so only authorized), and no cancellation is recorded. What the
    /// stores' `begin_capture` checks, in one place for every in-process caller.
    pub fn has_capturable_payment(&self) -> bool {
        self.status == OrderStatus::Confirmed
            && self.capture == CaptureMethod::Manual
            && self.cancellation.is_none()
    }

    /// The request capturing `amount` of this order's authorized payment.
    pub fn capture_request(&self, amount: Money) -> crate::payment::CaptureRequest {
        crate::payment::CaptureRequest {
            idempotency_key: IdempotencyKey::for_capture(self.id),
            charge: self.charge_request(),
            payment_id: self.payment_id(),
            amount,
        }
    }

    /// The request looking this order's payment up at the gateway.
    pub fn lookup_request(&self) -> crate::payment::LookupRequest {
        crate::payment::LookupRequest {
            charge: self.charge_request(),
            payment_id: self.payment_id(),
        }
    }
}

/// Where the refund of a cancelled order's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// A worker will refund (or void) the payment.
    Pending,
    /// The capture was given back.
    Succeeded,
    /// Nothing had been captured; the charge can no longer capture.
    NothingCaptured,
}

/// The refund of an order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// What is (or was) given back.
    pub amount: Money,
    /// Where it stands.
    pub status: RefundStatus,
    /// The gateway's id of the refund, once made.
    pub refund_id: Option<String>,
}
