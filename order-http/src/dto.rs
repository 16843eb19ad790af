//! The API's JSON shapes, separate from the domain types: what clients send and see.
//!
//! Money is a JSON number written with its exact decimal digits (`30.97`), never rounded
//! through floating point; prices are read the same way.

use chrono::{DateTime, Utc};
use order_core::order::{UncheckedItem, UncheckedOrder};
use order_core::payment::AttemptOutcome;
use order_core::{FieldError, Invalid, Money, Order, OrderStatus, PaymentAttempt};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// An item of a new order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateItemRequest {
    /// Catalogue id, 1 to 100 characters.
    #[schema(example = "item_001")]
    pub item_id: String,
    /// Display name, 1 to 255 characters.
    #[schema(example = "Burger")]
    pub item_name: String,
    /// 1 to 10,000.
    #[schema(example = 2)]
    pub quantity: i64,
    /// Unit price: more than 0, at most 1,000,000, at most 2 decimal places.
    #[schema(value_type = f64, example = 12.99)]
    pub price: Decimal,
}

/// A new order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderRequest {
    /// The customer, 1 to 100 characters.
    #[schema(example = "customer_123")]
    pub customer_id: String,
    /// 1 to 100 items.
    pub items: Vec<CreateItemRequest>,
}

fn type_error(errors: &mut Vec<FieldError>, field: String, expected: &str) {
    errors.push(FieldError::new(
        field,
        Invalid::Malformed(format!("must be {expected}")),
    ));
}

fn text(value: Option<&Value>, field: String, errors: &mut Vec<FieldError>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            type_error(errors, field, "a string");
            // Stand-in that passes validation, so only the type error is reported.
            "x".into()
        }
        None => {
            errors.push(FieldError::new(
                field,
                Invalid::Malformed("is required".into()),
            ));
            "x".into()
        }
    }
}

/// Reads a create-order body into unchecked domain input. Fields of the wrong type or
/// missing are reported here (with stand-ins put in their place, so that validation then
/// reports only the other fields); validation of values is the domain's.
pub fn read_create_order(body: &Value) -> (UncheckedOrder, Vec<FieldError>) {
    let mut errors = Vec::new();
    let Some(object) = body.as_object() else {
        type_error(&mut errors, "body".into(), "a JSON object");
        return (
            UncheckedOrder {
                customer_id: "x".into(),
                items: Vec::new(),
            },
            errors,
        );
    };
    let customer_id = text(object.get("customer_id"), "customer_id".into(), &mut errors);
    let items = match object.get("items") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            type_error(&mut errors, "items".into(), "an array");
            return (
                UncheckedOrder {
                    customer_id,
                    items: vec![stand_in_item()],
                },
                errors,
            );
        }
        None => {
            errors.push(FieldError::new(
                "items",
                Invalid::Malformed("is required".into()),
            ));
            return (
                UncheckedOrder {
                    customer_id,
                    items: vec![stand_in_item()],
                },
                errors,
            );
        }
    };
    if items.len() > order_core::order::MAX_ITEMS {
        // Too many: the domain rejects the list as a whole, without reading each one.
        return (
            UncheckedOrder {
                customer_id,
                items: items.iter().map(|_| stand_in_item()).collect(),
            },
            errors,
        );
    }
    let items = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_item(i, item, &mut errors))
        .collect();
    (UncheckedOrder { customer_id, items }, errors)
}

fn stand_in_item() -> UncheckedItem {
    UncheckedItem {
        item_id: "x".into(),
        item_name: "x".into(),
        quantity: 1,
        price: Decimal::ONE,
    }
}

fn read_item(i: usize, item: &Value, errors: &mut Vec<FieldError>) -> UncheckedItem {
    let Some(object) = item.as_object() else {
        type_error(errors, format!("items[{i}]"), "an object");
        return stand_in_item();
    };
    let field = |name: &str| format!("items[{i}].{name}");
    let item_id = text(object.get("item_id"), field("item_id"), errors);
    let item_name = text(object.get("item_name"), field("item_name"), errors);
    let quantity = match object.get("quantity") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(1),
        Some(Value::Number(n)) if n.as_u64().is_some() => i64::MAX,
        Some(_) => {
            type_error(errors, field("quantity"), "a whole number");
            1
        }
        None => {
            errors.push(FieldError::new(
                field("quantity"),
                Invalid::Malformed("is required".into()),
            ));
            1
        }
    };
    let price = match object.get("price") {
        // With arbitrary precision, the number's text is exactly what the client sent.
        Some(Value::Number(n)) => parse_decimal(&n.to_string()),
        Some(Value::String(s)) => parse_decimal(s),
        Some(_) => None,
        None => {
            errors.push(FieldError::new(
                field("price"),
                Invalid::Malformed("is required".into()),
            ));
            Some(Decimal::ONE)
        }
    };
    let price = price.unwrap_or_else(|| {
        type_error(errors, field("price"), "a decimal number");
        Decimal::ONE
    });
    UncheckedItem {
        item_id,
        item_name,
        quantity,
        price,
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// Writes money as a JSON number with its exact digits.
fn money<S: Serializer>(amount: &Money, s: S) -> Result<S::Ok, S::Error> {
    let n: serde_json::Number = amount
        .to_string()
        .parse()
        .map_err(serde::ser::Error::custom)?;
    n.serialize(s)
}

/// An item of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResponse {
    /// Catalogue id.
    pub item_id: String,
    /// Display name.
    pub item_name: String,
    /// How many.
    pub quantity: u32,
    /// Unit price.
    #[serde(serialize_with = "money")]
    #[schema(value_type = f64, example = 12.99)]
    pub price: Money,
}

/// One payment attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    /// 1, 2, 3, ...
    pub attempt_number: u32,
    /// `succeeded`, `declined`, `failed` or `timed_out`.
    pub status: &'static str,
    /// The gateway's id of a captured payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Why it was declined or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the charge was sent.
    pub started_at: DateTime<Utc>,
    /// When its outcome was known.
    pub finished_at: DateTime<Utc>,
}

impl From<&PaymentAttempt> for AttemptResponse {
    fn from(a: &PaymentAttempt) -> Self {
        let (transaction_id, error_message) = match &a.outcome {
            AttemptOutcome::Succeeded { transaction_id } => (Some(transaction_id.clone()), None),
            AttemptOutcome::Declined { reason } => (None, Some(reason.to_string())),
            AttemptOutcome::Failed { error } | AttemptOutcome::TimedOut { error } => {
                (None, Some(error.clone()))
            }
        };
        Self {
            attempt_number: a.number.get(),
            status: a.outcome.as_str(),
            transaction_id,
            error_message,
            started_at: a.started_at,
            finished_at: a.finished_at,
        }
    }
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// The customer.
    pub customer_id: String,
    /// Its items.
    pub items: Vec<ItemResponse>,
    /// Sum of price x quantity.
    #[serde(serialize_with = "money")]
    #[schema(value_type = f64, example = 30.97)]
    pub total_amount: Money,
    /// `pending`, `payment_processing`, `confirmed`, `payment_failed` or `cancelled`.
    #[schema(value_type = String, example = "pending")]
    pub status: OrderStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every payment attempt, oldest first.
    pub payment_attempts: Vec<AttemptResponse>,
}

impl From<&Order> for OrderResponse {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.as_uuid(),
            customer_id: o.customer_id.to_string(),
            items: o
                .items
                .iter()
                .map(|i| ItemResponse {
                    item_id: i.item_id.to_string(),
                    item_name: i.item_name.to_string(),
                    quantity: i.quantity.get(),
                    price: i.price.money(),
                })
                .collect(),
            total_amount: o.total_amount,
            status: o.status,
            created_at: o.created_at,
            updated_at: o.updated_at,
            payment_attempts: o
                .payment_attempts
                .iter()
                .map(AttemptResponse::from)
                .collect(),
        }
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderListResponse {
    /// The page's orders, newest first.
    pub orders: Vec<OrderResponse>,
    /// Orders matching the filters, on all pages.
    pub total: u64,
    /// This page's number (from 1).
    pub page: u32,
    /// Orders per page.
    pub page_size: u32,
}

/// Query parameters of the listing, read as text so every bad one can be reported.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this customer's orders.
    pub customer_id: Option<String>,
    /// Only orders in this status (any case).
    pub status: Option<String>,
    /// Page number, from 1 (default 1).
    pub page: Option<String>,
    /// Orders per page, 1 to 100 (default 20).
    pub page_size: Option<String>,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `healthy` when the process answers.
    pub status: &'static str,
    /// `order-service`.
    pub service: &'static str,
}

/// Readiness: each dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// The store: `ok` or what failed.
    pub database: String,
    /// The queue: `ok` or what failed.
    pub queue: String,
}
