//! The one error body: every failure, whatever the route, answers with [`ErrorBody`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure an [`ErrorBody`] reports; clients branch on this, never on the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed JSON, or a header or parameter that cannot be read.
    BadRequest,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 408: the body did not arrive in time (`HTTP_BODY_TIMEOUT_SECONDS`).
    RequestTimeout,
    /// 422: some fields are invalid; `fields` lists every one.
    ValidationFailed,
    /// 422: the `Idempotency-Key` was used for a different order.
    IdempotencyKeyReused,
    /// 409: a request with the same `Idempotency-Key` is still in flight.
    RequestInFlight,
    /// 404: no such resource or route.
    NotFound,
    /// 409: the order's status does not allow a cancellation (`current_status` says which).
    OrderNotCancellable,
    /// 409: the order has no authorized payment to capture: it is not `confirmed` with
    /// manual capture, it is being cancelled, it was captured already, or the gateway
    /// refused (the authorization was voided).
    PaymentNotCapturable,
    /// 409: the order's payment cannot be refunded now: it is not `confirmed`, it is being
    /// cancelled, nothing of it was captured, or the gateway refused the refund.
    PaymentNotRefundable,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 503: a dependency is down; retry after `Retry-After` seconds.
    ServiceUnavailable,
    /// 503: too many requests in flight; the request was shed at once, retry after
    /// `Retry-After` seconds.
    Overloaded,
    /// 401: no API key, or one that is malformed, unknown, revoked or expired
    /// (`WWW-Authenticate: Bearer error="invalid_token"`).
    Unauthorized,
    /// 403: the key lacks the scope the route needs (the message names it).
    InsufficientScope,
    /// 403: the key is bound to another customer than the one the request is for.
    Forbidden,
    /// 409: a limit on how many of something one owner has is reached (webhook endpoints
    /// per customer, `WEBHOOK_MAX_ENDPOINTS`); delete one first.
    LimitReached,
    /// 429: this client's rate limit is used up; retry after `Retry-After` seconds (the
    /// `RateLimit-Policy` and `RateLimit` headers say which limit and what is left).
    RateLimited,
    /// 500: a bug or corrupt data; the details are in the service's log.
    InternalError,
    /// A code this version of the contract does not know (a newer service).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::ValidationFailed => "validation_failed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RequestInFlight => "request_in_flight",
            Self::NotFound => "not_found",
            Self::OrderNotCancellable => "order_not_cancellable",
            Self::PaymentNotCapturable => "payment_not_capturable",
            Self::PaymentNotRefundable => "payment_not_refundable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Overloaded => "overloaded",
            Self::LimitReached => "limit_reached",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::InsufficientScope => "insufficient_scope",
            Self::Forbidden => "forbidden",
            Self::InternalError => "internal_error",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldErrorBody {
    /// Path of the field, as `items[0].price`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable kind.
    pub error: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The offending fields, in input order (validation errors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldErrorBody>,
    /// The order's status, when it is why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<crate::orders::OrderStatus>,
}

impl fmt::Display for ErrorBody {
    /// The message, followed by every field error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (i, field) in self.fields.iter().enumerate() {
            f.write_str(if i == 0 { " (" } else { "; " })?;
            write!(f, "{}: {}", field.field, field.message)?;
        }
        if !self.fields.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_code_from_a_newer_service_still_reads() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":"quota_exceeded","message":"slow down"}"#).unwrap();
        assert_eq!(body.error, ErrorCode::Unknown);
        assert_eq!(body.message, "slow down");
    }

    #[test]
    fn a_body_reads_as_its_message_and_fields() {
        let body = ErrorBody {
            error: ErrorCode::ValidationFailed,
            message: "invalid input".into(),
            fields: vec![
                FieldErrorBody {
                    field: "customer_id".into(),
                    message: "must not be empty".into(),
                },
                FieldErrorBody {
                    field: "items".into(),
                    message: "must have at least 1 entries".into(),
                },
            ],
            current_status: None,
        };
        assert_eq!(
            body.to_string(),
            "invalid input (customer_id: must not be empty; items: must have at least 1 entries)"
        );
    }
}
