//! Orders: a new order, a cancellation's reason, and a listing's query.

use std::num::NonZeroU32;

use order_core::order::{CancelReason, OrderFields};
use order_core::ports::{OrderFilter, PageRequest, PageSize, PageStart};
use order_core::{CustomerId, FieldError, Invalid, Money, NewOrder, OrderStatus, ValidationErrors};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{decimal, must_be, required, text, whole};

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

/// Parses a create-order body into a [`NewOrder`], or every reason it is not one.
pub fn new_order(body: &Value) -> Result<NewOrder, ValidationErrors> {
    new_order_paying(body, false)
}

/// [`new_order`], where the order must name its `payment_method` when `method_required`
/// (the gateway charges a processor that needs the customer's card token).
pub fn new_order_paying(body: &Value, method_required: bool) -> Result<NewOrder, ValidationErrors> {
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
    match object.get("payment_method") {
        None | Some(Value::Null) if method_required => fields.reject(
            "payment_method",
            Invalid::Malformed(
                "is required: the payment gateway charges the customer's payment method".into(),
            ),
        ),
        None | Some(Value::Null) => {}
        Some(Value::String(method)) => fields.payment_method(method.clone()),
        Some(_) => fields.reject("payment_method", must_be("a string")),
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

/// Parses a capture body: absent, `null`, `{}`, or `{"amount": ...}` (a number or a
/// string of money: at most two decimal places, not negative); `None` captures the whole
/// authorization.
pub fn capture_amount(body: Option<&Value>) -> Result<Option<Money>, ValidationErrors> {
    let reject = |field: &str, reason: Invalid| {
        ValidationErrors::check(vec![FieldError::new(field, reason)], || None)
    };
    let Some(body) = body.filter(|b| !b.is_null()) else {
        return Ok(None);
    };
    let Some(object) = body.as_object() else {
        return reject("body", must_be("a JSON object"));
    };
    match object.get("amount") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match decimal(value).and_then(Money::new) {
            Ok(amount) => Ok(Some(amount)),
            Err(e) => reject("amount", e),
        },
    }
}

/// The listing's query as sent: text, so that every bad parameter can be reported at once.
/// Its documented shape is `order_api::orders::ListOrdersQuery`.
#[derive(Debug, Default, Deserialize)]
pub struct RawListQuery {
    customer_id: Option<String>,
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
    cursor: Option<String>,
}

/// Parses a listing's query into its filter and page, every bad parameter named.
pub fn list_query(query: RawListQuery) -> Result<(OrderFilter, PageRequest), ValidationErrors> {
    let mut errors = Vec::new();
    let mut check = |field: &str, e: Invalid| errors.push(FieldError::new(field, e));
    let customer_id = query
        .customer_id
        .map(CustomerId::parse)
        .transpose()
        .map_err(|e| check("customer_id", e))
        .ok()
        .flatten();
    let status = query
        .status
        .map(|s| s.parse::<OrderStatus>())
        .transpose()
        .map_err(|e| check("status", e))
        .ok()
        .flatten();
    let whole = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| must_be("a whole number"))
    };
    let first = PageStart::Number(NonZeroU32::MIN);
    // A cursor says where the page starts, and so its number: it decides over `page`
    // (still checked), and the answer's `page` is the cursor's.
    let page = query.page.as_deref().map(|p| {
        whole(p)
            .and_then(PageRequest::page_number)
            .map_err(|e| check("page", e))
    });
    let start = match (page, query.cursor.as_deref()) {
        (_, Some(cursor)) => cursor
            .parse()
            .map(PageStart::After)
            .map_err(|e| ("cursor", e)),
        (Some(Ok(n)), None) => Ok(PageStart::Number(n)),
        (Some(Err(())) | None, None) => Ok(first),
    }
    .map_err(|(field, e)| check(field, e))
    .unwrap_or(first);
    let size = query
        .page_size
        .as_deref()
        .map_or(Ok(PageSize::DEFAULT), |p| whole(p).and_then(PageSize::new))
        .map_err(|e| check("page_size", e))
        .unwrap_or(PageSize::DEFAULT);
    ValidationErrors::check(errors, || {
        (
            OrderFilter {
                customer_id,
                status,
            },
            PageRequest { start, size },
        )
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
