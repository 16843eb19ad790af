//! Per-client rate limits on `/api` requests: one quota for writes (`POST`, `PATCH`,
//! `PUT`, `DELETE`), one for reads, each optional.
//!
//! A client is its API key when the request carries one that was accepted, else its IP
//! address: its connection's, or, when `TRUST_FORWARDED_FOR` says `N` proxies in front
//! append to `X-Forwarded-For`, the entry `N` from the right (entries to its left are the
//! client's own word, and would let it pick its bucket). The counts live
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

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use order_core::policy::rate_limit::{Quota, Verdict};
use order_core::ports::RateLimiter;

use crate::config::RateLimitSettings;
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::headers::{RATE_LIMIT, RATE_LIMIT_POLICY, X_FORWARDED_FOR};

/// The limits of one process and where their counts live.
pub struct RateLimits {
    limiter: Arc<dyn RateLimiter>,
    writes: Option<Quota>,
    reads: Option<Quota>,
    fail_closed: bool,
    forwarded_hops: usize,
    unavailable: UnavailableWarning,
}

/// Says at most once a minute that the limiter cannot be reached: while Redis is down every
/// request would say it again.
#[derive(Debug, Default)]
struct UnavailableWarning(std::sync::Mutex<Option<Instant>>);

impl UnavailableWarning {
    fn warn(&self, error: &order_core::ports::LimiterError, fail_closed: bool) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            let failing = if fail_closed { "closed" } else { "open" };
            tracing::warn!(error = ?error, "rate limiter unavailable; failing {failing}");
        }
    }
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

impl RateLimits {
    /// Limits counted in `limiter`.
    pub fn new(limiter: Arc<dyn RateLimiter>, settings: RateLimitSettings) -> Self {
        Self {
            limiter,
            writes: settings.writes,
            reads: settings.reads,
            fail_closed: settings.fail_closed,
            forwarded_hops: settings.forwarded_hops,
            unavailable: UnavailableWarning::default(),
        }
    }
}

/// The client's bucket name: its key (when authentication accepted one), or its address.
fn client(headers: &HeaderMap, extensions: &Extensions, forwarded_hops: usize) -> String {
    if let Some(id) = extensions.get::<Caller>().and_then(Caller::key_id) {
        return format!("key:{id}");
    }
    address_of(headers, extensions, forwarded_hops)
}

/// The client's address as a bucket name (`ip:...`): its connection's, or the
/// `X-Forwarded-For` entry `forwarded_hops` from the right.
pub(crate) fn address(request: &Request, forwarded_hops: usize) -> String {
    address_of(request.headers(), request.extensions(), forwarded_hops)
}

fn address_of(headers: &HeaderMap, extensions: &Extensions, forwarded_hops: usize) -> String {
    if forwarded_hops > 0 {
        // Each proxy appends the address it was reached from: the entry `hops` from the
        // right is what the outermost proxy saw, whatever the client wrote before it.
        let forwarded = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let address = forwarded
            .len()
            .checked_sub(forwarded_hops)
            .and_then(|i| forwarded.get(i))
            .and_then(|a| a.parse::<std::net::IpAddr>().ok());
        if let Some(address) = address {
            return format!("ip:{address}");
        }
    }
    extensions
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
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let (name, quota) = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => ("reads", limits.reads),
        _ => ("writes", limits.writes),
    };
    let Some(quota) = quota else {
        return next.run(request).await;
    };
    let bucket = format!(
        "{name}:{}",
        client(
            request.headers(),
            request.extensions(),
            limits.forwarded_hops
        )
    );
    let verdict = match limits.limiter.check(&bucket, &quota).await {
        Ok(verdict) => verdict,
        Err(e) => {
            limits.unavailable.warn(&e, limits.fail_closed);
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

/// A quota on one kind of request per client, which its handler spends through an
/// extractor (such as [`Redelivery`](crate::http::extract::Redelivery)): counted whatever
/// the general limits are, because each such request costs far more than one.
pub struct Budget {
    limiter: Arc<dyn RateLimiter>,
    name: &'static str,
    quota: Quota,
    fail_closed: bool,
    forwarded_hops: usize,
    unavailable: UnavailableWarning,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// The quota `name`, counted per client in `limiter`; `settings` say how clients are
    /// told apart and what to do when the limiter cannot be reached.
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        name: &'static str,
        quota: Quota,
        settings: &RateLimitSettings,
    ) -> Self {
        Self {
            limiter,
            name,
            quota,
            fail_closed: settings.fail_closed,
            forwarded_hops: settings.forwarded_hops,
            unavailable: UnavailableWarning::default(),
        }
    }

    /// Spends one request of the client the request's `headers` and `extensions` name:
    /// `429` past the quota (with `Retry-After`), `503` when the limiter cannot be reached
    /// and the limits fail closed; through when they fail open.
    pub async fn spend(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<(), ApiError> {
        let bucket = format!(
            "{}:{}",
            self.name,
            client(headers, extensions, self.forwarded_hops)
        );
        match self.limiter.check(&bucket, &self.quota).await {
            Ok(verdict) if verdict.allowed => Ok(()),
            Ok(verdict) => Err(ApiError::RateLimited {
                policy: self.name,
                per_second: self.quota.per_second(),
                burst: self.quota.burst(),
                retry_after: verdict.retry_after_seconds(),
            }),
            Err(e) => {
                self.unavailable.warn(&e, self.fail_closed);
                if self.fail_closed {
                    Err(ApiError::Unavailable(Box::new(e)))
                } else {
                    Ok(())
                }
            }
        }
    }
}
