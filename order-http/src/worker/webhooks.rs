//! Webhook delivery in the worker roles: the loops that run the [`WebhookDispatcher`] until
//! shutdown, and the purge of delivery history past its retention. The posts themselves go
//! through the [`WebhookSender`] port (`order-webhook-http` in production).

use std::sync::Arc;
use std::time::Duration;

use order_core::ports::{Clock, OrderRepo, WebhookSender, WebhookStore};
use order_core::service::WebhookDispatcher;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The dispatcher as the worker holds it.
pub type Dispatcher =
    WebhookDispatcher<dyn WebhookStore, dyn OrderRepo, dyn WebhookSender, dyn Clock>;

/// Runs `loops` loops of dispatcher rounds side by side (one round's posts overlap the
/// next one's statements; the store hands each delivery to one of them) until `stopped`
/// turns true.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    loops: usize,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops.max(1) {
        tasks.spawn(rounds(Arc::clone(&dispatcher), idle, stopped.clone()));
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

/// Runs rounds of the dispatcher until `stopped` turns true: at once again after a busy
/// round, after `idle` when there was nothing to do, after a second when the store failed.
async fn rounds(dispatcher: Arc<Dispatcher>, idle: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let pause = match dispatcher.run_once().await {
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
}
