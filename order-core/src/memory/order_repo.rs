//! [`MemoryOrderRepo`]: orders, their leases and the keys of placed requests, in memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lock;
use super::webhook_store::WebhookTables;
use crate::ids::{OrderId, WorkerId};
use crate::order::{
    CancelReason, Cancellation, Order, OrderEvent, OrderStatus, PartialRefund, PartialRefundState,
    RefundDraft, RefundSettlement, Transition,
};
use crate::payment::{Attempt, AttemptOutcome, IdempotencyKey};
use crate::ports::{
    CancelResult, CaptureStart, Claim, Job, Lease, OrderFilter, OrderPage, OrderRepo, PageRequest,
    RefundStart, RepoError,
};
use crate::request::{Fingerprint, KeyedRequest, RequestKey};

#[derive(Debug, Clone)]
struct Row {
    order: Order,
    lease: Option<(Uuid, DateTime<Utc>)>,
    due_at: DateTime<Utc>,
    uncertain: bool,
}

#[derive(Debug, Clone)]
struct KeyRecord {
    fingerprint: Fingerprint,
    token: Uuid,
    reserved_at: DateTime<Utc>,
    order: Option<OrderId>,
}

/// [`OrderRepo`] in memory.
#[derive(Debug, Default)]
pub struct MemoryOrderRepo {
    rows: RwLock<HashMap<OrderId, Row>>,
    keys: Mutex<HashMap<RequestKey, KeyRecord>>,
    /// The processor's events received, by id, with when.
    processor_events: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The outbox and the webhooks' endpoints and deliveries; events are recorded while the
    /// rows' write lock is held, so an event and its status change are one step.
    pub(super) webhooks: Mutex<WebhookTables>,
}

impl MemoryOrderRepo {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored order (for tests and invariant checks).
    pub fn all(&self) -> Vec<Order> {
        self.read().values().map(|r| r.order.clone()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrderId, Row>> {
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<OrderId, Row>> {
        self.rows.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The orders `since` says have waited since some time, longest waiting first (ties
    /// by id), at most `limit`.
    fn longest_waiting(
        &self,
        limit: usize,
        since: impl Fn(&Order) -> Option<DateTime<Utc>>,
    ) -> Vec<OrderId> {
        let rows = self.read();
        let mut waiting: Vec<(DateTime<Utc>, OrderId)> = rows
            .values()
            .filter_map(|row| Some((since(&row.order)?, row.order.id)))
            .collect();
        waiting.sort_unstable();
        waiting.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// Stores new orders, all or nothing.
    fn insert_rows(&self, orders: &[Order]) -> Result<(), RepoError> {
        let mut rows = self.write();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = orders
            .iter()
            .find(|o| rows.contains_key(&o.id) || !seen.insert(o.id))
        {
            return Err(RepoError::Duplicate(dup.id));
        }
        for order in orders {
            let order = Order {
                status: OrderStatus::Pending,
                payment_attempts: Vec::new(),
                cancellation: None,
                refund_attempts: Vec::new(),
                partial_refunds: Vec::new(),
                ..order.clone()
            };
            let due_at = order.created_at;
            lock(&self.webhooks).record(&order, None);
            rows.insert(
                order.id,
                Row {
                    order,
                    lease: None,
                    due_at,
                    uncertain: false,
                },
            );
        }
        Ok(())
    }

    fn row_under_lease<'a>(
        rows: &'a mut HashMap<OrderId, Row>,
        lease: &Lease,
    ) -> Result<&'a mut Row, RepoError> {
        let row = rows
            .get_mut(&lease.order_id)
            .ok_or(RepoError::NotFound(lease.order_id))?;
        match row.lease {
            Some((token, _)) if token == lease.token => Ok(row),
            _ => Err(RepoError::LeaseLost(lease.order_id)),
        }
    }
}

#[async_trait]
impl OrderRepo for MemoryOrderRepo {
    async fn insert(&self, order: &Order) -> Result<(), RepoError> {
        self.insert_many(std::slice::from_ref(order)).await
    }

    async fn insert_many(&self, orders: &[Order]) -> Result<(), RepoError> {
        self.insert_rows(orders)
    }

    async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        Ok(self.read().get(&id).map(|r| r.order.clone()))
    }

    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError> {
        let rows = self.read();
        let mut matching: Vec<&Order> = rows
            .values()
            .map(|r| &r.order)
            .filter(|o| {
                filter
                    .customer_id
                    .as_ref()
                    .is_none_or(|c| &o.customer_id == c)
            })
            .filter(|o| filter.status.is_none_or(|s| o.status == s))
            .collect();
        matching.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        let total = matching.len() as u64;
        let fetched = matching
            .into_iter()
            .filter(|o| page.cursor().is_none_or(|c| c.precedes(o)))
            .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
            .take(page.fetch() as usize)
            .cloned()
            .collect();
        Ok(OrderPage::new(fetched, total, &page))
    }

    async fn claim(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Claim, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        if row.order.status.is_terminal() {
            return Ok(Claim::Settled(row.order.clone()));
        }
        if let Some((_, until)) = row.lease {
            if until > now {
                return Ok(Claim::Busy { until });
            }
        }
        if row.due_at > now {
            return Ok(Claim::NotDue { at: row.due_at });
        }
        if row.order.status == OrderStatus::Pending {
            let t = Transition::apply(row.order.status, OrderEvent::PaymentStarted)
                .map_err(|e| RepoError::Other(e.into()))?;
            row.order.status = t.to();
            row.order.updated_at = row.order.updated_at.max(now);
            lock(&self.webhooks).record(&row.order, Some(t.from()));
        }
        let lease = Lease {
            order_id: id,
            owner: worker.clone(),
            token: Uuid::now_v7(),
            expires_at: crate::time::later(now, lease_for),
        };
        // A lease still set here ran out without being settled or released.
        row.uncertain |= row.lease.is_some();
        row.lease = Some((lease.token, lease.expires_at));
        Ok(Claim::Acquired {
            lease,
            order: row.order.clone(),
            uncertain: row.uncertain,
        })
    }

    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut rows = self.write();
        let row = Self::row_under_lease(&mut rows, lease)?;
        if row.order.status != transition.from() {
            return Err(RepoError::StatusConflict {
                id: lease.order_id,
                expected: transition.from(),
                actual: row.order.status,
            });
        }
        record(&mut row.order, attempt);
        row.order.status = transition.to();
        row.order.updated_at = row.order.updated_at.max(now);
        row.lease = None;
        lock(&self.webhooks).record(&row.order, Some(transition.from()));
        Ok(())
    }

    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut rows = self.write();
        let row = Self::row_under_lease(&mut rows, lease)?;
        if attempt.is_some() {
            record(&mut row.order, attempt);
            row.order.updated_at = row.order.updated_at.max(now);
        }
        row.lease = None;
        row.due_at = retry_at;
        Ok(())
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, RepoError> {
        let rows = self.read();
        let mut due: Vec<(DateTime<Utc>, OrderId, Job)> = rows
            .values()
            .filter(|r| !r.order.status.is_terminal() && r.due_at <= before)
            .filter(|r| r.lease.is_none_or(|(_, until)| until <= before))
            .map(|r| (r.due_at, r.order.id, Job::of(&r.order)))
            .collect();
        due.sort_unstable_by_key(|&(at, id, _)| (at, id));
        Ok(due.into_iter().take(limit).map(|(.., job)| job).collect())
    }

    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError> {
        let mut keys = lock(&self.keys);
        let fresh = || KeyRecord {
            fingerprint: *fingerprint,
            token: Uuid::now_v7(),
            reserved_at: now,
            order: None,
        };
        let Some(record) = keys.get_mut(key) else {
            let record = fresh();
            let token = record.token;
            keys.insert(key.clone(), record);
            return Ok(KeyedRequest::New(token));
        };
        if record.fingerprint != *fingerprint {
            return Ok(KeyedRequest::Mismatch);
        }
        if let Some(order) = record.order {
            return Ok(KeyedRequest::Completed(order));
        }
        if record.reserved_at > now - crate::time::to_chrono(stale_after) {
            return Ok(KeyedRequest::InFlight);
        }
        *record = fresh();
        Ok(KeyedRequest::New(record.token))
    }

    async fn insert_for_request(
        &self,
        order: &Order,
        key: &RequestKey,
        token: Uuid,
    ) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        let record = reservation(&mut keys, key, token)?;
        self.insert_rows(std::slice::from_ref(order))?;
        record.order = Some(order.id);
        Ok(())
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let event = match row.order.status {
            OrderStatus::Pending => OrderEvent::Cancelled,
            OrderStatus::PaymentProcessing | OrderStatus::Confirmed => OrderEvent::CancelRequested,
            OrderStatus::Cancelling | OrderStatus::Cancelled => {
                return Ok(CancelResult::Unchanged(row.order.clone()));
            }
            OrderStatus::PaymentFailed => {
                return Ok(CancelResult::NotCancellable(row.order.clone()));
            }
        };
        let transition =
            Transition::apply(row.order.status, event).map_err(|e| RepoError::Other(e.into()))?;
        row.order.status = transition.to();
        row.order.updated_at = row.order.updated_at.max(now);
        row.order.cancellation = Some(Cancellation {
            requested_at: now,
            reason,
        });
        lock(&self.webhooks).record(&row.order, Some(transition.from()));
        if transition.to() == OrderStatus::Cancelled {
            Ok(CancelResult::Cancelled(row.order.clone()))
        } else {
            row.due_at = now;
            Ok(CancelResult::Cancelling(row.order.clone()))
        }
    }

    async fn begin_capture(
        &self,
        id: OrderId,
        amount: crate::Money,
        now: DateTime<Utc>,
    ) -> Result<CaptureStart, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let order = &mut row.order;
        match order.captured {
            Some(c) if c.amount == amount && c.captured_at.is_some() => {
                return Ok(CaptureStart::Captured(order.clone()));
            }
            Some(c) if c.amount != amount => return Ok(CaptureStart::Refused(order.clone())),
            _ => {}
        }
        if !order.has_capturable_payment() {
            return Ok(CaptureStart::Refused(order.clone()));
        }
        if order.captured.is_none() {
            order.captured = Some(crate::order::CaptureRecord {
                amount,
                requested_at: now,
                captured_at: None,
            });
            order.updated_at = order.updated_at.max(now);
        }
        Ok(CaptureStart::Begun(order.clone()))
    }

    async fn finish_capture(
        &self,
        id: OrderId,
        amount: crate::Money,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let order = &mut row.order;
        if let Some(c) = &mut order.captured {
            if c.captured_at.is_none() {
                c.amount = amount;
                c.captured_at = Some(now);
                order.updated_at = order.updated_at.max(now);
            }
        }
        Ok(order.clone())
    }

    async fn begin_refund(
        &self,
        id: OrderId,
        draft: &RefundDraft,
        now: DateTime<Utc>,
    ) -> Result<RefundStart, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let order = &mut row.order;
        if order.partial_refund(&draft.key).is_some()
            || draft.amount == crate::Money::ZERO
            || order
                .refundable_now()
                .is_none_or(|left| draft.amount > left)
        {
            return Ok(RefundStart::found(order.clone(), draft));
        }
        let number = u32::try_from(order.partial_refunds.len() + 1)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .expect("an order's refunds are counted in a u32");
        order.partial_refunds.push(PartialRefund {
            number,
            key: draft.key.clone(),
            amount: draft.amount,
            items: draft.items.clone(),
            reason: draft.reason.clone(),
            requested_at: now,
            state: PartialRefundState::Pending,
        });
        order.updated_at = order.updated_at.max(now);
        Ok(RefundStart::Begun(order.clone()))
    }

    async fn finish_refund(
        &self,
        id: OrderId,
        key: &IdempotencyKey,
        settlement: &RefundSettlement,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        let mut rows = self.write();
        let row = rows.get_mut(&id).ok_or(RepoError::NotFound(id))?;
        let order = &mut row.order;
        if let Some(refund) = order
            .partial_refunds
            .iter_mut()
            .find(|r| &r.key == key && r.is_pending())
        {
            refund.state = settlement.state(now);
            order.updated_at = order.updated_at.max(now);
            if matches!(settlement, RefundSettlement::Refunded { .. }) {
                lock(&self.webhooks).record_partial_refund(order, now);
            }
        }
        Ok(order.clone())
    }

    async fn pending_refunds(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        Ok(self.longest_waiting(limit, |order| {
            order
                .partial_refunds
                .iter()
                .filter(|r| r.is_pending() && r.requested_at < before)
                .map(|r| r.requested_at)
                .min()
        }))
    }

    async fn unresolved_charges(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        Ok(self.longest_waiting(limit, |order| {
            let paying =
                order.status == OrderStatus::PaymentProcessing && order.cancellation.is_none();
            let last = order.payment_attempts.last().filter(|_| paying)?;
            let timed_out = matches!(last.outcome, AttemptOutcome::TimedOut { .. });
            (timed_out && last.finished_at < before).then_some(last.finished_at)
        }))
    }

    async fn hasten(&self, id: OrderId, now: DateTime<Utc>) -> Result<Option<Order>, RepoError> {
        let mut rows = self.write();
        let Some(row) = rows.get_mut(&id) else {
            return Ok(None);
        };
        if matches!(
            row.order.status,
            OrderStatus::PaymentProcessing | OrderStatus::Cancelling
        ) {
            row.due_at = row.due_at.min(now);
        }
        Ok(Some(row.order.clone()))
    }

    async fn record_processor_event(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let mut events = lock(&self.processor_events);
        if events.contains_key(event_id) {
            return Ok(false);
        }
        events.insert(event_id.to_owned(), now);
        Ok(true)
    }

    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        reservation(&mut keys, key, token)?.order = Some(order);
        Ok(())
    }

    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        let mut keys = lock(&self.keys);
        if keys
            .get(key)
            .is_some_and(|r| r.token == token && r.order.is_none())
        {
            keys.remove(key);
        }
        Ok(())
    }

    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut keys = lock(&self.keys);
        let count = keys.len();
        keys.retain(|_, r| r.reserved_at >= before);
        lock(&self.processor_events).retain(|_, at| *at >= before);
        Ok((count - keys.len()) as u64)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        Ok(())
    }
}

/// The uncompleted reservation of `key` that `token` holds.
fn reservation<'a>(
    keys: &'a mut HashMap<RequestKey, KeyRecord>,
    key: &RequestKey,
    token: Uuid,
) -> Result<&'a mut KeyRecord, RepoError> {
    keys.get_mut(key)
        .filter(|r| r.token == token && r.order.is_none())
        .ok_or_else(|| RepoError::RequestSuperseded(key.clone()))
}

/// Appends an attempt to the order's charges or refunds.
fn record(order: &mut Order, attempt: Option<Attempt>) {
    match attempt {
        Some(Attempt::Charge(a)) => order.payment_attempts.push(a),
        Some(Attempt::Refund(a)) => order.refund_attempts.push(a),
        None => {}
    }
}
