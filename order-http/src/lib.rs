//! # order-http
//!
//! The order service's HTTP API (axum) and its workers, and the wiring that connects them
//! to PostgreSQL and Redis, or to in-memory adapters when neither is configured.
//!
//! ## Layout
//! - [`config`]: every setting, from the environment; imports nothing of this crate.
//! - [`startup`]: the composition root. [`startup::Application`] builds the adapters and
//!   the state once, then runs a process of any [`startup::Role`].
//! - [`http`]: the HTTP adapter: `http::router(state)`, its layers, and the routes by
//!   resource with their OpenAPI operations.
//! - [`worker`]: the loops of the worker roles: payments, and webhook delivery and purge.
//! - [`telemetry`]: logs, traces and metrics.
//! - [`keys`]: the `keys` subcommand, managing API keys straight in the store.
//! - `testing` (feature `testing`): `TestApp`, the service started for a test.
//!
//! Imports point down that list: `http` and `worker` use `config` and `telemetry`, and
//! `startup` uses them all; no middleware sees the handlers' state.

pub mod config;
pub mod http;
pub mod keys;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use config::Config;
pub use startup::{Application, Role};
