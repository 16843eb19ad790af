//! What Stripe sends back: the parts of its objects and of its error object this adapter
//! reads, and how each error maps to the port's outcomes.

use order_core::payment::{DeclineReason, GatewayError, IdempotencyKey};
use serde::Deserialize;

/// A PaymentIntent, as far as the adapter reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    /// `pi_...`.
    pub id: String,
    /// `requires_payment_method`, `requires_confirmation`, `requires_action`, `processing`,
    /// `requires_capture`, `canceled` or `succeeded`.
    pub status: String,
    /// The amount in the currency's smallest unit.
    pub amount: i64,
    /// What was captured, once it was (Stripe sends it; localstripe does not).
    #[serde(default)]
    pub amount_received: Option<i64>,
    /// Why the last confirmation failed, when it did.
    #[serde(default)]
    pub last_payment_error: Option<ErrorBody>,
}

/// A Refund, as far as the adapter reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    /// `re_...`.
    pub id: String,
    /// The amount given back, in the currency's smallest unit.
    pub amount: i64,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    #[serde(default)]
    pub status: Option<String>,
    /// What the refund was made with (this adapter sets `order_id`).
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

impl Refund {
    /// Whether the refund gives the money back (now, or once the bank has processed it).
    pub fn counts(&self) -> bool {
        !matches!(self.status.as_deref(), Some("failed" | "canceled"))
    }

    /// Whether this adapter made the refund for order `order_id` (and not, say, a fake
    /// that books an uncaptured remainder as a refund).
    pub fn is_for(&self, order_id: &str) -> bool {
        self.metadata.get("order_id").map(String::as_str) == Some(order_id)
    }

    /// Whether this adapter made the refund under `key`: it says so in
    /// `metadata[refund_key]`; a refund without one was made before refunds had keys of
    /// their own, as the order's whole refund (`whole`).
    pub fn is_under(&self, key: &str, whole: &IdempotencyKey) -> bool {
        match self.metadata.get("refund_key") {
            Some(made_under) => made_under == key,
            None => key == whole.as_str(),
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    /// The objects.
    pub data: Vec<T>,
}

/// Stripe's error object: `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The inside of Stripe's error object (and of a PaymentIntent's `last_payment_error`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    /// `card_error`, `invalid_request_error`, `api_error`, `idempotency_error`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A short code: `card_declined`, `payment_intent_unexpected_state`, ...
    #[serde(default)]
    pub code: Option<String>,
    /// For a card declined by its issuer, the issuer's reason: `insufficient_funds`, ...
    #[serde(default)]
    pub decline_code: Option<String>,
    /// The parameter the error is about.
    #[serde(default)]
    pub param: Option<String>,
    /// Human-readable text.
    #[serde(default)]
    pub message: Option<String>,
}

impl ErrorBody {
    /// The text to record: the message, with the codes.
    pub fn describe(&self) -> String {
        let mut text = self.message.clone().unwrap_or_else(|| "no message".into());
        for code in [&self.code, &self.decline_code].into_iter().flatten() {
            text.push_str(" [");
            text.push_str(code);
            text.push(']');
        }
        text
    }

    /// The port's reason for a declined payment: the issuer's decline code first, then
    /// the error's code.
    pub fn decline_reason(&self) -> DeclineReason {
        let codes = [self.decline_code.as_deref(), self.code.as_deref()];
        for code in codes.into_iter().flatten() {
            match code {
                "insufficient_funds" => return DeclineReason::InsufficientFunds,
                "authentication_required" | "payment_intent_authentication_failure" => {
                    return DeclineReason::AuthenticationRequired;
                }
                "incorrect_number"
                | "invalid_number"
                | "expired_card"
                | "incorrect_cvc"
                | "invalid_cvc"
                | "invalid_expiry_month"
                | "invalid_expiry_year"
                | "payment_method_unactivated"
                | "payment_method_not_available" => {
                    return DeclineReason::InvalidPaymentMethod;
                }
                _ => {}
            }
        }
        DeclineReason::CardDeclined
    }

    /// Whether Stripe says the object is not in a state that allows the call (confirming
    /// a cancelled intent, cancelling a succeeded one): the caller reads the object again.
    pub fn is_unexpected_state(&self) -> bool {
        self.code.as_deref() == Some("payment_intent_unexpected_state")
    }

    /// Whether the refund is refused because the charge is refunded already.
    pub fn is_already_refunded(&self) -> bool {
        self.code.as_deref() == Some("charge_already_refunded")
    }
}

/// A call that Stripe answered with an error status.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status.
    pub status: u16,
    /// Whether Stripe replayed it: the answer kept under the request's idempotency key
    /// (`Idempotent-Replayed: true`), not the outcome of this request.
    pub replayed: bool,
    /// The error object (empty when the body was not one).
    pub error: ErrorBody,
}

impl Failure {
    /// The port's outcome, as Stripe's error handling guide classes each status:
    /// - `402` (`card_error`): the card was declined; final.
    /// - `400`/`404` (`invalid_request_error`): the request is refused as it is; final, a
    ///   decline for an unknown payment method or `processor_refused` otherwise.
    /// - `401`/`403` (a key that is wrong or lacks a permission), `409` (a concurrent call
    ///   with the same key) and `429` (rate limited): nothing was done; retryable.
    /// - `5xx`: Stripe may have done it; ambiguous, asked again under the same key.
    pub fn classify(&self) -> GatewayError {
        let said = format!("Stripe answered {}: {}", self.status, self.error.describe());
        match self.status {
            402 => GatewayError::Declined(self.error.decline_reason()),
            // The key was used with other parameters: what the first request did is not
            // known here, so it is not a decline.
            400 | 404 if self.error.kind.as_deref() == Some("idempotency_error") => {
                GatewayError::Timeout(said)
            }
            400 | 404 => {
                let method = self.error.param.as_deref() == Some("payment_method")
                    || self.status == 404
                    || self.error.code.as_deref() == Some("resource_missing");
                if self.error.kind.as_deref() == Some("card_error") {
                    GatewayError::Declined(self.error.decline_reason())
                } else if method {
                    GatewayError::Declined(DeclineReason::InvalidPaymentMethod)
                } else {
                    GatewayError::Declined(DeclineReason::ProcessorRefused)
                }
            }
            401 | 403 | 409 | 429 => GatewayError::Unavailable(said),
            _ => GatewayError::Timeout(said),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, json: &str) -> Failure {
        Failure {
            status,
            replayed: false,
            error: serde_json::from_str::<ErrorEnvelope>(json).unwrap().error,
        }
    }

    #[test]
    fn stripe_errors_map_to_the_ports_three_kinds() {
        let declined = failure(
            402,
            r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds"}}"#,
        );
        assert_eq!(
            declined.classify(),
            GatewayError::Declined(DeclineReason::InsufficientFunds)
        );
        let plain = failure(
            402,
            r#"{"error":{"type":"card_error","code":"card_declined"}}"#,
        );
        assert_eq!(
            plain.classify(),
            GatewayError::Declined(DeclineReason::CardDeclined)
        );
        let missing = failure(
            400,
            r#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_method"}}"#,
        );
        assert_eq!(
            missing.classify(),
            GatewayError::Declined(DeclineReason::InvalidPaymentMethod)
        );
        let too_large = failure(
            400,
            r#"{"error":{"type":"invalid_request_error","code":"amount_too_large"}}"#,
        );
        assert_eq!(
            too_large.classify(),
            GatewayError::Declined(DeclineReason::ProcessorRefused)
        );
        for status in [401, 409, 429] {
            let e = failure(status, r#"{"error":{"type":"rate_limit_error"}}"#);
            assert!(
                matches!(e.classify(), GatewayError::Unavailable(_)),
                "{status}"
            );
        }
        let changed = failure(400, r#"{"error":{"type":"idempotency_error"}}"#);
        assert!(matches!(changed.classify(), GatewayError::Timeout(_)));
        for status in [500, 502, 503, 504] {
            let e = failure(status, r#"{"error":{"type":"api_error"}}"#);
            assert!(matches!(e.classify(), GatewayError::Timeout(_)), "{status}");
        }
    }
}
