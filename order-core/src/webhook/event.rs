//! The events of an order's life and their types.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Invalid;
use crate::ids::OrderId;
use crate::order::{Order, OrderStatus};

/// What happened to an order: one type per status an order can reach, `order.refunded`
/// beside `order.cancelled` when a captured payment was given back, and
/// `order.partially_refunded` when a refund asked for on its own gave part of it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The order was accepted (`pending`).
    #[serde(rename = "order.created")]
    Created,
    /// A worker took the order for payment (`payment_processing`).
    #[serde(rename = "order.payment_processing")]
    PaymentProcessing,
    /// The payment was captured (`confirmed`).
    #[serde(rename = "order.confirmed")]
    Confirmed,
    /// The payment was declined or given up on (`payment_failed`).
    #[serde(rename = "order.payment_failed")]
    PaymentFailed,
    /// A cancellation was asked for after payment started: the payment is being refunded
    /// or voided (`cancelling`).
    #[serde(rename = "order.cancelling")]
    Cancelling,
    /// The order was cancelled (`cancelled`).
    #[serde(rename = "order.cancelled")]
    Cancelled,
    /// The captured payment of a cancelled order was given back (sent with, and after,
    /// `order.cancelled`; not sent when nothing had been captured).
    #[serde(rename = "order.refunded")]
    Refunded,
    /// A refund asked for on its own gave back part (or all) of a `confirmed` order's
    /// captured payment; the order stays `confirmed` and its `refunds` list the refund.
    #[serde(rename = "order.partially_refunded")]
    PartiallyRefunded,
}

impl EventType {
    /// Every type.
    pub const ALL: [Self; 8] = [
        Self::Created,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::PaymentFailed,
        Self::Cancelling,
        Self::Cancelled,
        Self::Refunded,
        Self::PartiallyRefunded,
    ];

    /// Its name, as in `order.confirmed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "order.created",
            Self::PaymentProcessing => "order.payment_processing",
            Self::Confirmed => "order.confirmed",
            Self::PaymentFailed => "order.payment_failed",
            Self::Cancelling => "order.cancelling",
            Self::Cancelled => "order.cancelled",
            Self::Refunded => "order.refunded",
            Self::PartiallyRefunded => "order.partially_refunded",
        }
    }

    /// The event an order reaching `status` produces.
    pub const fn entering(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => Self::Created,
            OrderStatus::PaymentProcessing => Self::PaymentProcessing,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::PaymentFailed => Self::PaymentFailed,
            OrderStatus::Cancelling => Self::Cancelling,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }

    /// The order's status once this event happened.
    pub const fn status(self) -> OrderStatus {
        match self {
            Self::Created => OrderStatus::Pending,
            Self::PaymentProcessing => OrderStatus::PaymentProcessing,
            Self::Confirmed | Self::PartiallyRefunded => OrderStatus::Confirmed,
            Self::PaymentFailed => OrderStatus::PaymentFailed,
            Self::Cancelling => OrderStatus::Cancelling,
            Self::Cancelled | Self::Refunded => OrderStatus::Cancelled,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Invalid::Malformed(format!(
                    "unknown event type {s:?}; expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// Declares an identifier shown as a prefix and a UUID's 32 hex digits.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// What every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read back from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix(Self::PREFIX)
                    .filter(|hex| hex.len() == 32)
                    .and_then(|hex| Uuid::try_parse(hex).ok())
                    .map(Self)
                    .ok_or_else(|| {
                        Invalid::Malformed(format!(
                            "must be {}{}",
                            Self::PREFIX,
                            "followed by 32 hex digits"
                        ))
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// The id of an event: `evt_` and 32 hex digits. It is the `webhook-id` of every
    /// delivery of the event, retries included.
    EventId,
    "evt_"
);

prefixed_id!(
    /// The id of a webhook endpoint: `ep_` and 32 hex digits.
    EndpointId,
    "ep_"
);

/// Something that happened to an order, as the outbox records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The order it happened to.
    pub order_id: OrderId,
    /// What happened.
    pub kind: EventType,
    /// When: the time of the status change.
    pub occurred_at: DateTime<Utc>,
}

impl Order {
    /// The order as it was when `event` happened: its status then, and only the attempts
    /// finished and the cancellation recorded by then. An order's history only grows, so
    /// this is what a read at that moment returned.
    #[must_use]
    pub fn as_of(&self, event: &Event) -> Self {
        let at = event.occurred_at;
        Self {
            status: event.kind.status(),
            updated_at: at,
            payment_attempts: self
                .payment_attempts
                .iter()
                .filter(|a| a.finished_at <= at)
                .cloned()
                .collect(),
            refund_attempts: self
                .refund_attempts
                .iter()
                .filter(|a| a.finished_at <= at)
                .cloned()
                .collect(),
            partial_refunds: self
                .partial_refunds
                .iter()
                .filter(|r| r.requested_at <= at)
                .map(|r| r.as_of(at))
                .collect(),
            cancellation: self.cancellation.filter(|c| c.requested_at <= at),
            ..self.clone()
        }
    }
}
