//! The API key routes: create, list and revoke.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use order_api::keys::{ApiKeyList, ApiKeyResponse, CreateApiKeyRequest, CreatedApiKey};
use order_api::{ErrorBody, paths};
use order_core::FieldError;
use order_core::access::KeyId;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody, PathParam};
use crate::http::parse::keys::new_api_key;
use crate::http::state::AppState;

/// The API key routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// Creates an API key. The answer holds the key itself, shown this once: only its hash is
/// kept. A key may create keys with its own scopes at most, and, if it is bound to a
/// customer, for that customer only; with `AUTH_MODE=none` none is made over the API.
#[utoipa::path(
    post,
    path = paths::API_KEYS,
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = CreatedApiKey),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage`, or asks for more than it has, or AUTH_MODE=none (`insufficient_scope`, `forbidden`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named", body = ErrorBody),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let new = new_api_key(&body, state.orders.clock().now())?;
    caller.may_grant(&new)?;
    let (key, secret) = order_core::access::issue(new, state.orders.clock().now())
        .map_err(|e| ApiError::Validation(vec![FieldError::new("name", e)]))?;
    state.keys.insert_key(&key).await?;
    tracing::info!(key_id = %key.id, name = %key.name, "API key created");
    let created = CreatedApiKey {
        key: secret,
        api_key: convert::api_key(&key),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Every API key, newest first (never their secrets).
#[utoipa::path(
    get,
    path = paths::API_KEYS,
    tag = "api-keys",
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage` (`insufficient_scope`)", body = ErrorBody),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state
        .keys
        .keys()
        .await?
        .iter()
        .filter(|key| caller.sees_key(key))
        .map(convert::api_key)
        .collect();
    Ok(Json(ApiKeyList { keys }))
}

/// Revokes an API key: it stops working at once in this process and within five seconds
/// in every other. Revoking it again changes nothing. A key revokes keys with its own
/// scopes at most.
#[utoipa::path(
    delete,
    path = paths::API_KEY,
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's id (16 hex digits)")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyResponse),
        (status = 401, description = "No valid key (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The key lacks `keys:manage` (`insufficient_scope`), or the key to revoke has a scope it lacks (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such key (an id that is not 16 hex digits is none)", body = ErrorBody),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<ApiKeyResponse>, ApiError> {
    let not_found = || ApiError::NotFound(format!("API key {id} not found"));
    let id = KeyId::parse(&id).map_err(|_| not_found())?;
    if caller.key().is_some() {
        let target = state.keys.key(&id).await?.ok_or_else(not_found)?;
        if !caller.sees_key(&target) {
            return Err(not_found());
        }
        caller.may_revoke(&target)?;
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
