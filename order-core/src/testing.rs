//! Helpers for tests of this and other crates: sample orders and the conformance suites
//! that every adapter of a port runs against itself.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;

use crate::ids::OrderId;
use crate::order::{NewOrder, Order, UncheckedItem, UncheckedOrder};

mod certificates;
pub use certificates::TestCertificates;
pub mod conformance;

/// A valid order for `customer`: 2 x 12.99 and 1 x 4.99 (total 30.97).
pub fn new_order(customer: &str) -> NewOrder {
    NewOrder::parse(UncheckedOrder {
        payment_method: None,
        customer_id: customer.into(),
        items: vec![
            UncheckedItem {
                item_id: "item_001".into(),
                item_name: "Burger".into(),
                quantity: 2,
                price: Decimal::new(1299, 2),
            },
            UncheckedItem {
                item_id: "item_002".into(),
                item_name: "Fries".into(),
                quantity: 1,
                price: Decimal::new(499, 2),
            },
        ],
    })
    .expect("sample order is valid")
}

/// [`new_order`] placed at `at` (kept to microseconds, as stores do) with a fresh id.
pub fn placed_order(customer: &str, at: DateTime<Utc>) -> Order {
    new_order(customer).place(OrderId::new(), at.trunc_subsecs(6))
}

/// A gateway that approves every charge and capture at once and has nothing to refund: for tests of
/// other adapters that need payments to go through.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApprovingGateway;

#[async_trait::async_trait]
impl crate::ports::PaymentGateway for ApprovingGateway {
    async fn charge(
        &self,
        _: &crate::payment::ChargeRequest,
    ) -> Result<crate::payment::ChargeReceipt, crate::payment::GatewayError> {
        Ok(crate::payment::ChargeReceipt {
            transaction_id: "txn".into(),
        })
    }

    async fn refund(
        &self,
        _: &crate::payment::RefundRequest,
    ) -> Result<crate::payment::RefundReceipt, crate::payment::GatewayError> {
        Ok(crate::payment::RefundReceipt::NothingCaptured)
    }

    async fn capture(
        &self,
        request: &crate::payment::CaptureRequest,
    ) -> Result<crate::payment::CaptureReceipt, crate::payment::GatewayError> {
        Ok(crate::payment::CaptureReceipt {
            amount: request.amount,
        })
    }

    /// It keeps no books: a look-up finds nothing charged, so a charge is sent (again).
    async fn lookup(
        &self,
        _: &crate::payment::LookupRequest,
    ) -> Result<crate::payment::PaymentState, crate::payment::GatewayError> {
        Ok(crate::payment::PaymentState::NotCharged)
    }
}
