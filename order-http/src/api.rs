//! Routes and handlers of the HTTP API, and its OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use order_core::ports::{Clock, OrderFilter, OrderRepo, PageRequest, PageSize, PaymentQueue};
use order_core::request::RequestKey;
use order_core::service::Placed;
use order_core::{CustomerId, FieldError, Invalid, NewOrder, OrderId, OrderService, OrderStatus};
use serde_json::Value;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

use crate::dto::{
    CreateItemRequest, CreateOrderRequest, HealthResponse, ItemResponse, ListParams,
    OrderListResponse, OrderResponse, ReadyResponse, read_create_order,
};
use crate::error::{ApiError, ErrorBody, FieldErrorBody};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The service as the handlers see it.
pub type Orders = OrderService<dyn OrderRepo, dyn PaymentQueue, dyn Clock>;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Places and reads orders.
    pub orders: Orders,
    /// The queue, for readiness.
    pub queue: Arc<dyn PaymentQueue>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Order service",
        description = "Accepts food delivery orders and pays for them asynchronously."
    ),
    paths(create_order, get_order, list_orders, health, ready, root),
    components(schemas(
        CreateOrderRequest,
        CreateItemRequest,
        OrderResponse,
        ItemResponse,
        crate::dto::AttemptResponse,
        OrderListResponse,
        HealthResponse,
        ReadyResponse,
        ErrorBody,
        FieldErrorBody
    ))
)]
struct ApiDoc;

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The router with every route, the docs, request ids, tracing and the body limit.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/api/v1/orders", get(list_orders).post(create_order))
        .route("/api/v1/orders/{id}", get(get_order))
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .merge(Redoc::with_url("/redoc", openapi()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest(format!("malformed JSON body: {}", rejection.body_text())),
    }
}

/// Accepts an order: validates it, stores it durably, queues its payment.
///
/// With an `Idempotency-Key` header (1 to 255 visible ASCII characters, kept 24 hours), a
/// retry of the same request returns the first order (marked `Idempotent-Replayed: true`)
/// instead of placing another; the same key with a different order is 422, and while the
/// first request is still being stored, 409.
#[utoipa::path(
    post, path = "/api/v1/orders", request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key, same order")),
    responses(
        (status = 202, description = "Accepted; payment follows", body = OrderResponse,
         headers(("Location" = String, description = "URL of the order"),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the key placed it"))),
        (status = 409, description = "A request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, all listed; or the Idempotency-Key was used for another order", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|r| json_rejection(&r))?;
    let (unchecked, mut errors) = read_create_order(&body);
    let new = match NewOrder::parse(unchecked) {
        Ok(new) if errors.is_empty() => new,
        Ok(_) => return Err(ApiError::Validation(errors)),
        Err(invalid) => {
            errors.extend(invalid.errors().iter().cloned());
            errors.sort_by_key(|e| field_order(&e.field));
            return Err(ApiError::Validation(errors));
        }
    };
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .map_err(|_| Invalid::Malformed("must be visible ASCII characters".into()))
                .and_then(RequestKey::parse)
                .map_err(|e| ApiError::BadRequest(format!("invalid Idempotency-Key header: {e}")))
        })
        .transpose()?;
    let placed = match key {
        Some(key) => state.orders.place_once(new, &key).await?,
        None => Placed {
            order: state.orders.place(new).await?,
            replayed: false,
        },
    };
    let location = format!("/api/v1/orders/{}", placed.order.id);
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(OrderResponse::from(&placed.order)),
    )
        .into_response();
    if placed.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Sorts errors in input order: `customer_id`, `items`, then by item index and field.
fn field_order(field: &str) -> (u8, usize, u8) {
    let part = |name: &str| match name {
        "item_id" => 0,
        "item_name" => 1,
        "quantity" => 2,
        "price" => 3,
        _ => 4,
    };
    if field == "body" || field == "customer_id" {
        return (0, 0, 0);
    }
    let Some(rest) = field.strip_prefix("items[") else {
        return (1, 0, 0);
    };
    let (index, name) = rest.split_once(']').unwrap_or((rest, ""));
    (
        2,
        index.parse().unwrap_or(0),
        part(name.trim_start_matches('.')),
    )
}

/// One order with its payment attempts.
#[utoipa::path(
    get, path = "/api/v1/orders/{id}",
    params(("id" = String, Path, description = "Order id (UUID)")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let id: OrderId = id
        .parse()
        .map_err(|e| ApiError::Validation(vec![FieldError::new("order_id", e)]))?;
    let order = state
        .orders
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
    Ok(Json(OrderResponse::from(&order)))
}

fn read_list_params(params: ListParams) -> Result<(OrderFilter, PageRequest), ApiError> {
    let mut errors = Vec::new();
    let customer_id = params
        .customer_id
        .map(CustomerId::parse)
        .transpose()
        .map_err(|e| errors.push(FieldError::new("customer_id", e)))
        .ok()
        .flatten();
    let status = params
        .status
        .map(|s| s.parse::<OrderStatus>())
        .transpose()
        .map_err(|e| errors.push(FieldError::new("status", e)))
        .ok()
        .flatten();
    let whole = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| Invalid::Malformed("must be a whole number".into()))
    };
    let page = params
        .page
        .as_deref()
        .map_or(Ok(PageRequest::FIRST.page), |p| {
            whole(p).and_then(PageRequest::page_number)
        })
        .map_err(|e| errors.push(FieldError::new("page", e)))
        .ok();
    let size = params
        .page_size
        .as_deref()
        .map_or(Ok(PageSize::DEFAULT), |p| whole(p).and_then(PageSize::new))
        .map_err(|e| errors.push(FieldError::new("page_size", e)))
        .ok();
    match (page, size) {
        (Some(page), Some(size)) if errors.is_empty() => Ok((
            OrderFilter {
                customer_id,
                status,
            },
            PageRequest { page, size },
        )),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// Orders, newest first, filtered by customer and status, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/orders", params(ListParams),
    responses(
        (status = 200, body = OrderListResponse),
        (status = 422, description = "Bad parameters, all listed", body = ErrorBody),
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<OrderListResponse>, ApiError> {
    let Query(params) = params.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let (filter, page) = read_list_params(params)?;
    let found = state.orders.list(&filter, page).await?;
    Ok(Json(OrderListResponse {
        orders: found.orders.iter().map(OrderResponse::from).collect(),
        total: found.total,
        page: page.page.get(),
        page_size: page.size.get(),
    }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy",
        service: "order-service",
    })
}

/// Readiness: the store and the queue answer within 2 s.
#[utoipa::path(
    get, path = "/health/ready",
    responses((status = 200, body = ReadyResponse), (status = 503, body = ReadyResponse))
)]
async fn ready(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(2);
    let (db, queue) = tokio::join!(
        tokio::time::timeout(limit, state.orders.repo().ping()),
        tokio::time::timeout(limit, state.queue.ping()),
    );
    let describe = |r: Result<Result<(), String>, _>| match r {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_owned(),
    };
    let database = describe(db.map(|r| r.map_err(|e| e.to_string())));
    let queue = describe(queue.map(|r| r.map_err(|e| e.to_string())));
    let is_ready = database == "ok" && queue == "ok";
    let body = ReadyResponse {
        status: if is_ready { "ready" } else { "not_ready" },
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
#[utoipa::path(get, path = "/", responses((status = 200, description = "Service information")))]
async fn root() -> Json<Value> {
    Json(serde_json::json!({
        "service": "order-service",
        "version": env!("CARGO_PKG_VERSION"),
        "docs": "/docs",
        "redoc": "/redoc",
        "openapi": "/openapi.json",
        "health": "/health",
        "ready": "/health/ready",
    }))
}
