//! # order-webhook-http
//!
//! [`HttpWebhookSender`]: the [`WebhookSender`] port over HTTP with reqwest. One connection
//! pool serves every endpoint; each request has a time-out, follows no redirect, goes to
//! no proxy and reads at most [`RESPONSE_EXCERPT_BYTES`] of the answer, so a receiver can
//! neither hold a delivery past its time-out nor make the service read an unbounded body.
//!
//! With [`Network::PublicOnly`] (what a deployment runs) a delivery goes only to
//! [public](order_core::webhook::is_public) addresses: a URL whose host is a private
//! address is blocked before any connection, and a name is resolved here, its private
//! addresses dropped, and the connection made to an address that was checked (so a name
//! that resolves differently a moment later changes nothing).
//!
//! What the receiver said maps to the port's [`AttemptOutcome`]: an answer with its status
//! (and `Retry-After` in seconds, if any), a time-out, or a failure said in a few words
//! (`blocked: ...` or `failed: ...`); the causes are logged at `debug`, never shown to
//! whoever reads the delivery.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{WebhookRequest, WebhookResponse, WebhookSender};
use order_core::webhook::{AttemptOutcome, RESPONSE_EXCERPT_BYTES, excerpt, is_public};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Where deliveries may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Public addresses only: what a deployment runs.
    PublicOnly,
    /// Any address, loopback and private networks too: for tests and private deployments.
    Any,
}

/// Posts webhooks with reqwest: one connection pool for every endpoint, a time-out per
/// request, no redirects followed, at most an excerpt of each answer read.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    http: reqwest::Client,
    network: Network,
}

impl HttpWebhookSender {
    /// A sender whose requests give up after `timeout` and go only where `network` allows.
    pub fn new(timeout: Duration, network: Network) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!(
                "order-service-webhooks/",
                env!("CARGO_PKG_VERSION")
            ));
        if network == Network::PublicOnly {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            http: builder.build()?,
            network,
        })
    }

    /// The refusal of a URL whose host is an address that is not public, if it is one.
    fn blocked_address(&self, url: &str) -> Option<WebhookResponse> {
        if self.network == Network::Any {
            return None;
        }
        let url = reqwest::Url::parse(url).ok()?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: IpAddr = host.parse().ok()?;
        (!is_public(ip))
            .then(|| outcome(AttemptOutcome::Failed(Blocked(ip.to_string()).to_string())))
    }
}

/// Resolves names as the system does and keeps their public addresses only; a name with
/// none is [`Blocked`].
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// A host that is, or resolves only to, addresses that are not public.
#[derive(Debug, thiserror::Error)]
#[error("blocked: {0} is not a public address")]
struct Blocked(String);

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> WebhookResponse {
        if let Some(blocked) = self.blocked_address(&request.url) {
            return blocked;
        }
        let sent = self
            .http
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &request.id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", &request.signature)
            .body(request.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return failed(&e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        // Read no more than the excerpt keeps; the rest of the answer is dropped.
        while body.len() < RESPONSE_EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        WebhookResponse {
            outcome: AttemptOutcome::Answered {
                status,
                retry_after,
            },
            excerpt: excerpt(&body),
        }
    }
}

/// What a failed request comes to: a time-out, or a few words on what went wrong; the
/// causes go to the log only (they would tell a caller what answers behind the address).
fn failed(e: &reqwest::Error) -> WebhookResponse {
    if e.is_timeout() {
        return outcome(AttemptOutcome::TimedOut);
    }
    let mut causes = Vec::new();
    let mut blocked = None;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(b) = cause.downcast_ref::<Blocked>() {
            blocked = Some(b.to_string());
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    tracing::debug!(causes = %causes.join(": "), "webhook delivery failed");
    let message = if let Some(blocked) = blocked {
        blocked
    } else if causes
        .iter()
        .any(|c| c.to_lowercase().contains("certificate"))
    {
        "failed: the receiver's TLS certificate is not trusted".to_owned()
    } else if e.is_connect() {
        "failed: could not connect".to_owned()
    } else {
        "failed: the request did not complete".to_owned()
    };
    outcome(AttemptOutcome::Failed(message))
}

/// A response with `outcome` and no excerpt.
fn outcome(outcome: AttemptOutcome) -> WebhookResponse {
    WebhookResponse {
        outcome,
        excerpt: String::new(),
    }
}
