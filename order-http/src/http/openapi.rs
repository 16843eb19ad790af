//! The OpenAPI document: what the routes declare (each operation beside its handler), plus
//! what is said once for all of them: the service's description, the schemas, the bearer
//! scheme, the refusals every `/api/v1` request may get, and, with `AUTH_MODE=api_key`, each
//! operation's scope and its `401`/`403`.

use axum::http::Method;
use order_api::ErrorBody;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, Response, ResponseBuilder};

use super::middleware::auth::required_scope;
use crate::config::AuthMode;
use order_api::health::{HealthResponse, Readiness, ReadyResponse, ServiceInfo};

/// The refusals any `/api/v1` request may get, whatever its route: declared here once.
const SHARED_REFUSALS: &[(&str, &str)] = &[
    (
        "408",
        "The body did not arrive within `HTTP_BODY_TIMEOUT_SECONDS` (`request_timeout`)",
    ),
    (
        "429",
        "This client's rate limit is used up (`rate_limited`); `Retry-After` says when to come back",
    ),
    (
        "503",
        "Store unavailable, or too many requests in flight (`overloaded`)",
    ),
];

/// The document before the routes add their operations.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Order service",
        description = "Accepts food delivery orders and pays for them asynchronously. \
                       Every error answers with the same `ErrorBody`. With `AUTH_MODE=api_key` \
                       every `/api/v1` request needs `Authorization: Bearer <key>` with the \
                       route's scope: `orders:read` to read orders, `orders:write` to place \
                       them, `orders:cancel` to cancel them, `payments:capture` to capture their \
                       authorized payments, `payments:refund` to give back part or all of \
                       their captured payments, `keys:manage` for `/api/v1/api-keys`, \
                       `webhooks:manage` for webhook endpoints and redelivery, `metrics:read` \
                       for `/metrics` on the API's port; \
                       a missing or bad key is `401` (`unauthorized`), a missing scope `403` \
                       (`insufficient_scope`). With `AUTH_MODE=none` (the embedded default) no \
                       key is needed."
    ),
    modifiers(&BearerKeys),
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
        order_api::webhooks::RotateSecretRequest,
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

/// The OpenAPI document as a process serves it, from the operations the routes declare:
/// every `/api/v1` operation documents the `408`, `429` and `503` every such request may get; with `AUTH_MODE=api_key` every `/api/v1`
/// operation requires the `api_key` bearer scheme with the scope
/// [`required_scope`] gives it, and documents the `401` and `403`
/// answers; without, none does.
pub fn finish(mut doc: OpenApi, mode: AuthMode) -> OpenApi {
    for (path, item) in &mut doc.paths.paths {
        if !path.starts_with("/api/") {
            continue;
        }
        for operation in operations(item)
            .into_iter()
            .filter_map(|(_, op)| op.as_mut())
        {
            let responses = &mut operation.responses.responses;
            for (status, what) in SHARED_REFUSALS {
                responses
                    .entry((*status).into())
                    .or_insert_with(|| refusal(what).into());
            }
        }
    }
    if mode == AuthMode::None {
        return doc;
    }
    for (path, item) in &mut doc.paths.paths {
        for (method, operation) in operations(item) {
            let (Some(operation), Some(scope)) =
                (operation.as_mut(), required_scope(&method, path))
            else {
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

/// A refusal answered with an [`ErrorBody`].
fn refusal(what: &str) -> Response {
    ResponseBuilder::new()
        .description(what)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// The operations of a path, by method.
fn operations(item: &mut PathItem) -> [(Method, &mut Option<Operation>); 5] {
    [
        (Method::GET, &mut item.get),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PUT, &mut item.put),
        (Method::PATCH, &mut item.patch),
    ]
}
