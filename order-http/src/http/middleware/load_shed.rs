//! Load shedding: an `/api` request runs only with a place from the process's
//! [`AdmissionQueue`] (waiting its turn if need be); a request it refuses is answered `503`
//! with `Retry-After` at once.
//! Health checks and docs are not behind it, so a process under overload still says it is
//! alive.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::concurrency::{AdmissionQueue, Permit};
use crate::http::error::ApiError;

/// The middleware: admits the request with a place (once its turn comes), or sheds it.
pub async fn shed_load(
    State(concurrency): State<Arc<AdmissionQueue>>,
    mut request: Request,
    next: Next,
) -> Response {
    match concurrency.acquire().await {
        Ok(permit) => {
            request.extensions_mut().insert(InFlight(Arc::new(permit)));
            next.run(request).await
        }
        Err(refused) => ApiError::Overloaded {
            retry_after: refused.retry_after,
        }
        .into_response(),
    }
}

/// The place of one admitted `/api` request. Work that outlives its request (see
/// [`crate::http::routes::finish_detached`]) holds a clone, so a client that hangs up does
/// not free its place while the work it started is still running: hang-ups cannot pile up
/// unbounded work.
#[derive(Clone)]
pub struct InFlight(#[expect(dead_code, reason = "held, never read")] Arc<Permit>);
