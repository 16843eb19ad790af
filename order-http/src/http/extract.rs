//! The extractors every handler takes: the body, query and path whose rejections are the
//! API's error, the `Idempotency-Key`, and the [`Caller`]: who calls, and for which
//! customers they may act.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use order_core::access::{ApiKey, KeyId, NewApiKey};
use order_core::request::RequestKey;
use order_core::{CustomerId, Invalid};
use serde_json::Value;

use super::error::ApiError;
use super::headers::IDEMPOTENCY_KEY;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body whose rejection is the API's error.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Query parameters whose rejection is the API's error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// A path parameter whose rejection is the API's error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

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

/// A JSON body that may be absent: an empty body is `None`; anything else must be JSON
/// (as axum's `Json` reads `Content-Type`: `application/json` or `application/*+json`).
pub struct OptionalJson(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
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
        serde_json::from_slice(&bytes)
            .map(|value| Self(Some(value)))
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))
    }
}

/// Whether a `Content-Type` is JSON: its `type/subtype` (parameters ignored, any case) is
/// `application/json` or `application/*+json`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `Idempotency-Key` header, if the request has one; a malformed one is `400`.
pub struct IdempotencyKey(pub Option<RequestKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .headers
            .get(IDEMPOTENCY_KEY)
            .map(|v| {
                v.to_str()
                    .map_err(|_| Invalid::Malformed("must be visible ASCII characters".into()))
                    .and_then(RequestKey::parse)
                    .map_err(|e| {
                        ApiError::BadRequest(format!("invalid Idempotency-Key header: {e}"))
                    })
            })
            .transpose()
            .map(Self)
    }
}

/// One of the caller's event redeliveries (`RATE_LIMIT_REDELIVERIES_*`), spent before the
/// handler runs: a handler taking it answers `429` with `Retry-After` once its caller has
/// redelivered its burst and more than the rate since. Each redelivery posts an event to
/// every endpoint subscribed to it, so it is counted whatever the other limits are.
#[derive(Debug, Clone, Copy)]
pub struct Redelivery;

impl FromRequestParts<super::AppState> for Redelivery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &super::AppState,
    ) -> Result<Self, ApiError> {
        if let Some(budget) = &state.redeliveries {
            budget.spend(&parts.headers, &parts.extensions).await?;
        }
        Ok(Self)
    }
}

/// Who is calling, as the authentication layer found out: the handler's signature says it
/// needs to know, and every check of whom the caller may act for is one of its methods.
///
/// A key bound to a customer acts for that customer only: another customer's order is
/// "not found" to it (its existence is not given away), and a request naming another
/// customer is `403`.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `AUTH_MODE=none`: whoever reaches the port, acting for every customer.
    Anyone,
    /// A request with an accepted API key, which carried the route's scope.
    Key(Arc<ApiKey>),
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Set by the authentication layer on every route that has handlers taking it; a
        // route without it is a wiring bug, and is refused rather than served open.
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            ApiError::Internal(
                "a handler asked for its caller on a route without authentication".into(),
            )
        })
    }
}

impl Caller {
    /// The key, unless anyone may call.
    pub fn key(&self) -> Option<&ApiKey> {
        match self {
            Self::Anyone => None,
            Self::Key(key) => Some(key),
        }
    }

    /// The id of the caller's key, if it has one.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key().map(|key| &key.id)
    }

    /// `key` in the caller's own namespace: with an API key, keys of one caller never meet
    /// another's; with `AUTH_MODE=none` there is one caller, and one namespace.
    pub fn own(&self, key: RequestKey) -> RequestKey {
        match self.key_id() {
            Some(id) => key.scoped_to(&id.to_string()),
            None => key,
        }
    }

    /// The one customer the caller may act for, if it is bound to one.
    pub fn customer(&self) -> Option<&CustomerId> {
        self.key().and_then(|key| key.customer_id.as_ref())
    }

    /// Whether the caller may see and act on what belongs to `customer`.
    pub fn may_act_for(&self, customer: &CustomerId) -> bool {
        self.key().is_none_or(|key| key.may_act_for(customer))
    }

    /// `Ok` if the caller may act for `customer`, else `403`.
    pub fn act_for(&self, customer: &CustomerId) -> Result<(), ApiError> {
        if self.may_act_for(customer) {
            Ok(())
        } else {
            Err(self.bound_elsewhere())
        }
    }

    /// The customer a listing is narrowed to: the one asked for, which a bound caller may
    /// only ask for if it is its own (else `403`), and a bound caller's own when none is.
    pub fn narrow(&self, asked: Option<CustomerId>) -> Result<Option<CustomerId>, ApiError> {
        match (self.customer(), asked) {
            (None, asked) => Ok(asked),
            (Some(bound), Some(asked)) if &asked != bound => Err(self.bound_elsewhere()),
            (Some(bound), _) => Ok(Some(bound.clone())),
        }
    }

    /// `Ok` if the caller may create `new`: a key creates keys with its own scopes at most
    /// and, if it is bound to a customer, for that customer only. With `AUTH_MODE=none` no
    /// key is made over the API: anyone could mint one that would still work once keys are
    /// asked for.
    pub fn may_grant(&self, new: &NewApiKey) -> Result<(), ApiError> {
        let Some(creator) = self.key() else {
            return Err(ApiError::Forbidden(
                "with AUTH_MODE=none API keys are not made over the API (anyone could mint \
                 one); make the first with `order-http keys create`"
                    .into(),
            ));
        };
        if let Some(scope) = new.scopes.iter().find(|s| !creator.allows(**s)) {
            return Err(ApiError::Forbidden(format!(
                "a key can create keys with its own scopes at most; it lacks `{scope}`"
            )));
        }
        match &creator.customer_id {
            Some(bound) if new.customer_id.as_ref() != Some(bound) => Err(self.bound_elsewhere()),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see and revoke `key`: any key, unless it is bound to a
    /// customer, then only keys bound to the same one.
    pub fn sees_key(&self, key: &ApiKey) -> bool {
        self.customer()
            .is_none_or(|bound| key.customer_id.as_ref() == Some(bound))
    }

    /// `Ok` if the caller may revoke `target`, which it [sees](Self::sees_key): a key
    /// revokes keys with its own scopes at most, never one that may do more than it.
    pub fn may_revoke(&self, target: &ApiKey) -> Result<(), ApiError> {
        let Some(revoker) = self.key() else {
            return Ok(());
        };
        match target.scopes.iter().find(|s| !revoker.allows(**s)) {
            None => Ok(()),
            Some(scope) => Err(ApiError::Forbidden(format!(
                "a key can revoke keys with its own scopes at most; API key {} has `{scope}`",
                target.id
            ))),
        }
    }

    /// The refusal for a key bound to another customer.
    fn bound_elsewhere(&self) -> ApiError {
        let (id, customer) = self.key().map_or(("-".to_owned(), "(none)"), |key| {
            (
                key.id.to_string(),
                key.customer_id
                    .as_ref()
                    .map_or("(none)", CustomerId::as_str),
            )
        });
        ApiError::Forbidden(format!("API key {id} acts only for customer {customer}"))
    }
}
