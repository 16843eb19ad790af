//! Resilience policies as pure data and functions: time and randomness are inputs.

pub mod circuit_breaker;
pub mod rate_limit;
pub mod retry;
