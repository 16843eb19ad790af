//! Group commit: concurrent placements share one transaction.
//!
//! Each caller queues its order, then takes the flush lock (a fair, FIFO async mutex). If an
//! earlier holder already stored its order, it just takes the result. Otherwise it is the
//! leader: it stores everything queued so far in one `insert_many` and hands every waiter
//! its result. Under no load every order is flushed alone, with no added wait; under load the
//! orders that arrive while one flush is committing share the next one, so one durable
//! commit serves many requests. No background task is needed.

use super::batch::{self, Batcher};
use super::store_gate::StoreGate;
use crate::order::Order;
use crate::ports::{Clock, OrderRepo, RepoError};

/// Most orders in one flush.
pub const MAX_BATCH: usize = 1000;

/// Batches concurrent inserts into shared transactions.
#[derive(Debug)]
pub struct GroupCommit {
    batches: Batcher<Order, Result<(), RepoError>>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            batches: Batcher::new(MAX_BATCH),
        }
    }
}

impl GroupCommit {
    /// Stores `order` durably, in a transaction shared with concurrent callers.
    ///
    /// Each flush goes through `gate`, at the time `clock` says when it starts: while the
    /// store is down a flush fails at once, so no request waits on a connection attempt
    /// that an earlier flush just saw fail.
    pub async fn insert<R: OrderRepo + ?Sized, C: Clock + ?Sized>(
        &self,
        repo: &R,
        gate: &StoreGate,
        clock: &C,
        order: Order,
    ) -> Result<(), RepoError> {
        let flush = |orders: Vec<Order>| async move {
            let stored = gate
                .call(clock, repo.insert_many(&orders), || repo.ping())
                .await;
            if stored.is_ok() {
                let n = orders.len();
                metrics::histogram!(crate::observe::GROUP_COMMIT_BATCH).record(n as f64);
                metrics::counter!(crate::observe::ORDERS_PLACED).increment(n as u64);
            }
            // A duplicate id fails the whole batch: retry the others alone, so one bad
            // order cannot fail its neighbours.
            if orders.len() > 1 && matches!(stored, Err(RepoError::Duplicate(_))) {
                let mut each = Vec::with_capacity(orders.len());
                for order in &orders {
                    each.push(repo.insert(order).await);
                }
                each
            } else {
                batch::each(orders.len(), &stored, RepoError::replicate)
            }
        };
        self.batches
            .submit(order, flush)
            .await
            .unwrap_or_else(|abandoned| Err(abandoned.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryOrderRepo;
    use crate::ports::{MockOrderRepo, SystemClock};
    use crate::testing::placed_order;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that counts batches and takes 5 ms per commit.
    fn counting(batches: Arc<AtomicUsize>, inner: Arc<MemoryOrderRepo>) -> MockOrderRepo {
        let mut repo = MockOrderRepo::new();
        let many = Arc::clone(&inner);
        repo.expect_insert_many().returning(move |orders| {
            batches.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            ready_now(many.insert_many(orders))
        });
        repo.expect_insert()
            .returning(move |order| ready_now(inner.insert(order)));
        repo
    }

    /// The in-memory repo's futures never wait, so one poll completes them.
    fn ready_now<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("in-memory repo futures are ready at once"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_placements_share_transactions_and_all_are_stored() {
        let (batches, store) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(MemoryOrderRepo::new()),
        );
        let repo = Arc::new(counting(batches.clone(), store.clone()));
        let group = Arc::new(GroupCommit::default());
        let orders: Vec<Order> = (0..200)
            .map(|_| placed_order("gc", chrono::Utc::now()))
            .collect();
        let mut tasks = Vec::new();
        for order in orders.clone() {
            let (repo, group) = (repo.clone(), group.clone());
            tasks.push(tokio::spawn(async move {
                group
                    .insert(&*repo, &StoreGate::default(), &SystemClock, order)
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for order in &orders {
            assert!(
                store.get(order.id).await.unwrap().is_some(),
                "every order stored"
            );
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(
            batches < 100,
            "200 concurrent orders took {batches} transactions"
        );
    }

    #[tokio::test]
    async fn a_lone_placement_is_flushed_at_once() {
        let batches = Arc::new(AtomicUsize::new(0));
        let repo = counting(batches.clone(), Arc::new(MemoryOrderRepo::new()));
        GroupCommit::default()
            .insert(
                &repo,
                &StoreGate::default(),
                &SystemClock,
                placed_order("gc", chrono::Utc::now()),
            )
            .await
            .unwrap();
        assert_eq!(batches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_duplicate_fails_alone_not_its_batch() {
        let store = Arc::new(MemoryOrderRepo::new());
        let repo = counting(Arc::new(AtomicUsize::new(0)), store.clone());
        let group = GroupCommit::default();
        let gate = StoreGate::default();
        let existing = placed_order("gc", chrono::Utc::now());
        store.insert(&existing).await.unwrap();
        let fresh = placed_order("gc", chrono::Utc::now());
        let (a, b) = tokio::join!(
            group.insert(&repo, &gate, &SystemClock, existing.clone()),
            group.insert(&repo, &gate, &SystemClock, fresh.clone())
        );
        assert!(matches!(a, Err(RepoError::Duplicate(_))));
        b.unwrap();
        assert!(store.get(fresh.id).await.unwrap().is_some());
    }
}
