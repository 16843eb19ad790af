//! Reads an `/api` request's whole body, within a deadline, before anything else of it
//! runs: a client that trickles its body holds its own connection, never one of the
//! in-flight permits every client shares, and is cut off with `408` when the time is up.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::Instrument as _;

use crate::http::error::ApiError;
use crate::http::extract::BODY_LIMIT;

/// The middleware: `timeout` for the body, at most [`BODY_LIMIT`] bytes of it (else
/// `413`), then the request goes on with the body in memory.
///
/// All of it runs in a task of its own (in the request's span): a client that hangs up once its request arrived
/// whole (hyper then drops this future) still has its request carried out, never half of
/// it. A request whose body did not arrive whole fails reading it, and does nothing.
pub async fn read_body(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let work = read_then_run(timeout, request, next).instrument(tracing::Span::current());
    match tokio::spawn(work).await {
        Ok(response) => response,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => {
                ApiError::Internal(format!("the request's task ended: {e}").into()).into_response()
            }
        },
    }
}

async fn read_then_run(timeout: Duration, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(timeout, Limited::new(body, BODY_LIMIT).collect()).await;
    match read {
        Err(_) => ApiError::RequestTimeout {
            seconds: timeout.as_secs().max(1),
        }
        .into_response(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into_response()
        }
        Ok(Err(e)) => {
            ApiError::BadRequest(format!("the body could not be read: {e}")).into_response()
        }
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
    }
}
