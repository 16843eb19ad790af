//! Prometheus metrics: the process's recorder and the names of its own series, `/metrics`,
//! and the sampler of the queue's and the webhook outbox's gauges. Requests are counted by
//! [`crate::http::middleware::metrics`].
//!
//! `order-core` records its own metrics through the `metrics` facade
//! ([`order_core::observe`]); this module installs the recorder they go to.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use order_core::ports::{PaymentQueue, WebhookStore};
use tokio::sync::watch;
use tracing::warn;

/// HTTP requests by `method`, `route` (the route's template) and `status` (counter).
pub const HTTP_REQUESTS: &str = "order_http_requests_total";
/// How long HTTP requests took, by `method` and `route` (histogram, seconds).
pub const HTTP_SECONDS: &str = "order_http_request_duration_seconds";
/// Payments (charges and refunds) a worker has in flight (gauge).
pub const PAYMENTS_IN_FLIGHT: &str = "order_payments_in_flight";
/// Payment jobs by `state`: `waiting`, `pending`, `deferred`, `dead` (gauge).
pub const QUEUE_JOBS: &str = "order_queue_jobs";
/// Age of the oldest job waiting or pending in the queue; 0 when there is none (gauge,
/// seconds).
pub const QUEUE_OLDEST_SECONDS: &str = "order_queue_oldest_job_age_seconds";
/// Age of the oldest webhook event not fanned out yet; 0 when there is none (gauge,
/// seconds). It grows while a long-running writing transaction holds the outbox back.
pub const OUTBOX_OLDEST_SECONDS: &str = "order_webhook_outbox_oldest_event_age_seconds";
/// `/api` requests executing now (gauge), and the most that may
/// ([`ADMISSION_LIMIT`]); the rest wait their turn.
pub const REQUESTS_EXECUTING: &str = "order_http_requests_executing";
/// `/api` requests waiting their turn to execute (gauge).
pub const REQUESTS_WAITING: &str = "order_http_requests_waiting";
/// The admission queue's executing limit, as its gradient moved it (gauge).
pub const ADMISSION_LIMIT: &str = "order_http_admission_limit";
/// 1 while the admission queue judges the process overloaded and refuses newcomers that
/// would wait past the target, else 0 (gauge).
pub const ADMISSION_OVERLOADED: &str = "order_http_admission_overloaded";
/// 1, labelled with the running `version` (gauge).
pub const BUILD_INFO: &str = "order_build_info";

/// Histogram buckets of durations, in seconds: 1 ms to 2 minutes.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Histogram buckets of batch sizes (group commit, the worker's batched statements).
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process's Prometheus recorder, installed on first use (once per process; the core's
/// metrics are described then). If another recorder was installed first, this one still
/// renders but sees nothing, and a warning says so.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(order_core::observe::GROUP_COMMIT_BATCH.into()),
                    BATCH,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(order_core::observe::PAYMENT_BATCH.into()),
                    BATCH,
                )
            })
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            warn!("a metrics recorder was installed already; /metrics shows nothing");
        }
        describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Describes this module's metrics and the core's.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    order_core::observe::describe();
    describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status.");
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "How long HTTP requests took, by method and route."
    );
    describe_gauge!(PAYMENTS_IN_FLIGHT, "Payments a worker has in flight.");
    describe_gauge!(QUEUE_JOBS, "Payment jobs by state.");
    describe_gauge!(
        QUEUE_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest payment job waiting or pending."
    );
    describe_gauge!(
        OUTBOX_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest webhook event not fanned out yet."
    );
    describe_gauge!(REQUESTS_EXECUTING, "/api requests executing now.");
    describe_gauge!(
        REQUESTS_WAITING,
        "/api requests waiting their turn to execute."
    );
    describe_gauge!(
        ADMISSION_LIMIT,
        "How many /api requests may execute at once, as the admission queue set it."
    );
    describe_gauge!(
        ADMISSION_OVERLOADED,
        "1 while the admission queue refuses newcomers that would wait past its target."
    );
    describe_gauge!(BUILD_INFO, "1, labelled with the running version.");
    metrics::gauge!(PAYMENTS_IN_FLIGHT).set(0.0);
}

/// `GET /metrics`: every metric in the Prometheus text format.
pub async fn serve_metrics() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// Every `every` until `stopped`: samples the queue and the webhook outbox into their gauges
/// (when the process has them to watch) and keeps the recorder's histograms tidy.
pub async fn sample(
    queue: Option<Arc<dyn PaymentQueue>>,
    outbox: Option<Arc<dyn WebhookStore>>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        handle().run_upkeep();
        if let Some(outbox) = &outbox {
            match outbox.oldest_waiting_event().await {
                Ok(oldest) => {
                    let age = oldest.map_or(0.0, |at| {
                        (chrono::Utc::now() - at)
                            .num_microseconds()
                            .unwrap_or(0)
                            .max(0) as f64
                            / 1e6
                    });
                    metrics::gauge!(OUTBOX_OLDEST_SECONDS).set(age);
                }
                Err(e) => warn!(error = %e, "sampling the webhook outbox for metrics failed"),
            }
        }
        let Some(queue) = &queue else { continue };
        match queue.stats().await {
            Ok(stats) => {
                for (state, n) in [
                    ("waiting", stats.waiting),
                    ("pending", stats.pending),
                    ("deferred", stats.deferred),
                    ("dead", stats.dead),
                ] {
                    metrics::gauge!(QUEUE_JOBS, "state" => state).set(n as f64);
                }
                metrics::gauge!(QUEUE_OLDEST_SECONDS)
                    .set(stats.oldest_age.unwrap_or_default().as_secs_f64());
            }
            Err(e) => warn!(error = %e, "sampling the queue for metrics failed"),
        }
    }
}
