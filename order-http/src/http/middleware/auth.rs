//! Access control for `/api/v1`: with `AUTH_MODE=api_key`, every request needs
//! `Authorization: Bearer <key>`, and the key must carry the scope the route needs.
//!
//! Which scope each route needs is one table, [`required_scope`]. Keys are looked up in the
//! [`ApiKeyStore`] and remembered for five seconds, so a busy key costs one store read per
//! five seconds per process, not one per request (a revocation therefore takes up to five
//! seconds to reach every process; the process that revokes forgets the key at once).
//! `last_used_at` is written at most once a minute per key, in the background. Keys are
//! never logged: only their ids.
//!
//! A well-formed key that is refused (unknown, wrong secret, revoked, expired) counts
//! against its client address's [`FailureLimit`]; an address past it gets `429` for every
//! request until its time is up, before any key it sends is looked up, so guessing keys
//! from one address is slow and costs the store nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use order_api::paths;
use order_core::access::{ApiKey, AuthError, KeyId, PresentedKey, Scope};
use order_core::policy::rate_limit::Quota;
use order_core::ports::{ApiKeyStore, Clock, RateLimiter, RepoError};

use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::middleware::rate_limit;

/// The scope a request to `route` (the route's template) with `method` needs; `None` for
/// routes outside `/api/v1`, which stay open.
pub fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    match (method.as_str(), route) {
        ("GET" | "HEAD", r) if r == paths::ORDERS || r == paths::ORDER => Some(Scope::OrdersRead),
        ("POST", r) if r == paths::ORDERS => Some(Scope::OrdersWrite),
        ("POST", r) if r == paths::ORDER_CANCEL => Some(Scope::OrdersCancel),
        ("POST", r) if r == paths::ORDER_CAPTURE => Some(Scope::PaymentsCapture),
        ("POST", r) if r == paths::ORDER_REFUNDS => Some(Scope::PaymentsRefund),
        (_, r) if r == paths::API_KEYS || r == paths::API_KEY => Some(Scope::KeysManage),
        // Stripe signs its events; it holds no key of ours.
        ("POST", r) if r == paths::GATEWAY_EVENTS_STRIPE => None,
        (_, r) if r == paths::METRICS => Some(Scope::MetricsRead),
        (_, r) if r.starts_with(paths::WEBHOOK_ENDPOINTS) || r == paths::EVENT_REDELIVER => {
            Some(Scope::WebhooksManage)
        }
        // Anything else under /api/v1 (a method the route does not have) needs a valid key
        // all the same, and is then answered 405; the narrowest scope stands in for it.
        (_, r) if r.starts_with("/api/") => Some(Scope::OrdersRead),
        _ => None,
    }
}

/// How long a looked-up key is trusted before it is read again.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// How often, at most, a key's `last_used_at` is written.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct Cached {
    key: Option<Arc<ApiKey>>,
    fetched: Instant,
    touched: Option<Instant>,
}

/// Checks presented keys against the store.
pub struct Auth {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<KeyId, Cached>>,
    failures: Option<FailureLimit>,
}

/// How many refused keys one client address may present: each refusal is counted in the
/// [`RateLimiter`] (so every process shares the count), and an address the count runs out
/// for is remembered here, refused before its keys are looked up, until its time is up.
pub struct FailureLimit {
    limiter: Arc<dyn RateLimiter>,
    quota: Quota,
    forwarded_hops: usize,
    blocked: Mutex<HashMap<String, Instant>>,
}

impl FailureLimit {
    /// Refusals counted in `limiter` under `quota`, per address as the rate limits see it.
    pub fn new(limiter: Arc<dyn RateLimiter>, quota: Quota, forwarded_hops: usize) -> Self {
        Self {
            limiter,
            quota,
            forwarded_hops,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Whole seconds (at least 1) until `address` may present keys again, if it is blocked.
    fn blocked_for(&self, address: &str) -> Option<u64> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let left = blocked
            .get(address)?
            .checked_duration_since(Instant::now())?;
        Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }

    /// Counts a refused key of `address`; once its quota is spent, blocks it.
    async fn refused(&self, address: &str) {
        let bucket = format!("auth_failures:{address}");
        match self.limiter.check(&bucket, &self.quota).await {
            Ok(verdict) if !verdict.allowed => {
                let until = Instant::now() + Duration::from_secs(verdict.retry_after_seconds());
                let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
                if blocked.len() >= 10_000 {
                    let now = Instant::now();
                    blocked.retain(|_, at| *at > now);
                }
                blocked.insert(address.to_owned(), until);
                tracing::warn!(client = %address, "too many refused API keys; refusing this client for a while");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "counting a refused key failed"),
        }
    }

    fn refusal(&self, retry_after: u64) -> ApiError {
        ApiError::RateLimited {
            policy: "auth_failures",
            per_second: self.quota.per_second(),
            burst: self.quota.burst(),
            retry_after,
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// Why a request was not let in.
#[derive(Debug)]
pub enum Refusal {
    /// The key is missing or no good: `401`.
    Key(AuthError),
    /// The store could not be asked: `503`.
    Store(RepoError),
}

impl Auth {
    /// Keys from `store`, times from `clock`; refused keys limited per address by
    /// `failures`, if given.
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        clock: Arc<dyn Clock>,
        failures: Option<FailureLimit>,
    ) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
            failures,
        }
    }

    /// Forgets what this process remembers of `id` (after a revocation here).
    pub fn forget(&self, id: &KeyId) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// The key the `Authorization` header presents, if it is good now.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Result<Arc<ApiKey>, Refusal> {
        let token = authorization
            .ok_or(Refusal::Key(AuthError::Missing))?
            .to_str()
            .map_err(|_| Refusal::Key(AuthError::Malformed))?;
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .ok_or(Refusal::Key(AuthError::Malformed))?;
        let presented: PresentedKey = token.parse().map_err(Refusal::Key)?;
        let key = self.lookup(&presented.id).await?;
        let key = key.ok_or(Refusal::Key(AuthError::Unknown))?;
        let now = self.clock.now();
        key.authenticate(&presented, now).map_err(Refusal::Key)?;
        self.touch(&key, now);
        Ok(key)
    }

    async fn lookup(&self, id: &KeyId) -> Result<Option<Arc<ApiKey>>, Refusal> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = cache.get(id).filter(|c| c.fetched.elapsed() < CACHE_FOR) {
                return Ok(hit.key.clone());
            }
        }
        let key = self
            .store
            .key(id)
            .await
            .map_err(Refusal::Store)?
            .map(Arc::new);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 10_000 {
            cache.retain(|_, c| c.fetched.elapsed() < CACHE_FOR);
        }
        let touched = cache.get(id).and_then(|c| c.touched);
        cache.insert(
            id.clone(),
            Cached {
                key: key.clone(),
                fetched: Instant::now(),
                touched,
            },
        );
        Ok(key)
    }

    /// Records the use of `key` in the background, at most once a minute.
    fn touch(&self, key: &ApiKey, now: chrono::DateTime<chrono::Utc>) {
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = cache.get_mut(&key.id) else {
                return;
            };
            if entry.touched.is_some_and(|at| at.elapsed() < TOUCH_EVERY) {
                return;
            }
            entry.touched = Some(Instant::now());
        }
        let (store, id) = (Arc::clone(&self.store), key.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id, now).await {
                tracing::debug!(key_id = %id, error = %e, "recording a key's last use failed");
            }
        });
    }
}

/// The middleware: with no [`Auth`] (`AUTH_MODE=none`) every request comes from
/// [`Caller::Anyone`]; else a request gets in only with a good key carrying the route's
/// scope, and the handlers and the rate limiter see it as [`Caller::Key`].
pub async fn authenticate(
    State(auth): State<Option<Arc<Auth>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match auth {
        None => Caller::Anyone,
        Some(auth) => {
            // What the check needs is taken first: a request's body is not `Sync`, so the
            // request is not held across the key's look-up.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| request.uri().path(), MatchedPath::as_str);
            let scope = required_scope(request.method(), route);
            let authorization = request.headers().get(header::AUTHORIZATION).cloned();
            let address = auth.failures.as_ref().map(|limit| {
                let address = rate_limit::address(&request, limit.forwarded_hops);
                (limit, address)
            });
            if let Some((limit, address)) = &address {
                if let Some(retry_after) = limit.blocked_for(address) {
                    return limit.refusal(retry_after).into_response();
                }
            }
            match check(&auth, scope, authorization).await {
                Ok(caller) => caller,
                Err(refusal) => {
                    if let (Some((limit, address)), ApiError::Unauthorized(reason)) =
                        (&address, &refusal)
                    {
                        if !matches!(reason, AuthError::Missing | AuthError::Malformed) {
                            limit.refused(address).await;
                        }
                    }
                    return refusal.into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller presenting `authorization` to a route that needs `scope`, or the API's
/// refusal.
async fn check(
    auth: &Auth,
    scope: Option<Scope>,
    authorization: Option<HeaderValue>,
) -> Result<Caller, ApiError> {
    let Some(scope) = scope else {
        return Ok(Caller::Anyone);
    };
    let key = auth
        .check(authorization.as_ref())
        .await
        .map_err(|refusal| match refusal {
            Refusal::Key(reason) => ApiError::Unauthorized(reason),
            Refusal::Store(e) => ApiError::from(e),
        })?;
    if key.allows(scope) {
        Ok(Caller::Key(key))
    } else {
        Err(ApiError::InsufficientScope(scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_needs_its_scope_and_the_rest_stay_open() {
        let cases = [
            (Method::GET, paths::ORDERS, Some(Scope::OrdersRead)),
            (Method::GET, paths::ORDER, Some(Scope::OrdersRead)),
            (Method::POST, paths::ORDERS, Some(Scope::OrdersWrite)),
            (Method::POST, paths::ORDER_CANCEL, Some(Scope::OrdersCancel)),
            (
                Method::POST,
                paths::ORDER_CAPTURE,
                Some(Scope::PaymentsCapture),
            ),
            (
                Method::POST,
                paths::ORDER_REFUNDS,
                Some(Scope::PaymentsRefund),
            ),
            (Method::POST, paths::API_KEYS, Some(Scope::KeysManage)),
            (Method::GET, paths::API_KEYS, Some(Scope::KeysManage)),
            (Method::DELETE, paths::API_KEY, Some(Scope::KeysManage)),
            (
                Method::POST,
                paths::WEBHOOK_ENDPOINTS,
                Some(Scope::WebhooksManage),
            ),
            (
                Method::PATCH,
                paths::WEBHOOK_ENDPOINT,
                Some(Scope::WebhooksManage),
            ),
            (
                Method::GET,
                paths::WEBHOOK_ENDPOINT_DELIVERIES,
                Some(Scope::WebhooksManage),
            ),
            (
                Method::POST,
                paths::EVENT_REDELIVER,
                Some(Scope::WebhooksManage),
            ),
            (Method::DELETE, paths::ORDERS, Some(Scope::OrdersRead)),
            (Method::GET, paths::METRICS, Some(Scope::MetricsRead)),
            (Method::GET, paths::HEALTH, None),
            (Method::GET, paths::READY, None),
            (Method::GET, paths::OPENAPI, None),
            (Method::GET, paths::ROOT, None),
        ];
        for (method, route, scope) in cases {
            assert_eq!(required_scope(&method, route), scope, "{method} {route}");
        }
    }
}
