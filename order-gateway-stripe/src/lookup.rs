//! Look-ups: where an order's PaymentIntent stands, read and never acted on.

use order_core::payment::{
    CaptureMethod, ChargeRequest, DeclineReason, GatewayError, LookupRequest, PaymentState,
};

use super::wire::{self, PaymentIntent};
use super::{StripeGateway, money};

impl StripeGateway {
    pub(super) async fn lookup_once(
        &self,
        request: &LookupRequest,
    ) -> Result<PaymentState, GatewayError> {
        if request.charge.payment_method.is_none() {
            // Such a charge is declined before anything is sent.
            return Ok(PaymentState::Declined {
                reason: DeclineReason::InvalidPaymentMethod,
            });
        }
        let intent = self
            .intent_of(&request.charge, request.payment_id.as_deref())
            .await?;
        if intent.status == "succeeded" {
            let order = request.charge.order_id.to_string();
            let refunded: i64 = self
                .refunds_of(&intent.id, &order)
                .await?
                .iter()
                .map(|r| r.amount)
                .sum();
            return Ok(PaymentState::Captured {
                amount: money(intent.amount_received.unwrap_or(intent.amount))?,
                refunded: money(refunded)?,
                payment_id: intent.id,
            });
        }
        state(intent, &request.charge)
    }
}

/// What an intent that has not succeeded says of the payment made (or not) under
/// `charge`'s key.
fn state(intent: PaymentIntent, charge: &ChargeRequest) -> Result<PaymentState, GatewayError> {
    Ok(match intent.status.as_str() {
        "requires_capture" if charge.capture == CaptureMethod::Manual => PaymentState::Authorized {
            amount: money(intent.amount)?,
            payment_id: intent.id,
        },
        "requires_confirmation" => PaymentState::NotCharged,
        // `processing`, or an authorization of an automatic capture Stripe is completing.
        _ => decline(&intent).map_or(PaymentState::Processing, |reason| PaymentState::Declined {
            reason,
        }),
    })
}

/// Why an intent in a state that will never be paid was declined: `canceled` voided,
/// `requires_action` needs the customer (who is not there), `requires_payment_method`
/// refused by the issuer (its reason kept). `None` for any other state. What a charge
/// answers and what a look-up says of the same intent come from here, so they agree.
pub(super) fn decline(intent: &PaymentIntent) -> Option<DeclineReason> {
    match intent.status.as_str() {
        "canceled" => Some(DeclineReason::Voided),
        "requires_action" => Some(DeclineReason::AuthenticationRequired),
        "requires_payment_method" => Some(
            intent
                .last_payment_error
                .as_ref()
                .map_or(DeclineReason::CardDeclined, wire::ErrorBody::decline_reason),
        ),
        _ => None,
    }
}
