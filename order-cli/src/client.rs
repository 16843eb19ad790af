//! The HTTP client of the order service, and what its failures mean for a script.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// What went wrong, each kind with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The service answered 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// The service refused the input (400, 413, 415, 422), or the input could not be read.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The service could not be reached or answered 503.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The service answered 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error: 1 other, 3 not found, 4 invalid input,
    /// 5 unavailable, 6 conflict (2 is clap's usage error).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Other(_) => 1,
            Self::NotFound(_) => 3,
            Self::Invalid(_) => 4,
            Self::Unavailable(_) => 5,
            Self::Conflict(_) => 6,
        })
    }
}

/// A client of the service at one base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// The service's error body, summarized: the message and any field errors.
fn describe(body: &Value) -> String {
    let message = body["message"]
        .as_str()
        .unwrap_or("request failed")
        .to_owned();
    let fields: Vec<String> = body["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["field"].as_str().unwrap_or("?"),
                        f["message"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        message
    } else {
        format!("{message} ({})", fields.join("; "))
    }
}

impl Client {
    /// A client of the service at `base` (such as `http://localhost:8000`).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn answer(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, CliError> {
        let response = sent.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                CliError::Unavailable(format!("cannot reach {}: {e}", self.base))
            } else {
                CliError::Other(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(body),
            404 => Err(CliError::NotFound(describe(&body))),
            400 | 413 | 415 | 422 => Err(CliError::Invalid(describe(&body))),
            409 => Err(CliError::Conflict(describe(&body))),
            502..=504 => Err(CliError::Unavailable(describe(&body))),
            _ => Err(CliError::Other(format!(
                "HTTP {status}: {}",
                describe(&body)
            ))),
        }
    }

    /// `POST /api/v1/orders`.
    pub async fn create(
        &self,
        order: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, CliError> {
        let mut request = self.http.post(self.url("/api/v1/orders")).json(order);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.answer(request.send().await).await
    }

    /// `GET /api/v1/orders/{id}`.
    pub async fn get(&self, id: &str) -> Result<Value, CliError> {
        self.answer(
            self.http
                .get(self.url(&format!("/api/v1/orders/{id}")))
                .send()
                .await,
        )
        .await
    }

    /// `GET /api/v1/orders` with the given query.
    pub async fn list(&self, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.answer(
            self.http
                .get(self.url("/api/v1/orders"))
                .query(query)
                .send()
                .await,
        )
        .await
    }

    /// `GET /health` and `GET /health/ready`, as one object.
    pub async fn health(&self) -> Result<Value, CliError> {
        let live = self
            .answer(self.http.get(self.url("/health")).send().await)
            .await?;
        let ready = match self
            .answer(self.http.get(self.url("/health/ready")).send().await)
            .await
        {
            Ok(ready) => ready,
            Err(CliError::Unavailable(e)) => {
                return Err(CliError::Unavailable(format!("alive but not ready: {e}")));
            }
            Err(e) => return Err(e),
        };
        Ok(serde_json::json!({"live": live, "ready": ready}))
    }
}
