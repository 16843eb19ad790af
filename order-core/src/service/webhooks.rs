//! The webhook dispatcher: fans events out of the outbox, posts them signed, and decides
//! what comes after each attempt. Any number of dispatchers may run at once, in any number
//! of processes: the store hands each delivery to one of them at a time, under a lease.
//!
//! A loop of the dispatcher keeps its posts in an [`InFlight`] set and never waits for its
//! slowest one: each [`step`](WebhookDispatcher::step) claims only as many deliveries as the
//! set has room for, waits a little for posts to finish, records those that did and leaves
//! the rest posting into the next step. The store gives each endpoint a bounded share of
//! the leases ([`ClaimLimits`]), so a receiver that hangs holds a few posts, not the loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::micros_now;
use crate::ids::OrderId;
use crate::order::Order;
use crate::ports::{
    ClaimLimits, ClaimedDelivery, Clock, DeliveryNext, FinishedDelivery, OrderRepo, RepoError,
    WebhookRequest, WebhookResponse, WebhookSender, WebhookStore,
};
use crate::webhook::{
    AttemptOutcome, DeliveryAttempt, Event, RetrySchedule, printable, signature_header,
};

/// Turns an order into the `data` of its events: the binary passes the API's rendering, so
/// receivers get the order exactly as `GET /api/v1/orders/{id}` returns it.
pub type Render = Arc<dyn Fn(&Order) -> Value + Send + Sync>;

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// How long a claimed delivery is held before another dispatcher may take it over: longer
    /// than a request's time-out.
    pub lease: Duration,
    /// Deliveries one loop posts at once (its [`InFlight`] set's room).
    pub batch: usize,
    /// Deliveries of one endpoint under a lease at once, across every dispatcher (one while
    /// the endpoint is failing): see [`ClaimLimits`].
    pub per_endpoint: usize,
    /// How long a [`step`](WebhookDispatcher::step) waits for its posts before it records
    /// those that finished and moves on.
    pub patience: Duration,
    /// Events fanned out per round.
    pub fan_out_batch: usize,
    /// When failed deliveries are tried again.
    pub schedule: RetrySchedule,
    /// An endpoint whose every delivery failed for this long is disabled.
    pub disable_after: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            batch: 64,
            per_endpoint: 16,
            patience: Duration::from_millis(250),
            fan_out_batch: 500,
            schedule: RetrySchedule::default(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Events fanned out to their subscribers.
    pub fanned_out: usize,
    /// Deliveries attempted.
    pub attempted: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// Posts still under way when the round ended, to be recorded by a later one.
    pub in_flight: usize,
}

impl Round {
    /// Whether the round found anything to do, or left posts to finish (if not, the caller
    /// waits before the next).
    pub const fn was_busy(&self) -> bool {
        self.fanned_out > 0 || self.attempted > 0 || self.in_flight > 0
    }
}

/// A post that finished: what was sent, when, and what came back.
struct Posted {
    /// The step that started it.
    step: u64,
    claimed: ClaimedDelivery,
    attempted_at: DateTime<Utc>,
    response: WebhookResponse,
    latency: Duration,
}

/// The posts one loop of a dispatcher has under way. They make progress while the loop's
/// [`step`](WebhookDispatcher::step)s wait on them; one left behind when the loop stops is
/// dropped, and its delivery is claimed again once its lease runs out.
#[derive(Default)]
pub struct InFlight {
    posts: FuturesUnordered<BoxFuture<'static, Posted>>,
    /// The steps started so far.
    steps: u64,
}

impl InFlight {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many posts are under way.
    pub fn len(&self) -> usize {
        self.posts.len()
    }

    /// Whether no post is under way.
    pub fn is_empty(&self) -> bool {
        self.posts.is_empty()
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("posts", &self.posts.len())
            .field("steps", &self.steps)
            .finish()
    }
}

/// The dispatcher, generic over its ports.
pub struct WebhookDispatcher<S: ?Sized, R: ?Sized, H: ?Sized, C: ?Sized> {
    store: Arc<S>,
    orders: Arc<R>,
    sender: Arc<H>,
    clock: Arc<C>,
    render: Render,
    config: DispatcherConfig,
}

impl<S: ?Sized, R: ?Sized, H: ?Sized, C: ?Sized> std::fmt::Debug for WebhookDispatcher<S, R, H, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The body of a delivery: the Standard Webhooks envelope.
pub fn envelope(event: &Event, data: Value) -> Value {
    let mut body = serde_json::Map::with_capacity(4);
    body.insert("id".into(), event.id.to_string().into());
    body.insert("type".into(), event.kind.as_str().into());
    body.insert(
        "timestamp".into(),
        event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .into(),
    );
    body.insert("data".into(), data);
    Value::Object(body)
}

impl<S, R, H, C> WebhookDispatcher<S, R, H, C>
where
    S: WebhookStore + ?Sized,
    R: OrderRepo + ?Sized,
    H: WebhookSender + ?Sized + 'static,
    C: Clock + ?Sized,
{
    /// A dispatcher reading events and deliveries from `store`, orders from `orders`.
    pub fn new(
        store: Arc<S>,
        orders: Arc<R>,
        sender: Arc<H>,
        clock: Arc<C>,
        render: Render,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            store,
            orders,
            sender,
            clock,
            render,
            config,
        }
    }

    /// How it works.
    pub const fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// One whole round: fans new events out, then attempts every due delivery it can claim
    /// (up to the batch), all at once, waits for all of them and records their results
    /// together. A loop that runs for long uses [`step`](Self::step), which never waits for
    /// its slowest post.
    pub async fn run_once(&self) -> Result<Round, RepoError> {
        self.step(&mut InFlight::new(), Duration::MAX).await
    }

    /// One step of a loop: fans new events out, claims as many due deliveries as `in_flight`
    /// has room for and starts posting them, then waits until those have finished or
    /// `patience` has passed, and records every attempt that finished (earlier steps' too).
    /// Posts still under way stay in `in_flight` for the next step: one that hangs holds
    /// up one step by `patience` at most, and no step after it.
    pub async fn step(
        &self,
        in_flight: &mut InFlight,
        patience: Duration,
    ) -> Result<Round, RepoError> {
        let now = micros_now(&*self.clock);
        let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
        let mark = Instant::now();
        let fanned_out = self.store.fan_out(now, self.config.fan_out_batch).await?;
        metrics::counter!(crate::observe::WEBHOOK_EVENTS_FANNED_OUT).increment(fanned_out as u64);
        let fan_out_ms = ms(mark);
        let mark = Instant::now();
        let room = self.config.batch.saturating_sub(in_flight.len());
        let claimed = if room == 0 {
            Vec::new()
        } else {
            self.store
                .claim_deliveries(
                    now,
                    self.config.lease,
                    ClaimLimits {
                        total: room,
                        per_endpoint: self.config.per_endpoint,
                    },
                )
                .await?
        };
        let claim_ms = ms(mark);
        let mark = Instant::now();
        let orders = self.orders_of(&claimed).await?;
        let read_ms = ms(mark);
        in_flight.steps += 1;
        let step = in_flight.steps;
        let mut started = 0_usize;
        for c in claimed {
            let order = orders.get(&c.event.order_id);
            if let Some(post) = self.post(step, c, order)? {
                in_flight.posts.push(post);
                started += 1;
            }
        }
        let mark = Instant::now();
        let finished = self.collect(in_flight, step, started, patience).await;
        let post_ms = ms(mark);
        let mark = Instant::now();
        let recorded = self.store.finish_deliveries(&finished).await?;
        tracing::debug!(
            fanned_out,
            attempted = finished.len(),
            in_flight = in_flight.len(),
            fan_out_ms,
            claim_ms,
            read_ms,
            post_ms,
            record_ms = ms(mark),
            "webhook round"
        );
        let mut round = Round {
            fanned_out,
            in_flight: in_flight.len(),
            ..Round::default()
        };
        // A result not recorded belongs to a delivery another dispatcher took over.
        for (f, recorded) in finished.iter().zip(recorded) {
            if recorded {
                round.attempted += 1;
                round.delivered += usize::from(f.attempt.delivered);
            }
        }
        Ok(round)
    }

    /// Waits up to `within` for the posts still in `in_flight` and records those that
    /// finish (a loop that stops calls it, so what was posted is not posted again); the rest
    /// are left to their leases. Returns how many attempts it recorded.
    pub async fn drain(
        &self,
        in_flight: &mut InFlight,
        within: Duration,
    ) -> Result<usize, RepoError> {
        let everything = in_flight.len();
        let finished = self.collect(in_flight, 0, everything, within).await;
        let recorded = self.store.finish_deliveries(&finished).await?;
        Ok(recorded.into_iter().filter(|r| *r).count())
    }

    /// The orders the deliveries are about, read together.
    async fn orders_of(
        &self,
        claimed: &[ClaimedDelivery],
    ) -> Result<HashMap<OrderId, Order>, RepoError> {
        let mut ids: Vec<OrderId> = claimed.iter().map(|c| c.event.order_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let orders = self.orders.get_many(&ids).await?;
        Ok(orders.into_iter().map(|o| (o.id, o)).collect())
    }

    /// Waits until the `started` posts of step `step` (0: any posts) have finished, and at
    /// least one post if any is under way, or until `patience` has passed; then takes
    /// whatever else has finished meanwhile: what to record. Posts of earlier steps that
    /// still hang hold it up no longer than `patience`, and a loop with nothing new to post
    /// waits on them instead of asking the store again at once.
    async fn collect(
        &self,
        in_flight: &mut InFlight,
        step: u64,
        mut started: usize,
        patience: Duration,
    ) -> Vec<FinishedDelivery> {
        let deadline = tokio::time::Instant::now()
            .checked_add(patience)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        let mut finished = Vec::new();
        while started > 0 || (finished.is_empty() && !in_flight.is_empty()) {
            match tokio::time::timeout_at(deadline, in_flight.posts.next()).await {
                Ok(Some(posted)) => {
                    if step == 0 || posted.step == step {
                        started -= 1;
                    }
                    finished.push(self.finish(posted));
                }
                Ok(None) | Err(_) => break,
            }
        }
        while let Some(Some(posted)) = in_flight.posts.next().now_or_never() {
            finished.push(self.finish(posted));
        }
        finished
    }

    /// Starts posting one delivery (nothing if its order is missing): a future that owns
    /// all it needs, so it can outlive the step that started it.
    fn post(
        &self,
        step: u64,
        claimed: ClaimedDelivery,
        order: Option<&Order>,
    ) -> Result<Option<BoxFuture<'static, Posted>>, RepoError> {
        let event = &claimed.event;
        let Some(order) = order else {
            // Orders are never deleted: a missing one is a store fault. Leave the delivery to
            // its lease; it is tried again once that runs out.
            tracing::error!(event_id = %event.id, order_id = %event.order_id, "the order of an event is missing");
            return Ok(None);
        };
        let body = serde_json::to_vec(&envelope(event, (self.render)(&order.as_of(event))))
            .map_err(|e| RepoError::Other(e.into()))?;
        let now = micros_now(&*self.clock);
        let id = event.id.to_string();
        let timestamp = now.timestamp();
        let endpoint = &claimed.endpoint;
        let request = WebhookRequest {
            url: endpoint.url.as_str().to_owned(),
            signature: signature_header(&endpoint.signing_secrets(now), &id, timestamp, &body),
            id,
            timestamp,
            body,
        };
        let sender = Arc::clone(&self.sender);
        Ok(Some(Box::pin(async move {
            let started = Instant::now();
            let response = sender.send(&request).await;
            Posted {
                step,
                claimed,
                attempted_at: now,
                response,
                latency: started.elapsed(),
            }
        })))
    }

    /// What to record of a finished post.
    fn finish(&self, posted: Posted) -> FinishedDelivery {
        let Posted {
            step: _,
            claimed,
            attempted_at,
            response,
            latency,
        } = posted;
        let event = &claimed.event;
        let endpoint = &claimed.endpoint;
        let delivered = response.outcome.delivered();
        metrics::histogram!(crate::observe::WEBHOOK_SECONDS).record(latency.as_secs_f64());
        metrics::counter!(
            crate::observe::WEBHOOK_ATTEMPTS,
            "outcome" => if delivered { "delivered" } else { "failed" }
        )
        .increment(1);
        let attempt = DeliveryAttempt {
            event_id: event.id,
            event_type: event.kind,
            endpoint_id: endpoint.id,
            attempt: claimed.attempt,
            attempted_at,
            status_code: response.outcome.status(),
            error: response.outcome.error().map(|e| printable(&e)),
            latency,
            response_excerpt: printable(&response.excerpt),
            delivered,
        };
        let (next, disable) = self.after(&claimed, &response.outcome);
        if let Some(reason) = &disable {
            tracing::warn!(endpoint_id = %endpoint.id, url = %endpoint.url.for_log(), %reason, "webhook endpoint disabled");
        }
        if !delivered {
            tracing::debug!(event_id = %event.id, endpoint_id = %endpoint.id, attempt = claimed.attempt, status = ?attempt.status_code, error = ?attempt.error, ?next, "webhook delivery failed");
        }
        FinishedDelivery {
            claimed,
            attempt,
            next,
            disable,
        }
    }

    /// What comes after an attempt with `outcome`, and whether to disable the endpoint.
    fn after(
        &self,
        claimed: &ClaimedDelivery,
        outcome: &AttemptOutcome,
    ) -> (DeliveryNext, Option<String>) {
        if outcome.delivered() {
            return (DeliveryNext::Delivered, None);
        }
        if outcome.status() == Some(410) {
            return (
                DeliveryNext::GiveUp,
                Some("the endpoint answered 410 Gone".into()),
            );
        }
        let now = micros_now(&*self.clock);
        let retry_after = match outcome {
            AttemptOutcome::Answered { retry_after, .. } => *retry_after,
            AttemptOutcome::TimedOut | AttemptOutcome::Failed(_) => None,
        };
        let next = self
            .config
            .schedule
            .next_attempt(claimed.attempt, now, retry_after, &mut rand::rng())
            .map_or(DeliveryNext::GiveUp, DeliveryNext::RetryAt);
        let failing_for = claimed
            .endpoint
            .failing_since
            .and_then(|since| (now - since).to_std().ok());
        let disable = failing_for
            .filter(|f| *f >= self.config.disable_after)
            .map(|f| {
                let last = outcome.status().map_or_else(
                    || outcome.error().unwrap_or_default(),
                    |s| format!("status {s}"),
                );
                let span = if f.as_secs() >= 2 * 3600 {
                    format!("{} hours", f.as_secs() / 3600)
                } else {
                    format!("{} minutes", f.as_secs() / 60)
                };
                format!("every delivery failed for {span} (the last: {last})")
            });
        (next, disable)
    }
}
