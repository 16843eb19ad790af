//! Wiring: builds the adapters the configuration asks for, the API and the worker, and
//! runs them until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use order_core::ports::{
    Clock, LimiterError, OrderRepo, PaymentQueue, QueueError, RepoError, SystemClock,
    WebhookSender, WebhookStore,
};
use order_core::service::DispatcherConfig;
use order_core::{OrderService, PaymentProcessor, ProcessorConfig, WorkerId};
use order_gateway_mock::SimulatedGateway;
use order_queue_redis::unique_consumer_name;
use order_store_postgres::Migrator;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{AuthMode, Config, MetricsPlacement, ServerLimits};
use crate::http::middleware::auth::FailureLimit;
use crate::http::middleware::concurrency::AdmissionConfig;
use crate::http::middleware::rate_limit::{Budget, RateLimits};
use crate::http::state::{AppState, DynOrderService};
use crate::worker::{self, Processor, WorkerSettings};

mod adapters;
mod housekeeping;
mod supervise;
use housekeeping::{purge_request_keys, sweep_payments};

pub use adapters::key_store;
use adapters::{Adapters, Gateway, adapters, gateway, rate_limiter};

/// What this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API and the payment worker.
    All,
    /// Only the HTTP API.
    Serve,
    /// Only the payment worker.
    Worker,
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be reached or migrated.
    #[error("cannot use the order store (DATABASE_URL)")]
    Store(#[source] RepoError),
    /// The queue could not be reached.
    #[error("cannot use the payment queue (REDIS_URL)")]
    Queue(#[source] QueueError),
    /// The API key file cannot be read.
    #[error("cannot read the API key file {}", path.display())]
    KeyFile {
        /// The file (`API_KEYS_FILE`).
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The rate limiter's settings are unusable.
    #[error("cannot use the rate limiter (REDIS_URL)")]
    Limiter(#[source] LimiterError),
    /// The listening socket failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The payment gateway's settings are unusable.
    #[error("cannot use the payment gateway (PAYMENT_GATEWAY): {0}")]
    Gateway(String),
    /// The webhook sender cannot be built.
    #[error("cannot set up webhook delivery: {0}")]
    Webhooks(String),
    /// A task of the process panicked (a bug); the rest was stopped and drained.
    #[error("the {task} panicked: {message}")]
    Panicked {
        /// Which task.
        task: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A role that needs shared storage was asked for without it.
    #[error(
        "running the API and the worker as separate processes needs DATABASE_URL and REDIS_URL"
    )]
    SeparateRolesNeedSharedStorage,
}

/// A built service, ready to run.
pub struct Application {
    listener: Option<TcpListener>,
    state: Option<AppState>,
    worker: Option<(Arc<Processor>, WorkerSettings)>,
    /// Delivers webhooks, in the worker roles, and forgets their history past its retention.
    dispatcher: Option<(Arc<crate::worker::webhooks::Dispatcher>, HistoryPurge)>,
    /// Where `/metrics` is served apart from the API, if anywhere.
    metrics_listener: Option<TcpListener>,
    /// The queue whose gauges the metrics sampler keeps.
    queue: Arc<dyn PaymentQueue>,
    /// Whether metrics are recorded at all.
    metrics_enabled: bool,
    /// Dispatcher loops run side by side.
    webhook_loops: usize,
    /// Where money moves: the simulated gateway, or the HTTP one `PAYMENT_GATEWAY_URL` names.
    gateway: Gateway,
    /// Applies PostgreSQL's migrations once it answers; until then the store is not ready.
    migrator: Option<Migrator>,
    /// How long idempotency keys are kept.
    key_retention: Duration,
    /// How often refunds and charges whose answer was lost are swept, and how long one
    /// waits before it is.
    payment_sweep: (Duration, Duration),
    /// What a client may hold of the server.
    server_limits: ServerLimits,
}

impl Application {
    /// Sets up the adapters the configuration names (in memory when it names none) and binds
    /// the listener for the API roles. PostgreSQL and Redis need not be up: the process
    /// starts, reports itself not ready, and uses them once they answer (the migrations are
    /// applied then).
    pub async fn build(config: &Config, role: Role) -> Result<Self, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let name = unique_consumer_name(match role {
            Role::All => "order-http",
            Role::Serve => "api",
            Role::Worker => "worker",
        });
        let embedded = config.database_url.is_none() || config.redis_url.is_none();
        if embedded && role != Role::All {
            return Err(StartError::SeparateRolesNeedSharedStorage);
        }
        let adapters = adapters(config, &name, &clock).await?;
        let gateway = gateway(config, &clock)?;

        let metrics_listener = metrics_listener(config, role).await?;
        let (listener, state) = if role == Role::Worker {
            (None, None)
        } else {
            let listener =
                TcpListener::bind(config.listen)
                    .await
                    .map_err(|source| StartError::Listen {
                        addr: config.listen,
                        source,
                    })?;
            let state = api_state(config, &adapters, &clock, &gateway.port())?;
            report_access(config);
            (Some(listener), Some(state))
        };
        let Adapters {
            repo,
            webhooks,
            queue,
            migrator,
            ..
        } = adapters;
        let sampled_queue = Arc::clone(&queue);
        let dispatcher = if role == Role::Serve {
            None
        } else {
            Some(dispatcher(
                config,
                webhooks,
                Arc::clone(&repo),
                Arc::clone(&clock),
            )?)
        };
        let worker = (role != Role::Serve).then(|| {
            let processor_config = ProcessorConfig {
                lease: config.lease,
                retry: config.retry,
                breaker: config.breaker,
                max_deliveries: config.max_deliveries,
                reconcile_grace: config.reconcile_grace,
                ..ProcessorConfig::new(
                    WorkerId::parse(name.clone()).expect("generated names are valid"),
                )
            };
            let processor: Arc<Processor> = Arc::new(PaymentProcessor::new(
                repo,
                queue,
                gateway.port(),
                clock,
                processor_config,
            ));
            let settings = WorkerSettings {
                concurrency: config.worker_concurrency,
                poll_wait: Duration::from_millis(500),
                reclaim_every: (config.lease / 2).max(Duration::from_millis(100)),
                reconcile_every: config.reconcile_every,
                shutdown_grace: config.shutdown_grace,
            };
            (processor, settings)
        });
        Ok(Self {
            listener,
            state,
            worker,
            dispatcher,
            metrics_listener,
            queue: sampled_queue,
            metrics_enabled: config.metrics_enabled,
            webhook_loops: config.webhooks.loops(),
            gateway,
            migrator,
            key_retention: config.idempotency_key_retention,
            payment_sweep: (config.reconcile_every, config.reconcile_grace),
            server_limits: config.server,
        })
    }

    /// The port the API listens on (`None` for a worker-only process).
    pub fn port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The in-process simulated gateway the process charges through (tests switch outages
    /// with it); `None` when `PAYMENT_GATEWAY_URL` names an HTTP gateway.
    pub fn simulated_gateway(&self) -> Option<&SimulatedGateway> {
        match &self.gateway {
            Gateway::Simulated(simulated) => Some(simulated),
            Gateway::Http(_) | Gateway::Stripe(_) => None,
        }
    }

    /// Serves and works until `shutdown` completes; then stops accepting, finishes in-flight
    /// requests and drains the worker.
    ///
    /// Every task it starts is joined before it returns. If serving fails, the worker is
    /// still drained before the error is returned; if any task panics (the worker or a side
    /// task, at once), the rest is stopped and drained, and the panic is returned as
    /// [`StartError::Panicked`] (so the process exits non-zero).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let signal = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                shutdown.await;
                info!("shutdown requested");
                stop.send_replace(true);
            })
        };
        let worker = self.worker.map(|(processor, settings)| {
            tokio::spawn(worker::run(processor, settings, stopped.clone()))
        });
        let side = supervise::supervise(
            spawn_side_tasks(
                SideTasks {
                    dispatcher: self.dispatcher,
                    webhook_loops: self.webhook_loops,
                    migrator: self.migrator,
                    sampled_queue: self.metrics_enabled.then_some(self.queue),
                    metrics_listener: self.metrics_listener,
                    orders: self.state.as_ref().map(|state| state.orders.clone()),
                    key_retention: self.key_retention,
                    payment_sweep: self.payment_sweep,
                },
                &stopped,
            ),
            Arc::clone(&stop),
        );
        let serving = serve(
            self.listener,
            self.state,
            self.server_limits,
            stopped.clone(),
        );
        tokio::pin!(serving);
        let (served, worker_result) = match worker {
            Some(mut worker) => tokio::select! {
                served = &mut serving => {
                    // A signal or a failure ended serving: either way, drain the worker.
                    stop.send_replace(true);
                    (served, worker.await)
                }
                joined = &mut worker => {
                    // The worker ended first: it panicked. Stop serving gracefully too.
                    stop.send_replace(true);
                    (serving.await, joined)
                }
            },
            None => (serving.await, Ok(Ok(()))),
        };
        stop.send_replace(true);
        signal.abort();
        let worker_result = match worker_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(panicked)) => Err(StartError::Panicked {
                task: "payment worker",
                message: panicked.0,
            }),
            Err(e) => Err(StartError::Panicked {
                task: "payment worker",
                message: worker::panic_message(e),
            }),
        };
        let side = side.await.map_err(|e| StartError::Panicked {
            task: "supervisor",
            message: worker::panic_message(e),
        });
        served.and(worker_result).and(side.and_then(|side| side))
    }
}

/// Serves the API (when this process has one) until `stopped` turns true; a worker-only
/// process just waits for that.
async fn serve(
    listener: Option<TcpListener>,
    state: Option<AppState>,
    limits: ServerLimits,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let (Some(listener), Some(state)) = (listener, state) else {
        let _ = stopped.wait_for(|s| *s).await;
        return Ok(());
    };
    info!(addr = %listener.local_addr().map_err(StartError::Serve)?, "listening");
    crate::http::server::serve(listener, crate::http::router(state), limits, async move {
        let _ = stopped.wait_for(|s| *s).await;
    })
    .await;
    Ok(())
}

/// The state of the API roles' handlers.
fn api_state(
    config: &Config,
    adapters: &Adapters,
    clock: &Arc<dyn Clock>,
    gateway: &Arc<dyn order_core::ports::PaymentGateway>,
) -> Result<AppState, StartError> {
    let limits = &config.rate_limits;
    let counted = config.auth_mode == AuthMode::ApiKey && limits.auth_failures.is_some();
    let limiter = if limits.any() || counted || limits.redeliveries.is_some() {
        Some(rate_limiter(config, clock).map_err(StartError::Limiter)?)
    } else {
        None
    };
    let failures = match (&limiter, limits.auth_failures) {
        (Some(limiter), Some(quota)) if counted => Some(FailureLimit::new(
            Arc::clone(limiter),
            quota,
            limits.forwarded_hops,
        )),
        _ => None,
    };
    let state = AppState::new(
        OrderService::new(
            Arc::clone(&adapters.repo),
            Arc::clone(&adapters.queue),
            Arc::clone(clock),
        )
        .with_capture(config.payment_capture)
        .with_gateway(Arc::clone(gateway)),
        AdmissionConfig::new(config.max_requests_in_flight, config.request_queue_target),
    )
    .with_keys(Arc::clone(&adapters.keys), config.auth_mode, failures)
    .with_webhooks(Arc::clone(&adapters.webhooks), config.webhooks)
    .with_body_timeout(config.server.body_timeout)
    .with_payment_method_required(gateway.requires_payment_method())
    .with_stripe_event_secrets(match &config.payment_gateway {
        crate::config::PaymentGateway::Stripe(stripe) => stripe.event_secrets.0.clone(),
        _ => Vec::new(),
    });
    let state = state.with_metrics(match (config.metrics_enabled, config.metrics_addr) {
        (false, _) => MetricsPlacement::Off,
        (true, Some(_)) => MetricsPlacement::Elsewhere,
        (true, None) => MetricsPlacement::WithApi,
    });
    let state = match (&limiter, limits.redeliveries) {
        (Some(limiter), Some(quota)) => state.with_redeliveries(Budget::new(
            Arc::clone(limiter),
            "redeliveries",
            quota,
            limits,
        )),
        _ => state,
    };
    Ok(match limiter {
        Some(limiter) if config.rate_limits.any() => {
            state.with_rate_limits(RateLimits::new(limiter, config.rate_limits))
        }
        _ => state,
    })
}

/// The webhook dispatcher of a worker role: posts with reqwest, renders orders as the API
/// does, holds a delivery for twice the time-out and five seconds more, keeps a loop's share
/// of `WEBHOOK_CONCURRENCY` under way, and of one endpoint `WEBHOOK_ENDPOINT_CONCURRENCY`.
fn dispatcher(
    config: &Config,
    webhooks: Arc<dyn WebhookStore>,
    repo: Arc<dyn OrderRepo>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<crate::worker::webhooks::Dispatcher>, HistoryPurge), StartError> {
    let purge = HistoryPurge {
        store: Arc::clone(&webhooks),
        clock: Arc::clone(&clock),
        retention: config.webhooks.retention,
    };
    let network = if config.webhooks.allow_private_networks {
        order_webhook_http::Network::Any
    } else {
        order_webhook_http::Network::PublicOnly
    };
    let sender = order_webhook_http::HttpWebhookSender::new(config.webhooks.timeout, network)
        .map_err(|e| StartError::Webhooks(e.to_string()))?;
    let render: order_core::service::webhooks::Render = Arc::new(|order| {
        serde_json::to_value(crate::http::convert::order(order)).unwrap_or_default()
    });
    let dispatcher = Arc::new(order_core::service::WebhookDispatcher::new(
        webhooks,
        repo,
        Arc::new(sender) as Arc<dyn WebhookSender>,
        clock,
        render,
        DispatcherConfig {
            lease: config.webhooks.timeout * 2 + Duration::from_secs(5),
            batch: config.webhooks.concurrency / config.webhooks.loops(),
            per_endpoint: config.webhooks.endpoint_concurrency,
            disable_after: config.webhooks.disable_after,
            ..DispatcherConfig::default()
        },
    ));
    Ok((dispatcher, purge))
}

/// Installs the metrics recorder (unless metrics are off) and binds where `/metrics` is
/// served apart from the API: on METRICS_ADDR when it is set; a worker-only process, which
/// has no API, on its HOST:PORT otherwise.
async fn metrics_listener(config: &Config, role: Role) -> Result<Option<TcpListener>, StartError> {
    if !config.metrics_enabled {
        return Ok(None);
    }
    crate::telemetry::metrics::handle();
    let addr = match (config.metrics_addr, role) {
        (Some(addr), _) => addr,
        (None, Role::Worker) => config.listen,
        (None, _) => return Ok(None),
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| StartError::Listen { addr, source })
}

/// The tasks a process runs beside serving and paying, each stopped by the same signal.
struct SideTasks {
    dispatcher: Option<(Arc<crate::worker::webhooks::Dispatcher>, HistoryPurge)>,
    webhook_loops: usize,
    migrator: Option<Migrator>,
    sampled_queue: Option<Arc<dyn PaymentQueue>>,
    metrics_listener: Option<TcpListener>,
    orders: Option<DynOrderService>,
    key_retention: Duration,
    payment_sweep: (Duration, Duration),
}

/// Starts the side tasks this process has: webhook delivery and its history purge, the
/// migrator, the metrics sampler and server, the idempotency key purge. Returns each with
/// its name, to be joined at the end.
fn spawn_side_tasks(
    tasks: SideTasks,
    stopped: &watch::Receiver<bool>,
) -> Vec<(&'static str, tokio::task::JoinHandle<()>)> {
    let mut side = Vec::new();
    // The outbox the dispatcher fans out from, for the sampler's gauge of its oldest event.
    let outbox = tasks
        .dispatcher
        .as_ref()
        .map(|(_, purge)| Arc::clone(&purge.store));
    // Tasks that read the order store start once it is ready (PostgreSQL migrated), so a
    // process started before PostgreSQL does not log their failures meanwhile.
    let (ready, store_ready) = watch::channel(tasks.migrator.is_none());
    if let Some(migrator) = tasks.migrator {
        let mut stopped = stopped.clone();
        side.push((
            "migrator",
            tokio::spawn(async move {
                let migrated = migrator
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                ready.send_replace(migrated);
            }),
        ));
    }
    let once_ready = |task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        once_store_ready(task, store_ready.clone(), stopped.clone())
    };
    if let Some((dispatcher, purge)) = tasks.dispatcher {
        let (loops, stopped) = (tasks.webhook_loops, stopped.clone());
        side.push((
            "webhook dispatcher",
            tokio::spawn(once_ready(Box::pin(async move {
                let every = (purge.retention / 10).min(Duration::from_secs(3600));
                tokio::join!(
                    crate::worker::webhooks::run(
                        dispatcher,
                        loops,
                        WEBHOOK_IDLE_POLL,
                        stopped.clone()
                    ),
                    crate::worker::webhooks::purge_history(
                        purge.store,
                        purge.clock,
                        purge.retention,
                        every,
                        stopped
                    ),
                );
            }))),
        ));
    }
    if let Some(queue) = tasks.sampled_queue {
        let sampling = crate::telemetry::metrics::sample(
            Some(queue),
            outbox,
            METRICS_SAMPLE_EVERY,
            stopped.clone(),
        );
        side.push((
            "metrics sampler",
            tokio::spawn(once_ready(Box::pin(sampling))),
        ));
    }
    if let Some(listener) = tasks.metrics_listener {
        side.push((
            "metrics server",
            tokio::spawn(serve_metrics(listener, stopped.clone())),
        ));
    }
    if let Some(orders) = tasks.orders {
        let sweeping = sweep_payments(orders.clone(), tasks.payment_sweep, stopped.clone());
        side.push((
            "payment sweep",
            tokio::spawn(once_ready(Box::pin(sweeping))),
        ));
        let purging = purge_request_keys(orders, tasks.key_retention, stopped.clone());
        side.push((
            "idempotency key purge",
            tokio::spawn(once_ready(Box::pin(purging))),
        ));
    }
    side
}

/// Runs `task` once the order store is ready; returns without running it if `stopped`
/// turns true first.
async fn once_store_ready(
    task: impl Future<Output = ()> + Send,
    mut ready: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    let is_ready = tokio::select! {
        biased;
        _ = stopped.wait_for(|s| *s) => false,
        r = ready.wait_for(|r| *r) => r.is_ok(),
    };
    if is_ready {
        task.await;
    }
}

/// What the worker roles need to forget webhook history past its retention.
struct HistoryPurge {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
}

/// How often the queue's gauges are sampled.
const METRICS_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Says at start who may call the API when it asks for no key: a warning naming what is
/// open, unless it is the embedded default on loopback, which only this machine reaches.
fn report_access(config: &Config) {
    if config.auth_mode == AuthMode::ApiKey {
        return;
    }
    let addr = config.listen;
    if config.database_url.is_none() && addr.ip().is_loopback() {
        info!(%addr, "AUTH_MODE=none on loopback: only this machine can call the API");
    } else {
        warn!(
            %addr,
            "AUTH_MODE=none: anyone who reaches {addr} can list, place and cancel every \
             customer's orders (refunds follow) and register webhook endpoints that receive \
             them; set AUTH_MODE=api_key"
        );
    }
}

/// Serves `/metrics` (and `/health`) on a listener of its own until `stopped` turns true.
async fn serve_metrics(listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /metrics");
    }
    let app = axum::Router::new()
        .route(
            order_api::paths::METRICS,
            axum::routing::get(crate::telemetry::metrics::serve_metrics),
        )
        .route(
            order_api::paths::HEALTH,
            axum::routing::get(|| async {
                axum::Json(order_api::health::HealthResponse::healthy())
            }),
        );
    crate::http::server::serve(listener, app, ServerLimits::default(), async move {
        let _ = stopped.wait_for(|s| *s).await;
    })
    .await;
}

/// How long the webhook dispatcher waits after a round that found nothing to do.
const WEBHOOK_IDLE_POLL: Duration = Duration::from_millis(50);

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
