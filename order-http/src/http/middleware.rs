//! The layers of the router. Each takes only the state it needs (`from_fn_with_state` with
//! its own `Arc`), never the handlers' state.

pub mod auth;
pub mod body;
pub mod concurrency;
pub mod load_shed;
pub mod metrics;
pub mod rate_limit;
pub mod span;
