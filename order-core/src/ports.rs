//! The ports: what the services need from the outside world, each with its contract.
//!
//! Every adapter of a port is checked by the same conformance suite
//! (`order_core::testing::conformance`, behind the `testing` feature), so the contracts
//! below are tested, not just written.

use std::error::Error as StdError;

use chrono::{DateTime, Utc};

mod api_key_store;
mod order_repo;
mod payment_gateway;
mod payment_queue;
mod rate_limiter;
mod webhook_sender;
mod webhook_store;

pub use api_key_store::*;
pub use order_repo::*;
pub use payment_gateway::*;
pub use payment_queue::*;
pub use rate_limiter::*;
pub use webhook_sender::*;
pub use webhook_store::*;

/// A boxed error from an adapter's driver.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The time source. Services never read the system clock directly, so tests control time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
