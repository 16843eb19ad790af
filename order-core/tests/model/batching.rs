//! The model's store as workers see it: the in-memory store, its batches yielding once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::memory::MemoryOrderRepo;
use order_core::order::CancelReason;
use order_core::payment::Attempt;
use order_core::ports::{
    CancelResult, Claim, EndLease, Job, Lease, OrderFilter, OrderPage, OrderRepo, PageRequest,
    RepoError,
};
use order_core::request::{Fingerprint, KeyedRequest, RequestKey};
use order_core::{IdempotencyKey, Money, Order, OrderId, Transition, WorkerId};
use uuid::Uuid;

/// The in-memory store as workers see it here: its batched claims and lease ends yield once
/// before they run, so the handles of a [`Step::ProcessMany`] queue up behind a flush and
/// share the next one, as they do against PostgreSQL.
pub struct Batching(pub Arc<MemoryOrderRepo>);

#[async_trait]
impl OrderRepo for Batching {
    async fn insert(&self, order: &Order) -> Result<(), RepoError> {
        self.0.insert(order).await
    }
    async fn insert_many(&self, orders: &[Order]) -> Result<(), RepoError> {
        self.0.insert_many(orders).await
    }
    async fn get(&self, id: OrderId) -> Result<Option<Order>, RepoError> {
        self.0.get(id).await
    }
    async fn list(&self, filter: &OrderFilter, page: PageRequest) -> Result<OrderPage, RepoError> {
        self.0.list(filter, page).await
    }
    async fn claim(
        &self,
        id: OrderId,
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Claim, RepoError> {
        self.0.claim(id, worker, now, lease_for).await
    }
    async fn settle(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.0.settle(lease, attempt, transition, now).await
    }
    async fn release(
        &self,
        lease: &Lease,
        attempt: Option<Attempt>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.0.release(lease, attempt, retry_at, now).await
    }
    async fn claim_many(
        &self,
        ids: &[OrderId],
        worker: &WorkerId,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Vec<Result<Claim, RepoError>>, RepoError> {
        tokio::task::yield_now().await;
        self.0.claim_many(ids, worker, now, lease_for).await
    }
    async fn end_leases(&self, ends: &[EndLease]) -> Result<Vec<Result<(), RepoError>>, RepoError> {
        tokio::task::yield_now().await;
        self.0.end_leases(ends).await
    }
    async fn due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, RepoError> {
        self.0.due(before, limit).await
    }
    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<KeyedRequest, RepoError> {
        self.0
            .begin_request(key, fingerprint, now, stale_after)
            .await
    }
    async fn insert_for_request(
        &self,
        order: &Order,
        key: &RequestKey,
        token: Uuid,
    ) -> Result<(), RepoError> {
        self.0.insert_for_request(order, key, token).await
    }
    async fn cancel(
        &self,
        id: OrderId,
        reason: CancelReason,
        now: DateTime<Utc>,
    ) -> Result<CancelResult, RepoError> {
        self.0.cancel(id, reason, now).await
    }
    async fn begin_capture(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<order_core::ports::CaptureStart, RepoError> {
        self.0.begin_capture(id, amount, now).await
    }
    async fn begin_refund(
        &self,
        id: OrderId,
        draft: &order_core::order::RefundDraft,
        now: DateTime<Utc>,
    ) -> Result<order_core::ports::RefundStart, RepoError> {
        self.0.begin_refund(id, draft, now).await
    }
    async fn finish_refund(
        &self,
        id: OrderId,
        key: &IdempotencyKey,
        settlement: &order_core::order::RefundSettlement,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        self.0.finish_refund(id, key, settlement, now).await
    }
    async fn pending_refunds(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.0.pending_refunds(before, limit).await
    }
    async fn unresolved_charges(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, RepoError> {
        self.0.unresolved_charges(before, limit).await
    }
    async fn finish_capture(
        &self,
        id: OrderId,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<Order, RepoError> {
        self.0.finish_capture(id, amount, now).await
    }
    async fn hasten(&self, id: OrderId, now: DateTime<Utc>) -> Result<Option<Order>, RepoError> {
        self.0.hasten(id, now).await
    }
    async fn record_processor_event(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.0.record_processor_event(event_id, now).await
    }
    async fn complete_request(
        &self,
        key: &RequestKey,
        token: Uuid,
        order: OrderId,
    ) -> Result<(), RepoError> {
        self.0.complete_request(key, token, order).await
    }
    async fn abandon_request(&self, key: &RequestKey, token: Uuid) -> Result<(), RepoError> {
        self.0.abandon_request(key, token).await
    }
    async fn purge_requests(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        self.0.purge_requests(before).await
    }
    async fn ping(&self) -> Result<(), RepoError> {
        self.0.ping().await
    }
}
