//! Header names the service reads or sets (lowercase, as HTTP/2 sends them).

/// A client's key that makes retrying `POST /api/v1/orders` safe: 1 to 255 visible ASCII
/// characters, kept 24 hours.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set to `true` on an answer replayed from an earlier request with the same key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The request's id: taken from the request when present, generated otherwise, and always
/// returned.
pub const REQUEST_ID: &str = "x-request-id";
/// Longest [`IDEMPOTENCY_KEY`] accepted.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
/// What an [`IDEMPOTENCY_KEY`] must look like.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7E]{1,255}$";
