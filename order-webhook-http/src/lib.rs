//! # order-webhook-http
//!
//! [`HttpWebhookSender`]: the [`WebhookSender`] port over HTTP with reqwest. One connection
//! pool serves every endpoint; each request has a time-out, follows no redirect and reads
//! at most [`RESPONSE_EXCERPT_BYTES`] of the answer, so a receiver can neither hold a
//! delivery past its time-out nor make the service read an unbounded body.
//!
//! What the receiver said maps to the port's [`AttemptOutcome`]: an answer with its status
//! (and `Retry-After` in seconds, if any), a time-out, or a failure with its causes.

use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{WebhookRequest, WebhookResponse, WebhookSender};
use order_core::webhook::{AttemptOutcome, RESPONSE_EXCERPT_BYTES, excerpt};

/// Posts webhooks with reqwest: one connection pool for every endpoint, a time-out per
/// request, no redirects followed, at most an excerpt of each answer read.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    http: reqwest::Client,
}

impl HttpWebhookSender {
    /// A sender whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "order-service-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self { http })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> WebhookResponse {
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

/// What a failed request comes to: a time-out, or what went wrong (with its causes, never
/// the request's headers).
fn failed(e: &reqwest::Error) -> WebhookResponse {
    let outcome = if e.is_timeout() {
        AttemptOutcome::TimedOut
    } else {
        let mut message = if e.is_connect() {
            "could not connect".to_owned()
        } else {
            "request failed".to_owned()
        };
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        AttemptOutcome::Failed(message)
    };
    WebhookResponse {
        outcome,
        excerpt: String::new(),
    }
}
