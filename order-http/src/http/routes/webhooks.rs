//! The webhook routes: endpoints, their delivery attempts, secret rotation and replay.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use order_api::webhooks::{
    CreatedWebhookEndpoint, DeliveryAttemptList, DeliveryAttemptResponse, RedeliverResponse,
    RotateSecretRequest, RotatedSecret, WebhookEndpointList, WebhookEndpointResponse,
};
use order_api::{ErrorBody, paths};
use order_core::webhook::{DeliveryAttempt, Endpoint, EndpointId, EventId, EventType, Secret};
use order_core::{CustomerId, ValidationErrors};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody, OptionalJson, PathParam, QueryParams, Redelivery};
use crate::http::parse::webhooks::{
    deliveries_limit, endpoint_change, new_endpoint, rotation_grace,
};
use crate::http::state::AppState;

/// The webhook routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(redeliver))
}

/// `404` for the endpoint `id`.
fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("webhook endpoint {id} not found"))
}

/// The endpoint `id`, if the caller may see it, or `404` (an id of the wrong shape names
/// no endpoint; a key bound to a customer sees that customer's endpoints only, and another
/// one's existence is not given away).
async fn stored(state: &AppState, caller: &Caller, id: &str) -> Result<Endpoint, ApiError> {
    let parsed: EndpointId = id.parse().map_err(|_| not_found(id))?;
    state
        .webhooks
        .endpoint(parsed)
        .await?
        .filter(|endpoint| {
            caller
                .customer()
                .is_none_or(|c| endpoint.owner.as_ref() == Some(c))
        })
        .ok_or_else(|| not_found(id))
}

/// Creates a webhook endpoint.
///
/// Events of the given types (every type if `events` is absent) are posted to `url`, signed
/// to the Standard Webhooks specification with the secret this answer holds: keep it, it is
/// shown here and on rotation only. A URL must be `https` unless `WEBHOOKS_ALLOW_HTTP` is on
/// (the embedded default's default).
///
/// An endpoint with a `customer_id` receives that customer's orders' events only; a key
/// bound to a customer makes endpoints of its own customer only. A customer has at most
/// `WEBHOOK_MAX_ENDPOINTS` endpoints (20 by default), and so do the endpoints of every
/// customer.
#[utoipa::path(
    post,
    path = paths::WEBHOOK_ENDPOINTS,
    tag = "webhooks",
    request_body = order_api::webhooks::CreateWebhookEndpointRequest,
    responses(
        (status = 201, description = "Created; the body holds the signing secret", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "`customer_id` names another customer than the key's", body = ErrorBody),
        (status = 409, description = "The customer has `WEBHOOK_MAX_ENDPOINTS` endpoints already", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named (a URL that is not https or points into a private network, an unknown event type)", body = ErrorBody),
    )
)]
async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let mut new = new_endpoint(&body, state.webhook_settings.url_rules())?;
    new.owner = caller.narrow(new.owner)?;
    let endpoint = Endpoint::create(new, state.orders.clock().now());
    let at_most = state.webhook_settings.max_endpoints;
    if !state.webhooks.insert_endpoint(&endpoint, at_most).await? {
        let whose = endpoint
            .owner
            .as_ref()
            .map_or_else(|| "every customer".to_owned(), |c| format!("customer {c}"));
        return Err(ApiError::LimitReached(format!(
            "{whose} has {at_most} webhook endpoints already, the most WEBHOOK_MAX_ENDPOINTS \
             allows; delete one first"
        )));
    }
    tracing::info!(endpoint_id = %endpoint.id, url = %endpoint.url.for_log(), "webhook endpoint created");
    let created = CreatedWebhookEndpoint {
        secret: endpoint.secret.expose(),
        endpoint: response(&endpoint),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Whose endpoints a listing shows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EndpointsQuery {
    /// Only this customer's (a key bound to a customer sees its own only).
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    customer_id: Option<String>,
}

/// Every webhook endpoint, or one customer's, oldest first (never their secrets).
#[utoipa::path(
    get,
    path = paths::WEBHOOK_ENDPOINTS,
    tag = "webhooks",
    params(EndpointsQuery),
    responses(
        (status = 200, body = WebhookEndpointList),
        (status = 400, description = "An unreadable parameter", body = ErrorBody),
        (status = 403, description = "`customer_id` names another customer than the key's", body = ErrorBody),
        (status = 422, description = "An invalid `customer_id`", body = ErrorBody),
    )
)]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<EndpointsQuery>,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    let asked = query
        .customer_id
        .map(CustomerId::parse)
        .transpose()
        .map_err(|e| ValidationErrors::one("customer_id", e))?;
    let owner = caller.narrow(asked)?;
    let endpoints = state.webhooks.endpoints(owner.as_ref()).await?;
    Ok(Json(WebhookEndpointList {
        endpoints: endpoints.iter().map(response).collect(),
    }))
}

/// One webhook endpoint.
#[utoipa::path(
    get,
    path = paths::WEBHOOK_ENDPOINT,
    tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`ep_` and 32 hex digits)")),
    responses(
        (status = 200, body = WebhookEndpointResponse),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<WebhookEndpointResponse>, ApiError> {
    Ok(Json(response(&stored(&state, &caller, &id).await?)))
}

/// Changes a webhook endpoint: only the fields given. Enabling an endpoint the service
/// disabled clears the reason, and the events that waited are delivered.
#[utoipa::path(
    patch,
    path = paths::WEBHOOK_ENDPOINT,
    tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    request_body = order_api::webhooks::UpdateWebhookEndpointRequest,
    responses(
        (status = 200, body = WebhookEndpointResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named", body = ErrorBody),
    )
)]
async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<WebhookEndpointResponse>, ApiError> {
    let change = endpoint_change(&body, state.webhook_settings.url_rules())?;
    let endpoint = stored(&state, &caller, &id).await?;
    let now = state.orders.clock().now();
    let Some(endpoint) = state
        .webhooks
        .change_endpoint(endpoint.id, &change, now)
        .await?
    else {
        return Err(not_found(&id));
    };
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint updated");
    Ok(Json(response(&endpoint)))
}

/// Deletes a webhook endpoint with its undelivered events and its attempts; answers with
/// the endpoint as it was.
#[utoipa::path(
    delete,
    path = paths::WEBHOOK_ENDPOINT,
    tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "Deleted", body = WebhookEndpointResponse),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<WebhookEndpointResponse>, ApiError> {
    let endpoint = stored(&state, &caller, &id).await?;
    if !state.webhooks.delete_endpoint(endpoint.id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint deleted");
    Ok(Json(response(&endpoint)))
}

/// Replaces an endpoint's signing secret. The old secret keeps signing beside the new one
/// (two signatures in `webhook-signature`) until `previous_secret_expires_at`
/// (`WEBHOOK_SECRET_GRACE_SECONDS`, a day by default), so a receiver can switch without
/// losing an event; the optional body shortens that (`previous_secret_grace_seconds: 0`
/// stops the old secret at once, as after a leak).
#[utoipa::path(
    post,
    path = paths::WEBHOOK_ENDPOINT_ROTATE,
    tag = "webhooks",
    request_body(content = Option<RotateSecretRequest>),
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The new secret, shown once", body = RotatedSecret),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "`previous_secret_grace_seconds` is not a whole number of seconds", body = ErrorBody),
    )
)]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    OptionalJson(body): OptionalJson,
) -> Result<Json<RotatedSecret>, ApiError> {
    let grace = rotation_grace(body.as_ref(), state.webhook_settings.secret_grace)?;
    let endpoint = stored(&state, &caller, &id).await?;
    let now = state.orders.clock().now();
    let secret = Secret::generate();
    let until = order_core::time::later(now, grace);
    let Some(endpoint) = state
        .webhooks
        .rotate_secret(endpoint.id, &secret, until, now)
        .await?
    else {
        return Err(not_found(&id));
    };
    tracing::info!(endpoint_id = %endpoint.id, "webhook secret rotated");
    Ok(Json(RotatedSecret {
        secret: secret.expose(),
        previous_secret_expires_at: endpoint
            .previous_secret
            .as_ref()
            .map_or(endpoint.updated_at, |p| p.expires_at),
    }))
}

/// How many attempts a listing shows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// At most this many, newest first (1 to 100; 50 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// An endpoint's delivery attempts, newest first: the event, when, the status it answered
/// (or what went wrong), how long it took and the start of its answer.
#[utoipa::path(
    get,
    path = paths::WEBHOOK_ENDPOINT_DELIVERIES,
    tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "The endpoint's id"), DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryAttemptList),
        (status = 400, description = "An unreadable parameter", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    )
)]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> Result<Json<DeliveryAttemptList>, ApiError> {
    let limit = deliveries_limit(query.limit)?;
    let endpoint = stored(&state, &caller, &id).await?;
    let attempts = state.webhooks.attempts(endpoint.id, limit).await?;
    Ok(Json(DeliveryAttemptList {
        attempts: attempts.iter().map(attempt).collect(),
    }))
}

/// Sends an event again, now, to every enabled endpoint subscribed to its type that serves
/// its order's customer (whether or not it was delivered before). It keeps its id:
/// receivers that deduplicate see it once. A key bound to a customer redelivers that
/// customer's events only, to that customer's endpoints only. Each caller may redeliver
/// `RATE_LIMIT_REDELIVERIES_BURST` events at once (60) and
/// `RATE_LIMIT_REDELIVERIES_PER_SECOND` (1) a second after that; past it, `429` with
/// `Retry-After`.
#[utoipa::path(
    post,
    path = paths::EVENT_REDELIVER,
    tag = "webhooks",
    params(("event_id" = String, Path, description = "The event's id (`evt_` and 32 hex digits), as in `webhook-id`")),
    responses(
        (status = 202, description = "Queued for delivery", body = RedeliverResponse),
        (status = 404, description = "No such event", body = ErrorBody),
    )
)]
async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    _: Redelivery,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("event {id} not found"));
    let event: EventId = id.parse().map_err(|_| not_found())?;
    if let Some(bound) = caller.customer() {
        let found = state.webhooks.event(event).await?.ok_or_else(not_found)?;
        let order = state.orders.get(found.order_id).await?;
        if order.is_none_or(|o| &o.customer_id != bound) {
            return Err(not_found());
        }
    }
    let deliveries = state
        .webhooks
        .redeliver(event, state.orders.clock().now(), caller.customer())
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(event_id = %event, deliveries, "event queued for redelivery");
    let body = RedeliverResponse {
        event_id: event.to_string(),
        deliveries,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// An event type on the wire.
const fn event_type(kind: EventType) -> order_api::webhooks::EventType {
    use order_api::webhooks::EventType as Wire;
    match kind {
        EventType::Created => Wire::Created,
        EventType::PaymentProcessing => Wire::PaymentProcessing,
        EventType::Confirmed => Wire::Confirmed,
        EventType::PaymentFailed => Wire::PaymentFailed,
        EventType::Cancelling => Wire::Cancelling,
        EventType::Cancelled => Wire::Cancelled,
        EventType::Refunded => Wire::Refunded,
        EventType::PartiallyRefunded => Wire::PartiallyRefunded,
    }
}

/// An endpoint on the wire, without its secrets.
pub fn response(endpoint: &Endpoint) -> WebhookEndpointResponse {
    WebhookEndpointResponse {
        id: endpoint.id.to_string(),
        url: endpoint.url.to_string(),
        events: endpoint.events.iter().map(|e| event_type(*e)).collect(),
        customer_id: endpoint.owner.as_ref().map(ToString::to_string),
        description: endpoint.description.clone(),
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason.clone(),
        failing_since: endpoint.failing_since,
        previous_secret_expires_at: endpoint.previous_secret.as_ref().map(|p| p.expires_at),
        created_at: endpoint.created_at,
        updated_at: endpoint.updated_at,
    }
}

/// An attempt on the wire.
fn attempt(a: &DeliveryAttempt) -> DeliveryAttemptResponse {
    DeliveryAttemptResponse {
        event_id: a.event_id.to_string(),
        event_type: event_type(a.event_type),
        attempt: a.attempt,
        attempted_at: a.attempted_at,
        status_code: a.status_code,
        error: a.error.clone(),
        latency_ms: a.latency.as_secs_f64() * 1000.0,
        response_excerpt: a.response_excerpt.clone(),
        delivered: a.delivered,
    }
}
