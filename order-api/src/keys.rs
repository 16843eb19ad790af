//! API keys on the wire: `POST /api/v1/api-keys` ([`CreateApiKeyRequest`] in,
//! [`CreatedApiKey`] out, the only answer that holds the key itself), `GET` ([`ApiKeyList`])
//! and `DELETE /api/v1/api-keys/{key_id}` (the revoked [`ApiKeyResponse`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Read orders.
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Place orders.
    #[serde(rename = "orders:write")]
    OrdersWrite,
    /// Cancel orders.
    #[serde(rename = "orders:cancel")]
    OrdersCancel,
    /// Capture orders' authorized payments (manual capture).
    #[serde(rename = "payments:capture")]
    PaymentsCapture,
    /// Give back part or all of orders' captured payments.
    #[serde(rename = "payments:refund")]
    PaymentsRefund,
    /// Manage webhook endpoints.
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    /// Create, list and revoke API keys.
    #[serde(rename = "keys:manage")]
    KeysManage,
    /// Read `/metrics` on the API's port.
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 8] = [
        Self::OrdersRead,
        Self::OrdersWrite,
        Self::OrdersCancel,
        Self::PaymentsCapture,
        Self::PaymentsRefund,
        Self::WebhooksManage,
        Self::KeysManage,
        Self::MetricsRead,
    ];

    /// Its name, as in `orders:read`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OrdersRead => "orders:read",
            Self::OrdersWrite => "orders:write",
            Self::OrdersCancel => "orders:cancel",
            Self::PaymentsCapture => "payments:capture",
            Self::PaymentsRefund => "payments:refund",
            Self::WebhooksManage => "webhooks:manage",
            Self::KeysManage => "keys:manage",
            Self::MetricsRead => "metrics:read",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?}; expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// A new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyRequest {
    /// What the key is for (1 to 100 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "mobile app",
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub name: String,
    /// What it may do (at least one).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub scopes: Vec<Scope>,
    /// Bind the key to this customer: it then sees and places that customer's orders only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "customer_123",
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub customer_id: Option<String>,
    /// Seconds until the key expires; never, if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_153_600_000_u64))]
    pub expires_in_seconds: Option<u64>,
}

/// A key as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyResponse {
    /// Its id (the part after `ordk_` of the key).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The customer it is bound to, if any.
    pub customer_id: Option<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (kept about once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created, with the key itself: shown here once and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// The key to send as `Authorization: Bearer <key>`.
    #[cfg_attr(feature = "openapi", schema(example = "ordk_0123456789abcdef_0123…"))]
    pub key: String,
    /// The key as stored.
    #[serde(flatten)]
    pub api_key: ApiKeyResponse,
}

/// Every key, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyList {
    /// The keys.
    pub keys: Vec<ApiKeyResponse>,
}
