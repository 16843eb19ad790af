//! Configuration from the environment (and a `.env` file), with the original service's
//! variable names where they exist. Every value is checked at start; an error names the
//! variable.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use order_core::policy::circuit_breaker::BreakerConfig;
use order_core::policy::rate_limit::Quota;
use order_core::policy::retry::RetryPolicy;
use order_gateway_mock::SimulationConfig;
use order_queue_redis::RedisMode;

mod payments;
mod read;
pub mod variables;

pub use payments::{EventSecrets, PaymentGateway, StripeKey, StripeSettings};

pub use read::RootCa;
use read::{
    api_keys_file, auth_failures, breaker, flag, flag_or, gateway, parse, positive, quota,
    redeliveries, redis, redis_ca, retry_policy, seconds, secret_keys, socket_addr, url,
};

/// A variable that is missing its mark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

/// Whether requests need a key (`AUTH_MODE`): `api_key` with `DATABASE_URL`, `none` on
/// the embedded default (which listens on loopback unless `HOST` says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Anyone who reaches the port may call the API: the embedded default.
    #[default]
    None,
    /// Every `/api/v1` request needs an API key with the route's scope.
    ApiKey,
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "api_key" => Ok(Self::ApiKey),
            other => Err(format!("expected none or api_key, got {other:?}")),
        }
    }
}

/// Per-client rate limits on `/api` requests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitSettings {
    /// The quota of writes per client (`RATE_LIMIT_WRITES_PER_SECOND`, `..._BURST`).
    pub writes: Option<Quota>,
    /// The quota of reads per client (`RATE_LIMIT_READS_PER_SECOND`, `..._BURST`).
    pub reads: Option<Quota>,
    /// Refuse requests (503) when the limiter cannot be reached (`RATE_LIMIT_FAIL_CLOSED`).
    pub fail_closed: bool,
    /// How many proxies in front append to `X-Forwarded-For` (`TRUST_FORWARDED_FOR`:
    /// `false` or `0`, none, the header is ignored; `true` is `1`): the client is the
    /// address that many entries from the right, which no client can choose.
    pub forwarded_hops: usize,
    /// The quota of refused API keys per client address (`RATE_LIMIT_AUTH_FAILURES_PER_SECOND`,
    /// 1, `RATE_LIMIT_AUTH_FAILURES_BURST`, 100; `PER_SECOND=0` turns it off): past it, the
    /// address gets `429` before its keys are looked up.
    pub auth_failures: Option<Quota>,
    /// The quota of event redeliveries per client (`RATE_LIMIT_REDELIVERIES_PER_SECOND`, 1,
    /// `RATE_LIMIT_REDELIVERIES_BURST`, 60; `PER_SECOND=0` turns it off): each one posts
    /// an event again to every endpoint subscribed to it, so it is counted whatever the
    /// other limits are.
    pub redeliveries: Option<Quota>,
}

impl RateLimitSettings {
    /// Whether any limit is set.
    pub const fn any(&self) -> bool {
        self.writes.is_some() || self.reads.is_some()
    }
}

/// Where a process's metrics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsPlacement {
    /// Recorded, and `/metrics` served on the API's port.
    WithApi,
    /// Recorded, and served on a port of its own (`METRICS_ADDR`, or a worker's).
    Elsewhere,
    /// Not recorded at all (`METRICS_ENABLED=false`).
    Off,
}

/// What one process lets its clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a connection may go without a whole request head: a client's time to send
    /// its headers, and a kept-alive connection's time idle between requests
    /// (`HTTP_HEADER_TIMEOUT_SECONDS`, 10).
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body (`HTTP_BODY_TIMEOUT_SECONDS`,
    /// 10); past it, `408`.
    pub body_timeout: Duration,
    /// Connections served at once (`MAX_CONNECTIONS`, 16384).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 16_384,
        }
    }
}

/// A URL that may carry a password (`DATABASE_URL`, `REDIS_URL`): its `Debug` and
/// `Display` show it with the password replaced by `***`, so a logged configuration leaks
/// nothing; [`SecretUrl::expose`] gives the URL itself, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password (`user:password@`) replaced by `***`; each URL of a
    /// comma-separated list on its own.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(|url| {
                let Some((scheme, rest)) = url.split_once("://") else {
                    return url.to_owned();
                };
                let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let (authority, path) = rest.split_at(authority_end);
                match authority.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        let user = userinfo.split(':').next().unwrap_or_default();
                        if userinfo.contains(':') {
                            format!("{scheme}://{user}:***@{host}{path}")
                        } else {
                            format!("{scheme}://{userinfo}@{host}{path}")
                        }
                    }
                    None => url.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the binary reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// What a client may hold of the server: header and body deadlines, connections.
    pub server: ServerLimits,
    /// Where the API listens (`HOST`, `PORT`; 127.0.0.1:8000 on the embedded default,
    /// 0.0.0.0:8000 with `DATABASE_URL`).
    pub listen: SocketAddr,
    /// PostgreSQL URL (`DATABASE_URL`); `None` keeps orders in memory.
    pub database_url: Option<SecretUrl>,
    /// The keys webhook signing secrets are sealed with in PostgreSQL: the current one
    /// (`WEBHOOK_SECRET_KEY`, 64 hex digits) and those it replaced, which still open what
    /// they sealed until it is sealed again at start (`WEBHOOK_SECRET_KEY_PREVIOUS`,
    /// comma-separated); `None`: stored as they are.
    pub webhook_secret_keys: Option<order_store_postgres::SecretKeys>,
    /// Connections in the PostgreSQL pool (`DATABASE_POOL_SIZE`, 20).
    pub database_pool_size: u32,
    /// How long a request waits for a PostgreSQL connection before it answers 503
    /// (`DATABASE_ACQUIRE_TIMEOUT`, seconds, 1).
    pub database_acquire_timeout: Duration,
    /// How long one PostgreSQL statement may run before the server cancels it; zero: no
    /// limit (`DATABASE_STATEMENT_TIMEOUT_SECONDS`, 10).
    pub database_statement_timeout: Duration,
    /// `/api` requests one process holds at once, executing and waiting their turn
    /// together; more are refused with 503 at once (`MAX_REQUESTS_IN_FLIGHT`, 2048).
    pub max_requests_in_flight: usize,
    /// The wait in the admission queue beyond which a queue holding three quarters of
    /// `MAX_REQUESTS_IN_FLIGHT` is overload: then newcomers that would wait longer are
    /// refused (`REQUEST_QUEUE_TARGET`, seconds, 0.005).
    pub request_queue_target: Duration,
    /// Redis URL (`REDIS_URL`); `None` queues payments in memory.
    pub redis_url: Option<SecretUrl>,
    /// One Redis server or a Redis Cluster (`REDIS_MODE`, `standalone`|`cluster`).
    pub redis_mode: RedisMode,
    /// The certificate (PEM) of the authority that signs the Redis servers' certificates,
    /// for `rediss://` with a private CA (`REDIS_CA_FILE`); `None`: the public roots.
    pub redis_root_ca: Option<RootCa>,
    /// Base name of the queue's keys (`REDIS_QUEUE_NAME`, `payment_queue`).
    pub redis_queue_name: String,
    /// Streams the payment jobs are spread over (`REDIS_QUEUE_SHARDS`, 1).
    pub redis_queue_shards: u16,
    /// Retry policy (`PAYMENT_RETRY_ATTEMPTS` 3, `PAYMENT_RETRY_DELAY` 1.0 s,
    /// `PAYMENT_RETRY_MAX_DELAY` 60 s).
    pub retry: RetryPolicy,
    /// Breaker (`CIRCUIT_BREAKER_FAILURE_THRESHOLD` 5, `CIRCUIT_BREAKER_RECOVERY_TIMEOUT` 60 s,
    /// `CIRCUIT_BREAKER_HALF_OPEN_PROBES` 1).
    pub breaker: BreakerConfig,
    /// The simulated gateway (`PAYMENT_MOCK_SUCCESS_RATE` 0.95, `PAYMENT_MOCK_LATENCY_MIN`/`_MAX`
    /// 50/200 ms, `PAYMENT_MOCK_DECLINE_SHARE` 0.5, `PAYMENT_MOCK_TIMEOUT_SHARE` 0.1,
    /// `PAYMENT_MOCK_SEED`).
    pub gateway: SimulationConfig,
    /// Where money moves (`PAYMENT_GATEWAY`: `simulated`, `http` at `PAYMENT_GATEWAY_URL`,
    /// or `stripe`; unset, `http` when `PAYMENT_GATEWAY_URL` is set, else `simulated`).
    pub payment_gateway: PaymentGateway,
    /// When orders' payments are captured (`PAYMENT_CAPTURE`: `automatic` when the worker
    /// charges, or `manual`: the worker authorizes and `POST .../capture` takes it).
    pub payment_capture: order_core::payment::CaptureMethod,
    /// How long a call to the gateway may take before it counts as timed out
    /// (`PAYMENT_GATEWAY_TIMEOUT`, 2 s; 10 s for Stripe).
    pub payment_gateway_timeout: Duration,
    /// Payments one worker process keeps in flight (`WORKER_CONCURRENCY`, 1024).
    pub worker_concurrency: usize,
    /// How long a worker's claim on an order lasts (`PAYMENT_LEASE_SECONDS`, 30).
    pub lease: Duration,
    /// Deliveries before a job is dead-lettered (`PAYMENT_MAX_DELIVERIES`, 10).
    pub max_deliveries: u32,
    /// How long an order may wait unqueued before the reconciler queues it again
    /// (`PAYMENT_RECONCILE_GRACE_SECONDS`, 30).
    pub reconcile_grace: Duration,
    /// How often each worker runs the reconciler (`PAYMENT_RECONCILE_INTERVAL_SECONDS`, 10).
    pub reconcile_every: Duration,
    /// How long shutdown waits for in-flight payments (`SHUTDOWN_GRACE_SECONDS`, 30).
    pub shutdown_grace: Duration,
    /// Whether `/api/v1` requests need an API key (`AUTH_MODE`, `none` or `api_key`;
    /// `api_key` with `DATABASE_URL`, `none` on the embedded default).
    pub auth_mode: AuthMode,
    /// Where the embedded default keeps API keys (`API_KEYS_FILE`, JSON lines of hashed
    /// keys); only without `DATABASE_URL`, which keeps them in PostgreSQL.
    pub api_keys_file: Option<std::path::PathBuf>,
    /// Per-client rate limits (`RATE_LIMIT_WRITES_PER_SECOND`, `RATE_LIMIT_WRITES_BURST`,
    /// `RATE_LIMIT_READS_PER_SECOND`, `RATE_LIMIT_READS_BURST`: unset, no limit;
    /// `RATE_LIMIT_FAIL_CLOSED`, `TRUST_FORWARDED_FOR`: false).
    pub rate_limits: RateLimitSettings,
    /// How long an `Idempotency-Key` is remembered (`IDEMPOTENCY_KEY_RETENTION_SECONDS`,
    /// 86400); forgotten keys are purged by the API roles.
    pub idempotency_key_retention: Duration,
    /// How webhooks are delivered.
    pub webhooks: WebhookSettings,
    /// Where `/metrics` is served on a port of its own (`METRICS_ADDR`, such as
    /// `0.0.0.0:9464`); unset, on the API's port, and a worker-only process on HOST:PORT.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether metrics are recorded and served at all (`METRICS_ENABLED`, true).
    pub metrics_enabled: bool,
    /// Log filter (`LOG_LEVEL`, `info`).
    pub log_level: String,
    /// Log format (`LOG_FORMAT`, `text` or `json`).
    pub log_format: LogFormat,
}

/// What an endpoint's URL may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlRules {
    /// Plain `http` as well as `https` (`WEBHOOKS_ALLOW_HTTP`).
    pub allow_http: bool,
    /// A host that is not a public address (`WEBHOOKS_ALLOW_PRIVATE_NETWORKS`).
    pub allow_private_networks: bool,
}

/// How webhooks are delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookSettings {
    /// Whether endpoint URLs may be plain `http` (`WEBHOOKS_ALLOW_HTTP`; true on the embedded
    /// default, false with `DATABASE_URL`).
    pub allow_http: bool,
    /// Whether endpoints may point into private networks: loopback, RFC 1918, link-local
    /// and every other address that is not public (`WEBHOOKS_ALLOW_PRIVATE_NETWORKS`; true
    /// only on the embedded default listening on loopback, whose callers are on the
    /// machine already). For tests and private deployments.
    pub allow_private_networks: bool,
    /// How long a receiver has to answer (`WEBHOOK_TIMEOUT_SECONDS`, 10).
    pub timeout: Duration,
    /// How long a rotated secret keeps signing beside the new one
    /// (`WEBHOOK_SECRET_GRACE_SECONDS`, 86400).
    pub secret_grace: Duration,
    /// An endpoint whose every delivery failed for this long is disabled
    /// (`WEBHOOK_DISABLE_AFTER_SECONDS`, 432000: five days).
    pub disable_after: Duration,
    /// How long settled events, their deliveries and attempts are kept
    /// (`WEBHOOK_RETENTION_SECONDS`, 604800: a week); purged by the worker roles.
    pub retention: Duration,
    /// Deliveries each process posts at once (`WEBHOOK_CONCURRENCY`, 128), in loops of
    /// at most [`WebhookSettings::ROUND`] posts each, run side by side.
    pub concurrency: usize,
    /// Deliveries of one endpoint posted at once by every process together
    /// (`WEBHOOK_ENDPOINT_CONCURRENCY`, 16); one while the endpoint is failing. A receiver
    /// that hangs holds that many posts, never a loop.
    pub endpoint_concurrency: usize,
    /// The most endpoints one customer has, and the most that serve every customer
    /// (`WEBHOOK_MAX_ENDPOINTS`, 20): each one multiplies every event's deliveries.
    pub max_endpoints: usize,
}

impl WebhookSettings {
    /// The most deliveries one loop has under way.
    pub const ROUND: usize = 64;

    /// The settings of the embedded default with no variable set.
    pub fn embedded() -> Self {
        webhook_settings(&|_| None, true, true).expect("the defaults are valid")
    }

    /// What an endpoint's URL may be.
    pub fn url_rules(&self) -> UrlRules {
        UrlRules {
            allow_http: self.allow_http,
            allow_private_networks: self.allow_private_networks,
        }
    }

    /// How many dispatcher loops run side by side: one per [`Self::ROUND`] deliveries of
    /// the concurrency (at least one), so one loop's posts overlap another's statements.
    pub fn loops(&self) -> usize {
        self.concurrency.div_ceil(Self::ROUND).max(1)
    }
}

/// How webhooks are delivered; `embedded` (no `DATABASE_URL`) allows `http` by default,
/// and private networks too when it listens on `loopback` only.
fn webhook_settings(
    l: &impl Fn(&str) -> Option<String>,
    embedded: bool,
    loopback: bool,
) -> Result<WebhookSettings, ConfigError> {
    Ok(WebhookSettings {
        allow_http: flag_or(l, "WEBHOOKS_ALLOW_HTTP", embedded)?,
        allow_private_networks: flag_or(
            l,
            "WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
            embedded && loopback,
        )?,
        timeout: seconds(l, "WEBHOOK_TIMEOUT_SECONDS", 10.0)?.max(Duration::from_millis(10)),
        secret_grace: seconds(l, "WEBHOOK_SECRET_GRACE_SECONDS", 86_400.0)?,
        disable_after: seconds(l, "WEBHOOK_DISABLE_AFTER_SECONDS", 5.0 * 86_400.0)?,
        retention: seconds(l, "WEBHOOK_RETENTION_SECONDS", 7.0 * 86_400.0)?
            .max(Duration::from_secs(1)),
        concurrency: positive(
            "WEBHOOK_CONCURRENCY",
            parse(l, "WEBHOOK_CONCURRENCY", 128, "a whole number")?,
        )?,
        endpoint_concurrency: positive(
            "WEBHOOK_ENDPOINT_CONCURRENCY",
            parse(l, "WEBHOOK_ENDPOINT_CONCURRENCY", 16, "a whole number")?,
        )?,
        max_endpoints: positive(
            "WEBHOOK_MAX_ENDPOINTS",
            parse(l, "WEBHOOK_MAX_ENDPOINTS", 20, "a whole number")?,
        )?,
    })
}

/// `HTTP_HEADER_TIMEOUT_SECONDS`, `HTTP_BODY_TIMEOUT_SECONDS`, `MAX_CONNECTIONS`.
fn server_limits(l: &impl Fn(&str) -> Option<String>) -> Result<ServerLimits, ConfigError> {
    let defaults = ServerLimits::default();
    let at_least = Duration::from_millis(100);
    Ok(ServerLimits {
        header_timeout: seconds(
            l,
            "HTTP_HEADER_TIMEOUT_SECONDS",
            defaults.header_timeout.as_secs_f64(),
        )?
        .max(at_least),
        body_timeout: seconds(
            l,
            "HTTP_BODY_TIMEOUT_SECONDS",
            defaults.body_timeout.as_secs_f64(),
        )?
        .max(at_least),
        max_connections: positive(
            "MAX_CONNECTIONS",
            parse(
                l,
                "MAX_CONNECTIONS",
                defaults.max_connections,
                "a whole number",
            )?,
        )?,
    })
}

/// `TRUST_FORWARDED_FOR`: `false`/`true` or a number of proxies.
fn forwarded_hops(l: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    match l("TRUST_FORWARDED_FOR")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "false" | "no") => Ok(0),
        Some("true" | "yes") => Ok(1),
        Some(n) => n.parse().map_err(|_| {
            ConfigError::new(
                "TRUST_FORWARDED_FOR",
                format!("expected false, true or the number of proxies in front, got {n:?}"),
            )
        }),
    }
}

/// `REQUEST_QUEUE_TARGET` (it replaced `REQUEST_LATENCY_TARGET`, no longer read).
fn queue_target(l: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    Ok(seconds(l, "REQUEST_QUEUE_TARGET", 0.005)?.max(Duration::from_micros(100)))
}

/// Who may call, and on which address (`HOST`, `AUTH_MODE`). The embedded default is for
/// one machine: it answers on loopback, open; a deployment on PostgreSQL answers on every
/// interface and asks for keys.
fn access(
    l: &impl Fn(&str) -> Option<String>,
    embedded: bool,
) -> Result<(std::net::IpAddr, AuthMode), ConfigError> {
    let (default_host, default_mode) = if embedded {
        (std::net::Ipv4Addr::LOCALHOST, AuthMode::None)
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, AuthMode::ApiKey)
    };
    let host = parse(l, "HOST", default_host.into(), "an IP address")?;
    let mode = match l("AUTH_MODE").filter(|v| !v.trim().is_empty()) {
        None => default_mode,
        Some(v) => v.parse().map_err(|e| ConfigError::new("AUTH_MODE", e))?,
    };
    Ok((host, mode))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let l = &lookup;
        let database_url = url(l, "DATABASE_URL", &["postgres", "postgresql"])?;
        let embedded = database_url.is_none();
        let webhook_secret_keys = secret_keys(l, embedded)?;
        let (host, auth_mode) = access(l, embedded)?;
        let port: u16 = parse(l, "PORT", 8000, "a port number")?;

        let retry = retry_policy(l)?;
        let breaker = breaker(l)?;
        let gateway = gateway(l)?;
        let (payment_gateway, payment_gateway_timeout) = payments::payment_gateway(l)?;

        let log_format = match l("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("" | "text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected text or json, got {other:?}"),
                ));
            }
        };
        let log_level = l("LOG_LEVEL")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(log_level.to_lowercase())
            .map_err(|e| ConfigError::new("LOG_LEVEL", e.to_string()))?;

        let (redis_mode, redis_url) = redis(l)?;
        let redis_root_ca = redis_ca(l, redis_url.as_deref())?;
        let queue_name = l("REDIS_QUEUE_NAME")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "payment_queue".into());
        Ok(Self {
            listen: SocketAddr::new(host, port),
            server: server_limits(l)?,
            database_pool_size: positive(
                "DATABASE_POOL_SIZE",
                parse(l, "DATABASE_POOL_SIZE", 20, "a whole number")?,
            )?,
            database_acquire_timeout: seconds(l, "DATABASE_ACQUIRE_TIMEOUT", 1.0)?
                .max(Duration::from_millis(10)),
            database_statement_timeout: seconds(l, "DATABASE_STATEMENT_TIMEOUT_SECONDS", 10.0)?,
            max_requests_in_flight: positive(
                "MAX_REQUESTS_IN_FLIGHT",
                parse(l, "MAX_REQUESTS_IN_FLIGHT", 2048, "a whole number")?,
            )?,
            request_queue_target: queue_target(l)?,
            redis_url: redis_url.map(SecretUrl::from),
            redis_mode,
            redis_root_ca,
            redis_queue_name: queue_name,
            redis_queue_shards: positive(
                "REDIS_QUEUE_SHARDS",
                parse(l, "REDIS_QUEUE_SHARDS", 1, "a whole number up to 65535")?,
            )?,
            retry,
            breaker,
            gateway,
            payment_gateway,
            payment_capture: payments::capture_method(l)?,
            payment_gateway_timeout,
            worker_concurrency: positive(
                "WORKER_CONCURRENCY",
                parse(l, "WORKER_CONCURRENCY", 1024, "a whole number")?,
            )?,
            lease: seconds(l, "PAYMENT_LEASE_SECONDS", 30.0)?,
            max_deliveries: positive(
                "PAYMENT_MAX_DELIVERIES",
                parse(l, "PAYMENT_MAX_DELIVERIES", 10, "a whole number")?,
            )?,
            reconcile_grace: seconds(l, "PAYMENT_RECONCILE_GRACE_SECONDS", 30.0)?,
            reconcile_every: seconds(l, "PAYMENT_RECONCILE_INTERVAL_SECONDS", 10.0)?
                .max(Duration::from_millis(10)),
            shutdown_grace: seconds(l, "SHUTDOWN_GRACE_SECONDS", 30.0)?,
            auth_mode,
            api_keys_file: api_keys_file(l)?,
            rate_limits: RateLimitSettings {
                writes: quota(l, "RATE_LIMIT_WRITES")?,
                reads: quota(l, "RATE_LIMIT_READS")?,
                fail_closed: flag(l, "RATE_LIMIT_FAIL_CLOSED")?,
                auth_failures: auth_failures(l)?,
                redeliveries: redeliveries(l)?,
                forwarded_hops: forwarded_hops(l)?,
            },
            idempotency_key_retention: seconds(
                l,
                "IDEMPOTENCY_KEY_RETENTION_SECONDS",
                order_core::service::REQUEST_KEY_RETENTION.as_secs_f64(),
            )?
            .max(Duration::from_secs(1)),
            webhooks: webhook_settings(l, embedded, host.is_loopback())?,
            database_url: database_url.map(SecretUrl::from),
            webhook_secret_keys,
            metrics_addr: socket_addr(l, "METRICS_ADDR")?,
            metrics_enabled: flag_or(l, "METRICS_ENABLED", true)?,
            log_level: log_level.to_lowercase(),
            log_format,
        })
    }
}

#[cfg(test)]
mod tests;
