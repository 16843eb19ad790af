//! The payment worker's loop: receive jobs, handle many at once, take over jobs of crashed
//! workers, re-queue lost ones, and drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use order_core::PaymentProcessor;
use order_core::ports::{Clock, Delivery, OrderRepo, PaymentGateway, PaymentQueue};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval};
use tracing::{Instrument as _, debug, error, info, warn};

/// The processor as the worker holds it.
pub type Processor =
    PaymentProcessor<dyn OrderRepo, dyn PaymentQueue, dyn PaymentGateway, dyn Clock>;

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Payments in flight at once: the gateway's latency must not serialize the worker.
    pub concurrency: usize,
    /// Longest wait for new jobs in one receive.
    pub poll_wait: Duration,
    /// How often to take over jobs of silent consumers.
    pub reclaim_every: Duration,
    /// How often to re-queue orders whose jobs were lost.
    pub reconcile_every: Duration,
    /// How long shutdown waits for in-flight payments before leaving them to be reclaimed.
    pub shutdown_grace: Duration,
}

fn spawn_handle(
    tasks: &mut JoinSet<()>,
    processor: &Arc<Processor>,
    job: Delivery,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let processor = Arc::clone(processor);
    metrics::gauge!(crate::telemetry::metrics::PAYMENTS_IN_FLIGHT).increment(1.0);
    // The job's span continues the trace of the request that placed its order.
    let span = crate::telemetry::traces::job_span(&job);
    tasks.spawn(
        async move {
            let _in_flight = InFlightGauge;
            match processor.handle(&job).await {
                Ok(outcome) => debug!(order_id = %job.order_id, ?outcome, "job handled"),
                // The job stays pending and is delivered again after the lease.
                Err(e) => {
                    warn!(order_id = %job.order_id, error = %e, "job failed; it will be retried");
                }
            }
            drop(permit);
        }
        .instrument(span),
    );
}

/// Counts a payment out of [`crate::telemetry::metrics::PAYMENTS_IN_FLIGHT`] when its task ends,
/// however it ends.
struct InFlightGauge;

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::metrics::PAYMENTS_IN_FLIGHT).decrement(1.0);
    }
}

/// A payment task panicked: a bug. The loop stops taking jobs, drains, and reports it, so
/// the process exits non-zero instead of running on with a broken worker.
#[derive(Debug, thiserror::Error)]
#[error("a payment task panicked: {0}")]
pub struct WorkerPanicked(pub String);

/// The message a panic carried.
pub fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
        Err(error) => error.to_string(),
    }
}

/// Logs a finished payment task; returns the panic's message if it panicked.
fn joined(result: Result<(), tokio::task::JoinError>) -> Option<String> {
    match result {
        Err(e) if e.is_panic() => {
            let message = panic_message(e);
            error!(panic = %message, "a payment task panicked");
            Some(message)
        }
        _ => None,
    }
}

/// Runs until `shutdown` turns true, then waits up to the grace period for payments in
/// flight. A payment cut off there keeps its lease and its pending job: another worker
/// takes it over when the lease expires, and the gateway's idempotency key makes sure it is
/// not charged twice.
pub async fn run(
    processor: Arc<Processor>,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerPanicked> {
    let mut panicked = None;
    // Take no job before the store answers (at start, PostgreSQL may still be coming up):
    // a job taken then could not be claimed and would wait a whole lease.
    let mut wait = Duration::from_millis(100);
    while let Err(e) = processor.check_store().await {
        debug!(error = %e, "waiting for the store before taking jobs");
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut reclaim = interval(settings.reclaim_every);
    reclaim.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut reconcile = interval(settings.reconcile_every);
    reconcile.set_missed_tick_behavior(MissedTickBehavior::Skip);
    info!(concurrency = settings.concurrency, "payment worker started");
    while !*shutdown.borrow() && panicked.is_none() {
        while let Some(result) = tasks.try_join_next() {
            panicked = panicked.or(joined(result));
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = reclaim.tick() => {
                let free = permits.available_permits();
                match processor.reclaim(free).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let permit = Arc::clone(&permits).acquire_owned().await.expect("semaphore open");
                            spawn_handle(&mut tasks, &processor, job, permit);
                        }
                    }
                    Err(e) => warn!(error = %e, "reclaiming jobs failed"),
                }
            }
            _ = reconcile.tick() => {
                if let Err(e) = processor.reconcile(1000).await {
                    warn!(error = %e, "reconciling orders failed");
                }
            }
            permit = Arc::clone(&permits).acquire_owned() => {
                let permit = permit.expect("semaphore open");
                let room = permits.available_permits() + 1;
                match processor.receive(room.min(256), settings.poll_wait).await {
                    Ok(jobs) => {
                        let mut first = Some(permit);
                        for job in jobs {
                            let permit = match first.take() {
                                Some(p) => p,
                                None => Arc::clone(&permits).acquire_owned().await.expect("semaphore open"),
                            };
                            spawn_handle(&mut tasks, &processor, job, permit);
                        }
                    }
                    Err(e) => {
                        drop(permit);
                        warn!(error = %e, "receiving jobs failed; retrying in 1 s");
                        tokio::select! {
                            _ = shutdown.changed() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }
    info!(in_flight = tasks.len(), "payment worker stopping");
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while let Some(result) = tasks.join_next().await {
            panicked = panicked.take().or(joined(result));
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            left = tasks.len(),
            "shutdown grace over; leaving unfinished payments to be reclaimed"
        );
        tasks.abort_all();
    }
    info!("payment worker stopped");
    panicked.map_or(Ok(()), |message| Err(WorkerPanicked(message)))
}
