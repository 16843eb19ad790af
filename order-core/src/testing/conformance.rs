//! Conformance suites: one per port, run by every adapter against itself.
//!
//! Each suite takes a factory that makes a fresh, empty adapter (for the queue, two
//! consumers of one fresh queue) and panics naming the broken rule of the contract.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::ids::WorkerId;
use crate::payment::{AttemptOutcome, PaymentAttempt};
use crate::ports::{Claim, OrderRepo, PageRequest, PageSize, PageStart};

mod api_key_store;
mod order_repo;
mod payment_gateway;
mod payment_queue;
mod rate_limiter;
mod webhook_store;

pub use api_key_store::api_key_store;
pub use order_repo::order_repo;
pub use payment_gateway::{GatewayBooks, payment_gateway, payment_gateway_paying_with};
pub use payment_queue::{payment_queue, sample_trace};
pub use rate_limiter::rate_limiter;
pub use webhook_store::webhook_store;

fn base_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

fn worker(name: &str) -> WorkerId {
    WorkerId::parse(name).expect("valid worker id")
}

fn attempt(number: u32, outcome: AttemptOutcome, at: DateTime<Utc>) -> PaymentAttempt {
    PaymentAttempt {
        number: NonZeroU32::new(number).expect("attempt numbers start at 1"),
        outcome,
        started_at: at,
        finished_at: at + chrono::Duration::milliseconds(120),
    }
}

fn page(n: u32, size: i64) -> PageRequest {
    PageRequest {
        start: PageStart::Number(NonZeroU32::new(n).expect("pages start at 1")),
        size: PageSize::new(size).expect("valid page size"),
    }
}

async fn acquire<R: OrderRepo + ?Sized>(
    repo: &R,
    order: crate::ids::OrderId,
    who: &str,
    now: DateTime<Utc>,
) -> (crate::ports::Lease, crate::order::Order) {
    match repo
        .claim(order, &worker(who), now, Duration::from_secs(30))
        .await
    {
        Ok(Claim::Acquired { lease, order, .. }) => (lease, order),
        other => panic!("claim of a due, free order must acquire it, got {other:?}"),
    }
}
