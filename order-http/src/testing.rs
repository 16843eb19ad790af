//! Test support (feature `testing`): one way to start the service for a test, used by this
//! crate's tests, the CLI's and the end-to-end tests alike. A [`TestApp`] listens on port 0,
//! on the embedded default or on the local PostgreSQL (a schema of its own) and Redis (a
//! stream of its own), and is spoken to through `order-api`'s types.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use order_api::client::{ClientError, Placed};
use order_api::orders::{CreateItemRequest, CreateOrderRequest, OrderStatus};
use order_api::{ErrorBody, OrderClient, OrderResponse};
use order_gateway_mock::SimulatedGateway;
use order_store_postgres::testing::{TestSchema, database_url};
use serde::Serialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{Application, Config, Role};

pub use order_queue_redis::testing::{PrivateCluster, PrivateRedis, free_port, redis_url};

mod process;
mod receiver;
mod tls;
pub use process::Process;
pub use receiver::{Answer, Received, Receiver, check_sequences, sequences};
pub use tls::TlsServer;

/// Where a test's service keeps its orders and jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: everything in memory.
    Memory,
    /// The local PostgreSQL and Redis.
    PostgresRedis,
}

/// Shared storage of one test: a schema and a stream name, for several processes.
#[derive(Debug)]
pub struct Storage {
    /// The schema.
    pub schema: TestSchema,
    /// The stream.
    pub stream: String,
}

impl Storage {
    /// A new schema and stream name.
    pub async fn create() -> Self {
        Self {
            schema: TestSchema::create().await,
            stream: format!("test-{}", Uuid::now_v7().simple()),
        }
    }

    /// The environment that points a process at this storage.
    pub fn env(&self) -> Vec<(String, String)> {
        let url = format!(
            "{}?options=-c%20search_path%3D{}",
            database_url(),
            self.schema.name
        );
        vec![
            ("DATABASE_URL".into(), url),
            ("REDIS_URL".into(), redis_url()),
            ("REDIS_QUEUE_NAME".into(), self.stream.clone()),
        ]
    }

    /// Deletes the stream's keys and drops the schema.
    pub async fn drop(self) {
        if let Ok(client) = redis::Client::open(redis_url()) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                for keys in order_queue_redis::ShardKeys::all(&self.stream, 1) {
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(&keys.stream)
                        .arg(&keys.deferred)
                        .arg(&keys.dead)
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
        self.schema.drop().await;
    }
}

/// Settings of a fast, always-approving gateway, overridable by `env` and then `extra`.
pub fn test_config(env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        // Open unless a test asks for keys (PostgreSQL's default is `api_key`).
        ("AUTH_MODE", "none"),
        // Receivers of tests listen on loopback.
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true"),
        ("PAYMENT_MOCK_SUCCESS_RATE", "1"),
        ("PAYMENT_MOCK_LATENCY_MIN", "1"),
        ("PAYMENT_MOCK_LATENCY_MAX", "5"),
        ("PAYMENT_RETRY_DELAY", "0.05"),
        ("PAYMENT_RETRY_MAX_DELAY", "0.2"),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(env);
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid")
}

/// A running service of a test.
pub struct TestApp {
    /// Its base URL (empty for a worker-only process).
    pub base: String,
    /// A typed client of it.
    pub client: OrderClient,
    /// A plain HTTP client, for requests the contract does not describe.
    pub http: reqwest::Client,
    /// The in-process simulated gateway, when the process charges through it.
    simulated: Option<SimulatedGateway>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    storage: Option<Storage>,
}

impl TestApp {
    /// The in-process simulated gateway (tests switch outages with it).
    ///
    /// # Panics
    /// If the process charges through an HTTP gateway (`PAYMENT_GATEWAY_URL`) instead.
    pub fn gateway(&self) -> &SimulatedGateway {
        self.simulated
            .as_ref()
            .expect("this process charges through PAYMENT_GATEWAY_URL, not the simulated gateway")
    }

    /// A process of the default role on `backend`, with `extra` settings.
    pub async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let storage = match backend {
            Backend::Memory => None,
            Backend::PostgresRedis => Some(Storage::create().await),
        };
        let env = storage.as_ref().map(Storage::env).unwrap_or_default();
        let mut app = Self::spawn_role(Role::All, env, extra).await;
        app.storage = storage;
        app
    }

    /// A process of `role` on the given storage environment, once it is ready (its store
    /// migrated and its queue answering; a worker-only process at once).
    pub async fn spawn_role(
        role: Role,
        env: Vec<(String, String)>,
        extra: &[(&str, &str)],
    ) -> Self {
        let app = Self::start_role(role, env, extra).await;
        if !app.base.is_empty() {
            let start = Instant::now();
            while !matches!(app.client.ready().await, Ok(r) if r.status == order_api::health::Readiness::Ready)
            {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the service did not become ready in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        app
    }

    /// A process of `role` on the given storage environment, started but perhaps not ready
    /// yet (its dependencies may be down).
    pub async fn start_role(
        role: Role,
        env: Vec<(String, String)>,
        extra: &[(&str, &str)],
    ) -> Self {
        let config = test_config(env, extra);
        let app = Application::build(&config, role)
            .await
            .expect("the service starts");
        let port = app.port();
        let simulated = app.simulated_gateway().cloned();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("the service runs and stops cleanly");
        });
        let base = port
            .map(|p| format!("http://127.0.0.1:{p}"))
            .unwrap_or_default();
        let client = OrderClient::new(if base.is_empty() {
            "http://127.0.0.1:9"
        } else {
            &base
        })
        .expect("a valid base URL");
        Self {
            base,
            client,
            http: reqwest::Client::new(),
            simulated,
            stop: Some(stop),
            handle: Some(handle),
            storage: None,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/orders` with `body` as it is; the raw response.
    pub async fn post_order<B: Serialize + ?Sized>(&self, body: &B) -> reqwest::Response {
        self.http
            .post(self.url(order_api::paths::ORDERS))
            .json(body)
            .send()
            .await
            .expect("the service answers")
    }

    /// Places `order`, which must be accepted.
    pub async fn place<B: Serialize + ?Sized>(&self, order: &B) -> OrderResponse {
        self.client
            .create(order, None)
            .await
            .expect("the order is accepted")
            .order
    }

    /// Places `order` under `key`.
    pub async fn place_with_key<B: Serialize + ?Sized>(
        &self,
        order: &B,
        key: &str,
    ) -> Result<Placed, ClientError> {
        self.client.create(order, Some(key)).await
    }

    /// Sends `body` as an order that must be refused; its status and error body.
    pub async fn refused<B: Serialize + ?Sized>(&self, body: &B) -> (u16, ErrorBody) {
        refusal(self.client.create(body, None).await.map(|p| p.order))
    }

    /// `GET path`, which must fail; its status and error body.
    pub async fn error_at(&self, path: &str) -> (u16, ErrorBody) {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("an ErrorBody");
        (status, body)
    }

    /// The order `id`, which must exist.
    pub async fn order(&self, id: Uuid) -> OrderResponse {
        self.client.get(id).await.expect("the order exists")
    }

    /// Polls the order until it is `status`, for at most 30 s.
    pub async fn wait_status(&self, id: Uuid, status: OrderStatus) -> OrderResponse {
        let start = Instant::now();
        loop {
            let order = self.order(id).await;
            if order.status == status {
                return order;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{id} never became {status}: {order:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the order until its status is terminal or `deadline` passes.
    pub async fn wait_terminal(&self, id: Uuid, deadline: Duration) -> OrderResponse {
        let start = Instant::now();
        loop {
            let order = self.order(id).await;
            if order.status.is_terminal() {
                return order;
            }
            assert!(
                start.elapsed() < deadline,
                "order {id} not terminal within {deadline:?}: {order:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the service gracefully and cleans its storage up.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("the service task ends cleanly");
        }
        if let Some(storage) = self.storage.take() {
            storage.drop().await;
        }
    }
}

/// The status and error body of a call that must have failed with an API error.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, ErrorBody) {
    match result {
        Err(ClientError::Api { status, body, .. }) => (status, body),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

/// The original's example order: 2 x 12.99 + 1 x 4.99.
pub fn sample_order(customer: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        customer_id: customer.to_owned(),
        items: vec![
            CreateItemRequest {
                item_id: "item_001".into(),
                item_name: "Burger".into(),
                quantity: 2,
                price: "12.99".parse().expect("a decimal"),
            },
            CreateItemRequest {
                item_id: "item_002".into(),
                item_name: "Fries".into(),
                quantity: 1,
                price: "4.99".parse().expect("a decimal"),
            },
        ],
        payment_method: None,
    }
}

/// [`sample_order`] as raw JSON, to break on purpose.
pub fn sample_json(customer: &str) -> serde_json::Value {
    serde_json::to_value(sample_order(customer)).expect("an order serializes")
}
