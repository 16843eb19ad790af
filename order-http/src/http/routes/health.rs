//! Liveness, readiness and what the service is: open to every caller, and never shed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use order_api::health::{HealthResponse, Readiness, ReadyResponse, SERVICE_NAME, ServiceInfo};
use order_api::paths;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::state::AppState;

/// How long readiness waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The health routes and the service's root.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(health))
        .routes(routes!(ready))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = paths::HEALTH, responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse::healthy())
}

/// What a dependency check says: `ok`, what failed, or that it did not answer.
fn describe<E: std::fmt::Display>(
    checked: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> String {
    match checked {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    }
}

/// Readiness: the store and the queue answer within 2 s.
#[utoipa::path(
    get, path = paths::READY,
    responses((status = 200, body = ReadyResponse), (status = 503, body = ReadyResponse))
)]
async fn ready(State(state): State<AppState>) -> Response {
    let (store, queue) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.orders.check_store()),
        tokio::time::timeout(READY_TIMEOUT, state.orders.check_queue()),
    );
    let (database, queue) = (describe(store), describe(queue));
    let is_ready = database == "ok" && queue == "ok";
    let body = ReadyResponse {
        status: if is_ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        },
        database,
        queue,
    };
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// What this service is and where its docs are.
#[utoipa::path(get, path = paths::ROOT, responses((status = 200, body = ServiceInfo)))]
async fn root() -> Json<ServiceInfo> {
    Json(ServiceInfo {
        service: SERVICE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        docs: paths::DOCS.into(),
        redoc: paths::REDOC.into(),
        openapi: paths::OPENAPI.into(),
        health: paths::HEALTH.into(),
        ready: paths::READY.into(),
    })
}
