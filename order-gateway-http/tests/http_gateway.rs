//! `HttpGateway` against the mock gateway's HTTP server on a real socket.

use std::time::Duration;

use order_api::gateway::{ADMIN_CONFIG, ADMIN_OUTAGE, AUDIT_CHARGES, Audit, Outage};
use order_core::payment::{ChargeRequest, GatewayError};
use order_core::ports::PaymentGateway;
use order_core::testing::{conformance, placed_order};
use order_gateway_http::HttpGateway;
use order_gateway_mock::server::{Behaviour, router};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};

async fn serve(behaviour: Behaviour) -> (String, SimulatedGateway) {
    let gateway = SimulatedGateway::new(SimulationConfig::default().with_seed(5));
    let app = router(gateway.clone(), behaviour).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), gateway)
}

fn quick(success_rate: f64, decline_share: f64, timeout_share: f64) -> Behaviour {
    Behaviour {
        success_rate,
        latency_min_ms: 1,
        latency_max_ms: 3,
        decline_share,
        timeout_share,
        timeout_delay_ms: 1_000,
    }
}

fn request(customer: &str) -> ChargeRequest {
    placed_order(customer, chrono::Utc::now()).charge_request()
}

#[tokio::test]
async fn charges_over_http_honour_the_payment_gateway_contract() {
    let (url, server) = serve(quick(0.5, 0.4, 0.2)).await;
    let gateway = HttpGateway::new(&url, Duration::from_millis(300)).unwrap();
    conformance::payment_gateway(&gateway, |key| server.books(key)).await;
}

#[tokio::test]
async fn a_slow_answer_is_an_ambiguous_timeout_and_the_retry_replays_the_capture() {
    let (url, server) = serve(quick(0.0, 0.0, 1.0)).await;
    let gateway = HttpGateway::new(&url, Duration::from_millis(200)).unwrap();
    let r = request("slow");
    let first = gateway.charge(&r).await;
    assert!(matches!(first, Err(GatewayError::Timeout(_))), "{first:?}");
    let captured = server.entry(&r.idempotency_key).unwrap().captures;
    // Whatever happened, retrying with the same key never charges twice.
    server.reconfigure(
        SimulationConfig::new(1.0, Duration::ZERO..=Duration::ZERO, 0.0, 0.0).unwrap(),
    );
    let second = gateway.charge(&r).await;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(
        server.entry(&r.idempotency_key).unwrap().captures,
        1,
        "first captured {captured}"
    );
}

#[tokio::test]
async fn a_gateway_that_refuses_connections_is_unavailable_and_an_outage_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = HttpGateway::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(500),
    )
    .unwrap();
    assert!(matches!(
        gateway.charge(&request("down")).await,
        Err(GatewayError::Unavailable(_))
    ));

    let (url, server) = serve(quick(1.0, 0.0, 0.0)).await;
    server.set_outage_until(Some(chrono::Utc::now() + chrono::Duration::seconds(60)));
    let gateway = HttpGateway::new(&url, Duration::from_millis(500)).unwrap();
    assert!(matches!(
        gateway.charge(&request("outage")).await,
        Err(GatewayError::Unavailable(_))
    ));
}

#[tokio::test]
async fn the_admin_and_audit_endpoints_change_and_show_the_gateway() {
    let (url, _) = serve(quick(1.0, 0.0, 0.0)).await;
    let client = reqwest::Client::new();
    let gateway = HttpGateway::new(&url, Duration::from_millis(500)).unwrap();
    let r = request("audit");
    gateway.charge(&r).await.unwrap();
    gateway.charge(&r).await.unwrap();

    let audit: Audit = client
        .get(format!("{url}{AUDIT_CHARGES}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &audit.charges[r.idempotency_key.as_str()];
    assert_eq!((entry.calls, entry.captures), (2, 1));
    assert_eq!(entry.amount, r.amount.amount());

    let mut behaviour = quick(0.0, 1.0, 0.0);
    behaviour.latency_max_ms = 2;
    let put = client
        .put(format!("{url}{ADMIN_CONFIG}"))
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert!(matches!(
        gateway.charge(&request("declined")).await,
        Err(GatewayError::Declined(_))
    ));
    let bad = client
        .put(format!("{url}{ADMIN_CONFIG}"))
        .json(&quick(1.5, 0.0, 0.0))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let outage = client
        .put(format!("{url}{ADMIN_OUTAGE}"))
        .json(&Outage { seconds: 60.0 })
        .send()
        .await
        .unwrap();
    assert_eq!(outage.status(), 200);
    assert!(matches!(
        gateway.charge(&request("o")).await,
        Err(GatewayError::Unavailable(_))
    ));
    assert_eq!(
        client
            .delete(format!("{url}{ADMIN_OUTAGE}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}
