//! # order-http
//!
//! The order service's HTTP API (axum) and payment worker, and the wiring that connects
//! them to PostgreSQL and Redis, or to in-memory adapters when neither is configured.
//!
//! ## Layout
//! - [`config`]: settings from the environment, checked at start.
//! - [`api`]: routes, handlers and the OpenAPI document; the JSON shapes are `order-api`'s.
//! - [`parse`], [`convert`]: from the wire into the domain, and back.
//! - [`error`]: the one error type, answering with `order-api`'s `ErrorBody`.
//! - [`worker`]: the payment worker's loop.
//! - [`startup`]: [`startup::Application`] builds and runs a process of any [`startup::Role`].
//! - [`telemetry`] sets up logging and tracing; [`traces`]: OpenTelemetry spans and the trace
//!   an order carries across processes.
//! - `testing` (feature `testing`): `TestApp`, the service started for a test.

pub mod api;
pub mod auth;
pub mod config;
pub mod convert;
pub mod error;
pub mod keys_cli;
pub mod limit;
pub mod metrics;
pub mod parse;
pub mod rate_limit;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traces;
pub mod webhooks;
pub mod worker;

pub use config::Config;
pub use startup::{Application, Role};
