//! [`OrderClient`]: a typed async client of the order service.
//!
//! Every answer is decoded into this crate's types; every failure is a [`ClientError`] that
//! says whether the service answered (and with which [`ErrorBody`]), could not be reached,
//! or answered something unreadable.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ErrorBody, ErrorCode};
use crate::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::health::{HealthResponse, ReadyResponse, ServiceInfo};
use crate::orders::{
    CancelOrderRequest, CaptureOrderRequest, ListOrdersQuery, OrderListResponse, OrderResponse,
    RefundOrderRequest,
};
use crate::paths;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error status and the standard error body.
    #[error("HTTP {status}: {body}")]
    Api {
        /// The response status.
        status: u16,
        /// What the service said.
        body: ErrorBody,
        /// How long the service asked the client to wait before retrying (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No connection could be made: nothing reached the service.
    #[error("cannot reach {base}")]
    Connect {
        /// The service's base URL.
        base: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No answer in time: the request may or may not have been processed.
    #[error("no answer in time")]
    Timeout(#[source] reqwest::Error),
    /// The answer could not be read as the contract says (or the connection broke).
    #[error("unreadable answer (HTTP {status:?})")]
    Decode {
        /// The response status, when one arrived.
        status: Option<u16>,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The client could not be built (a bad base URL, for one).
    #[error("invalid client settings: {0}")]
    Build(String),
}

impl ClientError {
    /// The response status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Decode { status, .. } => *status,
            _ => None,
        }
    }

    /// How long the service asked to wait before retrying, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error code of the service's answer, when it gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { body, .. } => Some(body.error),
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed (with the same `Idempotency-Key`
    /// for a `POST`).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => matches!(status, 409 | 429 | 502..=504),
            Self::Connect { .. } | Self::Timeout(_) => true,
            Self::Decode { .. } | Self::Build(_) => false,
        }
    }
}

/// An order as [`OrderClient::create`] placed it or [`OrderClient::cancel`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The order, as accepted.
    pub order: OrderResponse,
    /// The `Location` of the order.
    pub location: Option<String>,
    /// Whether an earlier request with the same `Idempotency-Key` placed it.
    pub replayed: bool,
}

/// A client of one order service. Its `Debug` output never shows the API key.
#[derive(Clone)]
pub struct OrderClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for OrderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The environment variable [`OrderClient::from_env_key`] reads the API key from.
pub const API_KEY_VARIABLE: &str = "ORDER_SERVICE_API_KEY";

impl OrderClient {
    /// A client of the service at `base` (such as `http://localhost:8000`) whose requests
    /// time out after 10 s.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base, Duration::from_secs(10))
    }

    /// A client whose requests time out after `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Self::with_http(base, http)
    }

    /// A client sending through `http` (to share its pool or set its own options).
    pub fn with_http(base: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Build(format!(
                "expected an http:// or https:// URL, got {base:?}"
            )));
        }
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            api_key: None,
        })
    }

    /// The same client, sending `key` as `Authorization: Bearer <key>` on every request.
    #[must_use]
    pub fn with_api_key(self, key: impl Into<String>) -> Self {
        Self {
            api_key: Some(key.into()),
            ..self
        }
    }

    /// The same client with the key in `ORDER_SERVICE_API_KEY`, if that is set.
    #[must_use]
    pub fn from_env_key(self) -> Self {
        match std::env::var(API_KEY_VARIABLE) {
            Ok(key) if !key.trim().is_empty() => self.with_api_key(key.trim()),
            _ => self,
        }
    }

    /// `POST /api/v1/api-keys`: creates a key; the answer holds the key itself, once.
    pub async fn create_key(
        &self,
        request: &crate::keys::CreateApiKeyRequest,
    ) -> Result<crate::keys::CreatedApiKey, ClientError> {
        decode(
            self.send(self.http.post(self.url(paths::API_KEYS)).json(request))
                .await?,
        )
        .await
    }

    /// `GET /api/v1/api-keys`: every key, newest first.
    pub async fn list_keys(&self) -> Result<crate::keys::ApiKeyList, ClientError> {
        decode(self.send(self.http.get(self.url(paths::API_KEYS))).await?).await
    }

    /// Creates a webhook endpoint; the answer holds its signing secret.
    pub async fn create_webhook_endpoint(
        &self,
        request: &crate::webhooks::CreateWebhookEndpointRequest,
    ) -> Result<crate::webhooks::CreatedWebhookEndpoint, ClientError> {
        let url = self.url(paths::WEBHOOK_ENDPOINTS);
        decode(self.send(self.http.post(url).json(request)).await?).await
    }

    /// Every webhook endpoint, oldest first.
    pub async fn list_webhook_endpoints(
        &self,
    ) -> Result<crate::webhooks::WebhookEndpointList, ClientError> {
        let url = self.url(paths::WEBHOOK_ENDPOINTS);
        decode(self.send(self.http.get(url)).await?).await
    }

    /// One webhook endpoint.
    pub async fn get_webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<crate::webhooks::WebhookEndpointResponse, ClientError> {
        let url = self.url(&paths::webhook_endpoint(id));
        decode(self.send(self.http.get(url)).await?).await
    }

    /// Changes a webhook endpoint.
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        request: &crate::webhooks::UpdateWebhookEndpointRequest,
    ) -> Result<crate::webhooks::WebhookEndpointResponse, ClientError> {
        let url = self.url(&paths::webhook_endpoint(id));
        decode(self.send(self.http.patch(url).json(request)).await?).await
    }

    /// Deletes a webhook endpoint with its undelivered events; returns it as it was.
    pub async fn delete_webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<crate::webhooks::WebhookEndpointResponse, ClientError> {
        let url = self.url(&paths::webhook_endpoint(id));
        decode(self.send(self.http.delete(url)).await?).await
    }

    /// Replaces an endpoint's signing secret; the old one signs beside it for a while.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
    ) -> Result<crate::webhooks::RotatedSecret, ClientError> {
        let url = self.url(&paths::webhook_endpoint_rotate(id));
        decode(self.send(self.http.post(url)).await?).await
    }

    /// Replaces a webhook endpoint's secret, the old one signing beside it as `request`
    /// says (`previous_secret_grace_seconds: Some(0)` stops it at once).
    pub async fn rotate_webhook_secret_with(
        &self,
        id: &str,
        request: &crate::webhooks::RotateSecretRequest,
    ) -> Result<crate::webhooks::RotatedSecret, ClientError> {
        let url = self.url(&paths::webhook_endpoint_rotate(id));
        decode(self.send(self.http.post(url).json(request)).await?).await
    }

    /// An endpoint's delivery attempts, newest first (at most `limit`, 1 to 100).
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        limit: Option<u32>,
    ) -> Result<crate::webhooks::DeliveryAttemptList, ClientError> {
        let url = self.url(&paths::webhook_endpoint_deliveries(id));
        let mut request = self.http.get(url);
        if let Some(limit) = limit {
            request = request.query(&[("limit", limit)]);
        }
        decode(self.send(request).await?).await
    }

    /// Sends an event again to every endpoint subscribed to it.
    pub async fn redeliver_event(
        &self,
        event_id: &str,
    ) -> Result<crate::webhooks::RedeliverResponse, ClientError> {
        let url = self.url(&paths::event_redeliver(event_id));
        decode(self.send(self.http.post(url)).await?).await
    }

    /// `DELETE /api/v1/api-keys/{key_id}`: revokes a key; answers with it as revoked.
    pub async fn revoke_key(&self, id: &str) -> Result<crate::keys::ApiKeyResponse, ClientError> {
        decode(
            self.send(self.http.delete(self.url(&paths::api_key(id))))
                .await?,
        )
        .await
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/orders`: places an order. `order` is usually a
    /// [`CreateOrderRequest`](crate::CreateOrderRequest); any serializable body is sent as
    /// it is, so the service judges it. With `idempotency_key`, retrying never places a
    /// second order.
    pub async fn create<B: Serialize + ?Sized>(
        &self,
        order: &B,
        idempotency_key: Option<&str>,
    ) -> Result<Placed, ClientError> {
        let mut request = self.http.post(self.url(paths::ORDERS)).json(order);
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        placed(self.send(request).await?).await
    }

    /// `POST /api/v1/orders/{id}/cancel`: cancels the order (at once before payment; after,
    /// once its payment is refunded: the answer is then `cancelling`). With
    /// `idempotency_key`, a retry answers with the order as it is then.
    pub async fn cancel(
        &self,
        id: Uuid,
        request: &CancelOrderRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Placed, ClientError> {
        let mut call = self
            .http
            .post(self.url(&paths::order_cancel(id)))
            .json(request);
        if let Some(key) = idempotency_key {
            call = call.header(IDEMPOTENCY_KEY, key);
        }
        placed(self.send(call).await?).await
    }

    /// `POST /api/v1/orders/{id}/capture`: captures the order's authorized payment (the
    /// whole authorization, or `request.amount` of it), once. With `idempotency_key`, a
    /// retry answers with the order as it is then.
    pub async fn capture(
        &self,
        id: Uuid,
        request: &CaptureOrderRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Placed, ClientError> {
        let mut call = self
            .http
            .post(self.url(&paths::order_capture(id)))
            .json(request);
        if let Some(key) = idempotency_key {
            call = call.header(IDEMPOTENCY_KEY, key);
        }
        placed(self.send(call).await?).await
    }

    /// `POST /api/v1/orders/{id}/refunds`: gives back `request.amount` or `request.items` of
    /// the order's captured payment. With `idempotency_key`, a retry sends the same refund
    /// (and, once it is made, answers with the order as it is then).
    pub async fn refund(
        &self,
        id: Uuid,
        request: &RefundOrderRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Placed, ClientError> {
        let mut call = self
            .http
            .post(self.url(&paths::order_refunds(id)))
            .json(request);
        if let Some(key) = idempotency_key {
            call = call.header(IDEMPOTENCY_KEY, key);
        }
        placed(self.send(call).await?).await
    }

    /// `GET /api/v1/orders/{id}`.
    pub async fn get(&self, id: Uuid) -> Result<OrderResponse, ClientError> {
        let response = self
            .send(self.http.get(self.url(&paths::order(id))))
            .await?;
        decode(response).await
    }

    /// `GET /api/v1/orders`: one page of orders, newest first.
    pub async fn list(&self, query: &ListOrdersQuery) -> Result<OrderListResponse, ClientError> {
        let response = self
            .send(self.http.get(self.url(paths::ORDERS)).query(query))
            .await?;
        decode(response).await
    }

    /// `GET /health`: liveness.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        decode(self.send(self.http.get(self.url(paths::HEALTH))).await?).await
    }

    /// `GET /health/ready`: the state of each dependency, ready or not (a `503` answer is
    /// read as a [`ReadyResponse`] too).
    pub async fn ready(&self) -> Result<ReadyResponse, ClientError> {
        let response = self.send(self.http.get(self.url(paths::READY))).await?;
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return response.json().await.map_err(|source| ClientError::Decode {
                status: Some(status.as_u16()),
                source,
            });
        }
        decode(response).await
    }

    /// `GET /`: the service's self-description.
    pub async fn info(&self) -> Result<ServiceInfo, ClientError> {
        decode(self.send(self.http.get(self.url(paths::ROOT))).await?).await
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::Connect {
                    base: self.base.clone(),
                    source: e,
                }
            } else if e.is_timeout() {
                ClientError::Timeout(e)
            } else {
                ClientError::Decode {
                    status: e.status().map(|s| s.as_u16()),
                    source: e,
                }
            }
        })
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads an order answer with its `Location` and `Idempotent-Replayed` headers.
async fn placed(response: Response) -> Result<Placed, ClientError> {
    let headers = response.headers().clone();
    let order = decode(response).await?;
    Ok(Placed {
        order,
        location: header(&headers, LOCATION.as_str()),
        replayed: header(&headers, IDEMPOTENT_REPLAYED).as_deref() == Some("true"),
    })
}

/// Reads a success body as `T`, or an error status's [`ErrorBody`].
async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let status = response.status();
    let failed = |source: reqwest::Error| {
        if source.is_timeout() {
            ClientError::Timeout(source)
        } else {
            ClientError::Decode {
                status: Some(status.as_u16()),
                source,
            }
        }
    };
    if status.is_success() {
        return response.json().await.map_err(failed);
    }
    let retry_after = header(response.headers(), RETRY_AFTER.as_str())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: ErrorBody = response.json().await.map_err(failed)?;
    Err(ClientError::Api {
        status: status.as_u16(),
        body,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_must_be_http() {
        assert!(matches!(
            OrderClient::new("localhost:8000"),
            Err(ClientError::Build(_))
        ));
        let client = OrderClient::new("http://localhost:8000/").unwrap();
        assert_eq!(
            client.url(paths::ORDERS),
            "http://localhost:8000/api/v1/orders"
        );
    }
}
