//! The services the binaries call: [`OrderService`] for the API, [`PaymentProcessor`] for
//! the worker. Both are generic over the ports and hold no I/O of their own.
//!
//! - [`orders`]: placing (with [`group_commit`]), reading and listing orders.
//! - [`payments`]: the worker's steps: receive, claim, charge, record, settle.
//! - [`decision`]: what one gateway answer means for an order, as a pure function.
//! - [`store_gate`]: failing fast while the store is down.
//! - [`webhooks`]: the webhook dispatcher.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::ports::Clock;

pub mod batch;
pub mod decision;
pub mod group_commit;
pub mod orders;
pub mod payments;
pub mod store_gate;
pub mod webhooks;

pub use orders::{
    Cancelled, CaptureError, Captured, OrderService, PlaceError, Placed, REQUEST_KEY_RETENTION,
    REQUEST_STALE_AFTER, RefundError, Refunded,
};
pub use payments::{Outcome, PaymentProcessor, ProcessError, ProcessorConfig};
pub use webhooks::{DispatcherConfig, InFlight, Round, WebhookDispatcher};

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The clock's time at the microsecond precision every store keeps.
fn micros_now<C: Clock + ?Sized>(clock: &C) -> DateTime<Utc> {
    clock.now().trunc_subsecs(6)
}
