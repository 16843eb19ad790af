//! From the wire into the domain, one module per resource, one convention for all: a
//! parser takes the request's raw JSON (or query) and returns the domain value, or every bad
//! field at once ([`ValidationErrors`](order_core::ValidationErrors)), whether of the wrong type or of a wrong value, with
//! its path and in input order.
//!
//! The values themselves are checked by the domain (`OrderFields`, `CustomerId::parse`, ...);
//! the parsers only read JSON types, with the readers below, so no rule is written twice.

use order_api::money;
use order_core::Invalid;
use rust_decimal::Decimal;
use serde_json::Value;

pub mod keys;
pub mod orders;
pub mod refunds;
pub mod webhooks;

pub(super) fn required() -> Invalid {
    Invalid::Malformed("is required".into())
}

pub(super) fn must_be(expected: &str) -> Invalid {
    Invalid::Malformed(format!("must be {expected}"))
}

pub(super) fn text(value: &Value) -> Result<String, Invalid> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| must_be("a string"))
}

/// A whole number as JSON Schema reads one: `3`, but also `3.0` or `3e0` (a number whose
/// fractional part is zero). One too large for `i64` is still whole: it saturates, and the
/// domain reports it out of range.
pub(super) fn whole(value: &Value) -> Result<i64, Invalid> {
    let Value::Number(n) = value else {
        return Err(must_be("a whole number"));
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    let saturate = |negative: bool| if negative { i64::MIN } else { i64::MAX };
    let text = n.to_string();
    match money::parse_decimal(&text) {
        Some(d) if d.fract().is_zero() => {
            Ok(i64::try_from(d).unwrap_or_else(|_| saturate(d.is_sign_negative())))
        }
        Some(_) => Err(must_be("a whole number")),
        // Beyond a decimal's range (1e300, say): whole if it has no fraction.
        None => match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f.fract() == 0.0 => Ok(saturate(f < 0.0)),
            _ => Err(must_be("a whole number")),
        },
    }
}

pub(super) fn decimal(value: &Value) -> Result<Decimal, Invalid> {
    money::from_json(value).ok_or_else(|| must_be("a decimal number"))
}
