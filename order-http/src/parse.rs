//! From the wire into the domain: one pass over a request's raw JSON that reports every bad
//! field, whether of the wrong type or of a wrong value, with its path and in input order.
//!
//! The values themselves are checked by the domain ([`OrderFields`]); this module only reads
//! JSON types, so no rule is written twice.

use order_api::money;
use order_core::order::{CancelReason, OrderFields};
use order_core::{CustomerId, FieldError, Invalid, NewOrder, ValidationErrors};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

fn required() -> Invalid {
    Invalid::Malformed("is required".into())
}

fn must_be(expected: &str) -> Invalid {
    Invalid::Malformed(format!("must be {expected}"))
}

/// Reads a field of `object` with `read`, recording a missing field or one of the wrong
/// type at `path`.
fn field<'v, T>(
    fields: &mut OrderFields,
    object: &'v Map<String, Value>,
    name: &str,
    path: impl FnOnce() -> String,
    read: impl FnOnce(&'v Value) -> Result<T, Invalid>,
) -> Option<T> {
    let Some(value) = object.get(name) else {
        fields.reject(path(), required());
        return None;
    };
    read(value).map_err(|e| fields.reject(path(), e)).ok()
}

fn text(value: &Value) -> Result<String, Invalid> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| must_be("a string"))
}

/// A whole number as JSON Schema reads one: `3`, but also `3.0` or `3e0` (a number whose
/// fractional part is zero). One too large for `i64` is still whole: it saturates, and the
/// domain reports it out of range.
fn whole(value: &Value) -> Result<i64, Invalid> {
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

fn decimal(value: &Value) -> Result<Decimal, Invalid> {
    money::from_json(value).ok_or_else(|| must_be("a decimal number"))
}

/// Parses a create-order body into a [`NewOrder`], or every reason it is not one.
pub fn new_order(body: &Value) -> Result<NewOrder, ValidationErrors> {
    let mut fields = OrderFields::new();
    let Some(object) = body.as_object() else {
        fields.reject("body", must_be("a JSON object"));
        return fields.finish();
    };
    if let Some(customer) = field(
        &mut fields,
        object,
        "customer_id",
        || "customer_id".into(),
        text,
    ) {
        fields.customer_id(customer);
    }
    let items = field(
        &mut fields,
        object,
        "items",
        || "items".into(),
        |v| v.as_array().ok_or_else(|| must_be("an array")),
    );
    if let Some(items) = items {
        if fields.item_count(items.len()) {
            for (i, item) in items.iter().enumerate() {
                let Some(item) = item.as_object() else {
                    fields.reject(format!("items[{i}]"), must_be("an object"));
                    continue;
                };
                let path = |name: &str| order_core::order::item_field(i, name);
                let item_id = field(&mut fields, item, "item_id", || path("item_id"), text)
                    .and_then(|v| fields.item_id(i, v));
                let item_name = field(&mut fields, item, "item_name", || path("item_name"), text)
                    .and_then(|v| fields.item_name(i, v));
                let quantity = field(&mut fields, item, "quantity", || path("quantity"), whole)
                    .and_then(|v| fields.quantity(i, v));
                let price = field(&mut fields, item, "price", || path("price"), decimal)
                    .and_then(|v| fields.price(i, v));
                fields.item(item_id, item_name, quantity, price);
            }
        }
    }
    fields.finish()
}

/// Parses a cancel body: absent, `null`, `{}`, or `{"reason": ...}`; the reason defaults to
/// `requested_by_customer`.
pub fn cancel_reason(body: Option<&Value>) -> Result<CancelReason, ValidationErrors> {
    let reject = |reason: Invalid| {
        ValidationErrors::check(vec![FieldError::new("reason", reason)], || {
            CancelReason::default()
        })
    };
    let Some(body) = body.filter(|b| !b.is_null()) else {
        return Ok(CancelReason::default());
    };
    let Some(object) = body.as_object() else {
        return ValidationErrors::check(
            vec![FieldError::new("body", must_be("a JSON object"))],
            CancelReason::default,
        );
    };
    match object.get("reason") {
        None | Some(Value::Null) => Ok(CancelReason::default()),
        Some(Value::String(reason)) => reason.parse().or_else(reject),
        Some(_) => reject(must_be("a string")),
    }
}

/// Parses a new API key's body, every bad field named at once: `name` (1 to 100
/// characters), `scopes` (known names, at least one), `customer_id` (optional),
/// `expires_in_seconds` (optional, at least 1).
pub fn new_api_key(
    body: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<order_core::access::NewApiKey, ValidationErrors> {
    use order_core::access::{NewApiKey, Scope};
    let mut errors = Vec::new();
    let Some(object) = body.as_object() else {
        return ValidationErrors::check(
            vec![FieldError::new("body", must_be("a JSON object"))],
            || NewApiKey {
                name: String::new(),
                scopes: Vec::new(),
                customer_id: None,
                expires_at: None,
            },
        );
    };
    let name = match object.get("name") {
        Some(Value::String(name))
            if !name.trim().is_empty()
                && name.chars().count() <= 100
                && !name.chars().any(char::is_control) =>
        {
            name.trim().to_owned()
        }
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "name",
                must_be("1 to 100 printable characters"),
            ));
            String::new()
        }
        None | Some(Value::Null) => {
            errors.push(FieldError::new("name", Invalid::Empty));
            String::new()
        }
        Some(_) => {
            errors.push(FieldError::new("name", must_be("a string")));
            String::new()
        }
    };
    let mut scopes = Vec::new();
    match object.get("scopes") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, scope) in list.iter().enumerate() {
                match scope.as_str().map(str::parse::<Scope>) {
                    Some(Ok(scope)) => scopes.push(scope),
                    Some(Err(e)) => errors.push(FieldError::new(format!("scopes[{i}]"), e)),
                    None => {
                        errors.push(FieldError::new(format!("scopes[{i}]"), must_be("a string")));
                    }
                }
            }
        }
        Some(Value::Array(_) | Value::Null) | None => {
            errors.push(FieldError::new("scopes", Invalid::TooFew { min: 1 }));
        }
        Some(_) => errors.push(FieldError::new(
            "scopes",
            must_be("an array of scope names"),
        )),
    }
    let customer_id = match object.get("customer_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => match CustomerId::parse(id.clone()) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(FieldError::new("customer_id", e));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("customer_id", must_be("a string")));
            None
        }
    };
    // A whole number of seconds, written as JSON allows (`110`, `110.0`, `1.1e2`).
    let expires_at = match object.get("expires_in_seconds") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let seconds = whole(value)
                .ok()
                .filter(|s| (1..=100 * 365 * 86_400).contains(s));
            if let Some(seconds) = seconds {
                Some(now + chrono::Duration::seconds(seconds))
            } else {
                errors.push(FieldError::new(
                    "expires_in_seconds",
                    must_be("a whole number of seconds from 1 to 100 years"),
                ));
                None
            }
        }
    };
    ValidationErrors::check(errors, || NewApiKey {
        name,
        scopes,
        customer_id,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rejected(body: &Value) -> Vec<(String, String)> {
        new_order(body)
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| (e.field.clone(), e.reason.to_string()))
            .collect()
    }

    #[test]
    fn a_cancel_reason_defaults_and_an_unknown_one_is_named() {
        assert_eq!(cancel_reason(None), Ok(CancelReason::RequestedByCustomer));
        assert_eq!(
            cancel_reason(Some(&Value::Null)),
            Ok(CancelReason::RequestedByCustomer)
        );
        assert_eq!(
            cancel_reason(Some(&json!({}))),
            Ok(CancelReason::RequestedByCustomer)
        );
        assert_eq!(
            cancel_reason(Some(&json!({"reason": "fraudulent"}))),
            Ok(CancelReason::Fraudulent)
        );
        for bad in [json!({"reason": "bored"}), json!({"reason": 3})] {
            let errors = cancel_reason(Some(&bad)).unwrap_err();
            assert_eq!(errors.errors()[0].field, "reason", "{bad}");
        }
        assert_eq!(
            cancel_reason(Some(&json!([]))).unwrap_err().errors()[0].field,
            "body"
        );
    }

    #[test]
    fn a_valid_body_parses_exactly() {
        let order = new_order(&json!({
            "customer_id": "c1",
            "items": [{"item_id": "i", "item_name": "n", "quantity": 3, "price": 0.1}]
        }))
        .unwrap();
        assert_eq!(order.total().to_string(), "0.30");
    }

    #[test]
    fn type_and_value_errors_are_reported_together_in_input_order() {
        let errors = rejected(&json!({
            "customer_id": "",
            "items": [
                {"item_id": 5, "item_name": "", "quantity": "two", "price": 1.001},
                {"item_name": "ok", "quantity": 0, "price": true},
                "not an item"
            ]
        }));
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "items[0].item_id",
                "items[0].item_name",
                "items[0].quantity",
                "items[0].price",
                "items[1].item_id",
                "items[1].quantity",
                "items[1].price",
                "items[2]",
            ]
        );
        assert_eq!(errors[1].1, "must be a string");
        assert_eq!(errors[4].1, "must have at most 2 decimal places");
        assert_eq!(errors[5].1, "is required");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_error() {
        assert_eq!(
            rejected(&json!([1, 2])),
            [("body".to_owned(), "must be a JSON object".to_owned())]
        );
    }

    #[test]
    fn too_many_items_are_rejected_as_a_whole() {
        let item = json!({"item_id": "", "item_name": "", "quantity": 0, "price": 0});
        let errors = rejected(&json!({"customer_id": "c", "items": vec![item; 101]}));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "items");
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction_or_an_exponent() {
        for quantity in [json!(3), json!(3.0), json!(3e0), json!(0.3e1)] {
            let order = new_order(&json!({
                "customer_id": "c",
                "items": [{"item_id": "i", "item_name": "n", "quantity": quantity, "price": 1}]
            }))
            .unwrap();
            assert_eq!(order.items()[0].quantity.get(), 3, "{quantity}");
        }
        let errors = rejected(&json!({
            "customer_id": "c",
            "items": [{"item_id": "i", "item_name": "n", "quantity": 2.5, "price": 1}]
        }));
        assert_eq!(errors[0].1, "must be a whole number");
    }

    #[test]
    fn a_huge_quantity_is_out_of_range_not_malformed() {
        for quantity in [
            json!(18_446_744_073_709_551_615_u64),
            json!(1e300),
            json!(-1e30),
        ] {
            let errors = rejected(&json!({
                "customer_id": "c",
                "items": [{"item_id": "i", "item_name": "n", "quantity": quantity, "price": 1}]
            }));
            assert_eq!(errors[0].0, "items[0].quantity");
            assert!(errors[0].1.starts_with("must be between"), "{errors:?}");
        }
    }
}
