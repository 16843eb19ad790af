//! The model's gateway: behaves as told, and keeps the books the invariants are checked
//! against (captures, authorizations, voids and refunds per charge key).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, ChargeReceipt, ChargeRequest, DeclineReason,
    GatewayError, LookupRequest, PaymentState, RefundReceipt, RefundRequest,
};
use order_core::ports::PaymentGateway;
use order_core::{IdempotencyKey, Money};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Approve,
    Decline,
    Down,
    /// No answer; nothing was done.
    TimeoutBeforeCapture,
    /// No answer; the charge (or the capture) was done.
    TimeoutAfterCapture,
    /// Cleanly fails (not processed) the orders whose id ends in an odd byte and approves the
    /// rest: a partial fault that leaves the breaker closed.
    DownForSome,
    /// Charges are approved; refunds are not processed.
    RefundsDown,
}

/// A gateway that behaves as told and keeps a ledger per key.
#[derive(Debug)]
pub struct ScriptedGateway {
    pub state: Mutex<GatewayState>,
}

#[derive(Debug)]
pub struct GatewayState {
    pub mode: Mode,
    pub outcomes: HashMap<IdempotencyKey, Result<ChargeReceipt, GatewayError>>,
    /// Per charge key: payments captured (with the charge, or by a capture).
    pub captures: HashMap<IdempotencyKey, u32>,
    /// Per refund key: the definitive answer to it.
    pub refund_outcomes: HashMap<IdempotencyKey, RefundReceipt>,
    /// Per refund key: refunds made under it (at most 1).
    pub refunds_by_key: HashMap<IdempotencyKey, u32>,
    /// Per charge key: refunds made, and the amount given back in all.
    pub refunds: HashMap<IdempotencyKey, (u32, Money)>,
    pub captured_amounts: HashMap<IdempotencyKey, Money>,
    /// Per charge key of a manual charge: the amount authorized.
    pub authorized: HashMap<IdempotencyKey, Money>,
    /// Per charge key: the definitive answer to capturing it.
    pub capture_outcomes: HashMap<IdempotencyKey, Result<CaptureReceipt, GatewayError>>,
    /// Charge keys whose authorization (or charge still on its way) a refund voided.
    pub voided: HashSet<IdempotencyKey>,
}

impl GatewayState {
    pub fn new() -> Self {
        Self {
            mode: Mode::Approve,
            outcomes: HashMap::new(),
            captures: HashMap::new(),
            refund_outcomes: HashMap::new(),
            refunds_by_key: HashMap::new(),
            refunds: HashMap::new(),
            captured_amounts: HashMap::new(),
            authorized: HashMap::new(),
            capture_outcomes: HashMap::new(),
            voided: HashSet::new(),
        }
    }

    fn take(&mut self, key: &IdempotencyKey, amount: Money) {
        *self.captures.entry(key.clone()).or_default() += 1;
        self.captured_amounts.insert(key.clone(), amount);
    }

    /// The charge succeeds: captured, or (manual) only authorized.
    fn pay(&mut self, request: &ChargeRequest) -> ChargeReceipt {
        let key = &request.idempotency_key;
        match request.capture {
            CaptureMethod::Automatic => self.take(key, request.amount),
            CaptureMethod::Manual => {
                self.authorized.insert(key.clone(), request.amount);
            }
        }
        let receipt = ChargeReceipt {
            transaction_id: format!("txn-{key}"),
        };
        self.outcomes.insert(key.clone(), Ok(receipt.clone()));
        receipt
    }

    fn odd(&self, order: order_core::OrderId) -> bool {
        self.mode == Mode::DownForSome && order.as_uuid().as_bytes()[15] % 2 == 1
    }
}

#[async_trait]
impl PaymentGateway for ScriptedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let mut s = self.state.lock().unwrap();
        let key = &request.idempotency_key;
        // A gateway that is down answers nothing, not even replays.
        if s.mode == Mode::Down {
            return Err(GatewayError::Unavailable("gateway down".into()));
        }
        if s.odd(request.order_id) {
            return Err(GatewayError::Unavailable("processor error".into()));
        }
        if let Some(outcome) = s.outcomes.get(key) {
            return outcome.clone();
        }
        match s.mode {
            Mode::Approve | Mode::DownForSome | Mode::RefundsDown => Ok(s.pay(request)),
            Mode::Decline => {
                let e = GatewayError::Declined(DeclineReason::CardDeclined);
                s.outcomes.insert(key.clone(), Err(e.clone()));
                Err(e)
            }
            Mode::TimeoutBeforeCapture | Mode::Down => {
                Err(GatewayError::Timeout("no answer".into()))
            }
            Mode::TimeoutAfterCapture => {
                s.pay(request);
                Err(GatewayError::Timeout("no answer".into()))
            }
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let mut s = self.state.lock().unwrap();
        let key = request.charge_key();
        let refund_key = &request.idempotency_key;
        if matches!(s.mode, Mode::Down | Mode::RefundsDown) {
            return Err(GatewayError::Unavailable("gateway down".into()));
        }
        if s.odd(request.order_id()) {
            return Err(GatewayError::Unavailable("processor error".into()));
        }
        if let Some(done) = s.refund_outcomes.get(refund_key) {
            return Ok(done.clone());
        }
        if s.mode == Mode::TimeoutBeforeCapture {
            return Err(GatewayError::Timeout("no answer".into()));
        }
        let receipt = if s.captures.get(key).copied().unwrap_or(0) > 0 {
            let captured = s.captured_amounts[key];
            let given = s.refunds.get(key).map_or(Money::ZERO, |(_, m)| *m);
            let left = captured.saturating_sub(given);
            if left == Money::ZERO {
                return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
            }
            let amount = request.amount.min(left);
            let entry = s.refunds.entry(key.clone()).or_insert((0, Money::ZERO));
            entry.0 += 1;
            entry.1 = entry.1.checked_add(amount).unwrap();
            *s.refunds_by_key.entry(refund_key.clone()).or_default() += 1;
            RefundReceipt::Refunded {
                refund_id: format!("re-{refund_key}"),
                amount,
            }
        } else {
            // Void the key (an authorization, or a charge still on its way): nothing
            // under it can be taken any more.
            s.outcomes.insert(
                key.clone(),
                Err(GatewayError::Declined(DeclineReason::Voided)),
            );
            s.voided.insert(key.clone());
            RefundReceipt::NothingCaptured
        };
        s.refund_outcomes
            .insert(refund_key.clone(), receipt.clone());
        if s.mode == Mode::TimeoutAfterCapture {
            return Err(GatewayError::Timeout("no answer".into()));
        }
        Ok(receipt)
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        let mut s = self.state.lock().unwrap();
        let key = request.charge_key();
        if s.mode == Mode::Down || s.odd(request.charge.order_id) {
            return Err(GatewayError::Unavailable("gateway down".into()));
        }
        if let Some(done) = s.capture_outcomes.get(key) {
            return done.clone();
        }
        if s.voided.contains(key) {
            return Err(GatewayError::Declined(DeclineReason::Voided));
        }
        let Some(authorized) = s.authorized.get(key).copied() else {
            return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        };
        if request.amount > authorized {
            return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        }
        if s.mode == Mode::TimeoutBeforeCapture {
            return Err(GatewayError::Timeout("no answer".into()));
        }
        s.take(key, request.amount);
        let receipt = CaptureReceipt {
            amount: request.amount,
        };
        s.capture_outcomes.insert(key.clone(), Ok(receipt.clone()));
        if s.mode == Mode::TimeoutAfterCapture {
            return Err(GatewayError::Timeout("no answer".into()));
        }
        Ok(receipt)
    }

    /// Answers from the books in every mode but an outage: a read is not where the faults
    /// of the scripted modes lie.
    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        let s = self.state.lock().unwrap();
        let key = request.charge_key();
        if s.mode == Mode::Down || s.odd(request.charge.order_id) {
            return Err(GatewayError::Unavailable("gateway down".into()));
        }
        Ok(match s.outcomes.get(key) {
            Some(Ok(receipt)) if s.captures.get(key).copied().unwrap_or(0) > 0 => {
                PaymentState::Captured {
                    payment_id: receipt.transaction_id.clone(),
                    amount: s.captured_amounts[key],
                    refunded: s.refunds.get(key).map_or(Money::ZERO, |(_, m)| *m),
                }
            }
            Some(Ok(receipt)) => PaymentState::Authorized {
                payment_id: receipt.transaction_id.clone(),
                amount: s.authorized[key],
            },
            Some(Err(GatewayError::Declined(reason))) => PaymentState::Declined { reason: *reason },
            Some(Err(_)) | None => PaymentState::NotCharged,
        })
    }
}
