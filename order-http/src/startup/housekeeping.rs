//! Housekeeping a process with an order service runs beside serving: forgetting old
//! idempotency keys, and settling refunds and charges whose gateway answer was lost.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::http::state::DynOrderService;

/// Forgets idempotency keys past `retention`, every tenth of it (at most every ten
/// minutes) until stopped.
pub(super) async fn purge_request_keys(
    orders: DynOrderService,
    retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval((retention / 10).min(Duration::from_secs(600)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = every.tick() => match orders.purge_request_keys(retention).await {
                Ok(0) => {}
                Ok(n) => info!(purged = n, "forgot expired idempotency keys"),
                Err(e) => warn!(error = %e, "purging idempotency keys failed"),
            },
        }
    }
}

/// Most orders one sweep asks about, of each kind (pending refunds, unresolved charges).
const SWEEP_BATCH: usize = 100;

/// Asks the gateway, every `every`, about the payments whose answer was lost more than
/// `older_than` ago (`PAYMENT_RECONCILE_INTERVAL_SECONDS` and
/// `PAYMENT_RECONCILE_GRACE_SECONDS`), until stopped: a refund that no client retries is
/// settled, and a charge that timed out and that the processor has decided since is handed
/// to a worker at once rather than at its next retry.
pub(super) async fn sweep_payments(
    orders: DynOrderService,
    (every, older_than): (Duration, Duration),
    mut stopped: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = every.tick() => {
                match orders.sweep_pending_refunds(older_than, SWEEP_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => info!(settled = n, "settled pending refunds"),
                    Err(e) => warn!(error = %e, "sweeping pending refunds failed"),
                }
                match orders.sweep_unresolved_charges(older_than, SWEEP_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => info!(hastened = n, "charges the processor decided are being settled"),
                    Err(e) => warn!(error = %e, "sweeping unresolved charges failed"),
                }
            }
        }
    }
}
