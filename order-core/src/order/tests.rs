use super::*;
use proptest::prelude::*;

fn item(id: &str, qty: i64, price: &str) -> UncheckedItem {
    UncheckedItem {
        item_id: id.into(),
        item_name: "Burger".into(),
        quantity: qty,
        price: Decimal::from_str_exact(price).unwrap(),
    }
}

#[test]
fn the_total_is_the_exact_sum_of_subtotals() {
    let order = NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: "customer_123".into(),
        items: vec![item("item_001", 2, "12.99"), item("item_002", 1, "4.99")],
    })
    .unwrap();
    assert_eq!(order.total().to_string(), "30.97");
}

#[test]
fn every_offending_field_is_named() {
    let err = NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: String::new(),
        items: vec![item("ok", 1, "1.00"), item("", 0, "1.001")],
    })
    .unwrap_err();
    let fields: Vec<_> = err.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "customer_id",
            "items[1].item_id",
            "items[1].quantity",
            "items[1].price"
        ]
    );
}

#[test]
fn empty_and_oversized_item_lists_are_rejected_as_a_whole() {
    let empty = NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: "c".into(),
        items: vec![],
    })
    .unwrap_err();
    assert_eq!(
        empty.errors(),
        [FieldError::new("items", Invalid::TooFew { min: 1 })]
    );
    let many = NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: "c".into(),
        items: vec![item("x", 1, "1"); 1000],
    })
    .unwrap_err();
    assert_eq!(many.errors().len(), 1);
    assert!(many.names("items"));
}

#[test]
fn statuses_parse_in_any_case() {
    assert_eq!("CONFIRMED".parse(), Ok(OrderStatus::Confirmed));
    assert_eq!("Payment_Failed".parse(), Ok(OrderStatus::PaymentFailed));
    assert!("paid".parse::<OrderStatus>().is_err());
}

const EVENTS: [OrderEvent; 6] = [
    OrderEvent::PaymentStarted,
    OrderEvent::PaymentCaptured,
    OrderEvent::PaymentFailed,
    OrderEvent::Cancelled,
    OrderEvent::CancelRequested,
    OrderEvent::Refunded,
];

#[test]
fn final_statuses_accept_no_event() {
    for from in OrderStatus::ALL.into_iter().filter(|s| s.is_final()) {
        for event in EVENTS {
            assert!(next_status(from, event).is_err(), "{from} took {event:?}");
        }
    }
}

#[test]
fn a_confirmed_order_takes_only_a_cancellation() {
    for event in EVENTS {
        let allowed = next_status(OrderStatus::Confirmed, event).is_ok();
        assert_eq!(allowed, event == OrderEvent::CancelRequested, "{event:?}");
    }
}

#[test]
fn cancellation_ends_cancelled_from_every_live_status_but_a_failed_payment() {
    use OrderEvent as E;
    use OrderStatus as S;
    assert_eq!(next_status(S::Pending, E::Cancelled), Ok(S::Cancelled));
    for from in [S::PaymentProcessing, S::Confirmed] {
        let cancelling = next_status(from, E::CancelRequested).unwrap();
        assert_eq!(cancelling, S::Cancelling);
        assert_eq!(next_status(cancelling, E::Refunded), Ok(S::Cancelled));
    }
    assert!(next_status(S::PaymentFailed, E::CancelRequested).is_err());
    assert!(
        next_status(S::Cancelling, E::PaymentCaptured).is_err(),
        "no charge settles a cancelling order"
    );
}

#[test]
fn cancel_reasons_read_back_what_they_write() {
    for reason in CancelReason::ALL {
        assert_eq!(reason.as_str().parse(), Ok(reason));
    }
    assert!("bored".parse::<CancelReason>().is_err());
    assert_eq!(CancelReason::default(), CancelReason::RequestedByCustomer);
}

fn unchecked_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_string()),
        "[a-z0-9_]{1,20}",
        proptest::collection::vec("[a-z]", max..=max + 2).prop_map(|v| v.concat()),
        "[a-z]{1,3}\u{0007}",
    ]
}

prop_compose! {
    fn unchecked_item()(
        item_id in unchecked_text(100),
        item_name in unchecked_text(255),
        quantity in prop_oneof![Just(0i64), Just(-1), 1i64..=10_000, Just(10_001)],
        cents in -100i64..200_000_000,
        scale in 0u32..4,
    ) -> UncheckedItem {
        UncheckedItem { item_id, item_name, quantity, price: Decimal::new(cents, scale) }
    }
}

proptest! {
    #[test]
    fn every_input_is_accepted_and_round_trips_or_rejected_for_the_stated_reason(
        customer_id in unchecked_text(100),
        items in proptest::collection::vec(unchecked_item(), 0..4),
    ) {
        let input = UncheckedOrder { customer_id: customer_id.clone(), items: items.clone(), payment_method: None };
        // Reference model: each field checked on its own.
        let mut expected = Vec::new();
        if let Err(e) = CustomerId::parse(customer_id) { expected.push(FieldError::new("customer_id", e)); }
        if items.is_empty() { expected.push(FieldError::new("items", Invalid::TooFew { min: 1 })); }
        for (i, it) in items.iter().enumerate() {
            if let Err(e) = ItemId::parse(it.item_id.clone()) { expected.push(FieldError::new(format!("items[{i}].item_id"), e)); }
            if let Err(e) = ItemName::parse(it.item_name.clone()) { expected.push(FieldError::new(format!("items[{i}].item_name"), e)); }
            if let Err(e) = Quantity::new(it.quantity) { expected.push(FieldError::new(format!("items[{i}].quantity"), e)); }
            if let Err(e) = Price::new(it.price) { expected.push(FieldError::new(format!("items[{i}].price"), e)); }
        }
        match NewOrder::parse(input) {
            Ok(order) => {
                prop_assert!(expected.is_empty());
                let json = serde_json::to_string(&order).unwrap();
                prop_assert_eq!(serde_json::from_str::<NewOrder>(&json).unwrap(), order);
            }
            Err(errors) => prop_assert_eq!(errors.errors(), expected.as_slice()),
        }
    }
}
