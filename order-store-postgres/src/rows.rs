//! Rows as types: each statement's result decodes into one of these (`FromRow`, so a column
//! of the wrong type is a decode error, not a panic), then converts into domain values with
//! a [`CorruptRow`] naming the column the domain rejects.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use order_core::order::{Cancellation, CaptureRecord, PartialRefund, PartialRefundState};
use order_core::payment::{
    Attempt, AttemptOutcome, DeclineReason, IdempotencyKey, PaymentAttempt, RefundAttempt,
    RefundOutcome,
};
use order_core::{
    CustomerId, ItemId, ItemName, Money, Order, OrderId, OrderItem, OrderStatus, PaymentMethod,
    Price, Quantity, RefundReason,
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::CorruptRow;

/// The value of a column the row kind requires.
fn need<T>(column: &'static str, value: Option<T>) -> Result<T, CorruptRow> {
    value.ok_or_else(|| CorruptRow::new("orders", column, "missing"))
}

/// A status read back from a `status` column.
pub fn status(table: &'static str, text: &str) -> Result<OrderStatus, CorruptRow> {
    text.parse()
        .map_err(|e| CorruptRow::new(table, "status", format!("{text:?}: {e}")))
}

/// Which part of an order an [`OrderTreeRow`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRowKind {
    /// The order's own columns.
    Order,
    /// One of its items.
    Item,
    /// One of its payment attempts.
    Attempt,
    /// One of its refund attempts.
    RefundAttempt,
    /// One of its refunds asked for on their own.
    PartialRefund,
}

impl TreeRowKind {
    /// The kind encoded in the `kind` column.
    pub fn from_column(kind: i32) -> Result<Self, CorruptRow> {
        match kind {
            0 => Ok(Self::Order),
            1 => Ok(Self::Item),
            2 => Ok(Self::Attempt),
            3 => Ok(Self::RefundAttempt),
            4 => Ok(Self::PartialRefund),
            other => Err(CorruptRow::new("order tree", "kind", other)),
        }
    }
}

/// One row of an order-tree statement (see [`crate::orders::order_tree`]): an order, an
/// item, a payment attempt or a refund attempt, told apart by `kind`; the columns of the
/// other kinds are null.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderTreeRow {
    /// 0 order, 1 item, 2 payment attempt, 3 refund attempt.
    pub kind: i32,
    /// The order's place in the answer.
    pub rank: i64,
    /// The order's id.
    pub id: Uuid,
    /// Order: the customer.
    pub customer_id: Option<String>,
    /// Order: the total.
    pub total_amount: Option<Decimal>,
    /// Order: the status.
    pub status: Option<String>,
    /// Order: when placed.
    pub created_at: Option<DateTime<Utc>>,
    /// Order: when last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// Order: whether a dead worker may have charged it.
    pub charge_uncertain: Option<bool>,
    /// Order: when a cancellation was recorded.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Order: why.
    pub cancel_reason: Option<String>,
    /// Order: the W3C `traceparent` of the request that placed it.
    pub traceparent: Option<String>,
    /// Order: the processor's token for how the customer pays.
    pub payment_method: Option<String>,
    /// Order: `automatic` or `manual`.
    pub capture_method: Option<String>,
    /// Order: what a capture is asked to take.
    pub capture_amount: Option<Decimal>,
    /// Order: when the capture was asked for.
    pub capture_requested_at: Option<DateTime<Utc>>,
    /// Order: when the gateway took it.
    pub captured_at: Option<DateTime<Utc>>,
    /// Item: its position; attempt: its number.
    pub n: i32,
    /// Item: catalogue id.
    pub item_id: Option<String>,
    /// Item: name.
    pub item_name: Option<String>,
    /// Item: quantity.
    pub quantity: Option<i32>,
    /// Item: unit price.
    pub price: Option<Decimal>,
    /// Attempt: `succeeded`, `declined`, `failed` or `timed_out`.
    pub outcome: Option<String>,
    /// Attempt: the gateway's transaction id (of a refund, its refund id).
    pub transaction_id: Option<String>,
    /// Refund attempt: the amount given back.
    pub amount: Option<Decimal>,
    /// Attempt: the decline code.
    pub decline_reason: Option<String>,
    /// Attempt: what failed.
    pub error: Option<String>,
    /// Attempt: when sent.
    pub started_at: Option<DateTime<Utc>>,
    /// Attempt: when answered.
    pub finished_at: Option<DateTime<Utc>>,
    /// Partial refund: its key.
    pub refund_key: Option<String>,
    /// Partial refund: why, when the client said.
    pub reason: Option<String>,
    /// Partial refund: the items it gives back, as JSON.
    pub refund_items: Option<String>,
    /// Partial refund: what it gave back.
    pub given: Option<Decimal>,
}

impl OrderTreeRow {
    /// The order's capture, once asked for.
    fn capture_record(&self) -> Result<Option<CaptureRecord>, CorruptRow> {
        match (self.capture_amount, self.capture_requested_at) {
            (None, None) => Ok(None),
            (Some(amount), Some(requested_at)) => Ok(Some(CaptureRecord {
                amount: Money::new(amount)
                    .map_err(|e| CorruptRow::new("orders", "capture_amount", e))?,
                requested_at,
                captured_at: self.captured_at,
            })),
            _ => Err(CorruptRow::new(
                "orders",
                "capture_amount",
                "set without capture_requested_at, or the other way round",
            )),
        }
    }

    /// The order this row starts (items and attempts follow), and its `charge_uncertain`.
    pub fn order(&self) -> Result<(Order, bool), CorruptRow> {
        let customer_id = CustomerId::parse(need("customer_id", self.customer_id.clone())?)
            .map_err(|e| CorruptRow::new("orders", "customer_id", e))?;
        let total_amount = Money::new(need("total_amount", self.total_amount)?)
            .map_err(|e| CorruptRow::new("orders", "total_amount", e))?;
        let cancellation = match (self.cancel_requested_at, self.cancel_reason.as_deref()) {
            (None, None) => None,
            (Some(requested_at), Some(reason)) => Some(Cancellation {
                requested_at,
                reason: reason
                    .parse()
                    .map_err(|e| CorruptRow::new("orders", "cancel_reason", e))?,
            }),
            _ => {
                return Err(CorruptRow::new(
                    "orders",
                    "cancel_reason",
                    "set without cancel_requested_at, or the other way round",
                ));
            }
        };
        let order = Order {
            id: OrderId::from_uuid(self.id),
            customer_id,
            items: Vec::new(),
            total_amount,
            payment_method: self
                .payment_method
                .clone()
                .map(PaymentMethod::parse)
                .transpose()
                .map_err(|e| CorruptRow::new("orders", "payment_method", e))?,
            capture: need("capture_method", self.capture_method.clone())?
                .parse()
                .map_err(|e| CorruptRow::new("orders", "capture_method", e))?,
            captured: self.capture_record()?,
            status: status("orders", &need("status", self.status.clone())?)?,
            created_at: need("created_at", self.created_at)?,
            updated_at: need("updated_at", self.updated_at)?,
            payment_attempts: Vec::new(),
            cancellation,
            refund_attempts: Vec::new(),
            partial_refunds: Vec::new(),
            trace: self
                .traceparent
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| CorruptRow::new("orders", "traceparent", e))?,
        };
        Ok((order, self.charge_uncertain.unwrap_or(false)))
    }

    /// The item this row carries.
    pub fn item(&self) -> Result<OrderItem, CorruptRow> {
        let bad = |column, e: order_core::Invalid| CorruptRow::new("order_items", column, e);
        Ok(OrderItem {
            item_id: ItemId::parse(need("item_id", self.item_id.clone())?)
                .map_err(|e| bad("item_id", e))?,
            item_name: ItemName::parse(need("item_name", self.item_name.clone())?)
                .map_err(|e| bad("item_name", e))?,
            quantity: Quantity::new(i64::from(need("quantity", self.quantity)?))
                .map_err(|e| bad("quantity", e))?,
            price: Price::new(need("price", self.price)?).map_err(|e| bad("price", e))?,
        })
    }

    /// The payment attempt this row carries.
    pub fn attempt(&self) -> Result<PaymentAttempt, CorruptRow> {
        let bad = |column, e: String| CorruptRow::new("payment_attempts", column, e);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let outcome = match need("outcome", self.outcome.as_deref())? {
            "succeeded" => AttemptOutcome::Succeeded {
                transaction_id: text(&self.transaction_id),
            },
            "declined" => {
                let stored = text(&self.decline_reason);
                let reason = DeclineReason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == stored)
                    .ok_or_else(|| bad("decline_reason", stored))?;
                AttemptOutcome::Declined { reason }
            }
            "failed" => AttemptOutcome::Failed {
                error: text(&self.error),
            },
            "timed_out" => AttemptOutcome::TimedOut {
                error: text(&self.error),
            },
            other => return Err(bad("outcome", other.to_owned())),
        };
        let (number, started_at, finished_at) = self.attempt_frame()?;
        Ok(PaymentAttempt {
            number,
            outcome,
            started_at,
            finished_at,
        })
    }
}

impl OrderTreeRow {
    /// What every attempt row has: its number and when it started and ended.
    fn attempt_frame(&self) -> Result<(NonZeroU32, DateTime<Utc>, DateTime<Utc>), CorruptRow> {
        let number = u32::try_from(self.n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                CorruptRow::new(
                    "payment_attempts",
                    "number",
                    format!("{} is not positive", self.n),
                )
            })?;
        Ok((
            number,
            need("started_at", self.started_at)?,
            need("finished_at", self.finished_at)?,
        ))
    }

    /// The refund attempt this row carries.
    pub fn refund_attempt(&self) -> Result<RefundAttempt, CorruptRow> {
        let bad = |column, e: String| CorruptRow::new("payment_attempts", column, e);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let outcome = match need("outcome", self.outcome.as_deref())? {
            "refunded" => RefundOutcome::Refunded {
                refund_id: text(&self.transaction_id),
                amount: Money::new(need("amount", self.amount)?)
                    .map_err(|e| bad("amount", e.to_string()))?,
            },
            "nothing_captured" => RefundOutcome::NothingCaptured,
            "refused" => RefundOutcome::Refused {
                error: text(&self.error),
            },
            "failed" => RefundOutcome::Failed {
                error: text(&self.error),
            },
            "timed_out" => RefundOutcome::TimedOut {
                error: text(&self.error),
            },
            other => return Err(bad("outcome", other.to_owned())),
        };
        let (number, started_at, finished_at) = self.attempt_frame()?;
        Ok(RefundAttempt {
            number,
            outcome,
            started_at,
            finished_at,
        })
    }
}

impl OrderTreeRow {
    /// The refund asked for on its own this row carries (`outcome` is `pending`,
    /// `refunded` or `refused`; `amount` what it asked, `started_at` when).
    pub fn partial_refund(&self) -> Result<PartialRefund, CorruptRow> {
        let bad = |column, e: String| CorruptRow::new("order_refunds", column, e);
        let number = u32::try_from(self.n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| bad("number", format!("{} is not positive", self.n)))?;
        let money = |column, value| {
            Money::new(need(column, value)?).map_err(|e| bad(column, e.to_string()))
        };
        let answered = || need("answered_at", self.finished_at);
        let state = match need("outcome", self.outcome.as_deref())? {
            "pending" => PartialRefundState::Pending,
            "refunded" => PartialRefundState::Refunded {
                refund_id: need("refund_id", self.transaction_id.clone())?,
                amount: money("given", self.given)?,
                at: answered()?,
            },
            "refused" => PartialRefundState::Refused {
                error: self.error.clone().unwrap_or_default(),
                at: answered()?,
            },
            other => return Err(bad("outcome", other.to_owned())),
        };
        Ok(PartialRefund {
            number,
            key: IdempotencyKey::from_raw(need("key", self.refund_key.clone())?),
            amount: money("amount", self.amount)?,
            items: serde_json::from_str(self.refund_items.as_deref().unwrap_or("[]"))
                .map_err(|e| bad("items", e.to_string()))?,
            reason: self
                .reason
                .clone()
                .map(RefundReason::parse)
                .transpose()
                .map_err(|e| bad("reason", e.to_string()))?,
            requested_at: need("requested_at", self.started_at)?,
            state,
        })
    }
}

/// What a claim that took nothing finds: why the order could not be claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimMissRow {
    /// The order.
    pub id: Uuid,
    /// The order's status.
    pub status: String,
    /// When its current lease ends, if leased.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When its next attempt may start (null once settled).
    pub due_at: Option<DateTime<Utc>>,
}

/// What a fenced write that matched nothing finds: the status and the lease now held.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaseRow {
    /// The order.
    pub id: Uuid,
    /// The order's status.
    pub status: String,
    /// The token of the lease now held, if any.
    pub lease_token: Option<Uuid>,
}

/// A reserved or completed idempotency key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestKeyRow {
    /// SHA-256 of the order the key was first used for.
    pub fingerprint: Vec<u8>,
    /// The order it placed, once completed.
    pub order_id: Option<Uuid>,
}

/// A charge or refund attempt as the columns of `payment_attempts` store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptColumns {
    /// `kind`: `charge` or `refund`.
    pub kind: &'static str,
    /// `number`, from 1 per kind.
    pub number: i32,
    /// `outcome`.
    pub outcome: &'static str,
    /// `transaction_id`: a capture's transaction id or a refund's refund id.
    pub transaction_id: Option<String>,
    /// `decline_reason`.
    pub decline_reason: Option<&'static str>,
    /// `error`.
    pub error: Option<String>,
    /// `amount`: what a refund gave back.
    pub amount: Option<Decimal>,
    /// `started_at`.
    pub started_at: DateTime<Utc>,
    /// `finished_at`.
    pub finished_at: DateTime<Utc>,
}

/// Attempts as one array per column of `payment_attempts`, one entry per lease end (all
/// null for an end without an attempt), for a statement that binds them with `UNNEST`.
#[derive(Debug, Default)]
pub struct AttemptArrays {
    /// `kind`.
    pub kind: Vec<Option<&'static str>>,
    /// `number`.
    pub number: Vec<Option<i32>>,
    /// `outcome`.
    pub outcome: Vec<Option<&'static str>>,
    /// `transaction_id`.
    pub transaction_id: Vec<Option<String>>,
    /// `decline_reason`.
    pub decline_reason: Vec<Option<&'static str>>,
    /// `error`.
    pub error: Vec<Option<String>>,
    /// `amount`.
    pub amount: Vec<Option<Decimal>>,
    /// `started_at`.
    pub started_at: Vec<Option<DateTime<Utc>>>,
    /// `finished_at`.
    pub finished_at: Vec<Option<DateTime<Utc>>>,
}

impl AttemptArrays {
    /// Adds one entry: `attempt`'s columns, or nulls.
    pub fn push(&mut self, attempt: Option<&Attempt>) {
        let a = attempt.map(AttemptColumns::from);
        self.kind.push(a.as_ref().map(|a| a.kind));
        self.number.push(a.as_ref().map(|a| a.number));
        self.outcome.push(a.as_ref().map(|a| a.outcome));
        self.transaction_id
            .push(a.as_ref().and_then(|a| a.transaction_id.clone()));
        self.decline_reason
            .push(a.as_ref().and_then(|a| a.decline_reason));
        self.error.push(a.as_ref().and_then(|a| a.error.clone()));
        self.amount.push(a.as_ref().and_then(|a| a.amount));
        self.started_at.push(a.as_ref().map(|a| a.started_at));
        self.finished_at.push(a.as_ref().map(|a| a.finished_at));
    }
}

impl From<&Attempt> for AttemptColumns {
    fn from(attempt: &Attempt) -> Self {
        match attempt {
            Attempt::Charge(a) => {
                let (transaction_id, decline_reason, error) = match &a.outcome {
                    AttemptOutcome::Succeeded { transaction_id } => {
                        (Some(transaction_id.clone()), None, None)
                    }
                    AttemptOutcome::Declined { reason } => (None, Some(reason.as_str()), None),
                    AttemptOutcome::Failed { error } | AttemptOutcome::TimedOut { error } => {
                        (None, None, Some(error.clone()))
                    }
                };
                Self {
                    kind: "charge",
                    number: i32::try_from(a.number.get()).unwrap_or(i32::MAX),
                    outcome: a.outcome.as_str(),
                    transaction_id,
                    decline_reason,
                    error,
                    amount: None,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                }
            }
            Attempt::Refund(a) => {
                let (transaction_id, amount, error) = match &a.outcome {
                    RefundOutcome::Refunded { refund_id, amount } => {
                        (Some(refund_id.clone()), Some(amount.amount()), None)
                    }
                    RefundOutcome::NothingCaptured => (None, None, None),
                    RefundOutcome::Refused { error }
                    | RefundOutcome::Failed { error }
                    | RefundOutcome::TimedOut { error } => (None, None, Some(error.clone())),
                };
                Self {
                    kind: "refund",
                    number: i32::try_from(a.number.get()).unwrap_or(i32::MAX),
                    outcome: a.outcome.as_str(),
                    transaction_id,
                    decline_reason: None,
                    error,
                    amount,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                }
            }
        }
    }
}
