//! The simulated gateway as an HTTP service, for running it as a process of its own. It
//! speaks the protocol written in [`order_api::gateway`]:
//!
//! - `POST /charges` with an `Idempotency-Key` header and a `ChargeBody`: a `ChargeAnswer`
//!   with its status (`200`, `402`, `503`); a simulated time-out answers `504` only after
//!   `timeout_delay`, so clients with a shorter time-out see a real one.
//! - `POST /refunds` with an `Idempotency-Key` header and a `RefundBody`: a `RefundAnswer`.
//! - `GET /payments/{charge_key}`: where that key's payment stands, a `PaymentAnswer`.
//! - `GET /admin/config`, `PUT /admin/config`: the behaviour, changeable at run time.
//! - `PUT /admin/outage` `{"seconds": 30}`: fail every charge for that long; `DELETE` ends it.
//! - `GET /audit/charges`: the ledger, one entry per idempotency key; `GET /health`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use order_api::gateway::{
    self as gw, Audit, AuditEntry, AuditOutcome, AuditRefund, CaptureAnswer, CaptureBody,
    ChargeAnswer, ChargeBody, Outage, OutageAnswer, PaymentAnswer, RefundAnswer, RefundBody,
};
use order_core::payment::{
    CaptureMethod, CaptureRequest, ChargeRequest, GatewayError, IdempotencyKey, PaymentState,
    RefundReceipt, RefundRequest,
};
use order_core::ports::PaymentGateway;
use order_core::{CustomerId, Money, OrderId, PaymentMethod};
use serde_json::json;

use crate::{SimulatedGateway, SimulationConfig};

pub use order_api::gateway::Behaviour;

/// The simulation `behaviour` describes, or why it describes none.
fn simulation(behaviour: &Behaviour) -> Result<SimulationConfig, crate::ConfigError> {
    SimulationConfig::new(
        behaviour.success_rate,
        Duration::from_millis(behaviour.latency_min_ms)
            ..=Duration::from_millis(behaviour.latency_max_ms),
        behaviour.decline_share,
        behaviour.timeout_share,
    )
}

#[derive(Clone)]
struct ServerState {
    gateway: SimulatedGateway,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// The service's routes over `gateway`, which starts with `behaviour`.
pub fn router(
    gateway: SimulatedGateway,
    behaviour: Behaviour,
) -> Result<Router, crate::ConfigError> {
    gateway.reconfigure(simulation(&behaviour)?);
    let state = ServerState {
        gateway,
        behaviour: Arc::new(Mutex::new(behaviour)),
    };
    Ok(Router::new()
        .route(gw::CHARGES, post(charge))
        .route(gw::REFUNDS, post(refund))
        .route(gw::CAPTURES, post(capture))
        .route(&format!("{}/{{key}}", gw::PAYMENTS), get(payment))
        .route(gw::ADMIN_CONFIG, get(read_config).put(write_config))
        .route(gw::ADMIN_OUTAGE, put(start_outage).delete(end_outage))
        .route(gw::AUDIT_CHARGES, get(audit))
        .route(
            gw::HEALTH,
            get(|| async { Json(json!({"status": "healthy", "service": "payment-gateway-mock"})) }),
        )
        .with_state(state))
}

fn answer(answer: &ChargeAnswer) -> Response {
    let status = StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(answer)).into_response()
}

/// The request's idempotency key, if it has a non-empty one.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(gw::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

/// A simulated time-out keeps the client waiting, so clients see a real one.
async fn keep_waiting_on_timeout<T>(state: &ServerState, result: &Result<T, GatewayError>) {
    if matches!(result, Err(GatewayError::Timeout(_))) {
        let delay = state
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .timeout_delay_ms;
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// The charge `body` asks for under `key`, or what is wrong with it.
fn charge_request(key: &str, body: ChargeBody) -> Result<ChargeRequest, String> {
    let customer_id =
        CustomerId::parse(body.customer_id).map_err(|e| format!("customer_id: {e}"))?;
    let amount = Money::new(body.amount).map_err(|e| format!("amount: {e}"))?;
    let payment_method = body
        .payment_method
        .map(PaymentMethod::parse)
        .transpose()
        .map_err(|e| format!("payment_method: {e}"))?;
    let capture = body
        .capture_method
        .as_deref()
        .map(str::parse::<CaptureMethod>)
        .transpose()
        .map_err(|e| format!("capture_method: {e}"))?
        .unwrap_or_default();
    Ok(ChargeRequest {
        idempotency_key: IdempotencyKey::from_raw(key),
        order_id: OrderId::from_uuid(body.order_id),
        customer_id,
        amount,
        payment_method,
        capture,
    })
}

fn invalid(error: impl Into<String>) -> Response {
    answer(&ChargeAnswer::Invalid {
        error: error.into(),
    })
}

async fn charge(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Json<ChargeBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(key) = idempotency_key(&headers) else {
        return invalid("an Idempotency-Key header is required");
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return invalid(e.body_text()),
    };
    let request = match charge_request(key, body) {
        Ok(request) => request,
        Err(e) => return invalid(e),
    };
    let result = state.gateway.charge(&request).await;
    keep_waiting_on_timeout(&state, &result).await;
    answer(&match result {
        Ok(receipt) => ChargeAnswer::Succeeded {
            transaction_id: receipt.transaction_id,
        },
        Err(GatewayError::Declined(reason)) => ChargeAnswer::Declined {
            reason: reason.as_str().to_owned(),
        },
        Err(GatewayError::Unavailable(error)) => ChargeAnswer::Unavailable { error },
        Err(GatewayError::Timeout(error)) => ChargeAnswer::Timeout { error },
    })
}

/// What every request about an earlier charge (a refund, a capture) carries: its own key
/// (the header), the charge as it was sent under its key, and an amount; or what is wrong.
fn about_a_charge<T>(
    headers: &HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    split: impl FnOnce(T) -> (String, ChargeBody, rust_decimal::Decimal),
) -> Result<(IdempotencyKey, ChargeRequest, Money), String> {
    let key = idempotency_key(headers).ok_or("an Idempotency-Key header is required")?;
    let Json(body) = body.map_err(|e| e.body_text())?;
    let (charge_key, charge, amount) = split(body);
    let amount = Money::new(amount).map_err(|e| format!("amount: {e}"))?;
    let charge = charge_request(&charge_key, charge).map_err(|e| format!("charge.{e}"))?;
    Ok((IdempotencyKey::from_raw(key), charge, amount))
}

fn refund_answer(answer: &RefundAnswer) -> Response {
    let status = StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(answer)).into_response()
}

async fn refund(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Json<RefundBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let parts = about_a_charge(&headers, body, |b| (b.charge_key, b.charge, b.amount));
    let (idempotency_key, charge, amount) = match parts {
        Ok(parts) => parts,
        Err(error) => return refund_answer(&RefundAnswer::Invalid { error }),
    };
    let request = RefundRequest {
        idempotency_key,
        charge,
        payment_id: None,
        amount,
    };
    let result = state.gateway.refund(&request).await;
    keep_waiting_on_timeout(&state, &result).await;
    refund_answer(&match result {
        Ok(RefundReceipt::Refunded { refund_id, amount }) => RefundAnswer::Refunded {
            refund_id,
            amount: amount.amount(),
        },
        Ok(RefundReceipt::NothingCaptured) => RefundAnswer::NothingCaptured,
        // Declined when nothing is left of the capture to give back.
        Err(GatewayError::Declined(reason)) => RefundAnswer::Declined {
            reason: reason.as_str().to_owned(),
        },
        Err(GatewayError::Unavailable(error)) => RefundAnswer::Unavailable { error },
        Err(GatewayError::Timeout(error)) => RefundAnswer::Timeout { error },
    })
}

async fn read_config(State(state): State<ServerState>) -> Json<Behaviour> {
    Json(
        state
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

async fn write_config(
    State(state): State<ServerState>,
    Json(behaviour): Json<Behaviour>,
) -> Response {
    match simulation(&behaviour) {
        Ok(simulation) => {
            state.gateway.reconfigure(simulation);
            *state
                .behaviour
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = behaviour.clone();
            Json(behaviour).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn start_outage(State(state): State<ServerState>, Json(outage): Json<Outage>) -> Response {
    let Ok(length) = Duration::try_from_secs_f64(outage.seconds) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "seconds must be a non-negative number"})),
        )
            .into_response();
    };
    let until = Utc::now() + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
    state.gateway.set_outage_until(Some(until));
    Json(OutageAnswer {
        outage_until: until,
    })
    .into_response()
}

async fn end_outage(State(state): State<ServerState>) -> StatusCode {
    state.gateway.set_outage_until(None);
    StatusCode::NO_CONTENT
}

async fn audit(State(state): State<ServerState>) -> Json<Audit> {
    let charges = state
        .gateway
        .ledger()
        .into_iter()
        .map(|(key, entry)| {
            let outcome = match entry.outcome {
                None => None,
                Some(Ok(receipt)) => Some(AuditOutcome::Succeeded {
                    transaction_id: receipt.transaction_id,
                }),
                Some(Err(e)) => Some(AuditOutcome::Declined {
                    error: e.to_string(),
                }),
            };
            let refund_answers = entry
                .refund_answers
                .into_iter()
                .map(|(key, r)| {
                    let answer = match r {
                        RefundReceipt::Refunded { refund_id, amount } => AuditRefund::Refunded {
                            refund_id,
                            amount: amount.amount(),
                        },
                        RefundReceipt::NothingCaptured => AuditRefund::NothingCaptured,
                    };
                    (key, answer)
                })
                .collect();
            (
                key.as_str().to_owned(),
                AuditEntry {
                    calls: entry.calls,
                    captures: entry.captures,
                    amount: entry.amount.amount(),
                    outcome,
                    refunds: entry.refunds,
                    refund_answers,
                },
            )
        })
        .collect();
    Json(Audit {
        calls: state.gateway.calls(),
        captures: state.gateway.total_captures(),
        refunds: state.gateway.total_refunds(),
        charges,
    })
}

fn capture_answer(answer: &CaptureAnswer) -> Response {
    let status = StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(answer)).into_response()
}

async fn capture(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Json<CaptureBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let parts = about_a_charge(&headers, body, |b| (b.charge_key, b.charge, b.amount));
    let (idempotency_key, charge, amount) = match parts {
        Ok(parts) => parts,
        Err(error) => return capture_answer(&CaptureAnswer::Invalid { error }),
    };
    let request = CaptureRequest {
        idempotency_key,
        charge,
        payment_id: None,
        amount,
    };
    let result = state.gateway.capture(&request).await;
    keep_waiting_on_timeout(&state, &result).await;
    capture_answer(&match result {
        Ok(receipt) => CaptureAnswer::Captured {
            amount: receipt.amount.amount(),
        },
        Err(GatewayError::Declined(reason)) => CaptureAnswer::Declined {
            reason: reason.as_str().to_owned(),
        },
        Err(GatewayError::Unavailable(error)) => CaptureAnswer::Unavailable { error },
        Err(GatewayError::Timeout(error)) => CaptureAnswer::Timeout { error },
    })
}

/// `GET /payments/{key}`: where the payment charged under `key` stands.
async fn payment(
    State(state): State<ServerState>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Response {
    let result = state.gateway.payment(&IdempotencyKey::from_raw(key)).await;
    let answer = match result {
        Ok(PaymentState::NotCharged) => PaymentAnswer::NotCharged,
        Ok(PaymentState::Processing) => PaymentAnswer::Processing,
        Ok(PaymentState::Authorized { payment_id, amount }) => PaymentAnswer::Authorized {
            payment_id,
            amount: amount.amount(),
        },
        Ok(PaymentState::Captured {
            payment_id,
            amount,
            refunded,
        }) => PaymentAnswer::Captured {
            payment_id,
            amount: amount.amount(),
            refunded: refunded.amount(),
        },
        Ok(PaymentState::Declined { reason }) | Err(GatewayError::Declined(reason)) => {
            PaymentAnswer::Declined {
                reason: reason.as_str().to_owned(),
            }
        }
        Err(GatewayError::Unavailable(error)) => PaymentAnswer::Unavailable { error },
        Err(GatewayError::Timeout(error)) => PaymentAnswer::Timeout { error },
    };
    let status = StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(answer)).into_response()
}
