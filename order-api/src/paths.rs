//! Route paths, as the server mounts them and clients call them.

use uuid::Uuid;

/// `POST` places an order, `GET` lists orders.
pub const ORDERS: &str = "/api/v1/orders";
/// `GET` one order; `{id}` is its UUID.
pub const ORDER: &str = "/api/v1/orders/{id}";
/// `POST` cancels one order; `{id}` is its UUID.
pub const ORDER_CANCEL: &str = "/api/v1/orders/{id}/cancel";
/// `POST` creates an API key, `GET` lists them.
pub const API_KEYS: &str = "/api/v1/api-keys";
/// `DELETE` revokes one API key; `{key_id}` is its id.
pub const API_KEY: &str = "/api/v1/api-keys/{key_id}";
/// Liveness.
pub const HEALTH: &str = "/health";
/// Readiness: the store and the queue answer.
pub const READY: &str = "/health/ready";
/// What the service is and where its docs are.
pub const ROOT: &str = "/";
/// The OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";
/// Swagger UI.
pub const DOCS: &str = "/docs";
/// ReDoc.
pub const REDOC: &str = "/redoc";

/// The path of the order `id`: [`ORDER`] filled in.
pub fn order(id: Uuid) -> String {
    format!("{ORDERS}/{id}")
}

/// The path that cancels the order `id`: [`ORDER_CANCEL`] filled in.
pub fn order_cancel(id: Uuid) -> String {
    format!("{ORDERS}/{id}/cancel")
}

/// The path of the API key `id`: [`API_KEY`] filled in.
pub fn api_key(id: &str) -> String {
    format!("{API_KEYS}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_path_fills_in_the_template() {
        let id = Uuid::nil();
        assert_eq!(order(id), ORDER.replace("{id}", &id.to_string()));
        assert_eq!(
            order_cancel(id),
            ORDER_CANCEL.replace("{id}", &id.to_string())
        );
    }
}
