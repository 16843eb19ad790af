//! Each request's span and its one log line: the span is made before routing (continuing an
//! incoming `traceparent`), named after the route template once routing found it, and the
//! request's completion is logged once in it at INFO, with the method, route template,
//! status, latency and request id (the span's), and the trace it belongs to.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

use crate::http::headers::REQUEST_ID;
use crate::telemetry::traces::{self, TRACED, UNTRACED, continue_from, incoming, sampled};

/// The span of one HTTP request: named after its route once routing found it, continuing
/// the caller's trace when the request carries a valid `traceparent`.
pub fn request_span<B>(req: &axum::http::Request<B>) -> Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let parent = incoming(req.headers());
    macro_rules! span {
        ($target:expr) => {
            tracing::info_span!(
                target: $target,
                "request",
                method = %req.method(),
                uri = %req.uri(),
                request_id = %id,
                otel.name = tracing::field::Empty,
                otel.kind = "server",
                http.route = tracing::field::Empty,
            )
        };
    }
    if !sampled(parent.as_ref()) {
        return span!(UNTRACED);
    }
    let span = span!(TRACED);
    if let Some(parent) = &parent {
        continue_from(&span, parent);
    }
    span
}

/// Names the request's span after its route template (`POST /api/v1/orders/{order_id}`), as
/// trace back ends group spans by name (the raw path stays in `uri`), and logs the request's
/// completion at `debug`: a line per request at the default `info` cost the process a third
/// of what it accepted under a flood (BENCHMARKS.md, "Overload"), and the requests are
/// counted and timed in `/metrics` whatever the level; failures log themselves (`ApiError`).
/// While traces are exported, JSON log lines carry the span's `trace_id` and `span_id` (the
/// log format adds them); while they are not, this line carries those of an incoming
/// `traceparent`, so it still leads to the caller's trace.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    if traces::enabled() {
        if let Some(route) = &route {
            let span = Span::current();
            span.record("otel.name", format!("{method} {}", route.as_str()));
            span.record("http.route", route.as_str());
        }
    }
    let caller = (!traces::enabled())
        .then(|| incoming(request.headers()))
        .flatten();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(trace) = caller {
        tracing::debug!(
            %method, route, status, latency_ms,
            trace_id = %trace.trace_id_hex(), span_id = %trace.parent_id_hex(),
            "request completed"
        );
    } else {
        tracing::debug!(%method, route, status, latency_ms, "request completed");
    }
    response
}
