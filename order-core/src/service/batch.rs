//! Batching concurrent calls, group-commit style: the pattern behind
//! [`group_commit`](super::group_commit) and the worker's claims and lease ends.
//!
//! Each caller queues its item, then takes the flush lock (a fair, FIFO async mutex). If an
//! earlier holder already flushed its item, it just takes the result. Otherwise it is the
//! leader: it flushes everything queued so far (up to a maximum) in one call and hands every
//! waiter its result. Under no load every item is flushed alone, with no added wait; under
//! load the items that arrive while one flush runs share the next one. No background task
//! is needed.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::ports::{QueueError, RepoError};

/// The flush that held a caller's item was dropped before it answered (its leader was
/// cancelled, or it gave fewer results than items): whether the item took effect is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batch holding this call was dropped before it answered")]
pub struct Abandoned;

impl From<Abandoned> for RepoError {
    fn from(abandoned: Abandoned) -> Self {
        Self::Unavailable(abandoned.into())
    }
}

impl From<Abandoned> for QueueError {
    fn from(abandoned: Abandoned) -> Self {
        Self::Unavailable(abandoned.into())
    }
}

/// Each of `n` items' answer when one call answered for all of them: its outcome (an error
/// copied by `replicate`).
pub fn each<E>(n: usize, outcome: &Result<(), E>, replicate: fn(&E) -> E) -> Vec<Result<(), E>> {
    (0..n)
        .map(|_| outcome.as_ref().copied().map_err(replicate))
        .collect()
}

/// The answers of a call that answers item by item, or, when it failed as a whole, its error
/// for each of the `n` items (copied by `replicate`).
pub fn each_or_all<T, E>(
    n: usize,
    answers: Result<Vec<Result<T, E>>, E>,
    replicate: fn(&E) -> E,
) -> Vec<Result<T, E>> {
    answers.unwrap_or_else(|e| (0..n).map(|_| Err(replicate(&e))).collect())
}

type Waiter<I, O> = (I, oneshot::Sender<O>);

/// Batches concurrent calls of one kind: items of type `I`, each answered with an `O`.
#[derive(Debug)]
pub struct Batcher<I, O> {
    queued: Mutex<Vec<Waiter<I, O>>>,
    flush: tokio::sync::Mutex<()>,
    max: usize,
}

impl<I, O> Batcher<I, O> {
    /// A batcher flushing at most `max` items at once (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            queued: Mutex::new(Vec::new()),
            flush: tokio::sync::Mutex::new(()),
            max: max.max(1),
        }
    }

    /// Submits `item` and waits for its result. A leader calls `flush` with the items of a
    /// batch, in the order they were submitted; it must return one result per item, in the
    /// same order.
    pub async fn submit<F, Fut>(&self, item: I, flush: F) -> Result<O, Abandoned>
    where
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        let (done, mut result) = oneshot::channel();
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((item, done));
        loop {
            let _leader = self.flush.lock().await;
            match result.try_recv() {
                Ok(out) => return Ok(out),
                Err(TryRecvError::Closed) => return Err(Abandoned),
                Err(TryRecvError::Empty) => {}
            }
            let batch: Vec<Waiter<I, O>> = {
                let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
                let take = queued.len().min(self.max);
                queued.drain(..take).collect()
            };
            let (items, waiters): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
            let outs = flush(items).await;
            for (waiter, out) in waiters.into_iter().zip(outs) {
                let _ = waiter.send(out);
            }
            // Ours has its answer now unless it was past the maximum: then flush again.
            match result.try_recv() {
                Ok(out) => return Ok(out),
                Err(TryRecvError::Closed) => return Err(Abandoned),
                Err(TryRecvError::Empty) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::Notify;

    /// A flush that records its batch sizes, takes 5 ms, and answers each item doubled.
    async fn doubled(sizes: &Mutex<Vec<usize>>, items: Vec<u32>) -> Vec<u32> {
        sizes.lock().unwrap().push(items.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
        items.into_iter().map(|i| i * 2).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_flushes_and_each_gets_its_own_answer() {
        let batcher = Arc::new(Batcher::new(16));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200_u32 {
            let (batcher, sizes) = (Arc::clone(&batcher), Arc::clone(&sizes));
            tasks.push(tokio::spawn(async move {
                let out = batcher.submit(i, |items| doubled(&sizes, items)).await;
                (i, out)
            }));
        }
        for task in tasks {
            let (i, out) = task.await.unwrap();
            assert_eq!(
                out,
                Ok(i * 2),
                "each caller gets the answer to its own item"
            );
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 200, "every item flushed once");
        assert!(
            sizes.len() < 100,
            "200 concurrent calls took {} flushes",
            sizes.len()
        );
        assert!(
            sizes.iter().all(|&n| n <= 16),
            "no flush above the maximum: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_lone_call_is_flushed_at_once_alone() {
        let batcher = Batcher::new(16);
        let sizes = Mutex::new(Vec::new());
        assert_eq!(
            batcher.submit(21, |items| doubled(&sizes, items)).await,
            Ok(42)
        );
        assert_eq!(*sizes.lock().unwrap(), [1]);
    }

    #[tokio::test]
    async fn callers_of_a_flush_dropped_midway_learn_it_and_later_calls_still_flush() {
        let batcher = Arc::new(Batcher::new(16));
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        // The first flush waits to be released; the second hangs until dropped.
        let flush = {
            let (started, release, calls) = (started.clone(), release.clone(), calls.clone());
            move |items: Vec<u32>| {
                let (started, release, calls) = (started.clone(), release.clone(), calls.clone());
                async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => {
                            started.notify_one();
                            release.notified().await;
                        }
                        1 => {
                            started.notify_one();
                            std::future::pending::<()>().await;
                        }
                        _ => {}
                    }
                    items
                }
            }
        };
        let submit = |item: u32| {
            let (batcher, flush) = (Arc::clone(&batcher), flush.clone());
            tokio::spawn(async move { batcher.submit(item, flush).await })
        };
        let first = submit(1);
        started.notified().await;
        let (second, third) = (submit(2), submit(3));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(1));
        // The second leads a flush of items 2 and 3, which hangs; it is cancelled.
        started.notified().await;
        second.abort();
        assert!(second.await.unwrap_err().is_cancelled());
        assert_eq!(
            third.await.unwrap(),
            Err(Abandoned),
            "its batch was dropped"
        );
        assert_eq!(
            submit(4).await.unwrap(),
            Ok(4),
            "later calls flush as before"
        );
    }
}
