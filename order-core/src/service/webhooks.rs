//! The webhook dispatcher: fans events out of the outbox, posts them signed, and decides
//! what comes after each attempt. Any number of dispatchers may run at once, in any number
//! of processes: the store hands each delivery to one of them at a time, under a lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use serde_json::Value;

use super::micros_now;
use crate::ids::OrderId;
use crate::order::Order;
use crate::ports::{
    ClaimedDelivery, Clock, DeliveryNext, FinishedDelivery, OrderRepo, RepoError, WebhookRequest,
    WebhookSender, WebhookStore,
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
    /// Deliveries posted at once, per round.
    pub batch: usize,
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
}

impl Round {
    /// Whether the round found anything to do (if not, the caller waits before the next).
    pub const fn was_busy(&self) -> bool {
        self.fanned_out > 0 || self.attempted > 0
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
    H: WebhookSender + ?Sized,
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

    /// One round: fans new events out, then attempts every due delivery it can claim (up to
    /// the batch), all at once, and records their results together.
    pub async fn run_once(&self) -> Result<Round, RepoError> {
        let now = micros_now(&*self.clock);
        let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
        let mark = Instant::now();
        let fanned_out = self.store.fan_out(now, self.config.fan_out_batch).await?;
        metrics::counter!(crate::observe::WEBHOOK_EVENTS_FANNED_OUT).increment(fanned_out as u64);
        let fan_out_ms = ms(mark);
        let mark = Instant::now();
        let claimed = self
            .store
            .claim_deliveries(now, self.config.lease, self.config.batch)
            .await?;
        let claim_ms = ms(mark);
        let mark = Instant::now();
        let orders = self.orders_of(&claimed).await?;
        let read_ms = ms(mark);
        let mark = Instant::now();
        let finished: Vec<FinishedDelivery> =
            futures::future::join_all(claimed.into_iter().map(|c| {
                let order = orders.get(&c.event.order_id);
                self.deliver(c, order)
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let post_ms = ms(mark);
        let mark = Instant::now();
        let recorded = self.store.finish_deliveries(&finished).await?;
        tracing::debug!(
            fanned_out,
            attempted = finished.len(),
            fan_out_ms,
            claim_ms,
            read_ms,
            post_ms,
            record_ms = ms(mark),
            "webhook round"
        );
        let mut round = Round {
            fanned_out,
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

    /// Attempts one delivery; returns what to record (nothing if its order is missing).
    async fn deliver(
        &self,
        claimed: ClaimedDelivery,
        order: Option<&Order>,
    ) -> Result<Option<FinishedDelivery>, RepoError> {
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
        let started = Instant::now();
        let response = self.sender.send(&request).await;
        let latency = started.elapsed();
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
            attempted_at: now,
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
        Ok(Some(FinishedDelivery {
            claimed,
            attempt,
            next,
            disable,
        }))
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
