//! A Stripe to test against: [localstripe](https://pypi.org/project/localstripe/) (a
//! stateful fake of Stripe's API: PaymentIntents, confirmation, cancellation, refunds,
//! test cards that decline), started on a free port, behind a proxy of ours.
//!
//! localstripe departs from Stripe's documentation in ways the proxy makes up for:
//! - it ignores `Idempotency-Key`. The proxy keeps what Stripe documents: the first
//!   answer under a key is stored and replayed, with `Idempotent-Replayed: true`, to every
//!   later request with that key and the same parameters; the same key with other
//!   parameters is answered `400` `idempotency_error`.
//! - it answers a declined card with `type: invalid_request_error`; Stripe says
//!   `card_error`. The adapter reads the `402` status, which both send.
//! - a PaymentIntent has no `amount_received`: after a partial capture, the adapter cannot
//!   read what was taken and relies on the amount it asked to capture and, for a refund,
//!   the amount the order asks back. localstripe books the uncaptured remainder as a
//!   refund of the charge (made by none of our requests); the adapter only counts refunds
//!   whose `metadata[order_id]` it set.
//!
//! The proxy also injects the faults a network and Stripe cause ([`Fault`]), and it
//! records which object was made under each key, so a test can read Stripe's own books
//! (from localstripe, not from the proxy) for a charge key.
//!
//! localstripe is found as `$LOCALSTRIPE`, else `localstripe` on the `PATH`, else
//! `/var/tmp/stripe-fakes/bin/localstripe` (where `scripts/stripe-fakes.sh` installs it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Where `scripts/stripe-fakes.sh` installs localstripe.
pub const INSTALLED_AT: &str = "/var/tmp/stripe-fakes/bin/localstripe";

/// The test-mode key the tests use (localstripe takes any `sk_` key).
pub const API_KEY: &str = "sk_test_order_service";

/// A fault the proxy injects into every `n`-th `POST` it is sent (see
/// [`FakeStripe::inject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stripe did the work, but the answer never came back (a load balancer's `504`):
    /// the result is stored under the key and replayed to the next request.
    AnswerLost,
    /// `429` `rate_limit_error`, nothing done, nothing stored.
    RateLimited,
    /// `500` `api_error` before anything was done, nothing stored.
    ApiError,
    /// `500` `api_error` from an endpoint that began executing: Stripe keeps it under the
    /// key like any answer and replays it to every later request with that key (its
    /// idempotency documentation; stripe-stateful-mock does the same). Nothing was done.
    ApiErrorKept,
}

#[derive(Debug, Clone)]
struct Stored {
    request: (Method, String, Bytes),
    status: StatusCode,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Books {
    /// Idempotency key → the first answer under it.
    stored: HashMap<String, Stored>,
    /// Idempotency key → the ids of the objects made under it (one, unless the key was
    /// not honoured).
    made: HashMap<String, Vec<String>>,
    /// The faults to inject, in turn, and how often.
    faults: Vec<Fault>,
    every: u64,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    books: Mutex<Books>,
    /// One request per key at a time (Stripe answers a concurrent one `409`; waiting is
    /// kinder to tests and shows the same thing).
    keys: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    posts: AtomicU64,
    requests: AtomicU64,
}

impl Proxy {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn forward(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> (StatusCode, Bytes) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.upstream))
            .body(body);
        for name in ["authorization", "content-type", "stripe-version"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                (status, response.bytes().await.unwrap_or_default())
            }
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                Bytes::from(format!("localstripe did not answer: {e}")),
            ),
        }
    }
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy.requests.fetch_add(1, Ordering::Relaxed);
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (true, Some(key)) = (method == Method::POST, key) else {
        let (status, body) = proxy.forward(&method, &path, &headers, body).await;
        return (status, body).into_response();
    };
    let lock = proxy
        .keys
        .lock()
        .await
        .entry(key.clone())
        .or_default()
        .clone();
    let _one_at_a_time = lock.lock().await;
    let request = (method.clone(), path.clone(), body.clone());
    let earlier = proxy.books().stored.get(&key).cloned();
    if let Some(stored) = earlier {
        if stored.request != request {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
        return (
            stored.status,
            [("idempotent-replayed", "true")],
            Body::from(stored.body),
        )
            .into_response();
    }
    let n = proxy.posts.fetch_add(1, Ordering::Relaxed) + 1;
    let fault = {
        let books = proxy.books();
        (books.every > 0 && n % books.every == 0 && !books.faults.is_empty()).then(|| {
            let turn = usize::try_from(n / books.every).unwrap_or(0) % books.faults.len();
            books.faults[turn]
        })
    };
    if let Some(refused) = fault.and_then(|f| refusal(f, &proxy, &key, &request)) {
        return refused;
    }
    let (status, answer) = proxy.forward(&method, &path, &headers, body).await;
    {
        let mut books = proxy.books();
        if status.is_success() {
            if let Some(id) = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
            {
                books.made.entry(key.clone()).or_default().push(id);
            }
        }
        books.stored.insert(
            key,
            Stored {
                request,
                status,
                body: answer.clone(),
            },
        );
    }
    if fault == Some(Fault::AnswerLost) {
        return (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response();
    }
    (status, answer).into_response()
}

/// The answer a fault gives instead of Stripe's, for those that keep the request from
/// Stripe; `None` for one that lets it through.
fn refusal(
    fault: Fault,
    proxy: &Proxy,
    key: &str,
    request: &(Method, String, Bytes),
) -> Option<Response> {
    match fault {
        Fault::RateLimited => Some(stripe_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Too many requests hit the API too quickly.",
        )),
        Fault::ApiError => Some(stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "An unknown error occurred.",
        )),
        Fault::ApiErrorKept => {
            let body = serde_json::json!({"error": {"type": "api_error", "message": "An unknown error occurred."}});
            let body = Bytes::from(body.to_string());
            proxy.books().stored.insert(
                key.to_owned(),
                Stored {
                    request: request.clone(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: body.clone(),
                },
            );
            Some(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response(),
            )
        }
        Fault::AnswerLost => None,
    }
}

/// localstripe on a free port, behind the proxy. Both stop when this is dropped.
pub struct FakeStripe {
    url: String,
    upstream: String,
    proxy: Arc<Proxy>,
    child: tokio::process::Child,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.child.start_kill();
    }
}

/// What Stripe's books say about the payment made under one charge key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntentBooks {
    /// Payments captured (0 or 1: one intent per key).
    pub captures: u32,
    /// Refunds of it made through the API.
    pub refunds: u32,
    /// What was captured, in cents.
    pub amount_received: i64,
    /// What was refunded, in cents.
    pub amount_refunded: i64,
}

fn localstripe_command() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("LOCALSTRIPE") {
        return path.into();
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("localstripe"))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    let installed = std::path::PathBuf::from(INSTALLED_AT);
    assert!(
        installed.is_file(),
        "localstripe is not installed: run scripts/stripe-fakes.sh (it installs it from PyPI \
         into /var/tmp/stripe-fakes), or set LOCALSTRIPE to its path"
    );
    installed
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl FakeStripe {
    /// Starts localstripe and the proxy; panics, saying how to install it, when
    /// localstripe is missing, and when it does not answer within 20 s.
    pub async fn start() -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(localstripe_command())
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("localstripe starts (scripts/stripe-fakes.sh installs it)");
        let upstream = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut up = false;
        for _ in 0..200 {
            let probe = client
                .get(format!("{upstream}/v1/customers"))
                .bearer_auth(API_KEY)
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "localstripe answers on {upstream} within 20 s");
        let proxy = Arc::new(Proxy {
            upstream: upstream.clone(),
            client,
            books: Mutex::default(),
            keys: tokio::sync::Mutex::default(),
            posts: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a port for the proxy");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(proxy.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            url,
            upstream,
            proxy,
            child,
            server,
        }
    }

    /// The URL to give the gateway (`STRIPE_API_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on, every `every`-th `POST` with a key meets the next of `faults` in turn
    /// (`every` 0: none).
    pub fn inject(&self, every: u64, faults: &[Fault]) {
        let mut books = self.proxy.books();
        books.every = every;
        books.faults = faults.to_vec();
    }

    /// Requests the proxy was sent.
    pub fn requests(&self) -> u64 {
        self.proxy.requests.load(Ordering::Relaxed)
    }

    /// The keys requests were sent under that are a later generation of another
    /// (`{key}~2`, ...), sorted: each is a key Stripe kept a server error under.
    pub fn later_generations(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .proxy
            .books()
            .stored
            .keys()
            .filter(|k| k.contains('~'))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// The ids of the objects made under idempotency key `key`.
    pub fn made_under(&self, key: &str) -> Vec<String> {
        self.proxy
            .books()
            .made
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Has localstripe post its events to `url`, signed with `secret` (as a Stripe webhook
    /// endpoint is).
    pub async fn send_events_to(&self, url: &str, secret: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_config/webhooks/order-service", self.upstream))
            .form(&[("url", url), ("secret", secret)])
            .send()
            .await
            .expect("localstripe answers");
        assert!(
            answer.status().is_success(),
            "the webhook is registered: {answer:?}"
        );
    }

    /// `GET path` from localstripe itself, as JSON.
    pub async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.upstream))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("localstripe answers JSON")
    }

    /// What localstripe's books say of the intents made under charge key `key` or a later
    /// generation of it (`{key}~2`, ...: see [`crate::KEY_GENERATIONS`]); one in all,
    /// unless a key was not honoured: then every one of them counts.
    pub async fn books(&self, key: &str) -> IntentBooks {
        let mut books = IntentBooks::default();
        let generations = (2..=crate::KEY_GENERATIONS).map(|g| format!("{key}~{g}"));
        let made: Vec<String> = std::iter::once(key.to_owned())
            .chain(generations)
            .flat_map(|k| self.made_under(&k))
            .collect();
        for id in made {
            let intent = self.get(&format!("/v1/payment_intents/{id}")).await;
            if intent["status"] != "succeeded" {
                continue;
            }
            // The refunds of the intent's charge, as localstripe lists them.
            let refunds = self
                .get(&format!("/v1/refunds?payment_intent={id}&limit=100"))
                .await;
            // localstripe books a partial capture's uncaptured remainder as a refund with no
            // metadata: no money taken went back, so it is left out.
            let refunds: Vec<Value> = refunds["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["metadata"].as_object().is_some_and(|m| !m.is_empty()))
                .cloned()
                .collect();
            books.captures += 1;
            books.refunds += u32::try_from(refunds.len()).unwrap_or(u32::MAX);
            books.amount_received += intent["amount_received"]
                .as_i64()
                .or_else(|| intent["amount"].as_i64())
                .unwrap_or(0);
            books.amount_refunded += refunds
                .iter()
                .filter_map(|r| r["amount"].as_i64())
                .sum::<i64>();
        }
        books
    }
}
