//! Webhook delivery in the worker roles: the loops that run the [`WebhookDispatcher`] until
//! shutdown, and the purge of delivery history past its retention. The posts themselves go
//! through the [`WebhookSender`] port (`order-webhook-http` in production).

use std::sync::Arc;
use std::time::Duration;

use order_core::ports::{Clock, OrderRepo, WebhookSender, WebhookStore};
use order_core::service::{InFlight, WebhookDispatcher};
use tokio::sync::watch;
use tracing::{debug, warn};

/// The dispatcher as the worker holds it.
pub type Dispatcher =
    WebhookDispatcher<dyn WebhookStore, dyn OrderRepo, dyn WebhookSender, dyn Clock>;

/// Runs `loops` loops of dispatcher steps side by side (the store hands each delivery to
/// one of them) until `stopped` turns true. Each loop keeps up to the dispatcher's batch of
/// posts under way and never waits for its slowest one.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    loops: usize,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    let patience = dispatcher.config().patience;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops.max(1) {
        tasks.spawn(rounds(
            Arc::clone(&dispatcher),
            idle,
            patience,
            stopped.clone(),
        ));
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
        let before = clock.now() - order_core::time::to_chrono(retention);
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

/// Runs steps of the dispatcher until `stopped` turns true: at once again after a busy
/// step (one that posted, recorded, or still has posts under way), after `idle` when there
/// was nothing to do, after a second when the store failed. Its posts are its own
/// [`InFlight`] set; when it stops it records those that finish within
/// a couple of seconds and leaves the rest to their leases.
async fn rounds(
    dispatcher: Arc<Dispatcher>,
    idle: Duration,
    patience: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut in_flight = InFlight::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        let pause = match dispatcher.step(&mut in_flight, patience).await {
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
    if !in_flight.is_empty() {
        match dispatcher.drain(&mut in_flight, DRAIN).await {
            Ok(recorded) => debug!(recorded, left = in_flight.len(), "webhook posts drained"),
            Err(e) => warn!(error = %e, "recording the last webhook posts failed"),
        }
    }
}

/// How long a stopping loop waits for its posts under way.
const DRAIN: Duration = Duration::from_secs(2);
