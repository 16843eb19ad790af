//! Exact amounts on the wire: a decimal is written as a JSON number with exactly its digits
//! (`30.97`, never `30.969999999999999`) and read from a JSON number or a string without
//! passing through floating point.
//!
//! Use with `#[serde(with = "order_api::money::exact")]` on a `rust_decimal::Decimal`. Reading
//! exact numbers needs serde_json's `arbitrary_precision` feature, which this crate's
//! workspace enables.

use rust_decimal::Decimal;

/// Parses decimal text exactly: plain (`12.99`) or scientific (`1.299e1`), white space
/// around it ignored.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// Reads an exact decimal from a JSON value: a number (its digits as sent) or a string.
pub fn from_json(value: &serde_json::Value) -> Option<Decimal> {
    match value {
        serde_json::Value::Number(n) => parse_decimal(&n.to_string()),
        serde_json::Value::String(s) => parse_decimal(s),
        _ => None,
    }
}

/// The serde functions for `#[serde(with = "exact")]`.
pub mod exact {
    use rust_decimal::Decimal;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `amount` as a JSON number with its exact digits.
    pub fn serialize<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let n: serde_json::Number = amount
            .to_string()
            .parse()
            .map_err(serde::ser::Error::custom)?;
        n.serialize(s)
    }

    /// Reads a decimal from a JSON number or string, exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        super::from_json(&value)
            .ok_or_else(|| D::Error::custom(format!("expected a decimal number, got {value}")))
    }
}

/// The serde functions for `#[serde(with = "exact_opt")]` on an `Option<Decimal>`
/// (with `default`, so an absent field is `None`).
pub mod exact_opt {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `amount` as [`super::exact`] does, or `null`.
    pub fn serialize<S: Serializer>(amount: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match amount {
            Some(amount) => super::exact::serialize(amount, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None`, anything else as [`super::exact`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if value.is_null() {
            return Ok(None);
        }
        super::from_json(&value).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a decimal number, got {value}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Price {
        #[serde(with = "exact")]
        amount: Decimal,
    }

    #[test]
    fn amounts_travel_as_numbers_with_their_exact_digits() {
        let price = Price {
            amount: "30.97".parse().unwrap(),
        };
        let text = serde_json::to_string(&price).unwrap();
        assert_eq!(text, r#"{"amount":30.97}"#);
        assert_eq!(serde_json::from_str::<Price>(&text).unwrap(), price);
    }

    #[test]
    fn amounts_are_read_from_strings_and_scientific_notation() {
        let read = |json: &str| serde_json::from_str::<Price>(json).unwrap().amount;
        assert_eq!(read(r#"{"amount":"12.99"}"#).to_string(), "12.99");
        assert_eq!(read(r#"{"amount":1.299e1}"#).to_string(), "12.99");
        assert!(serde_json::from_str::<Price>(r#"{"amount":true}"#).is_err());
    }
}
