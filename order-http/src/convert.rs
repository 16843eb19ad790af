//! From the domain onto the wire: domain values into `order-api`'s response types.

use order_api::orders as wire;
use order_core::payment::AttemptOutcome;
use order_core::{Order, OrderStatus, PaymentAttempt};

/// The wire name of a domain status.
pub const fn status(status: OrderStatus) -> wire::OrderStatus {
    match status {
        OrderStatus::Pending => wire::OrderStatus::Pending,
        OrderStatus::PaymentProcessing => wire::OrderStatus::PaymentProcessing,
        OrderStatus::Confirmed => wire::OrderStatus::Confirmed,
        OrderStatus::PaymentFailed => wire::OrderStatus::PaymentFailed,
        OrderStatus::Cancelled => wire::OrderStatus::Cancelled,
    }
}

/// The domain status of a wire name.
pub const fn domain_status(status: wire::OrderStatus) -> OrderStatus {
    match status {
        wire::OrderStatus::Pending => OrderStatus::Pending,
        wire::OrderStatus::PaymentProcessing => OrderStatus::PaymentProcessing,
        wire::OrderStatus::Confirmed => OrderStatus::Confirmed,
        wire::OrderStatus::PaymentFailed => OrderStatus::PaymentFailed,
        wire::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

/// One payment attempt.
pub fn attempt(a: &PaymentAttempt) -> wire::AttemptResponse {
    let (status, transaction_id, error_message) = match &a.outcome {
        AttemptOutcome::Succeeded { transaction_id } => (
            wire::AttemptStatus::Succeeded,
            Some(transaction_id.clone()),
            None,
        ),
        AttemptOutcome::Declined { reason } => (
            wire::AttemptStatus::Declined,
            None,
            Some(reason.to_string()),
        ),
        AttemptOutcome::Failed { error } => {
            (wire::AttemptStatus::Failed, None, Some(error.clone()))
        }
        AttemptOutcome::TimedOut { error } => {
            (wire::AttemptStatus::TimedOut, None, Some(error.clone()))
        }
    };
    wire::AttemptResponse {
        attempt_number: a.number.get(),
        status,
        transaction_id,
        error_message,
        started_at: a.started_at,
        finished_at: a.finished_at,
    }
}

/// An order with its items and attempts.
pub fn order(o: &Order) -> wire::OrderResponse {
    wire::OrderResponse {
        id: o.id.as_uuid(),
        customer_id: o.customer_id.to_string(),
        items: o
            .items
            .iter()
            .map(|i| wire::ItemResponse {
                item_id: i.item_id.to_string(),
                item_name: i.item_name.to_string(),
                quantity: i.quantity.get(),
                price: i.price.money().amount(),
            })
            .collect(),
        total_amount: o.total_amount.amount(),
        status: status(o.status),
        created_at: o.created_at,
        updated_at: o.updated_at,
        payment_attempts: o.payment_attempts.iter().map(attempt).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_the_same_name_on_both_sides() {
        for s in OrderStatus::ALL {
            assert_eq!(status(s).as_str(), s.as_str());
            assert_eq!(domain_status(status(s)), s);
        }
    }
}
