//! Captures: what was authorized under a manual capture's intent, taken once.

use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, DeclineReason, GatewayError,
};

use super::{STATE_STEPS, StripeGateway, cents, money, unsettled};

impl StripeGateway {
    pub(super) async fn capture_once(
        &self,
        request: &CaptureRequest,
    ) -> Result<CaptureReceipt, GatewayError> {
        let refused = Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        if request.charge.capture != CaptureMethod::Manual {
            // Captured with the charge: nothing is left to capture.
            return refused;
        }
        let mut intent = self
            .intent_of(&request.charge, request.payment_id.as_deref())
            .await?;
        let amount = cents(request.amount)?;
        for _ in 0..STATE_STEPS {
            match intent.status.as_str() {
                "requires_capture" => {
                    let form = [("amount_to_capture", amount.to_string())];
                    let key = request.idempotency_key.as_str();
                    intent = self.act(&intent.id, "capture", key, &form).await?;
                }
                "succeeded" => {
                    // Stripe says what it took; a fake that does not is taken at our word.
                    let taken = intent.amount_received.unwrap_or(amount);
                    return Ok(CaptureReceipt {
                        amount: money(taken)?,
                    });
                }
                "canceled" => return Err(GatewayError::Declined(DeclineReason::Voided)),
                "processing" => return Err(unsettled(&intent)),
                // Never authorized (declined, or never confirmed).
                _ => return refused,
            }
        }
        Err(unsettled(&intent))
    }
}
