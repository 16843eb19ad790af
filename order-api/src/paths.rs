//! Route paths, as the server mounts them and clients call them.

use uuid::Uuid;

/// `POST` places an order, `GET` lists orders.
pub const ORDERS: &str = "/api/v1/orders";
/// `GET` one order; `{id}` is its UUID.
pub const ORDER: &str = "/api/v1/orders/{id}";
/// `POST` cancels one order; `{id}` is its UUID.
pub const ORDER_CANCEL: &str = "/api/v1/orders/{id}/cancel";
/// `POST` captures one order's authorized payment; `{id}` is its UUID.
pub const ORDER_CAPTURE: &str = "/api/v1/orders/{id}/capture";
/// `POST` gives back part or all of one order's captured payment; `{id}` is its UUID.
pub const ORDER_REFUNDS: &str = "/api/v1/orders/{id}/refunds";
/// `POST`: Stripe's events about payments (authenticated by `Stripe-Signature`, not by an
/// API key).
pub const GATEWAY_EVENTS_STRIPE: &str = "/api/v1/gateway-events/stripe";
/// `POST` creates an API key, `GET` lists them.
pub const API_KEYS: &str = "/api/v1/api-keys";
/// `DELETE` revokes one API key; `{key_id}` is its id.
pub const API_KEY: &str = "/api/v1/api-keys/{key_id}";
/// `POST` creates a webhook endpoint, `GET` lists them.
pub const WEBHOOK_ENDPOINTS: &str = "/api/v1/webhook-endpoints";
/// `GET`, `PATCH` or `DELETE` one webhook endpoint; `{endpoint_id}` is its id.
pub const WEBHOOK_ENDPOINT: &str = "/api/v1/webhook-endpoints/{endpoint_id}";
/// `POST` replaces an endpoint's signing secret.
pub const WEBHOOK_ENDPOINT_ROTATE: &str = "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret";
/// `GET` an endpoint's delivery attempts, newest first.
pub const WEBHOOK_ENDPOINT_DELIVERIES: &str = "/api/v1/webhook-endpoints/{endpoint_id}/deliveries";
/// `POST` sends an event again; `{event_id}` is its id.
pub const EVENT_REDELIVER: &str = "/api/v1/events/{event_id}/redeliver";
/// Metrics in the Prometheus text format.
pub const METRICS: &str = "/metrics";
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

/// The capture path of order `id`.
pub fn order_capture(id: Uuid) -> String {
    ORDER_CAPTURE.replace("{id}", &id.to_string())
}

/// The refunds path of order `id`.
pub fn order_refunds(id: Uuid) -> String {
    ORDER_REFUNDS.replace("{id}", &id.to_string())
}

/// The path of the API key `id`: [`API_KEY`] filled in.
pub fn api_key(id: &str) -> String {
    format!("{API_KEYS}/{id}")
}

/// The path of the webhook endpoint `id`: [`WEBHOOK_ENDPOINT`] filled in.
pub fn webhook_endpoint(id: &str) -> String {
    format!("{WEBHOOK_ENDPOINTS}/{id}")
}

/// [`WEBHOOK_ENDPOINT_ROTATE`] filled in.
pub fn webhook_endpoint_rotate(id: &str) -> String {
    format!("{WEBHOOK_ENDPOINTS}/{id}/rotate-secret")
}

/// [`WEBHOOK_ENDPOINT_DELIVERIES`] filled in.
pub fn webhook_endpoint_deliveries(id: &str) -> String {
    format!("{WEBHOOK_ENDPOINTS}/{id}/deliveries")
}

/// [`EVENT_REDELIVER`] filled in.
pub fn event_redeliver(id: &str) -> String {
    format!("/api/v1/events/{id}/redeliver")
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
        let ep = "ep_1";
        assert_eq!(
            webhook_endpoint(ep),
            WEBHOOK_ENDPOINT.replace("{endpoint_id}", ep)
        );
        assert_eq!(
            webhook_endpoint_rotate(ep),
            WEBHOOK_ENDPOINT_ROTATE.replace("{endpoint_id}", ep)
        );
        assert_eq!(
            webhook_endpoint_deliveries(ep),
            WEBHOOK_ENDPOINT_DELIVERIES.replace("{endpoint_id}", ep)
        );
        assert_eq!(
            event_redeliver("evt_1"),
            EVENT_REDELIVER.replace("{event_id}", "evt_1")
        );
    }
}
