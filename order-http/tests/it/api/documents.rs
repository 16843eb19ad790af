//! The API's documents: the docs pages and the OpenAPI document served from the binary,
//! stating the limits the domain enforces.

use order_api::health::ServiceInfo;
use order_api::{ErrorBody, ErrorCode, headers, paths};
use order_http::testing::{Backend, TestApp};
use serde_json::Value;

#[tokio::test]
async fn the_docs_and_the_openapi_document_are_served_from_the_binary() {
    let app = TestApp::spawn(Backend::Memory, &[]).await;
    let spec: Value = app
        .http
        .get(app.url(paths::OPENAPI))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        (paths::ORDERS, "post"),
        (paths::ORDERS, "get"),
        (paths::ORDER, "get"),
        (paths::HEALTH, "get"),
        (paths::READY, "get"),
        (paths::ROOT, "get"),
    ] {
        assert!(
            spec.pointer(&format!("/paths/{}/{method}", path.replace('/', "~1")))
                .is_some(),
            "{method} {path} is documented where order-api says it is"
        );
    }
    for path in ["/docs/", paths::REDOC] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.to_lowercase().contains("<html"), "{path} is a page");
        assert!(
            !html.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let script = app
        .http
        .get(app.url("/redoc/redoc.standalone.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.text().await.unwrap().len() > 100_000,
        "the ReDoc bundle is served"
    );
    let info: ServiceInfo = app.client.info().await.unwrap();
    assert_eq!(info.service, "order-service");
    let (status, body) = app.error_at("/no/such/route").await;
    assert_eq!((status, body.error), (404, ErrorCode::NotFound));
    let wrong_method = app
        .http
        .delete(app.url(paths::ORDERS))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.json::<ErrorBody>().await.unwrap().error,
        ErrorCode::MethodNotAllowed
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_states_the_limits_the_domain_enforces() {
    use order_core::ports::{PageRequest, PageSize};
    use order_core::request::RequestKey;
    use order_core::{CustomerId, ItemId, ItemName, Price, Quantity};

    let spec = serde_json::to_value(order_http::http::openapi()).unwrap();
    let schema = |name: &str, field: &str| {
        spec.pointer(&format!("/components/schemas/{name}/properties/{field}"))
            .unwrap_or_else(|| panic!("{name}.{field} is documented"))
            .clone()
    };
    assert_eq!(
        schema("CreateOrderRequest", "customer_id")["maxLength"],
        CustomerId::MAX_CHARS
    );
    assert_eq!(
        schema("CreateOrderRequest", "customer_id")["pattern"],
        order_api::TEXT_PATTERN
    );
    assert_eq!(
        schema("CreateOrderRequest", "items")["minItems"],
        order_core::order::MIN_ITEMS
    );
    assert_eq!(
        schema("CreateOrderRequest", "items")["maxItems"],
        order_core::order::MAX_ITEMS
    );
    assert_eq!(
        schema("CreateItemRequest", "item_id")["maxLength"],
        ItemId::MAX_CHARS
    );
    assert_eq!(
        schema("CreateItemRequest", "item_name")["maxLength"],
        ItemName::MAX_CHARS
    );
    assert_eq!(
        schema("CreateItemRequest", "item_name")["pattern"],
        order_api::TEXT_PATTERN
    );
    assert_eq!(
        schema("CreateItemRequest", "quantity")["maximum"],
        Quantity::MAX
    );
    assert_eq!(
        schema("CreateItemRequest", "price")["maximum"].to_string(),
        Price::MAX.to_string()
    );
    assert_eq!(
        schema("CreateItemRequest", "price")["multipleOf"].to_string(),
        "0.01"
    );
    let list = &spec["paths"][paths::ORDERS]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is documented"))["schema"]
            .clone()
    };
    assert_eq!(param("page")["maximum"], PageRequest::MAX_PAGE);
    assert_eq!(param("page_size")["maximum"], PageSize::MAX);
    let key = spec["paths"][paths::ORDERS]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("the Idempotency-Key header is documented")["schema"]
        .clone();
    assert_eq!(key["maxLength"], RequestKey::MAX_LEN);
    assert_eq!(key["pattern"], headers::IDEMPOTENCY_KEY_PATTERN);
    let id = &spec["paths"][paths::ORDER]["get"]["parameters"][0]["schema"];
    assert_eq!(id["format"], "uuid");
}
