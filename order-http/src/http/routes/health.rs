//! Liveness, readiness and what the service is: open to every caller, and never shed.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

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

/// How long a readiness answer is shared.
const READY_FOR: Duration = Duration::from_secs(1);

/// The last readiness answer and when it was made: however often `/health/ready` is asked
/// (it needs no key), a process probes its dependencies at most once a second, and
/// one probe at a time; callers meanwhile share the answer.
#[derive(Debug, Default)]
pub struct ReadinessCache(tokio::sync::Mutex<Option<(Instant, ReadyResponse)>>);

impl ReadinessCache {
    /// The answer of the last `probe` if it is fresh, else of a new one.
    async fn answer<F: Future<Output = ReadyResponse>>(
        &self,
        probe: impl FnOnce() -> F,
    ) -> ReadyResponse {
        // Held across the probe: concurrent callers wait for it, then share its answer.
        let mut last = self.0.lock().await;
        if let Some((_, answer)) = last.as_ref().filter(|(at, _)| at.elapsed() < READY_FOR) {
            return answer.clone();
        }
        let answer = probe().await;
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

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
    let body = state
        .readiness
        .answer(|| async {
            let (store, queue) = tokio::join!(
                tokio::time::timeout(READY_TIMEOUT, state.orders.check_store()),
                tokio::time::timeout(READY_TIMEOUT, state.orders.check_queue()),
            );
            let (database, queue) = (describe(store), describe(queue));
            let is_ready = database == "ok" && queue == "ok";
            ReadyResponse {
                status: if is_ready {
                    Readiness::Ready
                } else {
                    Readiness::NotReady
                },
                database,
                queue,
            }
        })
        .await;
    let status = if body.status == Readiness::Ready {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_is_probed_at_most_once_a_second_however_often_it_is_asked() {
        let cache = ReadinessCache::default();
        let probes = AtomicUsize::new(0);
        let probe = || async {
            probes.fetch_add(1, Ordering::SeqCst);
            // A slow dependency: every caller meanwhile waits for this one probe.
            tokio::time::sleep(Duration::from_millis(300)).await;
            ReadyResponse {
                status: Readiness::Ready,
                database: "ok".into(),
                queue: "ok".into(),
            }
        };
        let asked: Vec<_> = (0..50).map(|_| cache.answer(probe)).collect();
        let answers = futures::future::join_all(asked).await;
        assert!(answers.iter().all(|a| a.status == Readiness::Ready));
        assert_eq!(
            probes.load(Ordering::SeqCst),
            1,
            "one probe for fifty callers"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        cache.answer(probe).await;
        assert_eq!(probes.load(Ordering::SeqCst), 1, "still fresh");
        tokio::time::advance(READY_FOR).await;
        cache.answer(probe).await;
        assert_eq!(
            probes.load(Ordering::SeqCst),
            2,
            "a second later, probed again"
        );
    }
}
