//! The adapters a configuration names: PostgreSQL or memory for orders and keys, Redis or
//! memory for the queue and the rate limits, a simulated, HTTP or Stripe payment gateway.

use std::sync::Arc;
use std::time::Duration;

use order_core::memory::{MemoryApiKeys, MemoryOrderRepo, MemoryQueue, MemoryRateLimiter};
use order_core::ports::{
    ApiKeyStore, Clock, LimiterError, OrderRepo, PaymentGateway, PaymentQueue, RateLimiter,
    WebhookStore,
};
use order_gateway_http::HttpGateway;
use order_gateway_mock::SimulatedGateway;
use order_gateway_stripe::StripeGateway;
use order_queue_redis::{QueueConfig, RedisQueue, RedisRateLimiter};
use order_store_postgres::{Migrator, PgOrderRepo, PoolConfig};
use tracing::{info, warn};

use super::StartError;
use crate::config::{Config, PaymentGateway as Choice};

/// Where API keys are kept: PostgreSQL's `api_keys` table with `DATABASE_URL`, else memory,
/// loaded from `API_KEYS_FILE` if set.
pub fn key_store(
    config: &Config,
    repo: Option<&PgOrderRepo>,
) -> Result<Arc<dyn ApiKeyStore>, StartError> {
    Ok(match (repo, &config.api_keys_file) {
        (Some(repo), _) => Arc::new(repo.clone()),
        (None, Some(path)) => {
            Arc::new(
                MemoryApiKeys::from_file(path).map_err(|source| StartError::KeyFile {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        (None, None) => Arc::new(MemoryApiKeys::new()),
    })
}

/// The adapters a process runs on.
pub(super) struct Adapters {
    pub(super) repo: Arc<dyn OrderRepo>,
    pub(super) keys: Arc<dyn ApiKeyStore>,
    /// The same store as `repo`: its outbox is written with the orders.
    pub(super) webhooks: Arc<dyn WebhookStore>,
    pub(super) queue: Arc<dyn PaymentQueue>,
    /// Applies PostgreSQL's migrations once it answers.
    pub(super) migrator: Option<Migrator>,
}

/// The store, key store and queue the configuration names, in memory for those it does not.
pub(super) async fn adapters(
    config: &Config,
    consumer: &str,
    clock: &Arc<dyn Clock>,
) -> Result<Adapters, StartError> {
    // PostgreSQL may be down: the process starts anyway, not ready, and the migrator brings
    // the store up when it answers.
    let (repo, webhooks, keys, migrator): (Arc<dyn OrderRepo>, Arc<dyn WebhookStore>, _, _) =
        if let Some(url) = &config.database_url {
            let pool = PoolConfig {
                max_connections: config.database_pool_size,
                acquire_timeout: config.database_acquire_timeout,
                statement_timeout: config.database_statement_timeout,
            };
            let (repo, migrator) =
                PgOrderRepo::lazy(url.expose(), &pool).map_err(StartError::Store)?;
            let keys = config.webhook_secret_keys.clone();
            let (repo, migrator) = (
                repo.with_secret_keys(keys.clone()),
                migrator.with_secret_keys(keys),
            );
            let keys = key_store(config, Some(&repo))?;
            (Arc::new(repo.clone()), Arc::new(repo), keys, Some(migrator))
        } else {
            let repo = Arc::new(MemoryOrderRepo::new());
            (repo.clone(), repo, key_store(config, None)?, None)
        };
    let queue: Arc<dyn PaymentQueue> = match &config.redis_url {
        Some(url) => {
            let queue_config = QueueConfig {
                mode: config.redis_mode,
                stream: config.redis_queue_name.clone(),
                shards: config.redis_queue_shards,
                consumer: consumer.to_owned(),
                root_ca: config.redis_root_ca.as_ref().map(|ca| ca.0.clone()),
                ..QueueConfig::new(url.expose().to_owned())
            };
            let queue = RedisQueue::new(queue_config).map_err(StartError::Queue)?;
            // Redis may be down: orders are still accepted (they are durable in PostgreSQL)
            // and the reconciler queues them once it is back.
            if let Err(e) = queue.ensure_group().await {
                warn!(error = ?e, "Redis is not answering; accepting orders anyway, they will be queued when it is back");
            }
            Arc::new(queue)
        }
        None => Arc::new(MemoryQueue::new(Arc::clone(clock))),
    };
    match (&config.database_url, &config.redis_url) {
        (None, None) => warn!(
            "no DATABASE_URL or REDIS_URL: running the embedded default; orders and payment jobs are kept in memory and nothing is persisted"
        ),
        (None, Some(_)) => {
            warn!("no DATABASE_URL: orders are kept in memory and nothing is persisted");
        }
        (Some(_), None) => {
            warn!(
                "no REDIS_URL: payment jobs are queued in memory (the reconciler re-queues them after a restart)"
            );
        }
        (Some(_), Some(_)) => info!("using PostgreSQL and Redis"),
    }
    Ok(Adapters {
        repo,
        keys,
        webhooks,
        queue,
        migrator,
    })
}

/// Where rate limits count: Redis when the process has one (every process then enforces
/// one limit together), else memory.
pub(super) fn rate_limiter(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<dyn RateLimiter>, LimiterError> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisRateLimiter::with_root_ca(
            config.redis_mode,
            url.expose(),
            config.redis_root_ca.as_ref().map(|ca| ca.0.as_slice()),
            format!("{}:ratelimit", config.redis_queue_name),
            Duration::from_millis(250),
        )?),
        None => Arc::new(MemoryRateLimiter::new(Arc::clone(clock))),
    })
}

/// The gateway a process charges through.
#[derive(Debug, Clone)]
pub(super) enum Gateway {
    /// In process, simulated (the default).
    Simulated(SimulatedGateway),
    /// The HTTP gateway `PAYMENT_GATEWAY_URL` names.
    Http(HttpGateway),
    /// Stripe.
    Stripe(StripeGateway),
}

impl Gateway {
    /// The gateway as the port.
    pub(super) fn port(&self) -> Arc<dyn PaymentGateway> {
        match self {
            Self::Http(http) => Arc::new(http.clone()),
            Self::Simulated(simulated) => Arc::new(simulated.clone()),
            Self::Stripe(stripe) => Arc::new(stripe.clone()),
        }
    }
}

/// The payment gateway `PAYMENT_GATEWAY` names: the HTTP one sends each call's trace.
pub(super) fn gateway(config: &Config, clock: &Arc<dyn Clock>) -> Result<Gateway, StartError> {
    let timeout = config.payment_gateway_timeout;
    Ok(match &config.payment_gateway {
        Choice::Simulated => Gateway::Simulated(SimulatedGateway::with_clock(
            config.gateway.clone(),
            Arc::clone(clock),
        )),
        Choice::Http { url } => {
            info!(url = %crate::config::SecretUrl::from(url.clone()), "charging through the HTTP payment gateway");
            Gateway::Http(
                HttpGateway::new(url, timeout)
                    .map_err(|e| StartError::Gateway(e.to_string()))?
                    .with_trace_context(crate::telemetry::traces::current),
            )
        }
        Choice::Stripe(stripe) => {
            info!(
                url = %stripe.api_url,
                key = stripe.api_key.kind(),
                currency = %stripe.currency,
                "charging through Stripe"
            );
            Gateway::Stripe(
                StripeGateway::new(&stripe.api_url, stripe.api_key.expose(), timeout)
                    .and_then(|g| g.with_currency(&stripe.currency))
                    .map_err(|e| StartError::Gateway(e.to_string()))?,
            )
        }
    })
}
