//! Routes and handlers of the HTTP API, and its OpenAPI document.
//!
//! A handler is a translation: an extractor whose rejection is [`ApiError`], one parse into
//! the domain, one call into [`OrderService`], one response in `order-api`'s types.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use order_api::health::{HealthResponse, Readiness, ReadyResponse, ServiceInfo};
use order_api::orders::{
    CancelOrderRequest, CreateOrderRequest, ListOrdersQuery, OrderListResponse, OrderResponse,
};
use order_api::{ErrorBody, headers, paths};
use order_core::ports::{
    CancelResult, Clock, OrderFilter, OrderRepo, PageRequest, PageSize, PaymentQueue,
};
use order_core::request::RequestKey;
use order_core::service::{Cancelled, Placed};
use order_core::{CustomerId, FieldError, Invalid, OrderId, OrderService, OrderStatus};
use serde::Deserialize;
use serde_json::Value;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{Auth, AuthMode, Principal, authenticate};
use crate::convert;
use crate::error::ApiError;
use crate::limit::{AdaptiveLimit, LimitConfig, Permit};
use crate::parse;
use crate::rate_limit::{RateLimits, rate_limit};
use order_core::access::ApiKey;
use order_core::memory::MemoryApiKeys;
use order_core::ports::{ApiKeyStore, WebhookStore};
use tracing::Instrument as _;

use crate::config::WebhookSettings;

mod webhooks;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How long readiness waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The service as the handlers see it.
pub type Orders = OrderService<dyn OrderRepo, dyn PaymentQueue, dyn Clock>;

/// What the handlers share: one [`Arc`], so the per-request clones each middleware layer
/// and handler takes cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    /// Places and reads orders, and reports on the store and the queue.
    pub orders: Orders,
    /// Places for `/api` requests in flight: when none is left, a request is refused at
    /// once with `503` instead of queueing behind the backlog. The number of places adapts
    /// to keep admitted requests within the latency target (see [`crate::limit`]).
    pub in_flight: Arc<AdaptiveLimit>,
    /// Per-client rate limits, if any are set.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// Where API keys are kept (managed over the API whatever `AUTH_MODE` is).
    pub keys: Arc<dyn ApiKeyStore>,
    /// Key checks, with `AUTH_MODE=api_key`; `None` lets every request in.
    pub auth: Option<Arc<Auth>>,
    /// Webhook endpoints, deliveries and the outbox of events.
    pub webhooks: Arc<dyn WebhookStore>,
    /// What webhook endpoints may be and how secrets rotate.
    pub webhook_settings: WebhookSettings,
    /// Whether requests are counted, and `/metrics` served with the API.
    pub metrics: crate::metrics::Placement,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a process admitting `/api` requests within `limit`.
    pub fn new(orders: Orders, limit: LimitConfig) -> Self {
        Self(Arc::new(Shared {
            orders,
            in_flight: Arc::new(AdaptiveLimit::new(limit)),
            rate_limits: None,
            keys: Arc::new(MemoryApiKeys::new()),
            auth: None,
            webhooks: Arc::new(order_core::memory::MemoryOrderRepo::new()),
            webhook_settings: WebhookSettings {
                allow_http: true,
                timeout: Duration::from_secs(10),
                secret_grace: Duration::from_secs(86_400),
                disable_after: Duration::from_secs(5 * 86_400),
                retention: Duration::from_secs(7 * 86_400),
                concurrency: 128,
            },
            metrics: crate::metrics::Placement::WithApi,
        }))
    }

    /// The same state with `/metrics` served as `placement` says.
    #[must_use]
    pub fn with_metrics(self, placement: crate::metrics::Placement) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.metrics = placement;
        Self(Arc::new(shared))
    }

    /// The same state with webhooks kept in `store`: the store whose outbox the orders'
    /// store writes (until this is called, endpoints are kept in memory of their own).
    #[must_use]
    pub fn with_webhooks(self, store: Arc<dyn WebhookStore>, settings: WebhookSettings) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.webhooks = store;
        shared.webhook_settings = settings;
        Self(Arc::new(shared))
    }

    /// The same state with its keys in `store`, and, with [`AuthMode::ApiKey`], every
    /// `/api/v1` request checked against them.
    #[must_use]
    pub fn with_keys(self, store: Arc<dyn ApiKeyStore>, mode: AuthMode) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.auth = match mode {
            AuthMode::None => None,
            AuthMode::ApiKey => Some(Arc::new(Auth::new(
                Arc::clone(&store),
                shared.orders.clock(),
            ))),
        };
        shared.keys = store;
        Self(Arc::new(shared))
    }

    /// The same state with per-client rate limits.
    #[must_use]
    pub fn with_rate_limits(self, limits: RateLimits) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.rate_limits = Some(Arc::new(limits));
        Self(Arc::new(shared))
    }
}

/// Sheds load: an `/api` request runs only with a permit, and without one it is answered
/// `503` with `Retry-After` at once. Health checks and docs are not limited, so a process
/// under overload still says it is alive.
async fn shed_load(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    match state.in_flight.try_acquire() {
        Some(permit) => {
            let mut request = request;
            request.extensions_mut().insert(InFlight(Arc::new(permit)));
            next.run(request).await
        }
        None => ApiError::Overloaded.into_response(),
    }
}

/// The in-flight permit of one `/api` request. Work that outlives its request (see
/// [`finish_detached`]) holds a clone, so a client that hangs up does not free its place
/// while the work it started is still running: hang-ups cannot pile up unbounded work.
#[derive(Clone)]
struct InFlight(#[expect(dead_code, reason = "held, never read")] Arc<Permit>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Order service",
        description = "Accepts food delivery orders and pays for them asynchronously. \
                       Every error answers with the same `ErrorBody`. With `AUTH_MODE=api_key` \
                       every `/api/v1` request needs `Authorization: Bearer <key>` with the \
                       route's scope: `orders:read` to read orders, `orders:write` to place \
                       them, `orders:cancel` to cancel them, `keys:manage` for `/api/v1/api-keys`, \
                       `webhooks:manage` for webhook endpoints and redelivery; \
                       a missing or bad key is `401` (`unauthorized`), a missing scope `403` \
                       (`insufficient_scope`). With `AUTH_MODE=none` (the embedded default) no \
                       key is needed."
    ),
    modifiers(&BearerKeys),
    paths(
        create_order,
        get_order,
        list_orders,
        cancel_order,
        create_key,
        list_keys,
        revoke_key,
        webhooks::create_endpoint,
        webhooks::list_endpoints,
        webhooks::get_endpoint,
        webhooks::update_endpoint,
        webhooks::delete_endpoint,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::redeliver,
        health,
        ready,
        root
    ),
    components(schemas(
        order_api::CreateOrderRequest,
        order_api::CreateItemRequest,
        order_api::OrderResponse,
        order_api::ItemResponse,
        order_api::AttemptResponse,
        order_api::AttemptStatus,
        order_api::OrderStatus,
        order_api::OrderListResponse,
        order_api::CancelOrderRequest,
        order_api::CancelReason,
        order_api::orders::CancellationResponse,
        order_api::RefundResponse,
        order_api::RefundStatus,
        order_api::orders::RefundAttemptResponse,
        order_api::orders::RefundAttemptStatus,
        HealthResponse,
        ReadyResponse,
        Readiness,
        ServiceInfo,
        ErrorBody,
        order_api::ErrorCode,
        order_api::FieldErrorBody,
        order_api::keys::Scope,
        order_api::keys::CreateApiKeyRequest,
        order_api::keys::ApiKeyResponse,
        order_api::keys::CreatedApiKey,
        order_api::keys::ApiKeyList,
        order_api::webhooks::EventType,
        order_api::webhooks::CreateWebhookEndpointRequest,
        order_api::webhooks::UpdateWebhookEndpointRequest,
        order_api::webhooks::WebhookEndpointResponse,
        order_api::webhooks::CreatedWebhookEndpoint,
        order_api::webhooks::RotatedSecret,
        order_api::webhooks::WebhookEndpointList,
        order_api::webhooks::DeliveryAttemptResponse,
        order_api::webhooks::DeliveryAttemptList,
        order_api::webhooks::RedeliverResponse,
        order_api::webhooks::WebhookEvent
    ))
)]
struct ApiDoc;

/// Declares the `api_key` bearer scheme the key routes name.
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ordk_<id>_<secret>")
                    .description(Some("An API key (AUTH_MODE=api_key)"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the API, as served with `AUTH_MODE=none`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as a process serves it: with `AUTH_MODE=api_key` every `/api/v1`
/// operation requires the `api_key` bearer scheme with the scope
/// [`required_scope`](crate::auth::required_scope) gives it, and documents the `401` and `403`
/// answers; without, none does.
pub fn openapi_for(mode: AuthMode) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let mut doc = openapi();
    if mode == AuthMode::None {
        return doc;
    }
    let refusal = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::DELETE, &mut item.delete),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let (Some(operation), Some(scope)) = (
                operation.as_mut(),
                crate::auth::required_scope(&method, path),
            ) else {
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new("api_key", [scope.as_str()])]);
            let responses = &mut operation.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                refusal("No key, or one that is malformed, unknown, revoked or expired (`unauthorized`)").into()
            });
            responses.entry("403".into()).or_insert_with(|| {
                refusal("The key lacks the scope (`insufficient_scope`), or is bound to another customer (`forbidden`)").into()
            });
        }
    }
    doc
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(headers::IDEMPOTENCY_KEY);
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static(headers::IDEMPOTENT_REPLAYED);

/// The vendored ReDoc bundle: the page works with no network at all.
const REDOC_JS: &str = include_str!("../assets/redoc.standalone.js");
const REDOC_JS_PATH: &str = "/redoc/redoc.standalone.js";

/// The router with every route, the docs, request ids, tracing and the body limit.
pub fn router(state: AppState) -> Router {
    let mode = if state.auth.is_some() {
        AuthMode::ApiKey
    } else {
        AuthMode::None
    };
    let limited = Router::new()
        .route(paths::ORDERS, get(list_orders).post(create_order))
        .route(paths::ORDER, get(get_order))
        .route(paths::ORDER_CANCEL, post(cancel_order))
        .route(paths::API_KEYS, get(list_keys).post(create_key))
        .route(paths::API_KEY, axum::routing::delete(revoke_key))
        .route(
            paths::WEBHOOK_ENDPOINTS,
            get(webhooks::list_endpoints).post(webhooks::create_endpoint),
        )
        .route(
            paths::WEBHOOK_ENDPOINT,
            get(webhooks::get_endpoint)
                .patch(webhooks::update_endpoint)
                .delete(webhooks::delete_endpoint),
        )
        .route(
            paths::WEBHOOK_ENDPOINT_ROTATE,
            post(webhooks::rotate_secret),
        )
        .route(
            paths::WEBHOOK_ENDPOINT_DELIVERIES,
            get(webhooks::deliveries),
        )
        .route(paths::EVENT_REDELIVER, post(webhooks::redeliver))
        // The last layer added runs first: shed, check the key, then count the request
        // against its client's limit.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shed_load,
        ));
    let metrics = state.metrics;
    let api = Router::new()
        .route(paths::ROOT, get(root))
        .route(paths::HEALTH, get(health))
        .route(paths::READY, get(ready))
        .merge(limited)
        .with_state(state);
    let app = Router::new()
        .merge(api)
        .merge(SwaggerUi::new(paths::DOCS).url(paths::OPENAPI, openapi_for(mode)))
        .route(paths::REDOC, get(redoc))
        .route(REDOC_JS_PATH, get(redoc_js));
    let app = match metrics {
        crate::metrics::Placement::WithApi => {
            app.route(paths::METRICS, get(crate::metrics::serve_metrics))
        }
        crate::metrics::Placement::Elsewhere | crate::metrics::Placement::Off => app,
    };
    let app = app
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let app = if metrics == crate::metrics::Placement::Off {
        app
    } else {
        app.layer(axum::middleware::from_fn(crate::metrics::track))
    };
    let app = if crate::traces::enabled() {
        app.layer(axum::middleware::from_fn(name_span))
    } else {
        app
    };
    app.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| crate::traces::request_span(req))
                // Nothing is logged in the request's span before routing names it (a span's
                // name is fixed once a log line reads its trace id).
                .on_request(())
                // ApiError logs each failure once, at the level it deserves (an expected
                // 503 at WARN); the trace layer must not log it again at ERROR.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Names the request's span after its route template (`POST /api/v1/orders/{order_id}`),
/// as trace back ends group spans by name; the raw path stays in `uri`.
async fn name_span(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(route) = request.extensions().get::<axum::extract::MatchedPath>() {
        let span = tracing::Span::current();
        span.record(
            "otel.name",
            format!("{} {}", request.method(), route.as_str()),
        );
        span.record("http.route", route.as_str());
    }
    next.run(request).await
}

/// A JSON body whose rejection is the API's error.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
struct JsonBody<T>(T);

/// Query parameters whose rejection is the API's error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct QueryParams<T>(T);

/// A path parameter whose rejection is the API's error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct PathParam<T>(T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: BODY_LIMIT },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            _ => Self::BadRequest(format!("malformed JSON body: {}", rejection.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Runs `work` on its own task and waits for it: if the client hangs up and this handler
/// is dropped, the work still runs to the end, holding the request's in-flight permit
/// until it does.
async fn finish_detached<T: Send + 'static>(
    permit: Option<Extension<InFlight>>,
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
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

/// The order id of a path, or a 422 naming `order_id`.
fn order_id(id: &str) -> Result<OrderId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::Validation(vec![FieldError::new("order_id", e)]))
}

/// The `Idempotency-Key` header, if the request has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<RequestKey>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .map_err(|_| Invalid::Malformed("must be visible ASCII characters".into()))
                .and_then(RequestKey::parse)
                .map_err(|e| ApiError::BadRequest(format!("invalid Idempotency-Key header: {e}")))
        })
        .transpose()
}

/// Accepts an order: validates it, stores it durably, queues its payment.
///
/// With an `Idempotency-Key` header (1 to 255 visible ASCII characters, kept 24 hours), a
/// retry of the same request returns the first order (marked `Idempotent-Replayed: true`)
/// instead of placing another; the same key with a different order is 422, and while the
/// first request is still being stored, 409.
#[utoipa::path(
    post, path = "/api/v1/orders", request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe: same key, same order. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 202, description = "Accepted; payment follows", body = OrderResponse,
         headers(("Location" = String, description = "URL of the order"),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the key placed it"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, all listed; or the Idempotency-Key was used for another order", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`); `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn create_order(
    State(state): State<AppState>,
    permit: Option<Extension<InFlight>>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    // The order joins the request's trace: its payment, later and elsewhere, continues it.
    let new = parse::new_order(&body)?.in_trace(crate::traces::of_request(&headers));
    if let Some(Extension(Principal(key))) = &principal {
        if !key.may_act_for(new.customer_id()) {
            return Err(bound_elsewhere(key));
        }
    }
    let key = idempotency_key(&headers)?;
    // Spawned, not awaited in place: a client that hangs up drops this handler, and the
    // order it may already have committed must still be queued for payment at once, not
    // left to the reconciler.
    let orders = state.orders.clone();
    let placed = finish_detached(permit, async move {
        Ok::<_, ApiError>(match key {
            Some(key) => orders.place_once(new, &key).await?,
            None => Placed {
                order: orders.place(new).await?,
                replayed: false,
            },
        })
    })
    .await?;
    let location = paths::order(placed.order.id.as_uuid());
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(convert::order(&placed.order)),
    )
        .into_response();
    if placed.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One order with its payment attempts.
#[utoipa::path(
    get, path = "/api/v1/orders/{id}",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`); `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    PathParam(id): PathParam<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let id = order_id(&id)?;
    let order = visible_order(&state, principal.as_ref(), id).await?;
    Ok(Json(convert::order(&order)))
}

/// The order `id`, if it exists and the caller's key may see it: another customer's order
/// is "not found" to a key bound to a customer, so its existence is not given away.
async fn visible_order(
    state: &AppState,
    principal: Option<&Extension<Principal>>,
    id: OrderId,
) -> Result<order_core::Order, ApiError> {
    state
        .orders
        .get(id)
        .await?
        .filter(|order| principal.is_none_or(|p| p.0.0.may_act_for(&order.customer_id)))
        .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))
}

/// The refusal for a key bound to another customer.
fn bound_elsewhere(key: &ApiKey) -> ApiError {
    ApiError::Forbidden(format!(
        "API key {} acts only for customer {}",
        key.id,
        key.customer_id
            .as_ref()
            .map_or("(none)", order_core::CustomerId::as_str)
    ))
}

/// Reading a `Content-Type` the way axum's `Json` does: `application/json` or any
/// `application/*+json`, parameters ignored.
mod mime_type {
    /// A media type's `type/subtype`, lowercased.
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Self(essence))
            } else {
                Err(())
            }
        }
    }

    impl Essence {
        /// Whether it is JSON.
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

/// The body of a cancellation, which may be absent.
struct CancelBody(Option<Value>);

impl<S: Send + Sync> FromRequest<S> for CancelBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<axum::body::Body>, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok())
            .is_some_and(|essence| essence.is_json());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
                _ => ApiError::BadRequest(e.body_text()),
            })?;
        // Only an empty body is no body: white space alone is not a JSON document.
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        Ok(Self(Some(serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(format!("malformed JSON body: {e}"))
        })?)))
    }
}

/// Cancels an order.
///
/// A `pending` order is cancelled at once (`200`) and never charged. Once payment started
/// (or the order is `confirmed`), the cancellation is recorded and the order becomes
/// `cancelling` (`202`): a worker refunds what was captured, or voids the charge if
/// nothing was, and the order then ends `cancelled` with its refund shown. Cancelling a
/// `cancelling` or `cancelled` order again answers with it as it is (`202` or `200`); a
/// `payment_failed` order cannot be cancelled (`409`). The body is optional. With an
/// `Idempotency-Key`, a retry answers with the order as it is then (marked
/// `Idempotent-Replayed: true`); the key reused for another request is `422`.
#[utoipa::path(
    post, path = "/api/v1/orders/{id}/cancel", request_body(content = Option<CancelOrderRequest>),
    params(("id" = uuid::Uuid, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe. 1 to 255 visible ASCII characters.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 202, description = "Cancelling: the payment is being refunded", body = OrderResponse),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not cancellable (`current_status` says why), or a request with this Idempotency-Key is in flight", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "Not a UUID, an unknown reason, or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`); `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn cancel_order(
    State(state): State<AppState>,
    permit: Option<Extension<InFlight>>,
    principal: Option<Extension<Principal>>,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    CancelBody(body): CancelBody,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    if let Some(Extension(Principal(key))) = &principal {
        if key.customer_id.is_some() {
            visible_order(&state, principal.as_ref(), id).await?;
        }
    }
    let reason = parse::cancel_reason(body.as_ref())?;
    let key = idempotency_key(&headers)?;
    // Spawned for the same reason as placing: a recorded cancellation is queued for its
    // refund even if the client hangs up.
    let orders = state.orders.clone();
    let (order, replayed) = finish_detached(permit, async move {
        Ok::<_, ApiError>(match key {
            Some(key) => match orders.cancel_once(id, reason, &key).await? {
                Cancelled::Now(result) => (cancelled(result)?, false),
                Cancelled::Replayed(order) => (order, true),
            },
            None => (cancelled(orders.cancel(id, reason).await?)?, false),
        })
    })
    .await?;
    let status = match order.status {
        OrderStatus::Cancelled => StatusCode::OK,
        OrderStatus::Cancelling => StatusCode::ACCEPTED,
        status => return Err(ApiError::NotCancellable { id, status }),
    };
    let mut response = (status, Json(convert::order(&order))).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The order a cancellation left, or why it refused.
fn cancelled(result: CancelResult) -> Result<order_core::Order, ApiError> {
    match result {
        CancelResult::Cancelled(order)
        | CancelResult::Cancelling(order)
        | CancelResult::Unchanged(order) => Ok(order),
        CancelResult::NotCancellable(order) => Err(ApiError::NotCancellable {
            id: order.id,
            status: order.status,
        }),
    }
}

/// The listing's query as sent: text, so that every bad parameter can be reported at once.
/// Its documented shape is [`ListOrdersQuery`].
#[derive(Debug, Default, Deserialize)]
struct RawListQuery {
    customer_id: Option<String>,
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

fn read_list_query(query: RawListQuery) -> Result<(OrderFilter, PageRequest), ApiError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, e: Invalid| errors.push(FieldError::new(field, e));
    let customer_id = query
        .customer_id
        .map(CustomerId::parse)
        .transpose()
        .map_err(|e| check("customer_id", e))
        .ok()
        .flatten();
    let status = query
        .status
        .map(|s| s.parse::<OrderStatus>())
        .transpose()
        .map_err(|e| check("status", e))
        .ok()
        .flatten();
    let whole = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| Invalid::Malformed("must be a whole number".into()))
    };
    let page = query
        .page
        .as_deref()
        .map_or(Ok(PageRequest::FIRST.page), |p| {
            whole(p).and_then(PageRequest::page_number)
        })
        .map_err(|e| check("page", e))
        .ok();
    let size = query
        .page_size
        .as_deref()
        .map_or(Ok(PageSize::DEFAULT), |p| whole(p).and_then(PageSize::new))
        .map_err(|e| check("page_size", e))
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
    get, path = "/api/v1/orders", params(ListOrdersQuery),
    responses(
        (status = 200, body = OrderListResponse),
        (status = 400, description = "Unreadable query string", body = ErrorBody),
        (status = 422, description = "Bad parameters, all listed", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`); `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    QueryParams(query): QueryParams<RawListQuery>,
) -> Result<Json<OrderListResponse>, ApiError> {
    let (mut filter, page) = read_list_query(query)?;
    // A key bound to a customer lists that customer's orders only.
    if let Some(Extension(Principal(key))) = &principal {
        if let Some(bound) = &key.customer_id {
            match &filter.customer_id {
                Some(asked) if asked != bound => return Err(bound_elsewhere(key)),
                _ => filter.customer_id = Some(bound.clone()),
            }
        }
    }
    let found = state.orders.list(&filter, page).await?;
    Ok(Json(OrderListResponse {
        orders: found.orders.iter().map(convert::order).collect(),
        total: found.total,
        page: page.page.get(),
        page_size: page.size.get(),
    }))
}

/// Creates an API key. The answer holds the key itself, shown this once: only its hash is
/// kept. A key may create keys with its own scopes at most, and, if it is bound to a
/// customer, for that customer only.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = order_api::keys::CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = order_api::keys::CreatedApiKey),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage`, or asks for more than it has (`insufficient_scope`, `forbidden`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`)", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let new = parse::new_api_key(&body, state.orders.clock().now())?;
    if let Some(Extension(Principal(creator))) = &principal {
        if let Some(scope) = new.scopes.iter().find(|s| !creator.allows(**s)) {
            return Err(ApiError::Forbidden(format!(
                "a key can create keys with its own scopes at most; it lacks `{scope}`"
            )));
        }
        if let Some(bound) = &creator.customer_id {
            if new.customer_id.as_ref() != Some(bound) {
                return Err(bound_elsewhere(creator));
            }
        }
    }
    let (key, secret) = order_core::access::issue(new, state.orders.clock().now())
        .map_err(|e| ApiError::Validation(vec![FieldError::new("name", e)]))?;
    state.keys.insert_key(&key).await?;
    tracing::info!(key_id = %key.id, name = %key.name, "API key created");
    let created = order_api::keys::CreatedApiKey {
        key: secret,
        api_key: convert::api_key(&key),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Every API key, newest first (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    responses(
        (status = 200, body = order_api::keys::ApiKeyList),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage` (`insufficient_scope`)", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`)", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<order_api::keys::ApiKeyList>, ApiError> {
    let bound = principal.and_then(|Extension(Principal(k))| k.customer_id.clone());
    let keys = state
        .keys
        .keys()
        .await?
        .iter()
        .filter(|k| bound.is_none() || k.customer_id == bound)
        .map(convert::api_key)
        .collect();
    Ok(Json(order_api::keys::ApiKeyList { keys }))
}

/// Revokes an API key: it stops working at once in this process and within five seconds
/// in every other. Revoking it again changes nothing.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{key_id}",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's id (16 hex digits)")),
    responses(
        (status = 200, description = "Revoked", body = order_api::keys::ApiKeyResponse),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage` (`insufficient_scope`)", body = ErrorBody),
        (status = 404, description = "No such key (an id that is not 16 hex digits is none)", body = ErrorBody),
        (status = 429, description = "This client's rate limit is used up (`rate_limited`)", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many requests in flight (`overloaded`)", body = ErrorBody),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    PathParam(id): PathParam<String>,
) -> Result<Json<order_api::keys::ApiKeyResponse>, ApiError> {
    let not_found = || ApiError::NotFound(format!("API key {id} not found"));
    let id = order_core::access::KeyId::parse(&id).map_err(|_| not_found())?;
    if let Some(Extension(Principal(revoker))) = &principal {
        if revoker.customer_id.is_some() {
            let target = state.keys.key(&id).await?.ok_or_else(not_found)?;
            if target.customer_id != revoker.customer_id {
                return Err(not_found());
            }
        }
    }
    let key = state
        .keys
        .revoke_key(&id, state.orders.clock().now())
        .await?
        .ok_or_else(not_found)?;
    if let Some(auth) = &state.auth {
        auth.forget(&key.id);
    }
    tracing::info!(key_id = %key.id, "API key revoked");
    Ok(Json(convert::api_key(&key)))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
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
    get, path = "/health/ready",
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
#[utoipa::path(get, path = "/", responses((status = 200, body = ServiceInfo)))]
async fn root() -> Json<ServiceInfo> {
    Json(ServiceInfo {
        service: order_api::health::SERVICE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        docs: paths::DOCS.into(),
        redoc: paths::REDOC.into(),
        openapi: paths::OPENAPI.into(),
        health: paths::HEALTH.into(),
        ready: paths::READY.into(),
    })
}

/// ReDoc, rendering `/openapi.json` with the bundle this binary serves.
async fn redoc() -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Order service API</title>\n<style>body {{ margin: 0; padding: 0; }}</style>\n\
         </head>\n<body>\n<div id=\"redoc-container\"></div>\n\
         <script src=\"{REDOC_JS_PATH}\"></script>\n\
         <script>Redoc.init(\"{openapi}\", {{}}, document.getElementById(\"redoc-container\"));</script>\n\
         </body>\n</html>\n",
        openapi = paths::OPENAPI,
    ))
}

async fn redoc_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC_JS,
    )
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

    use super::{AppState, Orders, router};
    use crate::limit::LimitConfig;

    fn orders() -> Orders {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let repo: Arc<dyn OrderRepo> = Arc::new(MemoryOrderRepo::new());
        let queue: Arc<dyn PaymentQueue> = Arc::new(MemoryQueue::new(Arc::clone(&clock)));
        Orders::new(repo, queue, clock)
    }

    async fn get(state: &AppState, path: &str) -> axum::response::Response {
        router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn with_every_permit_taken_api_requests_are_shed_at_once_and_health_still_answers() {
        let state = AppState::new(
            orders(),
            LimitConfig::new(1, std::time::Duration::from_secs(1)),
        );
        let held = state.in_flight.try_acquire().unwrap();

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
            state.in_flight.in_flight(),
            0,
            "a finished request gives its place back"
        );
    }
}
