//! The simulated gateway as an HTTP service, for running it as a process of its own.
//!
//! - `POST /charges` with an `Idempotency-Key` header and `{"order_id", "customer_id",
//!   "amount"}`: `200 {"status":"succeeded","transaction_id"}`, `402 {"status":"declined",
//!   "reason"}`, `503 {"status":"unavailable","error"}`; a simulated time-out answers `504`
//!   only after `timeout_delay`, so clients with a shorter time-out see a real one.
//! - `GET /admin/config`, `PUT /admin/config`: the behaviour, changeable at run time.
//! - `PUT /admin/outage` `{"seconds": 30}`: fail every charge for that long; `DELETE` ends it.
//! - `GET /audit/charges`: the ledger, one entry per idempotency key; `GET /health`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use order_core::payment::{ChargeRequest, GatewayError, IdempotencyKey};
use order_core::ports::PaymentGateway;
use order_core::{CustomerId, Money, OrderId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{SimulatedGateway, SimulationConfig};

/// The behaviour, as the admin endpoint reads and writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl Behaviour {
    fn simulation(&self) -> Result<SimulationConfig, crate::ConfigError> {
        SimulationConfig::new(
            self.success_rate,
            Duration::from_millis(self.latency_min_ms)..=Duration::from_millis(self.latency_max_ms),
            self.decline_share,
            self.timeout_share,
        )
    }
}

impl Default for Behaviour {
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
    gateway.reconfigure(behaviour.simulation()?);
    let state = ServerState {
        gateway,
        behaviour: Arc::new(Mutex::new(behaviour)),
    };
    Ok(Router::new()
        .route("/charges", post(charge))
        .route("/admin/config", get(read_config).put(write_config))
        .route("/admin/outage", put(start_outage).delete(end_outage))
        .route("/audit/charges", get(audit))
        .route(
            "/health",
            get(|| async { Json(json!({"status": "healthy", "service": "payment-gateway-mock"})) }),
        )
        .with_state(state))
}

/// A charge as the wire carries it.
#[derive(Debug, Deserialize)]
struct ChargeBody {
    order_id: OrderId,
    customer_id: CustomerId,
    amount: Money,
}

fn problem(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

async fn charge(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Json<ChargeBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            json!({"status": "invalid", "error": "an Idempotency-Key header is required"}),
        );
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                json!({"status": "invalid", "error": e.body_text()}),
            );
        }
    };
    let request = ChargeRequest {
        idempotency_key: IdempotencyKey::from_raw(key),
        order_id: body.order_id,
        customer_id: body.customer_id,
        amount: body.amount,
    };
    match state.gateway.charge(&request).await {
        Ok(receipt) => problem(
            StatusCode::OK,
            json!({"status": "succeeded", "transaction_id": receipt.transaction_id}),
        ),
        Err(GatewayError::Declined(reason)) => problem(
            StatusCode::PAYMENT_REQUIRED,
            json!({"status": "declined", "reason": reason.as_str()}),
        ),
        Err(GatewayError::Unavailable(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "error": e}),
        ),
        Err(GatewayError::Timeout(e)) => {
            let delay = state
                .behaviour
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .timeout_delay_ms;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            problem(
                StatusCode::GATEWAY_TIMEOUT,
                json!({"status": "timeout", "error": e}),
            )
        }
    }
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
    match behaviour.simulation() {
        Ok(simulation) => {
            state.gateway.reconfigure(simulation);
            *state
                .behaviour
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = behaviour.clone();
            Json(behaviour).into_response()
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": e.to_string()}),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Outage {
    seconds: f64,
}

async fn start_outage(State(state): State<ServerState>, Json(outage): Json<Outage>) -> Response {
    let Ok(length) = Duration::try_from_secs_f64(outage.seconds) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "seconds must be a non-negative number"}),
        );
    };
    let until = Utc::now() + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
    state.gateway.set_outage_until(Some(until));
    Json(json!({"outage_until": until})).into_response()
}

async fn end_outage(State(state): State<ServerState>) -> StatusCode {
    state.gateway.set_outage_until(None);
    StatusCode::NO_CONTENT
}

async fn audit(State(state): State<ServerState>) -> Json<serde_json::Value> {
    let ledger: BTreeMap<String, serde_json::Value> = state
        .gateway
        .ledger()
        .into_iter()
        .map(|(key, entry)| {
            let outcome = match &entry.outcome {
                None => json!(null),
                Some(Ok(receipt)) => json!({"status": "succeeded", "transaction_id": receipt.transaction_id}),
                Some(Err(e)) => json!({"status": "declined", "error": e.to_string()}),
            };
            (
                key.as_str().to_owned(),
                json!({"calls": entry.calls, "captures": entry.captures, "amount": entry.amount.to_string(), "outcome": outcome}),
            )
        })
        .collect();
    Json(json!({
        "calls": state.gateway.calls(),
        "captures": state.gateway.total_captures(),
        "charges": ledger,
    }))
}
