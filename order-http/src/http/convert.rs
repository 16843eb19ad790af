//! From the domain onto the wire: domain values into `order-api`'s response types.

use order_api::orders as wire;
use order_core::order::{CancelReason, PartialRefund, PartialRefundState, RefundStatus};
use order_core::payment::{AttemptOutcome, RefundAttempt, RefundOutcome};
use order_core::{Order, OrderStatus, PaymentAttempt};

/// The wire name of a domain status.
pub const fn status(status: OrderStatus) -> wire::OrderStatus {
    match status {
        OrderStatus::Pending => wire::OrderStatus::Pending,
        OrderStatus::PaymentProcessing => wire::OrderStatus::PaymentProcessing,
        OrderStatus::Confirmed => wire::OrderStatus::Confirmed,
        OrderStatus::PaymentFailed => wire::OrderStatus::PaymentFailed,
        OrderStatus::Cancelling => wire::OrderStatus::Cancelling,
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
        wire::OrderStatus::Cancelling => OrderStatus::Cancelling,
        wire::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

/// The wire name of a domain cancellation reason.
pub const fn reason(reason: CancelReason) -> wire::CancelReason {
    match reason {
        CancelReason::RequestedByCustomer => wire::CancelReason::RequestedByCustomer,
        CancelReason::Duplicate => wire::CancelReason::Duplicate,
        CancelReason::Fraudulent => wire::CancelReason::Fraudulent,
        CancelReason::RestaurantUnavailable => wire::CancelReason::RestaurantUnavailable,
        CancelReason::Other => wire::CancelReason::Other,
    }
}

/// The domain reason of a wire name.
pub const fn domain_reason(reason: wire::CancelReason) -> CancelReason {
    match reason {
        wire::CancelReason::RequestedByCustomer => CancelReason::RequestedByCustomer,
        wire::CancelReason::Duplicate => CancelReason::Duplicate,
        wire::CancelReason::Fraudulent => CancelReason::Fraudulent,
        wire::CancelReason::RestaurantUnavailable => CancelReason::RestaurantUnavailable,
        wire::CancelReason::Other => CancelReason::Other,
    }
}

/// One refund attempt.
pub fn refund_attempt(a: &RefundAttempt) -> wire::RefundAttemptResponse {
    use wire::RefundAttemptStatus as S;
    let (status, refund_id, error_message) = match &a.outcome {
        RefundOutcome::Refunded { refund_id, .. } => (S::Refunded, Some(refund_id.clone()), None),
        RefundOutcome::NothingCaptured => (S::NothingCaptured, None, None),
        RefundOutcome::Refused { error } => (S::Refused, None, Some(error.clone())),
        RefundOutcome::Failed { error } => (S::Failed, None, Some(error.clone())),
        RefundOutcome::TimedOut { error } => (S::TimedOut, None, Some(error.clone())),
    };
    wire::RefundAttemptResponse {
        attempt_number: a.number.get(),
        status,
        refund_id,
        error_message,
        started_at: a.started_at,
        finished_at: a.finished_at,
    }
}

/// The order's refunds: those asked for on their own, then a cancellation's.
fn refunds(o: &Order) -> Vec<wire::RefundResponse> {
    let cancellation = o.refund().map(|r| wire::RefundResponse {
        amount: r.amount.amount(),
        status: match r.status {
            RefundStatus::Pending => wire::RefundStatus::Pending,
            RefundStatus::Succeeded => wire::RefundStatus::Succeeded,
            RefundStatus::NothingCaptured => wire::RefundStatus::NothingCaptured,
        },
        refund_id: r.refund_id,
        reason: None,
        items: Vec::new(),
        requested_at: None,
        error_message: None,
        attempts: o.refund_attempts.iter().map(refund_attempt).collect(),
    });
    o.partial_refunds
        .iter()
        .map(partial_refund)
        .chain(cancellation)
        .collect()
}

/// A refund asked for on its own.
fn partial_refund(r: &PartialRefund) -> wire::RefundResponse {
    let (status, amount, refund_id, error_message) = match &r.state {
        PartialRefundState::Pending => (wire::RefundStatus::Pending, r.amount, None, None),
        PartialRefundState::Refunded {
            refund_id, amount, ..
        } => (
            wire::RefundStatus::Succeeded,
            *amount,
            Some(refund_id.clone()),
            None,
        ),
        PartialRefundState::Refused { error, .. } => (
            wire::RefundStatus::Refused,
            order_core::Money::ZERO,
            None,
            Some(error.clone()),
        ),
    };
    wire::RefundResponse {
        amount: amount.amount(),
        status,
        refund_id,
        reason: r.reason.as_ref().map(ToString::to_string),
        items: r
            .items
            .iter()
            .map(|i| wire::RefundItem {
                item_id: i.item_id.to_string(),
                quantity: i.quantity.get(),
            })
            .collect(),
        requested_at: Some(r.requested_at),
        error_message,
        attempts: Vec::new(),
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

/// The money side of an order, once there is one.
fn payment(o: &Order) -> Option<wire::PaymentResponse> {
    use order_core::order::PaymentStatus as S;
    use order_core::payment::CaptureMethod as M;
    o.payment().map(|p| wire::PaymentResponse {
        status: match p.status {
            S::Authorized => wire::PaymentStatus::Authorized,
            S::Captured => wire::PaymentStatus::Captured,
            S::PartiallyRefunded => wire::PaymentStatus::PartiallyRefunded,
            S::Refunded => wire::PaymentStatus::Refunded,
            S::Voided => wire::PaymentStatus::Voided,
        },
        capture_method: match o.capture {
            M::Automatic => wire::CaptureMethod::Automatic,
            M::Manual => wire::CaptureMethod::Manual,
        },
        authorized_amount: p.authorized_amount.amount(),
        captured_amount: p.captured_amount.amount(),
        refunded_amount: p.refunded_amount.amount(),
    })
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
        payment_method: o.payment_method.as_ref().map(ToString::to_string),
        status: status(o.status),
        created_at: o.created_at,
        updated_at: o.updated_at,
        payment_attempts: o.payment_attempts.iter().map(attempt).collect(),
        cancellation: o.cancellation.map(|c| wire::CancellationResponse {
            requested_at: c.requested_at,
            reason: reason(c.reason),
        }),
        refunds: refunds(o),
        payment: payment(o),
    }
}

/// A stored key as the API shows it: never its secret.
pub fn api_key(key: &order_core::access::ApiKey) -> order_api::keys::ApiKeyResponse {
    order_api::keys::ApiKeyResponse {
        id: key.id.to_string(),
        name: key.name.clone(),
        scopes: key.scopes.iter().map(|s| scope(*s)).collect(),
        customer_id: key.customer_id.as_ref().map(|c| c.as_str().to_owned()),
        created_at: key.created_at,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
    }
}

/// A scope on the wire.
pub const fn scope(scope: order_core::access::Scope) -> order_api::keys::Scope {
    use order_api::keys::Scope as Wire;
    use order_core::access::Scope;
    match scope {
        Scope::OrdersRead => Wire::OrdersRead,
        Scope::OrdersWrite => Wire::OrdersWrite,
        Scope::OrdersCancel => Wire::OrdersCancel,
        Scope::PaymentsCapture => Wire::PaymentsCapture,
        Scope::PaymentsRefund => Wire::PaymentsRefund,
        Scope::WebhooksManage => Wire::WebhooksManage,
        Scope::KeysManage => Wire::KeysManage,
        Scope::MetricsRead => Wire::MetricsRead,
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
        assert_eq!(OrderStatus::ALL.len(), order_api::OrderStatus::ALL.len());
    }

    #[test]
    fn every_cancel_reason_has_the_same_name_on_both_sides() {
        for r in CancelReason::ALL {
            assert_eq!(reason(r).as_str(), r.as_str());
            assert_eq!(domain_reason(reason(r)), r);
        }
        assert_eq!(CancelReason::ALL.len(), order_api::CancelReason::ALL.len());
    }
}
