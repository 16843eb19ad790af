//! Starts the service for a test: on port 0, on the embedded default or on the local
//! PostgreSQL (a schema of its own) and Redis (a stream of its own).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use order_gateway_mock::SimulatedGateway;
use order_http::{Application, Config, Role};
use order_store_postgres::testing::{TestSchema, database_url};
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    PostgresRedis,
}

/// Shared storage of one test: a schema and a stream name.
pub struct Storage {
    pub schema: TestSchema,
    pub stream: String,
}

impl Storage {
    pub async fn create() -> Self {
        Self {
            schema: TestSchema::create().await,
            stream: format!("test-{}", uuid::Uuid::now_v7().simple()),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let url = format!(
            "{}?options=-c%20search_path%3D{}",
            database_url(),
            self.schema.name
        );
        let redis =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        vec![
            ("DATABASE_URL".into(), url),
            ("REDIS_URL".into(), redis),
            ("REDIS_QUEUE_NAME".into(), self.stream.clone()),
        ]
    }

    pub async fn drop(self) {
        if let Ok(client) = redis::Client::open(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let _: Result<(), _> = redis::cmd("DEL")
                    .arg(&self.stream)
                    .arg(format!("{}:deferred", self.stream))
                    .arg(format!("{}:dead", self.stream))
                    .query_async(&mut conn)
                    .await;
            }
        }
        self.schema.drop().await;
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub gateway: SimulatedGateway,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    storage: Option<Storage>,
}

/// Settings of a fast, always-approving gateway, overridable by `extra`.
fn settings(env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
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

impl TestApp {
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

    /// A process of `role` on the given storage environment.
    pub async fn spawn_role(
        role: Role,
        env: Vec<(String, String)>,
        extra: &[(&str, &str)],
    ) -> Self {
        let config = settings(env, extra);
        let app = Application::build(&config, role)
            .await
            .expect("the service starts");
        let port = app.port();
        let gateway = app.gateway().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("the service runs");
        });
        Self {
            base: port
                .map(|p| format!("http://127.0.0.1:{p}"))
                .unwrap_or_default(),
            client: reqwest::Client::new(),
            gateway,
            stop: Some(stop),
            handle: Some(handle),
            storage: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_order(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/orders"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Polls the order until its status is terminal or `deadline` passes.
    pub async fn wait_terminal(&self, id: &str, deadline: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (_, order) = self.get_json(&format!("/api/v1/orders/{id}")).await;
            if ["confirmed", "payment_failed", "cancelled"]
                .contains(&order["status"].as_str().unwrap_or(""))
            {
                return order;
            }
            assert!(
                start.elapsed() < deadline,
                "order {id} not terminal within {deadline:?}: {order}"
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
            let _ = handle.await;
        }
        if let Some(storage) = self.storage.take() {
            storage.drop().await;
        }
    }
}

/// The original's example order: 2 x 12.99 + 1 x 4.99.
pub fn sample_order(customer: &str) -> Value {
    json!({
        "customer_id": customer,
        "items": [
            {"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": 12.99},
            {"item_id": "item_002", "item_name": "Fries", "quantity": 1, "price": 4.99}
        ]
    })
}

pub use order_queue_redis::testing::{PrivateRedis, free_port};
