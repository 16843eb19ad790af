//! [`WebhookSender`]: posts one signed webhook request.

use async_trait::async_trait;

/// A signed webhook request, ready to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Where to post it.
    pub url: String,
    /// `webhook-id`: the event's id.
    pub id: String,
    /// `webhook-timestamp`: seconds since the epoch.
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What a [`WebhookSender`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    /// The answer, or why there was none.
    pub outcome: crate::webhook::AttemptOutcome,
    /// The start of the answer's body ([`crate::webhook::excerpt`]).
    pub excerpt: String,
}

/// Posts webhook requests.
///
/// # Contract
/// - `send` posts the body as `application/json` with the `webhook-id`,
///   `webhook-timestamp` and `webhook-signature` headers, and reports the status the
///   receiver answered (with its `Retry-After`, in seconds, if any),
///   [`AttemptOutcome::TimedOut`](crate::webhook::AttemptOutcome::TimedOut) when no answer
///   came within its time-out, or
///   [`AttemptOutcome::Failed`](crate::webhook::AttemptOutcome::Failed) when the request
///   could not be made. It never follows redirects and keeps at most an excerpt of the body.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Posts one request.
    async fn send(&self, request: &WebhookRequest) -> WebhookResponse;
}
