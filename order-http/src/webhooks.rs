//! Webhook delivery in the worker role: the [`WebhookSender`] port over HTTP (reqwest), and
//! the loop that runs the [`WebhookDispatcher`] until shutdown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{
    Clock, OrderRepo, WebhookRequest, WebhookResponse, WebhookSender, WebhookStore,
};
use order_core::service::WebhookDispatcher;
use order_core::webhook::{AttemptOutcome, RESPONSE_EXCERPT_BYTES, excerpt};
use tokio::sync::watch;
use tracing::{debug, warn};

/// The dispatcher as the worker holds it.
pub type Dispatcher =
    WebhookDispatcher<dyn WebhookStore, dyn OrderRepo, dyn WebhookSender, dyn Clock>;

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

/// Runs `loops` loops of dispatcher rounds side by side (one round's posts overlap the
/// next one's statements; the store hands each delivery to one of them) until `stopped`
/// turns true.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    loops: usize,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops.max(1) {
        tasks.spawn(rounds(Arc::clone(&dispatcher), idle, stopped.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Forgets webhook history older than `retention` (settled events with their deliveries,
/// and attempts), a batch every `every` until `stopped`; a full batch goes again at once.
pub async fn purge_history(
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    const BATCH: usize = 10_000;
    loop {
        let before =
            clock.now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let pause = match store.purge(before, BATCH).await {
            Ok(n) if usize::try_from(n).is_ok_and(|n| n >= BATCH) => Duration::ZERO,
            Ok(0) => every,
            Ok(n) => {
                tracing::info!(events = n, "forgot webhook history past its retention");
                every
            }
            Err(e) => {
                warn!(error = %e, "purging webhook history failed");
                every
            }
        };
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Runs rounds of the dispatcher until `stopped` turns true: at once again after a busy
/// round, after `idle` when there was nothing to do, after a second when the store failed.
async fn rounds(dispatcher: Arc<Dispatcher>, idle: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let pause = match dispatcher.run_once().await {
            Ok(round) if round.was_busy() => {
                debug!(?round, "webhook round");
                Duration::ZERO
            }
            Ok(_) => idle,
            Err(e) => {
                warn!(error = %e, "webhook dispatch failed; trying again");
                Duration::from_secs(1)
            }
        };
        if pause > Duration::ZERO {
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
