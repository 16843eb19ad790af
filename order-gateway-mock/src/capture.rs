//! Captures of authorized payments: at most one per charge key, never more than the
//! authorization, replayed to every later call.

use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, DeclineReason, GatewayError,
};

use super::{Draw, SimulatedGateway};

impl SimulatedGateway {
    /// Decides the capture's outcome and books it, without the latency. A capture fails
    /// the way a charge does (not processed, or timed out: half of those did capture), but
    /// is never declined by an issuer: the authorization holds the money.
    pub(super) fn book_capture(
        &self,
        request: &CaptureRequest,
    ) -> Result<CaptureReceipt, GatewayError> {
        let now = self.clock.now();
        let mut s = self.lock();
        s.calls += 1;
        if s.outage_until.is_some_and(|until| now < until) {
            return Err(GatewayError::Unavailable("gateway outage".into()));
        }
        let key = request.charge_key().clone();
        let Some(mut entry) = s.ledger.get(&key).cloned() else {
            return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        };
        if let Some(done) = &entry.captured {
            return Ok(done.clone());
        }
        match &entry.outcome {
            Some(Ok(_)) if entry.method == CaptureMethod::Manual => {}
            Some(Err(GatewayError::Declined(DeclineReason::Voided))) => {
                return Err(GatewayError::Declined(DeclineReason::Voided));
            }
            // Nothing authorized, or captured with the charge already.
            _ => return Err(GatewayError::Declined(DeclineReason::ProcessorRefused)),
        }
        if request.amount > entry.amount || request.amount == order_core::Money::ZERO {
            return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        }
        let (done, timed_out) = match Self::draw(&mut s) {
            Draw::Capture | Draw::Decline(_) => (true, false),
            Draw::Timeout { captured } => (captured, true),
            Draw::NotProcessed => (false, false),
        };
        if !done && !timed_out {
            return Err(GatewayError::Unavailable("processor error".into()));
        }
        if done {
            let receipt = CaptureReceipt {
                amount: request.amount,
            };
            entry.captures += 1;
            entry.captured = Some(receipt.clone());
            s.commit(key, entry)?;
            if !timed_out {
                return Ok(receipt);
            }
        }
        Err(GatewayError::Timeout(
            "gateway did not answer the capture in time".into(),
        ))
    }
}
