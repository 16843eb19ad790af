//! The [`PaymentGateway`] suite, checked against the gateway's own books.

use super::base_time;
use crate::payment::GatewayError;
use crate::ports::PaymentGateway;
use crate::testing::placed_order;

/// What a gateway's own books say about one charge key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayBooks {
    /// Payments captured under the key.
    pub captures: u32,
    /// Refunds made of that capture.
    pub refunds: u32,
    /// What was captured under the key.
    pub captured: crate::Money,
    /// What its refunds gave back, in all.
    pub refunded: crate::Money,
}

/// Calls `call` until it gives a definitive answer (at most 50 times).
async fn until_definitive<T, F, Fut>(mut call: F) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, GatewayError>>,
{
    for _ in 0..50 {
        match call().await {
            Err(GatewayError::Unavailable(_) | GatewayError::Timeout(_)) => {}
            outcome => return outcome,
        }
    }
    panic!("the gateway gives a definitive outcome within 50 calls");
}

/// Checks a [`PaymentGateway`] against its contract: whatever happens, at most one capture
/// per idempotency key, at most one refund per refund key, and never more given back than
/// captured, however many refunds; a definitive outcome is replayed; a refund of a key with
/// nothing captured voids it.
/// `gateway` must eventually give definitive outcomes (its outage, if any, over).
///
/// `books` reads the gateway's own books for a charge key: how many payments were really
/// captured and refunded under it. Receipts alone cannot show a gateway that charges twice
/// and answers with the same receipt; its books can.
pub async fn payment_gateway<G: PaymentGateway + ?Sized>(
    gateway: &G,
    books: impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    payment_gateway_paying_with(gateway, &[], books).await;
}

/// [`payment_gateway`] with orders that name payment methods: order `i` pays with
/// `methods[i % methods.len()]` (none when `methods` is empty). A gateway that needs a
/// payment method is checked this way, with methods that pay and methods that are
/// declined, so that both outcomes go through every check.
pub async fn payment_gateway_paying_with<G: PaymentGateway + ?Sized>(
    gateway: &G,
    methods: &[&str],
    books: impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{DeclineReason, RefundReceipt, RefundRequest};

    let method = |i: usize| {
        (!methods.is_empty()).then(|| {
            crate::PaymentMethod::parse(methods[i % methods.len()])
                .expect("the suite's payment methods are valid")
        })
    };

    let at_most_once = |key: &crate::payment::IdempotencyKey| {
        let b = books(key);
        assert!(b.captures <= 1, "key {key} captured {} times", b.captures);
        assert!(
            b.refunds == 0 || b.captures > 0,
            "key {key}: {b:?}: a refund of nothing captured"
        );
        assert!(
            b.refunded <= b.captured,
            "key {key}: {b:?}: more given back than captured"
        );
    };
    for i in 0..20 {
        let mut order = placed_order(&format!("c-gw-{i}"), base_time());
        order.payment_method = method(i);
        let request = order.charge_request();
        let key = &request.idempotency_key;
        let definitive = until_definitive(|| async {
            let outcome = gateway.charge(&request).await;
            at_most_once(key);
            outcome
        })
        .await;
        for _ in 0..3 {
            assert_eq!(
                gateway.charge(&request).await,
                definitive,
                "the same key replays the first definitive outcome"
            );
            at_most_once(key);
        }
        let expected = u32::from(definitive.is_ok());
        assert_eq!(
            books(key).captures,
            expected,
            "key {key}: the books must show exactly {expected} capture(s) after {definitive:?}"
        );

        // Refund it, twice over under two refund keys: one refund at most, of the capture.
        // Half the refunds name the payment by the id the charge answered with, half
        // leave the gateway to find it by the charge.
        let mut refund = order.refund_request();
        if i % 2 == 0 {
            refund.payment_id = definitive.as_ref().ok().map(|r| r.transaction_id.clone());
        }
        let refunded = until_definitive(|| async {
            let outcome = gateway.refund(&refund).await;
            at_most_once(key);
            outcome
        })
        .await
        .expect("a refund is never refused for a valid request");
        match (&definitive, &refunded) {
            (Ok(_), RefundReceipt::Refunded { amount, .. }) => {
                assert!(*amount <= order.total_amount, "never more than captured");
            }
            (Err(_), RefundReceipt::NothingCaptured) => {}
            _ => panic!("charge {definitive:?} was refunded as {refunded:?}"),
        }
        assert_eq!(
            gateway.refund(&refund).await,
            Ok(refunded.clone()),
            "the same refund key replays"
        );
        let again = RefundRequest {
            idempotency_key: crate::payment::IdempotencyKey::from_raw(format!("again-{i}")),
            ..refund.clone()
        };
        until_definitive(|| gateway.refund(&again)).await.ok();
        assert_eq!(
            books(key).refunds,
            expected,
            "one refund per capture, whatever the key"
        );
    }

    // A refund that comes first voids the charge key: no later charge with it captures.
    let mut order = placed_order("c-gw-void", base_time());
    order.payment_method = method(0);
    let refund = order.refund_request();
    let voided = until_definitive(|| gateway.refund(&refund)).await;
    assert_eq!(voided, Ok(RefundReceipt::NothingCaptured));
    let charge = order.charge_request();
    assert_eq!(
        until_definitive(|| gateway.charge(&charge)).await,
        Err(GatewayError::Declined(DeclineReason::Voided))
    );
    assert_eq!(books(&charge.idempotency_key), GatewayBooks::default());

    partial_refunds(gateway, &method, &books).await;
    manual_capture(gateway, &method, &books).await;
    lookups(gateway, &method, &books).await;
}

/// Looks the payment up until the gateway says where it stands (at most 50 calls): a
/// failed look-up, or a payment still processing, is asked again.
async fn settled_state<G: PaymentGateway + ?Sized>(
    gateway: &G,
    request: &crate::payment::LookupRequest,
) -> crate::payment::PaymentState {
    use crate::payment::PaymentState;
    for _ in 0..50 {
        match gateway.lookup(request).await {
            Ok(PaymentState::Processing)
            | Err(GatewayError::Unavailable(_) | GatewayError::Timeout(_)) => {}
            Ok(state) => return state,
            Err(e) => panic!("a look-up is never declined: {e:?}"),
        }
    }
    panic!("the gateway says where a payment stands within 50 look-ups");
}

/// The look-up part of the suite: at every step of a payment's life (nothing charged,
/// charged or declined, authorized then captured for less, partly refunded, voided), a
/// look-up by the charge key, or by the payment's id, says what the books say, replays the
/// charge's outcome, and moves no money.
async fn lookups<G: PaymentGateway + ?Sized>(
    gateway: &G,
    method: &impl Fn(usize) -> Option<crate::PaymentMethod>,
    books: &impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{CaptureMethod, PaymentState};

    for i in 0..8 {
        let mut order = placed_order(&format!("c-gw-lookup-{i}"), base_time());
        order.payment_method = method(i);
        if i % 2 == 1 {
            order.capture = CaptureMethod::Manual;
        }
        let charge = order.charge_request();
        let key = &charge.idempotency_key;
        let request = order.lookup_request();
        let before = settled_state(gateway, &request).await;
        assert!(
            matches!(
                before,
                PaymentState::NotCharged | PaymentState::Declined { .. }
            ),
            "key {key}: nothing was charged, yet a look-up finds {before:?}"
        );
        assert_eq!(
            books(key),
            GatewayBooks::default(),
            "a look-up moves no money"
        );

        let charged = until_definitive(|| gateway.charge(&charge)).await;
        let state = settled_state(gateway, &request).await;
        assert_eq!(
            state.charge_outcome(),
            Some(charged.clone()),
            "key {key}: a look-up replays the charge's outcome ({state:?})"
        );
        let b = books(key);
        match (&state, order.capture) {
            (
                PaymentState::Captured {
                    amount, refunded, ..
                },
                CaptureMethod::Automatic,
            ) => {
                assert_eq!(
                    (b.captures, *amount, *refunded),
                    (1, b.captured, crate::Money::ZERO)
                );
            }
            (PaymentState::Authorized { amount, .. }, CaptureMethod::Manual) => {
                assert_eq!((b.captures, *amount), (0, order.total_amount), "key {key}");
            }
            (PaymentState::Declined { .. }, _) => assert_eq!(b, GatewayBooks::default()),
            (other, method) => panic!("key {key}: a {method:?} charge looked up as {other:?}"),
        }
        if let Ok(receipt) = charged {
            looked_up_after_a_refund(gateway, &order, request, &receipt, books).await;
        }
    }

    // Voided before anything was charged: declined, for good.
    let mut order = placed_order("c-gw-lookup-void", base_time());
    order.payment_method = method(0);
    let refund = order.refund_request();
    until_definitive(|| gateway.refund(&refund))
        .await
        .expect("a refund of nothing voids the key");
    assert_eq!(
        settled_state(gateway, &order.lookup_request()).await,
        PaymentState::Declined {
            reason: crate::payment::DeclineReason::Voided
        }
    );
}

/// The partial-refund part of the suite: a capture refunded several times, each refund
/// under its own key and replayed by it, never more in all than was captured.
async fn partial_refunds<G: PaymentGateway + ?Sized>(
    gateway: &G,
    method: &impl Fn(usize) -> Option<crate::PaymentMethod>,
    books: &impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{DeclineReason, IdempotencyKey, RefundReceipt, RefundRequest};

    let cents = |n: i64| crate::Money::new(rust_decimal::Decimal::new(n, 2)).expect("money");
    for i in 0..4 {
        let mut order = placed_order(&format!("c-gw-partial-{i}"), base_time());
        order.payment_method = method(i);
        let charge = order.charge_request();
        let key = &charge.idempotency_key;
        let Ok(receipt) = until_definitive(|| gateway.charge(&charge)).await else {
            continue;
        };
        let refund = |name: &str, amount: crate::Money| RefundRequest {
            idempotency_key: IdempotencyKey::for_partial_refund(order.id, name),
            charge: charge.clone(),
            payment_id: (i % 2 == 0).then(|| receipt.transaction_id.clone()),
            amount,
        };
        let first = refund("first", cents(1000)); // 10.00 of the 30.97 captured
        let given = until_definitive(|| gateway.refund(&first)).await;
        assert!(
            matches!(&given, Ok(RefundReceipt::Refunded { amount, .. }) if *amount == cents(1000)),
            "a part of a capture is given back: {given:?}"
        );
        assert_eq!(gateway.refund(&first).await, given, "the same key replays");
        let b = books(key);
        assert_eq!(
            (b.refunds, b.refunded),
            (1, cents(1000)),
            "key {key}: {b:?}"
        );

        // More than is left gives back what is left.
        let rest = refund("rest", cents(3000));
        let given_rest = until_definitive(|| gateway.refund(&rest)).await;
        assert!(
            matches!(&given_rest, Ok(RefundReceipt::Refunded { amount, .. }) if *amount == cents(2097)),
            "what is left of a capture is given back: {given_rest:?}"
        );
        let b = books(key);
        assert_eq!((b.refunds, b.refunded), (2, b.captured), "key {key}: {b:?}");

        // Nothing is left: a new refund is refused, the earlier ones still replay.
        let more = refund("more", cents(100));
        assert_eq!(
            until_definitive(|| gateway.refund(&more)).await,
            Err(GatewayError::Declined(DeclineReason::ProcessorRefused)),
            "nothing is left to give back"
        );
        assert_eq!(gateway.refund(&first).await, given);
        assert_eq!(gateway.refund(&rest).await, given_rest);
        assert_eq!(books(key).refunds, 2, "key {key}: no refund made twice");
    }
}

/// The manual-capture part of the suite: a charge only authorizes; a capture takes at most
/// the authorization, once per charge key; a refund before it voids the authorization.
async fn manual_capture<G: PaymentGateway + ?Sized>(
    gateway: &G,
    method: &impl Fn(usize) -> Option<crate::PaymentMethod>,
    books: &impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{
        CaptureMethod, CaptureReceipt, CaptureRequest, DeclineReason, IdempotencyKey, RefundReceipt,
    };

    let cents = |n: i64| crate::Money::new(rust_decimal::Decimal::new(n, 2)).expect("money");
    for i in 0..6 {
        let mut order = placed_order(&format!("c-gw-manual-{i}"), base_time());
        order.payment_method = method(i);
        order.capture = CaptureMethod::Manual;
        let charge = order.charge_request();
        let key = &charge.idempotency_key;
        let authorized = until_definitive(|| gateway.charge(&charge)).await;
        assert_eq!(
            books(key).captures,
            0,
            "key {key}: an authorization takes nothing"
        );
        let part = cents(1000); // 10.00 of the 30.97 authorized
        let mut capture = order.capture_request(part);
        if i % 2 == 0 {
            capture.payment_id = authorized.as_ref().ok().map(|r| r.transaction_id.clone());
        }
        if authorized.is_err() {
            assert!(
                matches!(
                    until_definitive(|| gateway.capture(&capture)).await,
                    Err(GatewayError::Declined(_))
                ),
                "nothing authorized, nothing to capture"
            );
            assert_eq!(books(key), GatewayBooks::default());
            continue;
        }
        let too_much = CaptureRequest {
            idempotency_key: IdempotencyKey::from_raw(format!("too-much-{}", order.id)),
            amount: cents(3098),
            ..capture.clone()
        };
        assert_eq!(
            until_definitive(|| gateway.capture(&too_much)).await,
            Err(GatewayError::Declined(DeclineReason::ProcessorRefused)),
            "more than was authorized is refused"
        );
        assert_eq!(books(key).captures, 0);
        let taken = until_definitive(|| gateway.capture(&capture)).await;
        assert_eq!(taken, Ok(CaptureReceipt { amount: part }));
        assert_eq!(books(key).captures, 1, "key {key}: captured once");
        assert_eq!(
            gateway.capture(&capture).await,
            taken,
            "the same key replays"
        );
        let again = CaptureRequest {
            idempotency_key: IdempotencyKey::from_raw(format!("again-{}", order.id)),
            ..capture.clone()
        };
        until_definitive(|| gateway.capture(&again)).await.ok();
        assert_eq!(
            books(key).captures,
            1,
            "one capture per charge key, whatever the key"
        );
        // The refund the service sends once the capture is recorded on the order.
        order.captured = Some(crate::order::CaptureRecord {
            amount: part,
            requested_at: base_time(),
            captured_at: Some(base_time()),
        });
        let mut refund = order.refund_request();
        refund.payment_id.clone_from(&capture.payment_id);
        assert_eq!(refund.amount, part, "the order asks back what it captured");
        let refunded = until_definitive(|| gateway.refund(&refund)).await;
        match refunded {
            Ok(RefundReceipt::Refunded { amount, .. }) => {
                assert!(
                    amount <= part,
                    "never more back than was captured: {amount}"
                );
            }
            other => panic!("a captured payment is refunded, got {other:?}"),
        }
        assert_eq!(books(key).refunds, 1);
    }

    // A refund before the capture voids the authorization: nothing is ever taken.
    let mut order = placed_order("c-gw-manual-void", base_time());
    order.payment_method = method(0);
    order.capture = CaptureMethod::Manual;
    let charge = order.charge_request();
    if until_definitive(|| gateway.charge(&charge)).await.is_ok() {
        let refund = order.refund_request();
        assert_eq!(
            until_definitive(|| gateway.refund(&refund)).await,
            Ok(RefundReceipt::NothingCaptured)
        );
        let capture = order.capture_request(cents(100));
        assert_eq!(
            until_definitive(|| gateway.capture(&capture)).await,
            Err(GatewayError::Declined(DeclineReason::Voided))
        );
        assert_eq!(books(&charge.idempotency_key), GatewayBooks::default());
    }
}

/// The rest of a charge's life as looked up: found by its id as by its key, captured (for
/// less, when it was only authorized), partly refunded; a look-up moves no money.
async fn looked_up_after_a_refund<G: PaymentGateway + ?Sized>(
    gateway: &G,
    order: &crate::order::Order,
    mut request: crate::payment::LookupRequest,
    receipt: &crate::payment::ChargeReceipt,
    books: &impl Fn(&crate::payment::IdempotencyKey) -> GatewayBooks,
) {
    use crate::payment::{CaptureMethod, IdempotencyKey, PaymentState, RefundRequest};

    let cents = |n: i64| crate::Money::new(rust_decimal::Decimal::new(n, 2)).expect("money");
    let charge = order.charge_request();
    let key = &charge.idempotency_key;
    let state = settled_state(gateway, &request).await;
    request.payment_id = Some(receipt.transaction_id.clone());
    assert_eq!(
        settled_state(gateway, &request).await,
        state,
        "by the payment's id as by its key"
    );
    if order.capture == CaptureMethod::Manual {
        let mut capture = order.capture_request(cents(1000));
        capture.payment_id = request.payment_id.clone();
        until_definitive(|| gateway.capture(&capture))
            .await
            .expect("an authorization is captured");
    }
    let taken = books(key).captured;
    let refund = RefundRequest {
        idempotency_key: IdempotencyKey::for_partial_refund(order.id, "lookup"),
        charge: charge.clone(),
        payment_id: request.payment_id.clone(),
        amount: cents(499),
    };
    until_definitive(|| gateway.refund(&refund))
        .await
        .expect("a part of a capture is given back");
    let after = books(key);
    for by_id in [false, true] {
        let mut request = request.clone();
        if !by_id {
            request.payment_id = None;
        }
        match settled_state(gateway, &request).await {
            PaymentState::Captured {
                payment_id,
                amount,
                refunded,
            } => {
                assert_eq!(payment_id, receipt.transaction_id);
                assert_eq!(
                    (amount, refunded),
                    (taken, cents(499)),
                    "key {key}: a look-up after a partial refund"
                );
            }
            other => panic!("key {key}: captured and partly refunded, looked up as {other:?}"),
        }
    }
    assert_eq!(books(key), after, "a look-up moves no money");
}
