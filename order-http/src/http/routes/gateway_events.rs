//! Stripe's events about payments (`PAYMENT_GATEWAY=stripe` with `STRIPE_WEBHOOK_SECRET`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use order_api::ErrorBody;
use order_api::paths;
use order_gateway_stripe::events::{self, DEFAULT_TOLERANCE_SECONDS};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::http::extract::BODY_LIMIT;
use crate::http::state::AppState;

/// The route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_event))
}

/// Takes an event Stripe posts to its webhook endpoint: checked against
/// `STRIPE_WEBHOOK_SECRET` (`Stripe-Signature`: `t=`, one or more `v1=` HMAC-SHA256 of
/// `t.payload`, five minutes of tolerance), and taken once per event id. An event about a
/// payment of one of our orders (its object's `metadata[order_id]`) makes a worker ask
/// Stripe about the order at once, instead of at its next scheduled attempt: a
/// `payment_intent.succeeded` for an order whose last attempt timed out settles it in
/// seconds. The event's word is never the outcome, so events that arrive twice, late or out
/// of order change nothing Stripe's own answer would not. `200` taken (or already taken, or
/// about nothing of ours); `400` a missing, malformed, stale or unmatched signature; `404`
/// when the service takes no events from Stripe.
#[utoipa::path(
    post, path = paths::GATEWAY_EVENTS_STRIPE,
    request_body(content = serde_json::Value, description = "A Stripe event, as Stripe sends it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]")),
    responses(
        (status = 200, description = "Taken, or already taken, or about nothing of ours"),
        (status = 400, description = "The signature is missing, malformed, stale or does not match", body = ErrorBody),
        (status = 404, description = "This service takes no events from Stripe", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn stripe_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("a Stripe-Signature header is required".into()))?;
    if state.stripe_event_secrets.is_empty() {
        return Err(ApiError::NotFound(
            "this service takes no events from Stripe (STRIPE_WEBHOOK_SECRET)".into(),
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let now = chrono::Utc::now().timestamp();
    let event = events::verify(
        &body,
        Some(signature),
        &state.stripe_event_secrets,
        now,
        DEFAULT_TOLERANCE_SECONDS,
    )
    .map_err(|e| ApiError::BadRequest(format!("Stripe event refused: {e}")))?;
    let order = event
        .order_id()
        .filter(|_| event.concerns_payment())
        .and_then(|id| id.parse::<order_core::OrderId>().ok());
    let Some(order) = order else {
        return Ok(taken("about nothing of ours"));
    };
    if !state.orders.first_event(&event.id).await? {
        return Ok(taken("already taken"));
    }
    tracing::info!(event = %event.id, kind = %event.kind, order_id = %order, "Stripe says the order's payment changed");
    state.orders.hasten(order).await?;
    Ok(taken("taken"))
}

fn taken(what: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({ "received": true, "result": what })),
    )
        .into_response()
}
