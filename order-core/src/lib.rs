//! # order-core
//!
//! The domain of the order service: what an order is, how it moves through its life, how
//! payments are attempted, and the ports through which the service reaches storage, the
//! payment queue, the payment gateway and the clock. No I/O lives here; adapters in other
//! crates implement the ports, and the in-memory adapters in [`memory`] implement them all.
//!
//! ## Layout
//! - [`ids`], [`money`]: values that cannot be invalid (parse, don't validate).
//! - [`order`]: orders, items, cancellations and the status state machine
//!   ([`order::next_status`]).
//! - [`payment`]: charge and refund requests, gateway outcomes, attempt records, idempotency
//!   keys.
//! - [`request`]: client idempotency keys and request fingerprints.
//! - [`policy`]: the circuit breaker and the retry policy, pure functions of time and chance.
//! - [`access`]: API keys, their scopes and customer binding.
//! - [`trace`]: the W3C trace context an order and its payment jobs carry.
//! - [`webhook`]: events, endpoints, signatures and the retry schedule of webhooks.
//! - [`observe`]: the metrics the services record (through the `metrics` facade).
//! - [`ports`]: `OrderRepo`, `PaymentQueue`, `PaymentGateway`, `Clock` and their contracts.
//! - [`service`]: `OrderService` (place, get, list, cancel) in [`service::orders`],
//!   `PaymentProcessor` (the worker's steps) in [`service::payments`], and the pure charge
//!   and refund decisions in [`service::decision`].
//! - [`memory`]: in-memory adapters and a manual clock.
//! - `testing` (feature `testing`): sample data and the conformance suites for adapters.
//!
//! ## Example
//! ```
//! use std::sync::Arc;
//! use order_core::memory::{MemoryOrderRepo, MemoryQueue};
//! use order_core::ports::SystemClock;
//! use order_core::service::OrderService;
//! use order_core::order::{NewOrder, OrderStatus, UncheckedItem, UncheckedOrder};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let clock = Arc::new(SystemClock);
//! let service = OrderService::new(
//!     Arc::new(MemoryOrderRepo::new()),
//!     Arc::new(MemoryQueue::new(clock.clone())),
//!     clock,
//! );
//! let new = NewOrder::parse(UncheckedOrder {
//!     payment_method: None,
//!     customer_id: "customer_123".into(),
//!     items: vec![UncheckedItem {
//!         item_id: "item_001".into(),
//!         item_name: "Burger".into(),
//!         quantity: 2,
//!         price: "12.99".parse().unwrap(),
//!     }],
//! })
//! .unwrap();
//! let order = service.place(new).await.unwrap();
//! assert_eq!(order.status, OrderStatus::Pending);
//! assert_eq!(order.total_amount.to_string(), "25.98");
//! # }
//! ```

pub mod access;
pub mod error;
pub mod hex;
pub mod ids;
pub mod memory;
pub mod money;
pub mod observe;
pub mod order;
pub mod payment;
pub mod policy;
pub mod ports;
pub mod request;
pub mod service;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod trace;
pub mod webhook;

pub use error::{FieldError, Invalid, ValidationErrors};
pub use ids::{CustomerId, ItemId, ItemName, OrderId, PaymentMethod, RefundReason, WorkerId};
pub use money::{Money, Price, Quantity};
pub use order::{NewOrder, Order, OrderEvent, OrderItem, OrderStatus, Transition};
pub use payment::{
    ChargeReceipt, ChargeRequest, DeclineReason, GatewayError, IdempotencyKey, PaymentAttempt,
};
pub use ports::{Clock, OrderRepo, PaymentGateway, PaymentQueue, SystemClock};
pub use service::{OrderService, PaymentProcessor, ProcessorConfig};
