//! The routes, by resource: each module's `router()` declares its routes once, with their
//! handlers and their OpenAPI operations beside them ([`utoipa_axum`]).
//!
//! A handler is a translation: extractors whose rejection is [`ApiError`] (the [`Caller`]
//! among them, so the signature says who may call and for whom), one parse into the domain,
//! one call into a service, one response in `order-api`'s types.
//!
//! [`Caller`]: crate::http::extract::Caller

use std::future::Future;

use axum::Extension;
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;

use super::error::ApiError;
use super::middleware::load_shed::InFlight;
use super::state::AppState;

pub mod captures;
pub mod docs;
pub mod gateway_events;
pub mod health;
pub mod keys;
pub mod orders;
pub mod refunds;
pub mod webhooks;

/// The `/api/v1` routes: behind load shedding, authentication and rate limits.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(orders::router())
        .merge(gateway_events::router())
        .merge(keys::router())
        .merge(webhooks::router())
}

/// Runs `work` on its own task and waits for it: if the client hangs up and the handler is
/// dropped, the work still runs to the end, holding the request's in-flight permit until it
/// does.
pub async fn finish_detached<T: Send + 'static>(
    permit: Option<Extension<InFlight>>,
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(
        async move {
            let _permit = permit;
            work.await
        }
        .instrument(tracing::Span::current()),
    )
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
}

/// As [`finish_detached`], but answers with what `work` sends on `answer` as soon as it
/// sends it, while `work` goes on to its end on its own task (holding the permit); if `work`
/// ends without sending, with its error.
pub async fn answer_early<T: Send + 'static>(
    permit: Option<Extension<InFlight>>,
    answer: tokio::sync::oneshot::Receiver<T>,
    work: impl Future<Output = Result<(), ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    let work = tokio::spawn(
        async move {
            let _permit = permit;
            work.await
        }
        .instrument(tracing::Span::current()),
    );
    if let Ok(answer) = answer.await {
        return Ok(answer);
    }
    match work.await {
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Err(ApiError::Internal(
            "the request's work ended without an answer".into(),
        )),
        Err(e) => Err(ApiError::Internal(Box::new(e))),
    }
}
