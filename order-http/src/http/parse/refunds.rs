//! A refund asked for on its own: `{"amount": ...}` or `{"items": [...]}`, with an optional
//! `reason`.

use order_core::order::{MAX_REFUND_LINES, RefundAsk, RefundedItem};
use order_core::{FieldError, Invalid, ItemId, Money, Quantity, RefundReason, ValidationErrors};
use serde_json::Value;

use super::{decimal, must_be, required, text, whole};

/// Parses a refund body into what it asks for and why, or every reason it cannot be read:
/// `amount` (money, more than 0), `items` (1 to 100 lines of `item_id` and `quantity`),
/// both (part of the items' value), or neither (all of what is left; also for no body);
/// `reason` 1 to 500 characters when present. Whether the
/// items are the order's, and the amount within what is left, the order decides.
pub fn refund(body: Option<&Value>) -> Result<(RefundAsk, Option<RefundReason>), ValidationErrors> {
    let mut errors = Vec::new();
    let Some(object) = body.and_then(Value::as_object) else {
        return match body {
            None | Some(Value::Null) => Ok((RefundAsk::Rest, None)),
            Some(_) => Err(ValidationErrors::one("body", must_be("a JSON object"))),
        };
    };
    let mut reject = |field: String, reason: Invalid| errors.push(FieldError::new(field, reason));
    let reason = match object.get("reason") {
        None | Some(Value::Null) => None,
        Some(value) => text(value)
            .and_then(RefundReason::parse)
            .map_err(|e| reject("reason".into(), e))
            .ok(),
    };
    let given = |name: &str| object.get(name).filter(|v| !v.is_null());
    let amount = given("amount").and_then(|amount| match decimal(amount).and_then(Money::new) {
        Ok(amount) if amount > Money::ZERO => Some(amount),
        Ok(_) => {
            reject(
                "amount".into(),
                Invalid::Malformed("must be more than 0".into()),
            );
            None
        }
        Err(e) => {
            reject("amount".into(), e);
            None
        }
    });
    let ask = match (given("amount"), given("items")) {
        (None, None) => Some(RefundAsk::Rest),
        (Some(_), None) => amount.map(RefundAsk::Amount),
        (_, Some(items)) => {
            refunded_items(items, &mut reject).map(|items| RefundAsk::Items { items, amount })
        }
    };
    ValidationErrors::check(errors, || ())?;
    // Every path without an ask recorded why.
    let ask = ask.ok_or_else(|| ValidationErrors::one("amount", required()))?;
    Ok((ask, reason))
}

/// The lines of `items`, each checked; `None` when any is bad (each reported to `reject`).
fn refunded_items(
    items: &Value,
    reject: &mut impl FnMut(String, Invalid),
) -> Option<Vec<RefundedItem>> {
    let Some(lines) = items.as_array() else {
        reject("items".into(), must_be("an array"));
        return None;
    };
    if lines.is_empty() {
        reject("items".into(), Invalid::TooFew { min: 1 });
        return None;
    }
    if lines.len() > MAX_REFUND_LINES {
        reject(
            "items".into(),
            Invalid::TooMany {
                max: MAX_REFUND_LINES,
                actual: lines.len(),
            },
        );
        return None;
    }
    let mut parsed = Vec::with_capacity(lines.len());
    let mut bad = false;
    for (i, line) in lines.iter().enumerate() {
        let path = |name: &str| format!("items[{i}].{name}");
        let Some(line) = line.as_object() else {
            reject(format!("items[{i}]"), must_be("an object"));
            bad = true;
            continue;
        };
        let item_id = match line.get("item_id") {
            None => Err(required()),
            Some(v) => text(v).and_then(ItemId::parse),
        }
        .map_err(|e| reject(path("item_id"), e));
        let quantity = match line.get("quantity") {
            None => Err(required()),
            Some(v) => whole(v).and_then(Quantity::new),
        }
        .map_err(|e| reject(path("quantity"), e));
        match (item_id, quantity) {
            (Ok(item_id), Ok(quantity)) => parsed.push(RefundedItem { item_id, quantity }),
            _ => bad = true,
        }
    }
    (!bad).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(body: &Value) -> Vec<String> {
        refund(Some(body))
            .expect_err("invalid")
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn an_amount_or_items_with_a_reason_are_read() {
        let (ask, reason) = refund(Some(&json!({"amount": "4.99", "reason": "cold"}))).unwrap();
        assert_eq!(ask, RefundAsk::Amount("4.99".parse().unwrap()));
        assert_eq!(reason.unwrap().as_str(), "cold");
        let (ask, reason) = refund(Some(
            &json!({"items": [{"item_id": "item_001", "quantity": 1}]}),
        ))
        .unwrap();
        assert!(matches!(ask, RefundAsk::Items { items, amount: None } if items.len() == 1));
        let both = json!({"amount": 5, "items": [{"item_id": "item_001", "quantity": 1}]});
        let (ask, _) = refund(Some(&both)).unwrap();
        assert!(
            matches!(ask, RefundAsk::Items { amount: Some(a), .. } if a == "5".parse().unwrap())
        );
        assert!(reason.is_none());
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(refund(Some(&json!({}))).unwrap().0, RefundAsk::Rest);
        assert_eq!(refund(None).unwrap().0, RefundAsk::Rest);
        assert_eq!(
            fields(&json!({"amount": 0, "items": []})),
            ["amount", "items"]
        );
        assert_eq!(fields(&json!({"amount": 0})), ["amount"]);
        assert_eq!(
            fields(&json!({"amount": "1.001", "reason": ""})),
            ["reason", "amount"]
        );
        assert_eq!(
            fields(&json!({"items": [{"item_id": "", "quantity": 0}, 7]})),
            ["items[0].item_id", "items[0].quantity", "items[1]"]
        );
        assert_eq!(fields(&json!([1])), ["body"]);
    }
}
