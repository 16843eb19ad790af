//! The names of the headers the API reads and writes, as [`HeaderName`]s: each spelled once,
//! in `order-api`'s [`headers`].

use axum::http::HeaderName;
use order_api::headers;

/// `X-Request-Id`: set on every request that lacks one, and sent back.
pub const REQUEST_ID: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
/// `Idempotency-Key`: makes a retried write safe.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(headers::IDEMPOTENCY_KEY);
/// `Idempotent-Replayed: true`: the answer is the first request's.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static(headers::IDEMPOTENT_REPLAYED);
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static(order_core::trace::TRACEPARENT);
/// `RateLimit-Policy` (IETF draft): a client's quota.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF draft): where a client stands against its quota.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-Forwarded-For`: the addresses a request passed through, appended by proxies.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
