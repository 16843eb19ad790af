//! In-memory adapters of every port: concurrent and faithful to the port contracts (they
//! pass the same conformance suites as the PostgreSQL and Redis adapters). They are the
//! embedded default of `order-http` and the bed of the property tests. Nothing survives the
//! process.

use std::sync::{Mutex, MutexGuard, PoisonError};

mod api_keys;
mod clock;
mod order_repo;
mod queue;
mod rate_limiter;
mod webhook_store;

pub use api_keys::*;
pub use clock::*;
pub use order_repo::*;
pub use queue::*;
pub use rate_limiter::*;

/// Locks `m`, taking the data even if a holder panicked (a poisoned lock is not an
/// outage of the whole adapter).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
