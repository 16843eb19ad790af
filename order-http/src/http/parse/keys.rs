//! API keys: a new key's body.

use order_core::access::{NewApiKey, Scope};
use order_core::{CustomerId, FieldError, Invalid, ValidationErrors};
use serde_json::Value;

use super::{must_be, whole};

/// Parses a new API key's body, every bad field named at once: `name` (1 to 100
/// characters), `scopes` (known names, at least one), `customer_id` (optional),
/// `expires_in_seconds` (optional, at least 1).
pub fn new_api_key(
    body: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<order_core::access::NewApiKey, ValidationErrors> {
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
