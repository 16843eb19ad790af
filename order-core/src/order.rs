//! Orders, their items and the status state machine.
//!
//! [`Transition::apply`] is the only way to compute a new status: adapters persist
//! [`Transition`]s, which cannot be built for a move the state machine forbids.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, Invalid, ValidationErrors};
use crate::ids::{CustomerId, ItemId, ItemName, OrderId, PaymentMethod};
use crate::money::{Money, Price, Quantity};
use crate::payment::{CaptureMethod, PaymentAttempt, RefundAttempt};
use crate::trace::TraceParent;

/// Fewest items an order may have.
pub const MIN_ITEMS: usize = 1;
/// Most items an order may have.
pub const MAX_ITEMS: usize = 100;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Catalogue id of the item.
    pub item_id: ItemId,
    /// Display name of the item.
    pub item_name: ItemName,
    /// How many are ordered.
    pub quantity: Quantity,
    /// Price of one.
    pub price: Price,
}

impl OrderItem {
    /// `price * quantity`, exact.
    pub fn subtotal(&self) -> Money {
        self.price
            .money()
            .checked_mul(self.quantity.get())
            .expect("price <= 1e6 and quantity <= 1e4 cannot overflow")
    }
}

/// Unchecked input for an order item, as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncheckedItem {
    /// Catalogue id of the item.
    pub item_id: String,
    /// Display name of the item.
    pub item_name: String,
    /// How many are ordered.
    pub quantity: i64,
    /// Price of one.
    pub price: Decimal,
}

/// Unchecked input for an order, as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncheckedOrder {
    /// The customer placing the order.
    pub customer_id: String,
    /// The ordered items.
    pub items: Vec<UncheckedItem>,
    /// The processor's token for how the customer pays, when the gateway needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// A valid order that has not been placed yet: 1 to 100 valid items for a valid customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedOrder", into = "UncheckedOrder")]
pub struct NewOrder {
    customer_id: CustomerId,
    items: Vec<OrderItem>,
    payment_method: Option<PaymentMethod>,
    capture: CaptureMethod,
    trace: Option<TraceParent>,
}

/// Checks the number of items an order has: 1 to 100.
pub fn check_item_count(count: usize) -> Result<(), Invalid> {
    if count < MIN_ITEMS {
        Err(Invalid::TooFew { min: MIN_ITEMS })
    } else if count > MAX_ITEMS {
        Err(Invalid::TooMany {
            max: MAX_ITEMS,
            actual: count,
        })
    } else {
        Ok(())
    }
}

/// The path of field `name` of item `index`, as errors report it: `items[2].price`.
pub fn item_field(index: usize, name: &str) -> String {
    format!("items[{index}].{name}")
}

/// Collects the values and errors of an order's fields in input order: the one place
/// that decides how an order's input is checked, whatever it was read from (typed
/// [`UncheckedOrder`]s here, raw JSON in the HTTP adapter).
#[derive(Debug, Default)]
pub struct OrderFields {
    errors: Vec<FieldError>,
    customer_id: Option<CustomerId>,
    items: Vec<OrderItem>,
    payment_method: Option<PaymentMethod>,
}

impl OrderFields {
    /// No field read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `field` (one the caller found, such as a value of the wrong
    /// type).
    pub fn reject(&mut self, field: impl Into<String>, reason: Invalid) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// Checks `value` with `parse`; records the error at `field` and returns `None` when it
    /// fails.
    pub fn check<T, V>(
        &mut self,
        field: impl FnOnce() -> String,
        value: V,
        parse: impl FnOnce(V) -> Result<T, Invalid>,
    ) -> Option<T> {
        parse(value).map_err(|e| self.reject(field(), e)).ok()
    }

    /// Reads the customer.
    pub fn customer_id(&mut self, value: String) {
        self.customer_id = self.check(|| "customer_id".into(), value, CustomerId::parse);
    }

    /// Reads the payment method, when the order names one.
    pub fn payment_method(&mut self, value: String) {
        self.payment_method = self.check(|| "payment_method".into(), value, PaymentMethod::parse);
    }

    /// Checks the number of items; `false` when it is out of range, in which case the
    /// items should not be read one by one (a list of 1,000 is rejected as a whole).
    pub fn item_count(&mut self, count: usize) -> bool {
        self.check(|| "items".into(), count, check_item_count)
            .is_some()
    }

    /// Checks the catalogue id of item `index`.
    pub fn item_id(&mut self, index: usize, value: String) -> Option<ItemId> {
        self.check(|| item_field(index, "item_id"), value, ItemId::parse)
    }

    /// Checks the name of item `index`.
    pub fn item_name(&mut self, index: usize, value: String) -> Option<ItemName> {
        self.check(|| item_field(index, "item_name"), value, ItemName::parse)
    }

    /// Checks the quantity of item `index`.
    pub fn quantity(&mut self, index: usize, value: i64) -> Option<Quantity> {
        self.check(|| item_field(index, "quantity"), value, Quantity::new)
    }

    /// Checks the unit price of item `index`.
    pub fn price(&mut self, index: usize, value: Decimal) -> Option<Price> {
        self.check(|| item_field(index, "price"), value, Price::new)
    }

    /// Adds an item from its checked fields (`None`: rejected, and recorded why).
    pub fn item(
        &mut self,
        item_id: Option<ItemId>,
        item_name: Option<ItemName>,
        quantity: Option<Quantity>,
        price: Option<Price>,
    ) {
        if let (Some(item_id), Some(item_name), Some(quantity), Some(price)) =
            (item_id, item_name, quantity, price)
        {
            self.items.push(OrderItem {
                item_id,
                item_name,
                quantity,
                price,
            });
        }
    }

    /// The order, or every error recorded, in the order they were found.
    pub fn finish(self) -> Result<NewOrder, ValidationErrors> {
        let Self {
            errors,
            customer_id,
            items,
            payment_method,
        } = self;
        ValidationErrors::check(errors, || NewOrder {
            customer_id: customer_id.expect("no errors means a customer id"),
            items,
            payment_method,
            capture: CaptureMethod::Automatic,
            trace: None,
        })
    }
}

impl NewOrder {
    /// Checks every field of `input` and reports all that are wrong, with their paths.
    pub fn parse(input: UncheckedOrder) -> Result<Self, ValidationErrors> {
        let mut fields = OrderFields::new();
        fields.customer_id(input.customer_id);
        if let Some(method) = input.payment_method {
            fields.payment_method(method);
        }
        if fields.item_count(input.items.len()) {
            for (i, item) in input.items.into_iter().enumerate() {
                let item_id = fields.item_id(i, item.item_id);
                let item_name = fields.item_name(i, item.item_name);
                let quantity = fields.quantity(i, item.quantity);
                let price = fields.price(i, item.price);
                fields.item(item_id, item_name, quantity, price);
            }
        }
        fields.finish()
    }

    /// The customer placing the order.
    pub fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }

    /// The ordered items (1 to 100).
    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }

    /// The processor's token for how the customer pays, when the order names one.
    pub fn payment_method(&self) -> Option<&PaymentMethod> {
        self.payment_method.as_ref()
    }

    /// Sum of `price * quantity` over the items, exact.
    pub fn total(&self) -> Money {
        self.items.iter().map(OrderItem::subtotal).sum()
    }

    /// The order as placed at `now` under `id`: `pending`, no attempts yet.
    pub fn place(self, id: OrderId, now: DateTime<Utc>) -> Order {
        let total_amount = self.total();
        Order {
            id,
            customer_id: self.customer_id,
            items: self.items,
            total_amount,
            payment_method: self.payment_method,
            capture: self.capture,
            captured: None,
            status: OrderStatus::Pending,
            created_at: now,
            updated_at: now,
            payment_attempts: Vec::new(),
            cancellation: None,
            refund_attempts: Vec::new(),
            partial_refunds: Vec::new(),
            trace: self.trace,
        }
    }

    /// The same order, paid with `capture`: captured when charged, or only authorized then
    /// and captured later. Set by the service that places it, not by the customer, so it
    /// is not part of what a request asks for.
    #[must_use]
    pub fn with_capture(mut self, capture: CaptureMethod) -> Self {
        self.capture = capture;
        self
    }

    /// The same order, placed in the trace `trace` (the request's, when it is traced). The
    /// trace is not part of what the order is: two requests for the same order in different
    /// traces are the same request to an idempotency key.
    #[must_use]
    pub fn in_trace(mut self, trace: Option<TraceParent>) -> Self {
        self.trace = trace;
        self
    }
}

impl TryFrom<UncheckedOrder> for NewOrder {
    type Error = ValidationErrors;
    fn try_from(value: UncheckedOrder) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<NewOrder> for UncheckedOrder {
    fn from(value: NewOrder) -> Self {
        Self {
            customer_id: value.customer_id.into(),
            items: value
                .items
                .into_iter()
                .map(|item| UncheckedItem {
                    item_id: item.item_id.into(),
                    item_name: item.item_name.into(),
                    quantity: i64::from(item.quantity.get()),
                    price: item.price.into(),
                })
                .collect(),
            payment_method: value.payment_method.map(String::from),
        }
    }
}

/// A placed order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// The customer who placed it.
    pub customer_id: CustomerId,
    /// Its items (1 to 100).
    pub items: Vec<OrderItem>,
    /// Sum of the items' subtotals.
    pub total_amount: Money,
    /// The processor's token for how the customer pays, when the order named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    /// Whether its payment is captured when charged, or authorized and captured later.
    #[serde(default)]
    pub capture: CaptureMethod,
    /// The capture of its authorized payment ([`CaptureMethod::Manual`]), once asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<CaptureRecord>,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When its status or attempts last changed.
    pub updated_at: DateTime<Utc>,
    /// Every payment attempt made for it, oldest first.
    pub payment_attempts: Vec<PaymentAttempt>,
    /// The cancellation, once one was requested.
    pub cancellation: Option<Cancellation>,
    /// Every refund attempt made for it, oldest first.
    pub refund_attempts: Vec<RefundAttempt>,
    /// Refunds asked for on their own (part or all of its captured payment, while it
    /// stays `confirmed`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_refunds: Vec<PartialRefund>,
    /// The trace of the request that placed it, when that request was traced: the work done
    /// for the order later (its payment, its refund) joins this trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceParent>,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
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

    /// The snake_case name used in JSON and storage.
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
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Invalid::Malformed(format!(
                    "must be one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// A cancellation: when it was asked for, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// When it was recorded.
    pub requested_at: DateTime<Utc>,
    /// Why.
    pub reason: CancelReason,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// A worker has taken it; payment is under way or waiting for a retry.
    PaymentProcessing,
    /// Paid. Terminal.
    Confirmed,
    /// Payment declined or given up on. Terminal.
    PaymentFailed,
    /// Cancellation requested after payment started: a worker refunds what was captured
    /// (or voids the charge), then the order is `cancelled`.
    Cancelling,
    /// Cancelled, with any captured payment refunded. Terminal.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in life order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::PaymentFailed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Whether no worker has anything left to do for the order. `confirmed` is terminal for
    /// payment, and only a cancellation moves it on; `payment_failed` and `cancelled` never
    /// change.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::PaymentFailed | Self::Cancelled
        )
    }

    /// The snake_case name used in JSON and storage.
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

    /// Whether no event at all can change this status.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::PaymentFailed | Self::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = Invalid;

    /// Accepts the name in any case (`CONFIRMED`, `confirmed`, `Payment_Failed`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Invalid::Malformed(format!(
                    "must be one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    /// A worker took the order for payment.
    PaymentStarted,
    /// The gateway captured the payment.
    PaymentCaptured,
    /// The payment was declined, or every attempt allowed failed.
    PaymentFailed,
    /// The order was cancelled before payment started.
    Cancelled,
    /// A cancellation was asked for after payment started: what was captured must be
    /// refunded (or the charge voided) before the order is cancelled.
    CancelRequested,
    /// The payment of a cancelling order was refunded, or found never captured and voided.
    Refunded,
}

/// An event that the order's current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot take the event {event:?}")]
pub struct TransitionError {
    /// The status the order was in.
    pub from: OrderStatus,
    /// The event refused.
    pub event: OrderEvent,
}

/// The order state machine: the status after `event`, or why `event` is not allowed.
///
/// ```text
/// pending --PaymentStarted--> payment_processing --PaymentCaptured--> confirmed
///    |                           |     +---------PaymentFailed----> payment_failed
///    |                     CancelRequested                             |
///    |                           v                                     |
///    |                       cancelling <------CancelRequested---------+ (from confirmed)
///    |                           |
///    |                        Refunded
///    |                           v
///    +-------Cancelled------> cancelled
/// ```
pub const fn next_status(
    from: OrderStatus,
    event: OrderEvent,
) -> Result<OrderStatus, TransitionError> {
    use OrderEvent as E;
    use OrderStatus as S;
    match (from, event) {
        (S::Pending, E::PaymentStarted) => Ok(S::PaymentProcessing),
        (S::Pending, E::Cancelled) | (S::Cancelling, E::Refunded) => Ok(S::Cancelled),
        (S::PaymentProcessing, E::PaymentCaptured) => Ok(S::Confirmed),
        (S::PaymentProcessing, E::PaymentFailed) => Ok(S::PaymentFailed),
        (S::PaymentProcessing | S::Confirmed, E::CancelRequested) => Ok(S::Cancelling),
        (S::Pending, E::PaymentCaptured | E::PaymentFailed | E::CancelRequested | E::Refunded)
        | (S::PaymentProcessing, E::PaymentStarted | E::Cancelled | E::Refunded)
        | (
            S::Confirmed,
            E::PaymentStarted | E::PaymentCaptured | E::PaymentFailed | E::Cancelled | E::Refunded,
        )
        | (
            S::Cancelling,
            E::PaymentStarted
            | E::PaymentCaptured
            | E::PaymentFailed
            | E::Cancelled
            | E::CancelRequested,
        )
        | (S::PaymentFailed | S::Cancelled, _) => Err(TransitionError { from, event }),
    }
}

/// A status change the state machine allows. Only [`Transition::apply`] makes one, so a
/// repository handed a `Transition` can trust it and apply it conditionally on `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    from: OrderStatus,
    to: OrderStatus,
    event: OrderEvent,
}

impl Transition {
    /// The transition `event` causes from `from`, if allowed.
    pub const fn apply(from: OrderStatus, event: OrderEvent) -> Result<Self, TransitionError> {
        match next_status(from, event) {
            Ok(to) => Ok(Self { from, to, event }),
            Err(e) => Err(e),
        }
    }

    /// The status the order must be in.
    pub const fn from(&self) -> OrderStatus {
        self.from
    }

    /// The status the order will be in.
    pub const fn to(&self) -> OrderStatus {
        self.to
    }

    /// The event causing it.
    pub const fn event(&self) -> OrderEvent {
        self.event
    }
}

mod refunds;
pub use refunds::{
    MAX_REFUND_LINES, PartialRefund, PartialRefundState, RefundAsk, RefundDraft, RefundSettlement,
    RefundedItem,
};
mod settlement;
pub use settlement::{CaptureRecord, Payment, PaymentStatus, Refund, RefundStatus};

#[cfg(test)]
mod tests;
