//! # order-gateway-http
//!
//! [`HttpGateway`]: the [`PaymentGateway`] port over HTTP, for a gateway that speaks the
//! protocol written in [`order_api::gateway`] (as `order-gateway-mock`'s server does):
//! `POST {base}/charges` with an `Idempotency-Key` header and a [`ChargeBody`].
//!
//! Outcomes map to the port's three kinds:
//! - `200` captured; `402` declined (final);
//! - a refused connection, `503` or `429`: nothing was processed (retryable);
//! - a client time-out, a connection lost after sending, `504`, any other `5xx` or an
//!   unreadable answer: the charge may have happened (ambiguous, retried with the same key).
//!
//! Refunds (`POST {base}/refunds`, a `RefundBody`) are classified the same way: `200`
//! refunded or nothing captured (the charge key is then void).
//!
//! Look-ups (`GET {base}/payments/{charge_key}`) answer `200` with where the payment
//! stands; other statuses are classified as a charge's are.
//!
//! Each call runs in a client span (`gateway charge`, `gateway refund`); with
//! [`HttpGateway::with_trace_context`] it also sends that span's W3C `traceparent`.

use std::time::Duration;

use async_trait::async_trait;
use order_api::gateway::{
    CAPTURES, CHARGES, CaptureAnswer, CaptureBody, ChargeAnswer, ChargeBody, IDEMPOTENCY_KEY,
    PAYMENTS, PaymentAnswer, REFUNDS, RefundAnswer, RefundBody,
};
use order_core::Money;
use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, ChargeReceipt, ChargeRequest, DeclineReason,
    GatewayError, LookupRequest, PaymentState, RefundReceipt, RefundRequest,
};
use order_core::ports::PaymentGateway;
use order_core::trace::{TRACEPARENT, TraceParent};
use tracing::Instrument as _;

/// Where the trace context of the current span comes from: the `traceparent` a call sends
/// so the gateway's work joins the trace (`None`: send none).
pub type TraceContext = fn() -> Option<TraceParent>;

/// [`PaymentGateway`] calling an HTTP payment gateway.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    client: reqwest::Client,
    charges: String,
    refunds: String,
    captures: String,
    payments: reqwest::Url,
    trace: Option<TraceContext>,
}

/// Why an [`HttpGateway`] could not be built.
#[derive(Debug)]
pub struct BuildError(String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

fn decline_reason(reason: &str) -> DeclineReason {
    DeclineReason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .unwrap_or(DeclineReason::CardDeclined)
}

/// What a request that got no answer means: refused before anything was sent, nothing
/// can have happened (retryable); otherwise it may have (ambiguous).
fn unsent(e: &reqwest::Error) -> GatewayError {
    if e.is_connect() {
        GatewayError::Unavailable(format!("cannot reach the gateway: {e}"))
    } else if e.is_timeout() {
        GatewayError::Timeout(format!("no answer in time: {e}"))
    } else {
        GatewayError::Timeout(format!("connection lost: {e}"))
    }
}

/// What an error status means when the answer says nothing more: `429` and `503` were not
/// processed (retryable), another `4xx` was refused before processing (retryable: the
/// worker's breaker and backoff pace it), anything else may have been processed.
fn failed(status: u16, said: String) -> GatewayError {
    match status {
        429 | 503 | 400..=499 => GatewayError::Unavailable(said),
        _ => GatewayError::Timeout(said),
    }
}

/// The body of `request`'s charge.
fn charge_body(request: &ChargeRequest) -> ChargeBody {
    ChargeBody {
        order_id: request.order_id.as_uuid(),
        customer_id: request.customer_id.to_string(),
        amount: request.amount.amount(),
        payment_method: request.payment_method.as_ref().map(ToString::to_string),
        capture_method: (request.capture == CaptureMethod::Manual)
            .then(|| CaptureMethod::Manual.as_str().to_owned()),
    }
}

/// The most of a gateway's answer that is read: an answer is a small JSON object.
pub const ANSWER_LIMIT_BYTES: usize = 64 * 1024;

/// The answer's JSON, if it is readable within [`ANSWER_LIMIT_BYTES`] (a longer one is not
/// read to its end, and counts as unreadable).
async fn read_answer<T: serde::de::DeserializeOwned>(mut response: reqwest::Response) -> Option<T> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > ANSWER_LIMIT_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).ok()
}

impl HttpGateway {
    /// A gateway at `base_url` (such as `http://127.0.0.1:8100`) whose charges time out after
    /// `timeout` (an ambiguous outcome).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, BuildError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(BuildError(format!(
                "expected an http:// or https:// URL, got {base_url:?}"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(512)
            // A gateway's answer is its own: never one from wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        let payments =
            reqwest::Url::parse(&format!("{}{PAYMENTS}", base_url.trim_end_matches('/')))
                .map_err(|e| BuildError(format!("{base_url:?} is not a URL: {e}")))?;
        Ok(Self {
            client,
            charges: format!("{}{CHARGES}", base_url.trim_end_matches('/')),
            refunds: format!("{}{REFUNDS}", base_url.trim_end_matches('/')),
            captures: format!("{}{CAPTURES}", base_url.trim_end_matches('/')),
            payments,
            trace: None,
        })
    }

    /// The same gateway, sending each call's trace context (read with `trace` inside the
    /// call's span) as a W3C `traceparent` header.
    #[must_use]
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// A `POST` of `body` to `url` under the idempotency key `key`, in the current trace.
    async fn post(
        &self,
        url: &str,
        key: &str,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, GatewayError> {
        let mut request = self.client.post(url).header(IDEMPOTENCY_KEY, key);
        if let Some(parent) = self.trace.and_then(|current| current()) {
            request = request.header(TRACEPARENT, parent.to_string());
        }
        request.json(body).send().await.map_err(|e| unsent(&e))
    }

    async fn charge_once(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let body = charge_body(request);
        let response = self
            .post(&self.charges, request.idempotency_key.as_str(), &body)
            .await?;

        let status = response.status().as_u16();
        let answer: Option<ChargeAnswer> = read_answer(response).await;
        let said = |default: &str| match &answer {
            Some(
                ChargeAnswer::Unavailable { error }
                | ChargeAnswer::Timeout { error }
                | ChargeAnswer::Invalid { error },
            ) => error.clone(),
            _ => format!("{default} (HTTP {status})"),
        };
        match (status, &answer) {
            (200 | 201, Some(ChargeAnswer::Succeeded { transaction_id })) => Ok(ChargeReceipt {
                transaction_id: transaction_id.clone(),
            }),
            (200 | 201, _) => Err(GatewayError::Timeout(
                "captured, but the answer was unreadable".into(),
            )),
            (402, Some(ChargeAnswer::Declined { reason })) => {
                Err(GatewayError::Declined(decline_reason(reason)))
            }
            (402, _) => Err(GatewayError::Declined(DeclineReason::CardDeclined)),
            _ => Err(failed(status, said("the gateway did not charge"))),
        }
    }

    async fn refund_once(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let body = RefundBody {
            charge_key: request.charge_key().as_str().to_owned(),
            charge: charge_body(&request.charge),
            amount: request.amount.amount(),
        };
        let response = self
            .post(&self.refunds, request.idempotency_key.as_str(), &body)
            .await?;
        let status = response.status().as_u16();
        let answer: Option<RefundAnswer> = read_answer(response).await;
        match answer {
            Some(RefundAnswer::Refunded { refund_id, amount }) if status == 200 => {
                let amount = Money::new(amount).map_err(|e| {
                    GatewayError::Timeout(format!("refunded, but the amount is unreadable: {e}"))
                })?;
                Ok(RefundReceipt::Refunded { refund_id, amount })
            }
            Some(RefundAnswer::NothingCaptured) if status == 200 => {
                Ok(RefundReceipt::NothingCaptured)
            }
            Some(RefundAnswer::Declined { reason }) if status == 402 => {
                Err(GatewayError::Declined(decline_reason(&reason)))
            }
            Some(
                RefundAnswer::Unavailable { error }
                | RefundAnswer::Timeout { error }
                | RefundAnswer::Invalid { error },
            ) => Err(failed(status, error)),
            _ if status == 200 => Err(GatewayError::Timeout(
                "refunded, but the answer was unreadable".into(),
            )),
            _ => Err(failed(
                status,
                format!("the gateway did not refund (HTTP {status})"),
            )),
        }
    }

    async fn lookup_once(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        let mut url = self.payments.clone();
        url.path_segments_mut()
            .map_err(|()| GatewayError::Unavailable("the gateway's URL takes no path".into()))?
            .push(request.charge_key().as_str());
        let mut call = self.client.get(url);
        if let Some(parent) = self.trace.and_then(|current| current()) {
            call = call.header(TRACEPARENT, parent.to_string());
        }
        let response = call.send().await.map_err(|e| unsent(&e))?;
        let status = response.status().as_u16();
        let answer: Option<PaymentAnswer> = read_answer(response).await;
        let money = |amount| {
            Money::new(amount)
                .map_err(|e| GatewayError::Timeout(format!("an unreadable amount: {e}")))
        };
        match answer {
            Some(PaymentAnswer::NotCharged) if status == 200 => Ok(PaymentState::NotCharged),
            Some(PaymentAnswer::Processing) if status == 200 => Ok(PaymentState::Processing),
            Some(PaymentAnswer::Authorized { payment_id, amount }) if status == 200 => {
                Ok(PaymentState::Authorized {
                    payment_id,
                    amount: money(amount)?,
                })
            }
            Some(PaymentAnswer::Captured {
                payment_id,
                amount,
                refunded,
            }) if status == 200 => Ok(PaymentState::Captured {
                payment_id,
                amount: money(amount)?,
                refunded: money(refunded)?,
            }),
            Some(PaymentAnswer::Declined { reason }) if status == 200 => {
                Ok(PaymentState::Declined {
                    reason: decline_reason(&reason),
                })
            }
            Some(
                PaymentAnswer::Unavailable { error }
                | PaymentAnswer::Timeout { error }
                | PaymentAnswer::Invalid { error },
            ) => Err(failed(status, error)),
            _ => Err(failed(
                status,
                format!("the gateway did not say where the payment stands (HTTP {status})"),
            )),
        }
    }

    async fn capture_once(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        let body = CaptureBody {
            charge_key: request.charge_key().as_str().to_owned(),
            charge: charge_body(&request.charge),
            amount: request.amount.amount(),
        };
        let response = self
            .post(&self.captures, request.idempotency_key.as_str(), &body)
            .await?;
        let status = response.status().as_u16();
        let answer: Option<CaptureAnswer> = read_answer(response).await;
        match answer {
            Some(CaptureAnswer::Captured { amount }) if status == 200 => {
                let amount = Money::new(amount).map_err(|e| {
                    GatewayError::Timeout(format!("captured, but the amount is unreadable: {e}"))
                })?;
                Ok(CaptureReceipt { amount })
            }
            Some(CaptureAnswer::Declined { reason }) if status == 402 => {
                Err(GatewayError::Declined(decline_reason(&reason)))
            }
            Some(
                CaptureAnswer::Unavailable { error }
                | CaptureAnswer::Timeout { error }
                | CaptureAnswer::Invalid { error },
            ) => Err(failed(status, error)),
            _ if status == 200 => Err(GatewayError::Timeout(
                "captured, but the answer was unreadable".into(),
            )),
            _ => Err(failed(
                status,
                format!("the gateway did not capture (HTTP {status})"),
            )),
        }
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway charge",
            otel.name = "POST /charges",
            otel.kind = "client",
            order_id = %request.order_id,
        );
        self.charge_once(request).instrument(span).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway refund",
            otel.name = "POST /refunds",
            otel.kind = "client",
            order_id = %request.order_id(),
        );
        self.refund_once(request).instrument(span).await
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway capture",
            otel.name = "POST /captures",
            otel.kind = "client",
            order_id = %request.charge.order_id,
        );
        self.capture_once(request).instrument(span).await
    }

    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        let span = tracing::info_span!(
            "gateway lookup",
            otel.name = "GET /payments/{charge_key}",
            otel.kind = "client",
            order_id = %request.charge.order_id,
        );
        self.lookup_once(request).instrument(span).await
    }
}
