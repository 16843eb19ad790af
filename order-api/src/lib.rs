//! # order-api
//!
//! The order service's HTTP contract, written once: the server (`order-http`), the
//! command-line client (`order-cli`), the load generator and every test speak it through
//! these types, and another Rust service can depend on this crate to call the service
//! without pulling in a web framework or a database driver.
//!
//! ## Layout
//! - [`paths`], [`headers`]: where each operation lives and the headers it reads or sets.
//! - [`orders`]: the bodies of placing, reading, listing and cancelling orders.
//! - [`webhooks`]: webhook endpoints, delivery attempts, replay and the event envelope.
//! - [`health`]: liveness, readiness and the service's self-description.
//! - [`error`]: the one error body every failure answers with.
//! - [`money`]: exact decimal amounts as JSON numbers (never through `f64`).
//! - [`gateway`]: the protocol of the HTTP payment gateway the worker charges through.
//! - [`client`] (feature `client`, on by default): [`OrderClient`], a typed async client.
//!
//! With the `openapi` feature every type carries its OpenAPI schema (utoipa), including
//! every limit the service enforces: lengths, counts, ranges, decimal places, formats.
//!
//! ## Example
//! ```no_run
//! use order_api::orders::{CreateItemRequest, CreateOrderRequest};
//! use order_api::OrderClient;
//!
//! # async fn run() -> Result<(), order_api::client::ClientError> {
//! let client = OrderClient::new("http://localhost:8000")?;
//! let placed = client
//!     .create(
//!         &CreateOrderRequest {
//!             customer_id: "customer_123".into(),
//!             items: vec![CreateItemRequest {
//!                 item_id: "item_001".into(),
//!                 item_name: "Burger".into(),
//!                 quantity: 2,
//!                 price: "12.99".parse().unwrap(),
//!             }],
//!             payment_method: None,
//!         },
//!         None,
//!     )
//!     .await?;
//! println!("{} is {}", placed.order.id, placed.order.status);
//! # Ok(()) }
//! ```

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod gateway;
pub mod headers;
pub mod health;
pub mod keys;
pub mod money;
pub mod orders;
pub mod paths;
pub mod webhooks;

#[cfg(feature = "client")]
pub use client::OrderClient;
pub use error::{ErrorBody, ErrorCode, FieldErrorBody};
pub use orders::{
    AttemptResponse, AttemptStatus, CancelOrderRequest, CancelReason, CreateItemRequest,
    CreateOrderRequest, ItemResponse, ListOrdersQuery, OrderListResponse, OrderResponse,
    OrderStatus, RefundResponse, RefundStatus,
};

/// A pattern for text fields: at least one character that is not white space, and no
/// control characters (ECMA-262 and Python `re` read it the same way).
pub const TEXT_PATTERN: &str =
    r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";
