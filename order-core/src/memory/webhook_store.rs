//! [`WebhookStore`] in memory: the outbox, endpoints and deliveries, kept inside
//! [`MemoryOrderRepo`] so an event and its status change are one step.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{MemoryOrderRepo, lock};
use crate::ids::{CustomerId, OrderId};
use crate::order::{Order, OrderStatus, RefundStatus};
use crate::ports::{
    ClaimLimits, ClaimedDelivery, DeliveryNext, FinishedDelivery, RepoError, WebhookStore,
};
use crate::webhook::{
    DeliveryAttempt, Endpoint, EndpointChange, EndpointId, Event, EventId, EventType, Secret,
    printable,
};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone)]
struct DeliveryRow {
    event: Event,
    state: State,
    attempts: u32,
    due_at: DateTime<Utc>,
    lease: Option<(Uuid, DateTime<Utc>)>,
}

/// The outbox, endpoints, deliveries and attempts.
#[derive(Debug, Default)]
pub(super) struct WebhookTables {
    /// Every event, in the order recorded.
    events: Vec<Event>,
    /// How many of `events` were fanned out.
    fanned_out: usize,
    /// The customer of every order with events.
    customers: HashMap<OrderId, CustomerId>,
    /// Endpoints by id (ids sort by creation time).
    endpoints: BTreeMap<EndpointId, Endpoint>,
    deliveries: BTreeMap<(EventId, EndpointId), DeliveryRow>,
    /// Every attempt, in the order made.
    attempts: Vec<DeliveryAttempt>,
}

impl WebhookTables {
    /// Records the events of `order` reaching its status from `from` (`None`: it is new).
    pub(super) fn record(&mut self, order: &Order, from: Option<OrderStatus>) {
        if from == Some(order.status) {
            return;
        }
        if from.is_none() {
            self.customers.insert(order.id, order.customer_id.clone());
        }
        let mut push = |kind| {
            self.events.push(Event {
                id: EventId::new(),
                order_id: order.id,
                kind,
                occurred_at: order.updated_at,
            });
        };
        push(EventType::entering(order.status));
        let refunded = order
            .refund()
            .is_some_and(|r| r.status == RefundStatus::Succeeded);
        if from == Some(OrderStatus::Cancelling)
            && order.status == OrderStatus::Cancelled
            && refunded
        {
            push(EventType::Refunded);
        }
    }

    /// Records that a refund asked for on its own gave money back, at `at`, when `order`
    /// is `confirmed` (a refund settled while a cancellation is under way is told by
    /// `order.refunded`).
    pub(super) fn record_partial_refund(&mut self, order: &Order, at: DateTime<Utc>) {
        if order.status == OrderStatus::Confirmed {
            self.events.push(Event {
                id: EventId::new(),
                order_id: order.id,
                kind: EventType::PartiallyRefunded,
                occurred_at: at,
            });
        }
    }

    /// Makes the event due at `now` for the endpoint, keeping its attempt count.
    fn make_due(&mut self, event: &Event, endpoint: EndpointId, now: DateTime<Utc>) {
        let row = self
            .deliveries
            .entry((event.id, endpoint))
            .or_insert_with(|| DeliveryRow {
                event: event.clone(),
                state: State::Pending,
                attempts: 0,
                due_at: now,
                lease: None,
            });
        row.state = State::Pending;
        row.due_at = now;
    }

    /// The endpoints that receive `event` (with `owner`, only that customer's).
    fn subscribers(&self, event: &Event, owner: Option<&CustomerId>) -> Vec<EndpointId> {
        let Some(customer) = self.customers.get(&event.order_id) else {
            return Vec::new();
        };
        self.endpoints
            .values()
            .filter(|e| e.receives(event.kind, customer))
            .filter(|e| owner.is_none_or(|owner| e.owner.as_ref() == Some(owner)))
            .map(|e| e.id)
            .collect()
    }
}

#[async_trait]
impl WebhookStore for MemoryOrderRepo {
    async fn insert_endpoint(
        &self,
        endpoint: &Endpoint,
        at_most: usize,
    ) -> Result<bool, RepoError> {
        let mut hooks = lock(&self.webhooks);
        let owned = hooks
            .endpoints
            .values()
            .filter(|e| e.owner == endpoint.owner)
            .count();
        if owned >= at_most {
            return Ok(false);
        }
        hooks.endpoints.insert(endpoint.id, endpoint.clone());
        Ok(true)
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, RepoError> {
        Ok(lock(&self.webhooks).endpoints.get(&id).cloned())
    }

    async fn endpoints(&self, owner: Option<&CustomerId>) -> Result<Vec<Endpoint>, RepoError> {
        Ok(lock(&self.webhooks)
            .endpoints
            .values()
            .filter(|e| owner.is_none_or(|owner| e.owner.as_ref() == Some(owner)))
            .cloned()
            .collect())
    }

    async fn change_endpoint(
        &self,
        id: EndpointId,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, RepoError> {
        let mut hooks = lock(&self.webhooks);
        Ok(hooks.endpoints.get_mut(&id).map(|stored| {
            stored.apply(change, now);
            stored.clone()
        }))
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &Secret,
        retiring_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, RepoError> {
        let mut hooks = lock(&self.webhooks);
        Ok(hooks.endpoints.get_mut(&id).map(|stored| {
            stored.rotate_to(secret.clone(), retiring_until, now);
            stored.clone()
        }))
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, RepoError> {
        let mut hooks = lock(&self.webhooks);
        hooks.deliveries.retain(|(_, ep), _| *ep != id);
        hooks.attempts.retain(|a| a.endpoint_id != id);
        Ok(hooks.endpoints.remove(&id).is_some())
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, RepoError> {
        Ok(lock(&self.webhooks)
            .events
            .iter()
            .find(|e| e.id == id)
            .cloned())
    }

    async fn events_of(&self, order: OrderId) -> Result<Vec<Event>, RepoError> {
        Ok(lock(&self.webhooks)
            .events
            .iter()
            .filter(|e| e.order_id == order)
            .cloned()
            .collect())
    }

    async fn fan_out(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, RepoError> {
        let mut hooks = lock(&self.webhooks);
        let start = hooks.fanned_out;
        let end = hooks.events.len().min(start.saturating_add(limit));
        let taken: Vec<Event> = hooks.events[start..end].to_vec();
        for event in &taken {
            for endpoint in hooks.subscribers(event, None) {
                hooks.make_due(event, endpoint, now);
            }
        }
        hooks.fanned_out = end;
        Ok(taken.len())
    }

    async fn oldest_waiting_event(&self) -> Result<Option<DateTime<Utc>>, RepoError> {
        let hooks = lock(&self.webhooks);
        Ok(hooks.events.get(hooks.fanned_out).map(|e| e.occurred_at))
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_for: Duration,
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedDelivery>, RepoError> {
        let mut hooks = lock(&self.webhooks);
        let WebhookTables {
            endpoints,
            deliveries,
            ..
        } = &mut *hooks;
        let live = |d: &DeliveryRow| d.lease.is_some_and(|(_, until)| until > now);
        // Per endpoint, how many more of its deliveries may be leased now.
        let mut room: HashMap<EndpointId, usize> = endpoints
            .values()
            .map(|e| (e.id, limits.for_endpoint(e)))
            .collect();
        for ((_, ep), d) in deliveries.iter() {
            if d.state == State::Pending && live(d) {
                if let Some(r) = room.get_mut(ep) {
                    *r = r.saturating_sub(1);
                }
            }
        }
        let mut due: Vec<(&(EventId, EndpointId), &mut DeliveryRow)> = deliveries
            .iter_mut()
            .filter(|(_, d)| d.state == State::Pending && d.due_at <= now && !live(d))
            .filter(|((_, ep), _)| endpoints.get(ep).is_some_and(|e| e.enabled))
            .collect();
        due.sort_by_key(|(_, d)| d.due_at);
        let claimed = due
            .into_iter()
            .filter(|((_, ep), _)| {
                room.get_mut(ep).is_some_and(|r| {
                    let free = *r > 0;
                    *r = r.saturating_sub(1);
                    free
                })
            })
            .take(limits.total)
            .map(|((_, ep), row)| {
                let token = Uuid::now_v7();
                row.lease = Some((token, crate::time::later(now, lease_for)));
                ClaimedDelivery {
                    event: row.event.clone(),
                    endpoint: endpoints[ep].clone(),
                    attempt: row.attempts + 1,
                    token,
                }
            })
            .collect();
        Ok(claimed)
    }

    async fn finish_deliveries(
        &self,
        finished: &[FinishedDelivery],
    ) -> Result<Vec<bool>, RepoError> {
        let mut hooks = lock(&self.webhooks);
        let mut recorded = Vec::with_capacity(finished.len());
        // Per endpoint: whether anything was delivered, the first failure, a reason to disable.
        let mut outcomes: BTreeMap<EndpointId, (bool, Option<DateTime<Utc>>, Option<String>)> =
            BTreeMap::new();
        for f in finished {
            let key = (f.claimed.event.id, f.claimed.endpoint.id);
            let Some(row) = hooks
                .deliveries
                .get_mut(&key)
                .filter(|d| d.lease.is_some_and(|(token, _)| token == f.claimed.token))
            else {
                recorded.push(false);
                continue;
            };
            row.lease = None;
            row.attempts = f.attempt.attempt;
            match f.next {
                DeliveryNext::Delivered => row.state = State::Delivered,
                DeliveryNext::RetryAt(at) => row.due_at = at,
                DeliveryNext::GiveUp => row.state = State::Failed,
            }
            hooks.attempts.push(DeliveryAttempt {
                error: f.attempt.error.as_deref().map(printable),
                response_excerpt: printable(&f.attempt.response_excerpt),
                ..f.attempt.clone()
            });
            let outcome = outcomes.entry(f.claimed.endpoint.id).or_default();
            outcome.0 |= f.attempt.delivered;
            if !f.attempt.delivered {
                outcome.1 = Some(
                    outcome
                        .1
                        .map_or(f.attempt.attempted_at, |t| t.min(f.attempt.attempted_at)),
                );
            }
            if outcome.2.is_none() {
                outcome.2.clone_from(&f.disable);
            }
            recorded.push(true);
        }
        for (id, (delivered, first_failure, disable)) in outcomes {
            if let Some(endpoint) = hooks.endpoints.get_mut(&id) {
                endpoint.failing_since = if delivered {
                    None
                } else {
                    endpoint.failing_since.or(first_failure)
                };
                if let Some(reason) = disable {
                    endpoint.enabled = false;
                    endpoint.disabled_reason = Some(reason);
                }
            }
        }
        Ok(recorded)
    }

    async fn attempts(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>, RepoError> {
        Ok(lock(&self.webhooks)
            .attempts
            .iter()
            .rev()
            .filter(|a| a.endpoint_id == endpoint)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepoError> {
        let mut hooks = lock(&self.webhooks);
        hooks.attempts.retain(|a| a.attempted_at >= before);
        let fanned: Vec<EventId> = hooks.events[..hooks.fanned_out]
            .iter()
            .filter(|e| e.occurred_at < before)
            .map(|e| e.id)
            .collect();
        let mut gone = std::collections::HashSet::new();
        for id in fanned {
            if gone.len() >= limit {
                break;
            }
            let pending = hooks
                .deliveries
                .iter()
                .any(|((event, _), d)| *event == id && d.state == State::Pending);
            if !pending {
                gone.insert(id);
            }
        }
        hooks
            .deliveries
            .retain(|(event, _), _| !gone.contains(event));
        let before_len = hooks.events.len();
        let fanned_out = hooks.fanned_out;
        let mut index = 0;
        let mut removed_fanned = 0;
        hooks.events.retain(|e| {
            let keep = !gone.contains(&e.id);
            if !keep && index < fanned_out {
                removed_fanned += 1;
            }
            index += 1;
            keep
        });
        hooks.fanned_out -= removed_fanned;
        Ok((before_len - hooks.events.len()) as u64)
    }

    async fn redeliver(
        &self,
        event: EventId,
        now: DateTime<Utc>,
        owner: Option<&CustomerId>,
    ) -> Result<Option<usize>, RepoError> {
        let mut hooks = lock(&self.webhooks);
        let Some(found) = hooks.events.iter().find(|e| e.id == event).cloned() else {
            return Ok(None);
        };
        let subscribers = hooks.subscribers(&found, owner);
        for endpoint in &subscribers {
            hooks.make_due(&found, *endpoint, now);
        }
        Ok(Some(subscribers.len()))
    }
}
