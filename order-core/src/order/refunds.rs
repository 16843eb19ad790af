//! Refunds asked for on their own: part (or all) of an order's captured payment given back
//! while the order keeps its status, each under a key of its own, never more in all than
//! was captured.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Order, OrderStatus};
use crate::error::{FieldError, Invalid, ValidationErrors};
use crate::ids::{ItemId, RefundReason};
use crate::money::{Money, Quantity};
use crate::payment::{CaptureMethod, IdempotencyKey, RefundRequest};

/// Most lines a refund of items may name.
pub const MAX_REFUND_LINES: usize = super::MAX_ITEMS;

/// Ordered items given back: `quantity` of the order's line `item_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RefundedItem {
    /// The catalogue id of an item the order holds.
    pub item_id: ItemId,
    /// How many of it.
    pub quantity: Quantity,
}

/// What a client asks to give back: an amount, or ordered items (their price times the
/// quantity, or part of that).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefundAsk {
    /// All of what is left.
    Rest,
    /// This much.
    Amount(Money),
    /// These items, 1 to [`MAX_REFUND_LINES`] lines, each item named once: their price
    /// times the quantity, or `amount` of it when given (a cold burger given back in part).
    Items {
        /// The lines.
        items: Vec<RefundedItem>,
        /// Part of their value, more than zero and at most all of it.
        amount: Option<Money>,
    },
}

/// A refund as asked for, with what it gives back worked out: what the store records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundDraft {
    /// The key the gateway deduplicates this refund by, the same for every attempt at it.
    pub key: IdempotencyKey,
    /// What to give back: more than zero.
    pub amount: Money,
    /// The items given back, when the refund was asked for by items.
    pub items: Vec<RefundedItem>,
    /// Why, when the client said.
    pub reason: Option<RefundReason>,
}

/// Where a refund asked for on its own stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PartialRefundState {
    /// Sent (or about to be), its outcome not known: its amount counts as given back until
    /// it is.
    Pending,
    /// Given back.
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// What was given back (the gateway gives back no more than was left).
        amount: Money,
        /// When the answer came.
        at: DateTime<Utc>,
    },
    /// The gateway refused it for good: nothing was given back.
    Refused {
        /// What the gateway said.
        error: String,
        /// When the answer came.
        at: DateTime<Utc>,
    },
}

/// A refund asked for on its own, as recorded on the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRefund {
    /// 1 for the order's first such refund, then 2, 3, ...
    pub number: NonZeroU32,
    /// The key the gateway deduplicates it by.
    pub key: IdempotencyKey,
    /// What was asked to be given back.
    pub amount: Money,
    /// The items given back, when it was asked for by items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<RefundedItem>,
    /// Why, when the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefundReason>,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// Where it stands.
    pub state: PartialRefundState,
}

impl PartialRefund {
    /// What it takes from what may still be given back: what it gave, or, while its
    /// outcome is not known, what it asked for; nothing once refused.
    pub fn reserved(&self) -> Money {
        match &self.state {
            PartialRefundState::Pending => self.amount,
            PartialRefundState::Refunded { amount, .. } => *amount,
            PartialRefundState::Refused { .. } => Money::ZERO,
        }
    }

    /// What it gave back.
    pub fn given(&self) -> Money {
        match &self.state {
            PartialRefundState::Refunded { amount, .. } => *amount,
            _ => Money::ZERO,
        }
    }

    /// The refund as it stood at `at`: pending until its answer came.
    #[must_use]
    pub fn as_of(&self, at: DateTime<Utc>) -> Self {
        let answered = match &self.state {
            PartialRefundState::Pending => return self.clone(),
            PartialRefundState::Refunded { at: when, .. }
            | PartialRefundState::Refused { at: when, .. } => *when,
        };
        Self {
            state: if answered <= at {
                self.state.clone()
            } else {
                PartialRefundState::Pending
            },
            ..self.clone()
        }
    }

    /// Whether its outcome is not known yet.
    pub const fn is_pending(&self) -> bool {
        matches!(self.state, PartialRefundState::Pending)
    }

    /// Whether it was asked for as `draft` is (same amount and items).
    pub fn is_asked_as(&self, draft: &RefundDraft) -> bool {
        self.key == draft.key && self.amount == draft.amount && self.items == draft.items
    }
}

/// What a stored refund became: the gateway's definitive answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundSettlement {
    /// Given back.
    Refunded {
        /// The gateway's id of the refund.
        refund_id: String,
        /// What was given back.
        amount: Money,
    },
    /// Refused for good.
    Refused {
        /// What the gateway said.
        error: String,
    },
}

impl RefundSettlement {
    /// The state it puts a refund in, answered at `at`.
    pub fn state(&self, at: DateTime<Utc>) -> PartialRefundState {
        match self {
            Self::Refunded { refund_id, amount } => PartialRefundState::Refunded {
                refund_id: refund_id.clone(),
                amount: *amount,
                at,
            },
            Self::Refused { error } => PartialRefundState::Refused {
                error: error.clone(),
                at,
            },
        }
    }
}

impl Order {
    /// What the gateway took: the total once paid (automatic capture), the capture once
    /// made (manual capture), else nothing.
    pub fn captured_amount(&self) -> Money {
        let paid = self.payment_attempts.iter().any(|a| a.outcome.is_success());
        match (self.capture, &self.captured) {
            (CaptureMethod::Automatic, _) if paid => self.total_amount,
            (CaptureMethod::Manual, Some(c)) if c.captured_at.is_some() => c.amount,
            _ => Money::ZERO,
        }
    }

    /// What refunds asked for on their own gave back, or may have (pending ones count).
    pub fn partially_refunded(&self) -> Money {
        self.partial_refunds
            .iter()
            .map(PartialRefund::reserved)
            .sum()
    }

    /// What a refund asked for on its own may still give back, while the order can be
    /// refunded that way at all: it is `confirmed` (so paid), not being cancelled, and its
    /// payment was captured. `None` otherwise. What the stores' `begin_refund` checks.
    pub fn refundable_now(&self) -> Option<Money> {
        if self.status != OrderStatus::Confirmed || self.cancellation.is_some() {
            return None;
        }
        let captured = match (self.capture, &self.captured) {
            (CaptureMethod::Automatic, _) => self.total_amount,
            (CaptureMethod::Manual, Some(c)) if c.captured_at.is_some() => c.amount,
            (CaptureMethod::Manual, _) => Money::ZERO,
        };
        (captured > Money::ZERO).then(|| captured.saturating_sub(self.partially_refunded()))
    }

    /// What `ask` gives back of this order: the amount, all of what is left, or the items'
    /// price times their quantity (or the amount asked for them, at most that). Items must be the order's,
    /// each named once, and no more of each than was ordered less what refunds (not
    /// refused) already gave back of it.
    pub fn refund_amount(&self, ask: &RefundAsk) -> Result<Money, ValidationErrors> {
        let items = match ask {
            RefundAsk::Amount(amount) if *amount == Money::ZERO => {
                return Err(ValidationErrors::one(
                    "amount",
                    Invalid::OutOfRange {
                        min: "0.01".into(),
                        max: self.total_amount.to_string(),
                    },
                ));
            }
            RefundAsk::Amount(amount) => return Ok(*amount),
            RefundAsk::Rest => {
                return match self.refundable_now() {
                    Some(left) if left > Money::ZERO => Ok(left),
                    _ => Err(ValidationErrors::one(
                        "amount",
                        Invalid::Malformed("nothing is left to refund".into()),
                    )),
                };
            }
            RefundAsk::Items { items, amount } => (items, amount),
        };
        let (items, part) = items;
        let mut errors = Vec::new();
        if items.is_empty() {
            errors.push(FieldError::new("items", Invalid::TooFew { min: 1 }));
        }
        if items.len() > MAX_REFUND_LINES {
            errors.push(FieldError::new(
                "items",
                Invalid::TooMany {
                    max: MAX_REFUND_LINES,
                    actual: items.len(),
                },
            ));
        }
        let mut total = Money::ZERO;
        for (i, asked) in items.iter().enumerate() {
            let field = |name: &str| format!("items[{i}].{name}");
            if items[..i].iter().any(|o| o.item_id == asked.item_id) {
                errors.push(FieldError::new(
                    field("item_id"),
                    Invalid::Malformed("names an item already named".into()),
                ));
                continue;
            }
            let Some(line) = self.items.iter().find(|l| l.item_id == asked.item_id) else {
                errors.push(FieldError::new(
                    field("item_id"),
                    Invalid::Malformed("is not an item of the order".into()),
                ));
                continue;
            };
            let given: u32 = self
                .partial_refunds
                .iter()
                .filter(|r| !matches!(r.state, PartialRefundState::Refused { .. }))
                .flat_map(|r| &r.items)
                .filter(|g| g.item_id == asked.item_id)
                .map(|g| g.quantity.get())
                .sum();
            let left = line.quantity.get().saturating_sub(given);
            if asked.quantity.get() > left {
                errors.push(FieldError::new(
                    field("quantity"),
                    Invalid::OutOfRange {
                        min: "1".into(),
                        max: left.to_string(),
                    },
                ));
                continue;
            }
            let subtotal = line.price.money().checked_mul(asked.quantity.get());
            total = subtotal
                .and_then(|s| total.checked_add(s))
                .expect("a refund of an order's items is at most its total");
        }
        if let Some(part) = *part {
            if errors.is_empty() && (part == Money::ZERO || part > total) {
                errors.push(FieldError::new(
                    "amount",
                    Invalid::OutOfRange {
                        min: "0.01".into(),
                        max: total.to_string(),
                    },
                ));
            }
            return ValidationErrors::check(errors, || part);
        }
        ValidationErrors::check(errors, || total)
    }

    /// The request sending refund `refund` of this order to the gateway.
    pub fn partial_refund_request(&self, refund: &PartialRefund) -> RefundRequest {
        RefundRequest {
            idempotency_key: refund.key.clone(),
            charge: self.charge_request(),
            payment_id: self.payment_id(),
            amount: refund.amount,
        }
    }

    /// The order's refund asked for under `key`, if any.
    pub fn partial_refund(&self, key: &IdempotencyKey) -> Option<&PartialRefund> {
        self.partial_refunds.iter().find(|r| &r.key == key)
    }
}
