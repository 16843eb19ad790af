//! The API's one error type: every failure becomes the same JSON shape, and a 5xx never
//! shows its cause (it is logged once instead).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use order_api::{ErrorBody, ErrorCode, FieldErrorBody};
use order_core::ports::{BoxError, RepoError};
use order_core::service::{CaptureError, PlaceError, RefundError};
use order_core::{FieldError, ValidationErrors};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON, or a parameter cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not JSON.
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is over the limit.
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within its deadline.
    #[error("the request's body did not arrive within {seconds} s")]
    RequestTimeout {
        /// The deadline, in seconds.
        seconds: u64,
    },
    /// Some fields are invalid; all are listed.
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The order's status does not allow a cancellation.
    #[error("order {id} is {status} and cannot be cancelled")]
    NotCancellable {
        /// The order.
        id: order_core::OrderId,
        /// Its status.
        status: order_core::OrderStatus,
    },
    /// The order has no authorized payment to capture, or the gateway refused it.
    #[error("{message}")]
    NotCapturable {
        /// The order's status.
        status: order_core::OrderStatus,
        /// Why.
        message: String,
    },
    /// The order's payment cannot be refunded now, or the gateway refused the refund.
    #[error("{message}")]
    NotRefundable {
        /// The order's status.
        status: order_core::OrderStatus,
        /// Why.
        message: String,
    },
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The idempotency key was used for a different order.
    #[error("the Idempotency-Key was already used for a different order")]
    KeyReused,
    /// A request with the same idempotency key is still in flight.
    #[error("a request with this Idempotency-Key is still in flight; retry shortly")]
    InFlight,
    /// More arrives than the process serves: shed at once, retry after `retry_after`
    /// seconds (how long the queue in front of it takes to drain).
    #[error("more requests arrive than this process serves; retry after {retry_after} s")]
    Overloaded {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// No API key, or one that is no good (which, the caller is not told).
    #[error("a valid API key is required: send Authorization: Bearer <key>")]
    Unauthorized(order_core::access::AuthError),
    /// The key lacks the scope the route needs.
    #[error("this API key lacks the scope `{0}`")]
    InsufficientScope(order_core::access::Scope),
    /// The key may not act for the customer the request is for.
    #[error("{0}")]
    Forbidden(String),
    /// The caller has as many of something as it may have.
    #[error("{0}")]
    LimitReached(String),
    /// The client's rate limit is used up.
    #[error(
        "rate limit `{policy}` exceeded ({per_second} requests per second, {burst} at once); retry after {retry_after} s"
    )]
    RateLimited {
        /// The limit's name (`writes` or `reads`).
        policy: &'static str,
        /// Its rate.
        per_second: f64,
        /// Its burst.
        burst: u32,
        /// Whole seconds until a request is allowed again (never 0).
        retry_after: u64,
    },
    /// A dependency is down; try again later.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug or corrupt data.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        Self::Validation(e.errors().to_vec())
    }
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::KeyReused => Self::KeyReused,
            PlaceError::InFlight => Self::InFlight,
            PlaceError::Repo(e) => e.into(),
        }
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let message = e.to_string();
        match e {
            CaptureError::NotFound(id) => Self::NotFound(format!("order {id} not found")),
            CaptureError::Amount { authorized } => Self::Validation(vec![FieldError::new(
                "amount",
                order_core::Invalid::OutOfRange {
                    min: "0.01".into(),
                    max: authorized.to_string(),
                },
            )]),
            CaptureError::NotCapturable(order) => {
                let message = match order.captured {
                    Some(c) if c.captured_at.is_some() => {
                        format!("order {} was captured already ({})", order.id, c.amount)
                    }
                    Some(c) => format!(
                        "order {} is being captured for {}; ask again for that amount",
                        order.id, c.amount
                    ),
                    None => message,
                };
                Self::NotCapturable {
                    status: order.status,
                    message,
                }
            }
            CaptureError::Declined(_, order) => Self::NotCapturable {
                status: order.status,
                message,
            },
            CaptureError::Gateway(e) => Self::Unavailable(Box::new(e)),
            CaptureError::NoGateway => Self::Internal(message.into()),
            CaptureError::Key(e) => e.into(),
            CaptureError::Repo(e) => e.into(),
        }
    }
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        let message = e.to_string();
        match e {
            RefundError::NotFound(id) => Self::NotFound(format!("order {id} not found")),
            // What the order holds decides these, not the request's shape: conflicts.
            RefundError::Invalid { errors, order } => Self::NotRefundable {
                status: order.status,
                message: format!("not refundable from order {}: {errors}", order.id),
            },
            RefundError::Exceeds { order, .. }
            | RefundError::NotRefundable(order)
            | RefundError::Declined(_, order) => Self::NotRefundable {
                status: order.status,
                message,
            },
            RefundError::Gateway(e) => Self::Unavailable(Box::new(e)),
            RefundError::NoGateway => Self::Internal(message.into()),
            RefundError::Key(e) => e.into(),
            RefundError::Repo(e) => e.into(),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        if let RepoError::NotFound(id) = e {
            return Self::NotFound(format!("order {id} not found"));
        }
        if e.is_retryable() {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            Self::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout),
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::NotCancellable { .. } => (StatusCode::CONFLICT, ErrorCode::OrderNotCancellable),
            Self::NotCapturable { .. } => (StatusCode::CONFLICT, ErrorCode::PaymentNotCapturable),
            Self::NotRefundable { .. } => (StatusCode::CONFLICT, ErrorCode::PaymentNotRefundable),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed),
            Self::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
            ),
            Self::InFlight => (StatusCode::CONFLICT, ErrorCode::RequestInFlight),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable,
            ),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
            Self::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded),
            Self::LimitReached(_) => (StatusCode::CONFLICT, ErrorCode::LimitReached),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::InsufficientScope(_) => (StatusCode::FORBIDDEN, ErrorCode::InsufficientScope),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
        };
        match &self {
            Self::Unavailable(source) => tracing::warn!(error = ?source, "dependency unavailable"),
            Self::Internal(source) => tracing::error!(error = ?source, "request failed"),
            _ => {}
        }
        let fields = match &self {
            Self::Validation(errors) => errors
                .iter()
                .map(|e| FieldErrorBody {
                    field: e.field.clone(),
                    message: e.reason.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let current_status = match &self {
            Self::NotCancellable { status, .. }
            | Self::NotCapturable { status, .. }
            | Self::NotRefundable { status, .. } => Some(crate::http::convert::status(*status)),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
            fields,
            current_status,
        };
        let retry = matches!(
            self,
            Self::Unavailable(_) | Self::InFlight | Self::Overloaded { .. }
        );
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after, .. } | Self::Overloaded { retry_after } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        } else if let Self::Unauthorized(_) = &self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        } else if let Self::InsufficientScope(scope) = &self {
            let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        } else if retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
