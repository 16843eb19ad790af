//! Refunds on the wire: what `POST /api/v1/orders/{id}/refunds` takes, and how an order
//! lists its refunds.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{RefundAttemptResponse, RefundStatus};
use crate::money::{exact, exact_opt};

/// A refund of an order's payment: one asked for on its own (`POST
/// /api/v1/orders/{id}/refunds`, with its `requested_at`), or the one a cancellation makes
/// of what is left (with its `attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundResponse {
    /// What is (or was) given back; for a pending refund, what it asks; 0 when nothing
    /// was captured.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 30.97))]
    pub amount: Decimal,
    /// Where it stands.
    pub status: RefundStatus,
    /// The gateway's id of the refund, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Why it was asked for, when the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The items it gives back, when it was asked for by items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<RefundItem>,
    /// When it was asked for on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<DateTime<Utc>>,
    /// What the gateway said when it refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// A cancellation's refund: every attempt, oldest first.
    pub attempts: Vec<RefundAttemptResponse>,
}

/// Ordered items given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundItem {
    /// The catalogue id of one of the order's items: 1 to 100 characters, not blank, no
    /// control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "item_001",
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub item_id: String,
    /// How many of it: at most what was ordered, less what refunds gave back already.
    #[cfg_attr(
        feature = "openapi",
        schema(example = 1, minimum = 1, maximum = 10_000)
    )]
    pub quantity: u32,
}

/// `POST /api/v1/orders/{id}/refunds`: gives back an `amount`, `items` (their price times
/// the quantity), both (that amount for those items, at most their value), or, with
/// neither, all of what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundOrderRequest {
    /// How much, exact: more than 0 and at most what is left of the captured payment (with
    /// `items`, at most their value).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_opt")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            value_type = Option<f64>,
            example = 4.99,
            exclusive_minimum = 0,
            maximum = 1_000_000_000_000_u64,
            multiple_of = 0.01
        )
    )]
    pub amount: Option<Decimal>,
    /// The items given back (1 to 100 lines, each item once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub items: Option<Vec<RefundItem>>,
    /// Why: 1 to 500 characters, not blank, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 500,
            example = "fries were cold",
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub reason: Option<String>,
}
