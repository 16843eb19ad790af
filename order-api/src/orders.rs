//! Placing, reading and listing orders.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{exact, exact_opt};

mod refunds;
pub use refunds::{RefundItem, RefundOrderRequest, RefundResponse};

/// An item of a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateItemRequest {
    /// Catalogue id: 1 to 100 characters, not blank, no control characters.
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
    /// Display name: 1 to 255 characters, not blank, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "Burger",
            min_length = 1,
            max_length = 255,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub item_name: String,
    /// How many: 1 to 10,000.
    #[cfg_attr(
        feature = "openapi",
        schema(example = 2, minimum = 1, maximum = 10_000)
    )]
    pub quantity: i64,
    /// Unit price: more than 0, at most 1,000,000, at most 2 decimal places. Sent as a
    /// JSON number, read exactly (never through floating point).
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 12.99, exclusive_minimum = 0, maximum = 1_000_000, multiple_of = 0.01))]
    pub price: Decimal,
}

/// A new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOrderRequest {
    /// The customer: 1 to 100 characters, not blank, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "customer_123",
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub customer_id: String,
    /// 1 to 100 items.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub items: Vec<CreateItemRequest>,
    /// The processor's token for how the customer pays (Stripe's `pm_card_visa`, say): 1 to
    /// 255 visible ASCII characters. Required by a gateway that charges a real processor
    /// (`PAYMENT_GATEWAY=stripe`); the others ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "pm_card_visa",
            min_length = 1,
            max_length = 255,
            pattern = r"^[!-~]+$"
        )
    )]
    pub payment_method: Option<String>,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted; payment not started.
    Pending,
    /// A payment attempt is under way or scheduled.
    PaymentProcessing,
    /// Paid (terminal).
    Confirmed,
    /// Payment failed for good (terminal).
    PaymentFailed,
    /// Cancellation recorded after payment started; the payment is being refunded (or the
    /// charge voided).
    Cancelling,
    /// Cancelled, any captured payment refunded (terminal).
    Cancelled,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::PaymentFailed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PaymentProcessing => "payment_processing",
            Self::Confirmed => "confirmed",
            Self::PaymentFailed => "payment_failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no work is left on the order: `confirmed` (which only a cancellation can
    /// still change), `payment_failed` or `cancelled`.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::PaymentFailed | Self::Cancelled
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`OrderStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    /// Reads a status name in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// An item of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemResponse {
    /// Catalogue id.
    pub item_id: String,
    /// Display name.
    pub item_name: String,
    /// How many.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub quantity: u32,
    /// Unit price.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 12.99))]
    pub price: Decimal,
}

/// How a payment attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Captured.
    Succeeded,
    /// Declined by the gateway: final.
    Declined,
    /// Failed before anything was charged.
    Failed,
    /// No answer in time: may or may not have charged.
    TimedOut,
}

impl AttemptStatus {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for AttemptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payment attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptResponse {
    /// 1, 2, 3, ...
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub attempt_number: u32,
    /// How it ended.
    pub status: AttemptStatus,
    /// The gateway's id of a captured payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Why it was declined or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the charge was sent.
    pub started_at: DateTime<Utc>,
    /// When its outcome was known.
    pub finished_at: DateTime<Utc>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderResponse {
    /// Its id (UUID v7: ids sort by creation time).
    pub id: Uuid,
    /// The customer.
    pub customer_id: String,
    /// Its items.
    pub items: Vec<ItemResponse>,
    /// Sum of price x quantity, exact.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 30.97))]
    pub total_amount: Decimal,
    /// The processor's token for how the customer pays, when the order named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every payment attempt, oldest first.
    pub payment_attempts: Vec<AttemptResponse>,
    /// The cancellation, once one was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<CancellationResponse>,
    /// The refunds of the payment: those asked for on their own, oldest first, then the
    /// one a cancellation makes of what is left.
    #[serde(default)]
    pub refunds: Vec<RefundResponse>,
    /// The payment, once the gateway took or holds money for the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentResponse>,
}

/// Why an order is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The customer asked (the default).
    #[default]
    RequestedByCustomer,
    /// The order duplicates another.
    Duplicate,
    /// The order is fraudulent.
    Fraudulent,
    /// The restaurant cannot serve it.
    RestaurantUnavailable,
    /// Anything else.
    Other,
}

impl CancelReason {
    /// Every reason.
    pub const ALL: [Self; 5] = [
        Self::RequestedByCustomer,
        Self::Duplicate,
        Self::Fraudulent,
        Self::RestaurantUnavailable,
        Self::Other,
    ];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequestedByCustomer => "requested_by_customer",
            Self::Duplicate => "duplicate",
            Self::Fraudulent => "fraudulent",
            Self::RestaurantUnavailable => "restaurant_unavailable",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CancelReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown reason {s:?}: one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// `POST /api/v1/orders/{id}/cancel`: the body is optional, and so is its reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelOrderRequest {
    /// Why (default `requested_by_customer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}

/// `POST /api/v1/orders/{id}/capture`: the body is optional, and so is its amount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureOrderRequest {
    /// How much to capture, exact: more than 0 and at most the authorized amount (the
    /// whole authorization when absent).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_opt")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            value_type = Option<f64>,
            example = 25.98,
            exclusive_minimum = 0,
            maximum = 1_000_000_000_000_u64,
            multiple_of = 0.01
        )
    )]
    pub amount: Option<Decimal>,
}

/// When an order's payment is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    /// When the worker charges it.
    Automatic,
    /// Later, by `POST /api/v1/orders/{id}/capture`: the worker only authorizes it.
    Manual,
}

/// Where an order's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Authorized, not captured yet (manual capture).
    Authorized,
    /// Captured.
    Captured,
    /// Captured, and part of it given back.
    PartiallyRefunded,
    /// Captured, then given back in full.
    Refunded,
    /// Authorized, then released: nothing was ever taken.
    Voided,
}

/// The money side of an order, once the gateway took or holds money for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentResponse {
    /// Where it stands.
    pub status: PaymentStatus,
    /// When it is captured.
    pub capture_method: CaptureMethod,
    /// What the gateway holds (or held) for the order.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 30.97))]
    pub authorized_amount: Decimal,
    /// What was taken.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 25.98))]
    pub captured_amount: Decimal,
    /// What was given back.
    #[serde(with = "exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 0))]
    pub refunded_amount: Decimal,
}

/// A cancellation: when, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancellationResponse {
    /// When it was recorded.
    pub requested_at: DateTime<Utc>,
    /// Why.
    pub reason: CancelReason,
}

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Being given back (or voided): its outcome is not known yet.
    Pending,
    /// Given back.
    Succeeded,
    /// Nothing had been captured; the charge was voided and can no longer capture.
    NothingCaptured,
    /// The gateway refused it for good: nothing was given back.
    Refused,
}

impl RefundStatus {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::NothingCaptured => "nothing_captured",
            Self::Refused => "refused",
        }
    }
}

/// How a refund attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundAttemptStatus {
    /// Given back.
    Refunded,
    /// Nothing had been captured; the charge is void.
    NothingCaptured,
    /// The gateway refused it.
    Refused,
    /// The gateway did not process it.
    Failed,
    /// No answer in time.
    TimedOut,
}

/// One refund attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundAttemptResponse {
    /// 1, 2, 3, ...
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub attempt_number: u32,
    /// How it ended.
    pub status: RefundAttemptStatus,
    /// The gateway's id of the refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the refund was sent.
    pub started_at: DateTime<Utc>,
    /// When its outcome was known.
    pub finished_at: DateTime<Utc>,
}

/// A page of orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderListResponse {
    /// The page's orders, newest first.
    pub orders: Vec<OrderResponse>,
    /// Orders matching the filters, on all pages.
    pub total: u64,
    /// This page's number (from 1).
    pub page: u32,
    /// Orders per page.
    pub page_size: u32,
    /// Pass as `cursor` (with the same filters) for the next page; absent on the last.
    /// Also in the answer's `Link: <...>; rel="next"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The filters and page of `GET /api/v1/orders`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListOrdersQuery {
    /// Only this customer's orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        param(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub customer_id: Option<String>,
    /// Only orders in this status (the service reads any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// Page number, 1 to 1,000 (default 1); deeper pages are reached with `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1_000))]
    pub page: Option<u32>,
    /// The page after the one whose `next_cursor` this is: a seek, as fast at any depth,
    /// that neither skips nor repeats orders placed meanwhile. It decides over `page`: the
    /// answer's `page` is the cursor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        param(min_length = 56, max_length = 56, pattern = r"^[0-9a-f]{56}$")
    )]
    pub cursor: Option<String>,
    /// Orders per page, 1 to 100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub page_size: Option<u32>,
}

/// Defaults the service applies to [`ListOrdersQuery`].
pub mod list_defaults {
    /// The first page.
    pub const PAGE: u32 = 1;
    /// Orders per page.
    pub const PAGE_SIZE: u32 = 20;
    /// Largest page size.
    pub const MAX_PAGE_SIZE: u32 = 100;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_in_any_case_and_write_in_snake_case() {
        for status in OrderStatus::ALL {
            let upper = status.as_str().to_uppercase();
            assert_eq!(upper.parse::<OrderStatus>().unwrap(), status);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().into())
            );
        }
        assert!("shipped".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn only_confirmed_failed_and_cancelled_are_terminal() {
        let terminal: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                OrderStatus::Confirmed,
                OrderStatus::PaymentFailed,
                OrderStatus::Cancelled
            ]
        );
    }

    #[test]
    fn an_order_reads_back_what_it_wrote() {
        let order = OrderResponse {
            id: Uuid::nil(),
            customer_id: "c".into(),
            items: vec![ItemResponse {
                item_id: "i".into(),
                item_name: "n".into(),
                quantity: 3,
                price: "0.10".parse().unwrap(),
            }],
            total_amount: "0.30".parse().unwrap(),
            payment_method: Some("pm_card_visa".into()),
            status: OrderStatus::PaymentProcessing,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            cancellation: Some(CancellationResponse {
                requested_at: DateTime::UNIX_EPOCH,
                reason: CancelReason::Duplicate,
            }),
            refunds: vec![RefundResponse {
                amount: "0.30".parse().unwrap(),
                status: RefundStatus::Pending,
                refund_id: None,
                reason: None,
                items: Vec::new(),
                requested_at: None,
                error_message: None,
                attempts: Vec::new(),
            }],
            payment: Some(PaymentResponse {
                status: PaymentStatus::Captured,
                capture_method: CaptureMethod::Manual,
                authorized_amount: "0.30".parse().unwrap(),
                captured_amount: "0.20".parse().unwrap(),
                refunded_amount: "0".parse().unwrap(),
            }),
            payment_attempts: vec![AttemptResponse {
                attempt_number: 1,
                status: AttemptStatus::TimedOut,
                transaction_id: None,
                error_message: Some("slow".into()),
                started_at: DateTime::UNIX_EPOCH,
                finished_at: DateTime::UNIX_EPOCH,
            }],
        };
        let json = serde_json::to_string(&order).unwrap();
        assert!(json.contains(r#""total_amount":0.30"#), "{json}");
        assert!(json.contains(r#""reason":"duplicate""#), "{json}");
        assert_eq!(serde_json::from_str::<OrderResponse>(&json).unwrap(), order);
    }
}
