//! What the handlers share: the services behind the API, built once at start.

use std::sync::Arc;

use order_core::OrderService;
use order_core::memory::{MemoryApiKeys, MemoryOrderRepo};
use order_core::ports::{ApiKeyStore, Clock, OrderRepo, PaymentQueue, WebhookStore};

use super::middleware::auth::{Auth, FailureLimit};
use super::middleware::concurrency::{AdmissionConfig, AdmissionQueue};
use super::middleware::rate_limit::{Budget, RateLimits};
use super::routes::health::ReadinessCache;
use crate::config::{AuthMode, MetricsPlacement, ServerLimits, WebhookSettings};

/// The order service as the handlers hold it: over the ports, whichever adapters they are.
pub type DynOrderService = OrderService<dyn OrderRepo, dyn PaymentQueue, dyn Clock>;

/// What the handlers share: one [`Arc`], so the per-request clones each layer and handler
/// takes cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The contents of [`AppState`]. Each middleware is handed only the field it needs.
#[derive(Clone)]
pub struct Services {
    /// Places and reads orders, and reports on the store and the queue.
    pub orders: DynOrderService,
    /// Places for `/api` requests in flight (see [`super::middleware::concurrency`]).
    pub concurrency: Arc<AdmissionQueue>,
    /// Per-client rate limits, if any are set.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// Event redeliveries per client, unless turned off.
    pub redeliveries: Option<Arc<Budget>>,
    /// Where API keys are kept (managed over the API whatever `AUTH_MODE` is).
    pub keys: Arc<dyn ApiKeyStore>,
    /// Key checks, with `AUTH_MODE=api_key`; `None` lets every request in.
    pub auth: Option<Arc<Auth>>,
    /// Webhook endpoints, deliveries and the outbox of events.
    pub webhooks: Arc<dyn WebhookStore>,
    /// What webhook endpoints may be and how secrets rotate.
    pub webhook_settings: WebhookSettings,
    /// Whether requests are counted, and `/metrics` served with the API.
    pub metrics: MetricsPlacement,
    /// How long an `/api` request's body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Whether a new order must name its `payment_method` (the gateway needs one).
    pub payment_method_required: bool,
    /// The secrets Stripe's events are signed with (`STRIPE_WEBHOOK_SECRET`); empty: the
    /// service takes no events from Stripe.
    pub stripe_event_secrets: Arc<Vec<String>>,
    /// The last readiness answer, shared for a second.
    pub readiness: Arc<ReadinessCache>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// The state of a process admitting `/api` requests within `concurrency`, with keys,
    /// webhooks and metrics as the builders below set them (until then: keys and webhook
    /// endpoints in memory of their own, no key needed, metrics served with the API).
    pub fn new(orders: DynOrderService, concurrency: AdmissionConfig) -> Self {
        Self(Arc::new(Services {
            orders,
            concurrency: Arc::new(AdmissionQueue::new(concurrency)),
            rate_limits: None,
            redeliveries: None,
            keys: Arc::new(MemoryApiKeys::new()),
            auth: None,
            webhooks: Arc::new(MemoryOrderRepo::new()),
            webhook_settings: WebhookSettings::embedded(),
            metrics: MetricsPlacement::WithApi,
            body_timeout: ServerLimits::default().body_timeout,
            payment_method_required: false,
            stripe_event_secrets: Arc::new(Vec::new()),
            readiness: Arc::new(ReadinessCache::default()),
        }))
    }

    fn map(self, change: impl FnOnce(&mut Services)) -> Self {
        let mut services = Arc::unwrap_or_clone(self.0);
        change(&mut services);
        Self(Arc::new(services))
    }

    /// The same state with `/metrics` served as `placement` says.
    #[must_use]
    pub fn with_metrics(self, placement: MetricsPlacement) -> Self {
        self.map(|s| s.metrics = placement)
    }

    /// The same state with webhooks kept in `store`: the store whose outbox the orders'
    /// store writes.
    #[must_use]
    pub fn with_webhooks(self, store: Arc<dyn WebhookStore>, settings: WebhookSettings) -> Self {
        self.map(|s| {
            s.webhooks = store;
            s.webhook_settings = settings;
        })
    }

    /// The same state with its keys in `store`, and, with [`AuthMode::ApiKey`], every
    /// `/api/v1` request checked against them; refused keys count against their address's
    /// `failures`, if given.
    #[must_use]
    pub fn with_keys(
        self,
        store: Arc<dyn ApiKeyStore>,
        mode: AuthMode,
        failures: Option<FailureLimit>,
    ) -> Self {
        self.map(|s| {
            s.auth = match mode {
                AuthMode::None => None,
                AuthMode::ApiKey => Some(Arc::new(Auth::new(
                    Arc::clone(&store),
                    s.orders.clock(),
                    failures,
                ))),
            };
            s.keys = store;
        })
    }

    /// The same state with `/api` bodies given `timeout` to arrive.
    #[must_use]
    pub fn with_body_timeout(self, timeout: std::time::Duration) -> Self {
        self.map(|s| s.body_timeout = timeout)
    }

    /// The same state refusing new orders without a `payment_method` when `required`.
    #[must_use]
    pub fn with_payment_method_required(self, required: bool) -> Self {
        self.map(|s| s.payment_method_required = required)
    }

    /// The same state taking Stripe's events signed with any of `secrets`.
    #[must_use]
    pub fn with_stripe_event_secrets(self, secrets: Vec<String>) -> Self {
        self.map(|s| s.stripe_event_secrets = Arc::new(secrets))
    }

    /// The same state with per-client rate limits.
    #[must_use]
    pub fn with_rate_limits(self, limits: RateLimits) -> Self {
        self.map(|s| s.rate_limits = Some(Arc::new(limits)))
    }

    /// The same state with event redeliveries counted against `budget`.
    #[must_use]
    pub fn with_redeliveries(self, budget: Budget) -> Self {
        self.map(|s| s.redeliveries = Some(Arc::new(budget)))
    }

    /// Whether requests need a key.
    pub fn auth_mode(&self) -> AuthMode {
        if self.auth.is_some() {
            AuthMode::ApiKey
        } else {
            AuthMode::None
        }
    }
}
