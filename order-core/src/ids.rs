//! Identifiers and names: newtypes that only hold valid values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Invalid;

/// The identifier of an order: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an id read back from storage or a request.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Invalid::Malformed("must be a UUID".into()))
    }
}

/// Checks a bounded, non-blank, printable text value.
fn bounded_text(value: &str, max: usize) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::Empty);
    }
    let actual = value.chars().count();
    if actual > max {
        return Err(Invalid::TooLong { max, actual });
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::ControlCharacters);
    }
    Ok(())
}

/// Defines a text newtype of 1..=`$max` printable, non-blank characters.
macro_rules! bounded_string {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Largest number of characters allowed.
            pub const MAX_CHARS: usize = $max;

            /// Parses `value`, rejecting empty, blank, overlong or control-character text.
            pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
                let value = value.into();
                bounded_text(&value, Self::MAX_CHARS)?;
                Ok(Self(value))
            }

            /// The text inside.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_string!(
    /// The customer who places an order: 1 to 100 characters.
    CustomerId,
    100
);
bounded_string!(
    /// The catalogue id of an ordered item: 1 to 100 characters.
    ItemId,
    100
);
bounded_string!(
    /// The display name of an ordered item: 1 to 255 characters.
    ItemName,
    255
);
bounded_string!(
    /// Why a refund was asked for: 1 to 500 characters.
    RefundReason,
    500
);
bounded_string!(
    /// The name of a worker process that holds leases on orders: 1 to 200 characters.
    WorkerId,
    200
);

/// A processor's token for how the customer pays (Stripe's `pm_card_visa`, say): 1 to 255
/// visible ASCII characters, no spaces. It names a payment method the processor holds;
/// it is never a card number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentMethod(String);

impl PaymentMethod {
    /// Largest number of characters allowed.
    pub const MAX_CHARS: usize = 255;

    /// Parses `value`: 1 to 255 characters, each visible ASCII (`!` to `~`).
    pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
        let value = value.into();
        if value.is_empty() {
            return Err(Invalid::Empty);
        }
        let actual = value.chars().count();
        if actual > Self::MAX_CHARS {
            return Err(Invalid::TooLong {
                max: Self::MAX_CHARS,
                actual,
            });
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::Malformed(
                "must be visible ASCII characters only (no spaces)".into(),
            ));
        }
        Ok(Self(value))
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PaymentMethod {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<PaymentMethod> for String {
    fn from(value: PaymentMethod) -> Self {
        value.0
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_id_of_100_characters_is_accepted_and_101_rejected() {
        assert!(CustomerId::parse("c".repeat(100)).is_ok());
        assert_eq!(
            CustomerId::parse("c".repeat(101)),
            Err(Invalid::TooLong {
                max: 100,
                actual: 101
            })
        );
    }

    #[test]
    fn blank_and_control_text_is_rejected() {
        assert_eq!(ItemId::parse(""), Err(Invalid::Empty));
        assert_eq!(ItemId::parse("   "), Err(Invalid::Empty));
        assert_eq!(ItemName::parse("a\nb"), Err(Invalid::ControlCharacters));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(ItemName::parse("é".repeat(255)).is_ok());
    }

    #[test]
    fn a_payment_method_is_1_to_255_visible_ascii_characters() {
        assert!(PaymentMethod::parse("pm_card_visa").is_ok());
        assert!(PaymentMethod::parse("p".repeat(255)).is_ok());
        assert_eq!(
            PaymentMethod::parse("p".repeat(256)),
            Err(Invalid::TooLong {
                max: 255,
                actual: 256
            })
        );
        assert_eq!(PaymentMethod::parse(""), Err(Invalid::Empty));
        for bad in ["pm card", "pm_é", "pm\tx", " pm"] {
            assert!(
                matches!(PaymentMethod::parse(bad), Err(Invalid::Malformed(_))),
                "{bad:?} is rejected"
            );
        }
    }

    #[test]
    fn order_ids_are_time_ordered() {
        let a = OrderId::new();
        let b = OrderId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<OrderId>(), Ok(a));
    }
}
