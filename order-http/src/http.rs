//! The HTTP adapter: the router, its layers, and the routes (by resource) with the OpenAPI
//! document they declare.
//!
//! - [`state`]: what the handlers share; [`extract`]: the extractors every handler takes,
//!   the [`extract::Caller`] among them; [`error`]: the one error type.
//! - [`parse`] (the wire into the domain), [`convert`] (the domain onto the wire),
//!   [`headers`]: the header names.
//! - [`middleware`]: load shedding, authentication, rate limits, the request's span and log
//!   line, request metrics; each takes only its own state.
//! - [`routes`]: orders, keys, webhooks, health, docs; [`mod@openapi`]: what the document says
//!   once for all of them.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use order_api::paths;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::config::{AuthMode, MetricsPlacement};
use error::ApiError;
use headers::REQUEST_ID;
use state::AppState;

pub mod convert;
pub mod error;
pub mod extract;
pub mod headers;
pub mod middleware;
pub mod openapi;
pub mod parse;
pub mod routes;
pub mod server;
pub mod state;

pub use extract::BODY_LIMIT;

/// The routes with the document their operations make, before any state or layer.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::health::router())
        .merge(routes::api())
}

/// The OpenAPI document of the API, as served with `AUTH_MODE=none`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_for(AuthMode::None)
}

/// The OpenAPI document as a process with `mode` serves it.
pub fn openapi_for(mode: AuthMode) -> utoipa::openapi::OpenApi {
    openapi::finish(documented().split_for_parts().1, mode)
}

/// The router with every route, the docs, and the layers, in the order a request meets
/// them: a request id, the request's span, the body limit, then (after routing) its log
/// line and metrics; the `/api/v1` routes then shed load, authenticate and rate-limit.
pub fn router(state: AppState) -> Router {
    // Route layers run in the reverse of the order added: read the body first (so a slow
    // one holds no permit), then shed (before any work), then check the key, then count
    // the request against its client's limit.
    let api = routes::api();
    let api = match &state.rate_limits {
        Some(limits) => api.route_layer(from_fn_with_state(
            Arc::clone(limits),
            middleware::rate_limit::rate_limit,
        )),
        None => api,
    };
    let api = api
        .route_layer(from_fn_with_state(
            state.auth.clone(),
            middleware::auth::authenticate,
        ))
        .route_layer(from_fn_with_state(
            Arc::clone(&state.concurrency),
            middleware::load_shed::shed_load,
        ))
        .route_layer(from_fn_with_state(
            state.body_timeout,
            middleware::body::read_body,
        ));
    let (metrics, mode, auth) = (state.metrics, state.auth_mode(), state.auth.clone());
    let (app, document) = OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::health::router())
        .merge(api)
        .with_state(state)
        .split_for_parts();
    let app = app.merge(routes::docs::router(openapi::finish(document, mode)));
    let app = match metrics {
        // With keys asked for, `/metrics` on the API's port needs `metrics:read`.
        MetricsPlacement::WithApi => app.route(
            paths::METRICS,
            get(crate::telemetry::metrics::serve_metrics)
                .route_layer(from_fn_with_state(auth, middleware::auth::authenticate)),
        ),
        MetricsPlacement::Elsewhere | MetricsPlacement::Off => app,
    };
    let app = app
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let app = if metrics == MetricsPlacement::Off {
        app
    } else {
        app.layer(from_fn(middleware::metrics::track))
    };
    app.layer(from_fn(middleware::span::observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| middleware::span::request_span(req))
                // Nothing is logged in the request's span before routing names it (a span's
                // name is fixed once a log line reads its trace id); `observe` logs its end.
                .on_request(())
                .on_response(())
                // ApiError logs each failure once, at the level it deserves (an expected
                // 503 at WARN); the trace layer must not log it again at ERROR.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use order_api::{ErrorBody, ErrorCode, paths};
    use order_core::memory::{MemoryOrderRepo, MemoryQueue};
    use order_core::ports::{Clock, OrderRepo, PaymentQueue, SystemClock};
    use tower::ServiceExt as _;

    use super::router;
    use super::state::{AppState, DynOrderService};
    use crate::http::middleware::concurrency::AdmissionConfig;

    fn orders() -> DynOrderService {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let repo: Arc<dyn OrderRepo> = Arc::new(MemoryOrderRepo::new());
        let queue: Arc<dyn PaymentQueue> = Arc::new(MemoryQueue::new(Arc::clone(&clock)));
        DynOrderService::new(repo, queue, clock)
    }

    async fn get(state: &AppState, path: &str) -> axum::response::Response {
        router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn with_every_place_taken_api_requests_are_shed_at_once_and_health_still_answers() {
        let state = AppState::new(
            orders(),
            AdmissionConfig::new(1, std::time::Duration::from_secs(1)),
        );
        let held = state.concurrency.acquire().await.unwrap();

        let shed = get(&state, paths::ORDERS).await;

        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(shed.headers().contains_key(header::RETRY_AFTER));
        let body = axum::body::to_bytes(shed.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, ErrorCode::Overloaded);
        assert_eq!(get(&state, paths::HEALTH).await.status(), StatusCode::OK);
        assert_eq!(get(&state, paths::READY).await.status(), StatusCode::OK);

        drop(held);
        assert_eq!(get(&state, paths::ORDERS).await.status(), StatusCode::OK);
        assert_eq!(
            state.concurrency.in_flight(),
            0,
            "a finished request gives its place back"
        );
    }
}
