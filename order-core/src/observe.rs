//! What the services count and time, through the [`metrics`] facade: with no recorder
//! installed every call is a no-op, so a library user pays nothing and chooses the
//! exporter; `order-http` installs the Prometheus one and serves `/metrics`.
//!
//! Names follow Prometheus's conventions: one `order_` prefix, base units (`_seconds`),
//! `_total` for counters, and labels with a handful of values each (never an order id).

use std::time::Duration;

use crate::order::OrderStatus;
use crate::payment::{AttemptOutcome, RefundOutcome};
use crate::policy::circuit_breaker::BreakerState;

/// Orders stored (counter).
pub const ORDERS_PLACED: &str = "order_orders_placed_total";
/// Charge attempts by `outcome`: `captured`, `declined`, `retryable`, `timed_out`, and
/// `rejected_by_breaker` for a call the open breaker kept from the gateway (counter).
pub const PAYMENT_ATTEMPTS: &str = "order_payment_attempts_total";
/// Refund attempts by `outcome`: `refunded`, `nothing_captured`, `refused`, `retryable`,
/// `timed_out` (counter).
pub const REFUND_ATTEMPTS: &str = "order_refund_attempts_total";
/// How long gateway calls took, by `operation` (`charge`, `refund`) (histogram, seconds).
pub const GATEWAY_CALL_SECONDS: &str = "order_gateway_call_duration_seconds";
/// The circuit breaker: 0 closed, 1 half-open, 2 open (gauge).
pub const BREAKER_STATE: &str = "order_circuit_breaker_state";
/// Breaker state changes, by the state entered, `to` (counter).
pub const BREAKER_TRANSITIONS: &str = "order_circuit_breaker_transitions_total";
/// Time from an order's creation to its terminal status, by final `status` (histogram,
/// seconds).
pub const TIME_TO_TERMINAL_SECONDS: &str = "order_time_to_terminal_seconds";
/// Orders the reconciler queued again because their job was lost (counter).
pub const RECONCILER_REQUEUED: &str = "order_reconciler_requeued_total";
/// Jobs moved to the dead-letter queue (counter).
pub const JOBS_DEAD_LETTERED: &str = "order_jobs_dead_lettered_total";
/// Orders stored per group-commit statement (histogram).
pub const GROUP_COMMIT_BATCH: &str = "order_group_commit_batch_size";
/// Orders per batched store statement of the worker, by `op`: `claim`, `end` (the lease
/// ends: settlements and releases) (histogram).
pub const PAYMENT_BATCH: &str = "order_payment_batch_size";
/// Webhook delivery attempts by `outcome`: `delivered`, `failed` (counter).
pub const WEBHOOK_ATTEMPTS: &str = "order_webhook_attempts_total";
/// How long receivers took to answer a webhook (histogram, seconds).
pub const WEBHOOK_SECONDS: &str = "order_webhook_request_duration_seconds";
/// Events fanned out to their subscribers (counter).
pub const WEBHOOK_EVENTS_FANNED_OUT: &str = "order_webhook_events_fanned_out_total";

/// Describes every metric above (help texts and units), for an exporter installed before.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ORDERS_PLACED, "Orders stored.");
    describe_counter!(PAYMENT_ATTEMPTS, "Charge attempts by outcome.");
    describe_counter!(REFUND_ATTEMPTS, "Refund attempts by outcome.");
    describe_histogram!(
        GATEWAY_CALL_SECONDS,
        Unit::Seconds,
        "How long payment gateway calls took, by operation."
    );
    describe_gauge!(
        BREAKER_STATE,
        "The circuit breaker: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker state changes, by the state entered."
    );
    describe_histogram!(
        TIME_TO_TERMINAL_SECONDS,
        Unit::Seconds,
        "Time from an order's creation to its terminal status, by that status."
    );
    describe_counter!(
        RECONCILER_REQUEUED,
        "Orders queued again by the reconciler."
    );
    describe_counter!(
        JOBS_DEAD_LETTERED,
        "Payment jobs moved to the dead-letter queue."
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH,
        "Orders stored per group-commit statement."
    );
    describe_histogram!(
        PAYMENT_BATCH,
        "Orders per batched claim or lease-end statement of the worker, by op."
    );
    describe_counter!(WEBHOOK_ATTEMPTS, "Webhook delivery attempts by outcome.");
    describe_histogram!(
        WEBHOOK_SECONDS,
        Unit::Seconds,
        "How long webhook receivers took to answer."
    );
    describe_counter!(
        WEBHOOK_EVENTS_FANNED_OUT,
        "Events fanned out to webhook endpoints."
    );
    // Every counter starts at zero, so a rate or an alert has a series before the first event.
    for name in [
        ORDERS_PLACED,
        RECONCILER_REQUEUED,
        JOBS_DEAD_LETTERED,
        WEBHOOK_EVENTS_FANNED_OUT,
    ] {
        metrics::counter!(name).increment(0);
    }
    for outcome in [
        "captured",
        "declined",
        "retryable",
        "timed_out",
        "rejected_by_breaker",
    ] {
        metrics::counter!(PAYMENT_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    for outcome in [
        "refunded",
        "nothing_captured",
        "refused",
        "retryable",
        "timed_out",
    ] {
        metrics::counter!(REFUND_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    for to in ["closed", "half_open", "open"] {
        metrics::counter!(BREAKER_TRANSITIONS, "to" => to).increment(0);
    }
    for outcome in ["delivered", "failed"] {
        metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
}

/// A charge attempt's outcome as a label value.
pub const fn charge_outcome(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded { .. } => "captured",
        AttemptOutcome::Declined { .. } => "declined",
        AttemptOutcome::Failed { .. } => "retryable",
        AttemptOutcome::TimedOut { .. } => "timed_out",
    }
}

/// A refund attempt's outcome as a label value.
pub const fn refund_outcome(outcome: &RefundOutcome) -> &'static str {
    match outcome {
        RefundOutcome::Refunded { .. } => "refunded",
        RefundOutcome::NothingCaptured => "nothing_captured",
        RefundOutcome::Refused { .. } => "refused",
        RefundOutcome::Failed { .. } => "retryable",
        RefundOutcome::TimedOut { .. } => "timed_out",
    }
}

/// Records a gateway call.
pub fn gateway_call(operation: &'static str, took: Duration) {
    metrics::histogram!(GATEWAY_CALL_SECONDS, "operation" => operation).record(took.as_secs_f64());
}

/// A breaker state's gauge value and label.
pub const fn breaker_state(state: &BreakerState) -> (f64, &'static str) {
    match state {
        BreakerState::Closed { .. } => (0.0, "closed"),
        BreakerState::HalfOpen { .. } => (1.0, "half_open"),
        BreakerState::Open { .. } => (2.0, "open"),
    }
}

/// Records that an order reached `status` (terminal) `took` after its creation.
pub fn terminal(status: OrderStatus, took: chrono::Duration) {
    metrics::histogram!(TIME_TO_TERMINAL_SECONDS, "status" => status.as_str())
        .record(took.to_std().unwrap_or_default().as_secs_f64());
}
