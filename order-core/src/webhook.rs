//! Webhooks: the events an order's life produces, the endpoints that subscribe to them, and
//! how deliveries are signed and retried, to the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>).
//!
//! Every status change of an order is recorded as an [`Event`] by the order store, in the
//! same atomic step as the change itself (the outbox), so no crash between the two can lose
//! it. The [`crate::service::WebhookDispatcher`] then fans each event out to the
//! [`Endpoint`]s subscribed to its [`EventType`] and delivers it, at least once:
//!
//! - A request carries `webhook-id` (the event's id, the same on every attempt, so receivers
//!   deduplicate by it), `webhook-timestamp` (seconds since the epoch) and
//!   `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`
//!   under each secret the endpoint signs with, space-separated ([`signature_header`]).
//! - A `2xx` answer is a delivery. Anything else, a time-out or a refused connection is
//!   retried on the [`RetrySchedule`] (about a day, with jitter, never sooner than a
//!   `Retry-After` asks, up to the schedule's longest step); `410 Gone` disables the endpoint, and so does failing everything
//!   for a set period.
//! - A rotated secret keeps signing beside the new one for a grace period
//!   ([`Endpoint::rotate_secret`]), so a receiver can roll its secret without losing events.

mod delivery;
mod endpoint;
mod event;
mod network;
mod signing;
#[cfg(test)]
mod tests;

pub use delivery::*;
pub use endpoint::*;
pub use event::*;
pub use network::is_public;
pub use signing::*;
