//! Liveness, readiness and the service's self-description.

use serde::{Deserialize, Serialize};

/// Liveness: `{"status":"healthy","service":"order-service"}` whenever the process answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// Always `healthy`.
    pub status: String,
    /// `order-service`.
    pub service: String,
}

impl HealthResponse {
    /// The answer of a live process.
    pub fn healthy() -> Self {
        Self {
            status: "healthy".into(),
            service: SERVICE_NAME.into(),
        }
    }
}

/// The service's name, as it reports it.
pub const SERVICE_NAME: &str = "order-service";

/// Whether the process can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every dependency answered.
    Ready,
    /// Some dependency did not.
    NotReady,
}

/// Readiness: each dependency's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyResponse {
    /// `ready` when every dependency answered.
    pub status: Readiness,
    /// The store: `ok` or what failed.
    pub database: String,
    /// The queue: `ok` or what failed.
    pub queue: String,
}

/// `GET /`: what this service is and where its docs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    /// `order-service`.
    pub service: String,
    /// The running version.
    pub version: String,
    /// Swagger UI.
    pub docs: String,
    /// ReDoc.
    pub redoc: String,
    /// The OpenAPI document.
    pub openapi: String,
    /// Liveness.
    pub health: String,
    /// Readiness.
    pub ready: String,
}
