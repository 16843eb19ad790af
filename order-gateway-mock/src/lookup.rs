//! Look-ups: where a charge key's payment stands, read from the ledger; nothing moves.

use order_core::payment::{GatewayError, IdempotencyKey, PaymentState};

use super::{LedgerEntry, SimulatedGateway};

impl SimulatedGateway {
    /// Where the payment charged (or not) under `key` stands, read off the ledger after the
    /// simulated latency. Only an outage fails it: the ledger itself always answers.
    pub async fn payment(&self, key: &IdempotencyKey) -> Result<PaymentState, GatewayError> {
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let now = self.clock.now();
        let mut s = self.lock();
        s.lookup_calls += 1;
        if s.outage_until.is_some_and(|until| now < until) {
            return Err(GatewayError::Unavailable("gateway outage".into()));
        }
        Ok(s.ledger.get(key).map_or(PaymentState::NotCharged, state_of))
    }
}

/// What a ledger entry says of its payment.
fn state_of(entry: &LedgerEntry) -> PaymentState {
    match &entry.outcome {
        Some(Ok(receipt)) if entry.captures > 0 => PaymentState::Captured {
            payment_id: receipt.transaction_id.clone(),
            amount: entry.captured_amount(),
            refunded: entry.refunded(),
        },
        Some(Ok(receipt)) => PaymentState::Authorized {
            payment_id: receipt.transaction_id.clone(),
            amount: entry.amount,
        },
        Some(Err(GatewayError::Declined(reason))) => PaymentState::Declined { reason: *reason },
        // A time-out that took nothing, or a charge never processed: nothing is on its way.
        Some(Err(_)) | None => PaymentState::NotCharged,
    }
}
