//! Per-client rate limits on `/api` requests: one quota for writes (`POST`, `PATCH`,
//! `PUT`, `DELETE`), one for reads, each optional.
//!
//! A client is its API key when the request carries one that was accepted, else its IP
//! address (the first `X-Forwarded-For` address only when `TRUST_FORWARDED_FOR` says a
//! proxy in front sets it; otherwise a client could pick its own bucket). The counts live
//! in a [`RateLimiter`]: Redis when the process has one, so that every process enforces one
//! limit together, else memory. If the limiter cannot be reached the request goes through
//! and a warning is logged (orders must still be accepted), unless `RATE_LIMIT_FAIL_CLOSED`.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` headers
//! (`"writes";q=20;w=2` and `"writes";r=19;t=1`); a request over the limit gets `429`
//! `rate_limited` with `Retry-After` in whole seconds, never 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use order_core::policy::rate_limit::{Quota, Verdict};
use order_core::ports::RateLimiter;

use crate::api::AppState;
use crate::error::ApiError;

/// The `RateLimit-Policy` header.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The limits of one process and where their counts live.
pub struct RateLimits {
    limiter: Arc<dyn RateLimiter>,
    writes: Option<Quota>,
    reads: Option<Quota>,
    fail_closed: bool,
    trust_forwarded_for: bool,
    /// When the last "limiter unavailable" warning was logged (one a minute at most).
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("writes", &self.writes)
            .field("reads", &self.reads)
            .field("fail_closed", &self.fail_closed)
            .finish_non_exhaustive()
    }
}

/// Settings of [`RateLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitSettings {
    /// The quota of writes per client (`RATE_LIMIT_WRITES_PER_SECOND`, `..._BURST`).
    pub writes: Option<Quota>,
    /// The quota of reads per client (`RATE_LIMIT_READS_PER_SECOND`, `..._BURST`).
    pub reads: Option<Quota>,
    /// Refuse requests (503) when the limiter cannot be reached (`RATE_LIMIT_FAIL_CLOSED`).
    pub fail_closed: bool,
    /// Take the client's address from `X-Forwarded-For` (`TRUST_FORWARDED_FOR`).
    pub trust_forwarded_for: bool,
}

impl RateLimitSettings {
    /// Whether any limit is set.
    pub const fn any(&self) -> bool {
        self.writes.is_some() || self.reads.is_some()
    }
}

impl RateLimits {
    /// Limits counted in `limiter`.
    pub fn new(limiter: Arc<dyn RateLimiter>, settings: RateLimitSettings) -> Self {
        Self {
            limiter,
            writes: settings.writes,
            reads: settings.reads,
            fail_closed: settings.fail_closed,
            trust_forwarded_for: settings.trust_forwarded_for,
            last_warning: std::sync::Mutex::new(None),
        }
    }

    fn warn_unavailable(&self, error: &order_core::ports::LimiterError) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            let failing = if self.fail_closed { "closed" } else { "open" };
            tracing::warn!(error = ?error, "rate limiter unavailable; failing {failing}");
        }
    }
}

/// Who a request counts against: set by authentication when a key was accepted.
#[derive(Debug, Clone)]
pub struct ClientId(pub String);

/// The client's bucket name: its key, or its address.
fn client(request: &Request<axum::body::Body>, trust_forwarded_for: bool) -> String {
    if let Some(ClientId(id)) = request.extensions().get::<ClientId>() {
        return format!("key:{id}");
    }
    if trust_forwarded_for {
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if let Some(address) = forwarded {
            return format!("ip:{address}");
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "ip:unknown".to_owned(), |c| format!("ip:{}", c.0.ip()))
}

fn headers(name: &str, quota: &Quota, verdict: &Verdict) -> [(HeaderName, HeaderValue); 2] {
    let policy = format!(
        "\"{name}\";q={};w={}",
        quota.burst(),
        quota.window_seconds()
    );
    let state = format!(
        "\"{name}\";r={};t={}",
        verdict.remaining,
        verdict.reset_after_seconds()
    );
    [
        (
            RATE_LIMIT_POLICY,
            HeaderValue::from_str(&policy).expect("ASCII"),
        ),
        (RATE_LIMIT, HeaderValue::from_str(&state).expect("ASCII")),
    ]
}

/// The middleware: counts the request against its client's quota, refuses it with `429`
/// past the quota, and tells the client where it stands either way.
pub async fn rate_limit(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let Some(limits) = state.rate_limits.clone() else {
        return next.run(request).await;
    };
    let (name, quota) = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => ("reads", limits.reads),
        _ => ("writes", limits.writes),
    };
    let Some(quota) = quota else {
        return next.run(request).await;
    };
    let bucket = format!("{name}:{}", client(&request, limits.trust_forwarded_for));
    let verdict = match limits.limiter.check(&bucket, &quota).await {
        Ok(verdict) => verdict,
        Err(e) => {
            limits.warn_unavailable(&e);
            if limits.fail_closed {
                return ApiError::Unavailable(Box::new(e)).into_response();
            }
            return next.run(request).await;
        }
    };
    let headers = headers(name, &quota, &verdict);
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        ApiError::RateLimited {
            policy: name,
            per_second: quota.per_second(),
            burst: quota.burst(),
            retry_after: verdict.retry_after_seconds(),
        }
        .into_response()
    };
    response.headers_mut().extend(headers);
    response
}
