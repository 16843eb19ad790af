//! [`PaymentGateway`]: where money moves.

use async_trait::async_trait;

use crate::payment::{
    CaptureReceipt, CaptureRequest, ChargeReceipt, ChargeRequest, GatewayError, LookupRequest,
    PaymentState, RefundReceipt, RefundRequest,
};

/// A payment gateway.
///
/// # Contract
/// - At most one payment is captured per idempotency key, however often `charge` is called.
/// - Once a key has a definitive outcome (captured or declined), every later call with that
///   key returns the same outcome.
/// - [`GatewayError::Unavailable`] means nothing was charged; [`GatewayError::Timeout`] means
///   the outcome is unknown and a call with the same key will tell.
/// - A payment may be refunded several times, each refund under a key of its own: each
///   refund key gives back at most once, however often it is sent, and all of a charge
///   key's refunds together never give back more than was captured under it. A refund
///   asking for more than is left gives back what is left (its receipt says how much);
///   one sent when nothing is left is declined
///   ([`DeclineReason::ProcessorRefused`](crate::payment::DeclineReason::ProcessorRefused)).
///   Once a refund key has a definitive outcome, every later call with it returns the
///   same outcome.
/// - `refund` of a charge key with nothing captured MUST void the key and return
///   [`RefundReceipt::NothingCaptured`]: every later `charge` with that key is declined
///   ([`DeclineReason::Voided`](crate::payment::DeclineReason::Voided)) and captures
///   nothing. This settles a refund racing a charge that is still on its way.
/// - A charge with [`CaptureMethod::Manual`](crate::payment::CaptureMethod::Manual) only
///   authorizes its amount: `Ok` means authorized, and nothing is captured until
///   `capture`.
/// - `capture` takes at most the authorized amount, at most once per charge key, however
///   often and under however many capture keys it is called; once a capture key has a
///   definitive outcome, every later call with it returns the same outcome. A charge key
///   whose authorization was voided (a refund came first) is declined
///   [`DeclineReason::Voided`](crate::payment::DeclineReason::Voided); one with nothing
///   authorized, or an amount above the authorization, is declined
///   [`DeclineReason::ProcessorRefused`](crate::payment::DeclineReason::ProcessorRefused).
/// - `refund` of an authorized payment not yet captured voids it ([`RefundReceipt::NothingCaptured`]);
///   after a capture it gives back at most what was captured.
/// - `lookup` tells where the payment named by the request's charge key (or payment id)
///   stands, and never charges, captures, refunds or voids anything. Its answer agrees with
///   the gateway's books: [`PaymentState::Captured`] exactly when a payment was captured
///   under the key (with what its refunds gave back), [`PaymentState::Authorized`] when one
///   is only authorized, [`PaymentState::Declined`] when the key's charge was declined or
///   voided, [`PaymentState::NotCharged`] when nothing was and nothing is on its way. Once
///   a charge with the key had a definitive outcome, the look-up's
///   [`PaymentState::charge_outcome`] is that outcome (the same payment id). This is what
///   the worker asks after a charge whose outcome it does not know, before it charges
///   again.
/// - Refund, capture and look-up failures are classified as charges' are.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges the request's amount, deduplicated by its idempotency key.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError>;
    /// Gives back the request's amount (at most what is left) of what was captured under its
    /// charge key, deduplicated by the request's own idempotency key; voids the charge key
    /// if nothing was captured.
    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError>;
    /// Captures the request's amount of the payment authorized under its charge key,
    /// deduplicated by the request's own idempotency key.
    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError>;
    /// Where the payment named by the request stands at the processor; moves no money.
    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError>;

    /// Whether a charge needs the order's payment method (a processor's token for the
    /// customer's card): the intake refuses an order without one, rather than accept it
    /// and see every charge declined. `false` unless a gateway says otherwise.
    fn requires_payment_method(&self) -> bool {
        false
    }
}
