//! Exact money: decimal amounts with at most two decimal places, never floating point.

use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::Invalid;

/// Decimal places a money amount may have.
pub const MONEY_SCALE: u32 = 2;

/// A non-negative amount of money with at most two decimal places.
///
/// Arithmetic is exact. The amount is kept at scale 2, so `12.9` and `12.90` are the same
/// value and print as `12.90`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Money(Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Self = Self(Decimal::ZERO);

    /// Parses a decimal amount: non-negative, at most two decimal places.
    pub fn new(amount: Decimal) -> Result<Self, Invalid> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(Invalid::OutOfRange {
                min: "0".into(),
                max: Decimal::MAX.to_string(),
            });
        }
        let normalized = amount.normalize();
        if normalized.scale() > MONEY_SCALE {
            return Err(Invalid::TooPrecise { max: MONEY_SCALE });
        }
        let mut exact = normalized;
        exact.rescale(MONEY_SCALE);
        Ok(Self(exact))
    }

    /// The decimal amount, at scale 2.
    pub const fn amount(&self) -> Decimal {
        self.0
    }

    /// `self * quantity`, exactly; `None` only past `Decimal`'s range (about 7.9e28).
    pub fn checked_mul(self, quantity: u32) -> Option<Self> {
        self.0.checked_mul(Decimal::from(quantity)).map(Self)
    }

    /// `self - other`, or zero when `other` is more.
    #[must_use]
    pub fn saturating_sub(self, other: Self) -> Self {
        if other >= self {
            Self::ZERO
        } else {
            Self(self.0 - other.0)
        }
    }

    /// `self + other`, exactly; `None` only past `Decimal`'s range.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }
}

impl TryFrom<Decimal> for Money {
    type Error = Invalid;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Money> for Decimal {
    fn from(value: Money) -> Self {
        value.0
    }
}

impl FromStr for Money {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = Decimal::from_str_exact(s.trim())
            .map_err(|_| Invalid::Malformed("must be a decimal number".into()))?;
        Self::new(d)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Sum for Money {
    /// Sums exactly. Order totals are bounded (100 items x 10,000 x 1,000,000 = 1e12), far
    /// inside `Decimal`'s range, so the sum cannot overflow for any valid order.
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, |acc, m| {
            acc.checked_add(m).expect("money sum within Decimal range")
        })
    }
}

/// The unit price of an item: more than 0 and at most 1,000,000, two decimal places at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Price(Money);

impl Price {
    /// Largest unit price accepted.
    pub const MAX: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

    /// Parses a unit price.
    pub fn new(amount: Decimal) -> Result<Self, Invalid> {
        if amount <= Decimal::ZERO || amount > Self::MAX {
            return Err(Invalid::OutOfRange {
                min: "0.01".into(),
                max: Self::MAX.to_string(),
            });
        }
        Money::new(amount).map(Self)
    }

    /// The price as money.
    pub const fn money(&self) -> Money {
        self.0
    }
}

impl TryFrom<Decimal> for Price {
    type Error = Invalid;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Price> for Decimal {
    fn from(value: Price) -> Self {
        value.0.amount()
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many of an item are ordered: 1 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// Largest quantity accepted per item.
    pub const MAX: u32 = 10_000;

    /// Parses a quantity.
    pub fn new(value: i64) -> Result<Self, Invalid> {
        match u32::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(Invalid::OutOfRange {
                min: "1".into(),
                max: Self::MAX.to_string(),
            }),
        }
    }

    /// The number inside.
    pub const fn get(&self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Invalid;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn prices_are_bounded_and_at_most_two_decimal_places() {
        assert!(Price::new(dec("0.01")).is_ok());
        assert!(Price::new(dec("1000000")).is_ok());
        assert!(Price::new(dec("1000000.00")).is_ok());
        assert!(matches!(
            Price::new(dec("0")),
            Err(Invalid::OutOfRange { .. })
        ));
        assert!(matches!(
            Price::new(dec("-1")),
            Err(Invalid::OutOfRange { .. })
        ));
        assert!(matches!(
            Price::new(dec("1000000.01")),
            Err(Invalid::OutOfRange { .. })
        ));
        assert_eq!(
            Price::new(dec("12.999")),
            Err(Invalid::TooPrecise { max: 2 })
        );
        assert!(
            Price::new(dec("12.990")).is_ok(),
            "trailing zeros are not precision"
        );
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(10_000).is_ok());
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(10_001).is_err());
        assert!(Quantity::new(-3).is_err());
        assert!(Quantity::new(i64::MAX).is_err());
    }

    #[test]
    fn money_prints_at_scale_two() {
        assert_eq!(Money::new(dec("12.9")).unwrap().to_string(), "12.90");
        assert_eq!("30.97".parse::<Money>().unwrap().to_string(), "30.97");
    }

    proptest! {
        #[test]
        fn money_arithmetic_is_exact(cents in proptest::collection::vec((1i64..=100_000_000, 1u32..=10_000), 1..100)) {
            // cents as integers is the reference model: exact by construction.
            let expected: i128 = cents.iter().map(|(c, q)| i128::from(*c) * i128::from(*q)).sum();
            let total: Money = cents
                .iter()
                .map(|(c, q)| Price::new(Decimal::new(*c, 2)).unwrap().money().checked_mul(*q).unwrap())
                .sum();
            prop_assert_eq!(total.amount(), Decimal::from_i128_with_scale(expected, 2));
            prop_assert_eq!(total.amount().scale(), 2);
        }

        #[test]
        fn a_price_is_accepted_exactly_when_it_is_in_range_with_two_places(mantissa in -10_000_000_000i64..10_000_000_000, scale in 0u32..5) {
            let d = Decimal::new(mantissa, scale);
            let in_range = d > Decimal::ZERO && d <= Price::MAX;
            let precise = d.normalize().scale() <= 2;
            match Price::new(d) {
                Ok(p) => {
                    prop_assert!(in_range && precise);
                    prop_assert_eq!(p.money().amount(), d);
                    let json = serde_json::to_string(&p).unwrap();
                    prop_assert_eq!(serde_json::from_str::<Price>(&json).unwrap(), p);
                }
                Err(Invalid::OutOfRange { .. }) => prop_assert!(!in_range),
                Err(Invalid::TooPrecise { .. }) => prop_assert!(in_range && !precise),
                Err(other) => prop_assert!(false, "unexpected rejection {other:?}"),
            }
        }

        #[test]
        fn a_quantity_is_accepted_exactly_in_range_and_round_trips(q in any::<i64>()) {
            match Quantity::new(q) {
                Ok(v) => {
                    prop_assert!((1..=10_000).contains(&q));
                    let back: Quantity = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
                    prop_assert_eq!(back, v);
                }
                Err(e) => {
                    prop_assert!(!(1..=10_000).contains(&q));
                    prop_assert!(matches!(e, Invalid::OutOfRange { .. }), "wrong reason {:?}", e);
                }
            }
        }
    }
}
