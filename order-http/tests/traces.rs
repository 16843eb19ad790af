//! Traces: one trace follows an order from the `POST` that continues a caller's
//! `traceparent`, through the store and the queue (real PostgreSQL and Redis), to the
//! worker's job and its call to an HTTP gateway, which receives the trace too; and the binary
//! exports spans over OTLP/HTTP and writes the trace ids into its JSON logs.
//!
//! A test binary of its own: the subscriber it installs is global to the process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use order_gateway_mock::server::{Behaviour, router};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};
use order_http::testing::{Backend, Process, TestApp, sample_order, test_config};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";

fn traceparent() -> String {
    format!("00-{TRACE}-{CALLER_SPAN}-01")
}

/// A gateway over HTTP that keeps the `traceparent` of every call it gets.
async fn gateway() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let behaviour = Behaviour {
        success_rate: 1.0,
        latency_min_ms: 1,
        latency_max_ms: 5,
        ..Behaviour::default()
    };
    let gateway = SimulatedGateway::new(SimulationConfig::default().with_seed(3));
    let record = Arc::clone(&seen);
    let app = router(gateway, behaviour)
        .unwrap()
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let record = Arc::clone(&record);
                async move {
                    if let Some(v) = req.headers().get("traceparent") {
                        record.lock().unwrap().push(v.to_str().unwrap().to_owned());
                    }
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
        panic!("no span {name:?} in the trace; it has {names:?}")
    })
}

/// Places an order for a caller in trace `traceparent`, and waits until it is confirmed.
async fn place_in_trace(app: &TestApp, traceparent: &str, customer: &str) {
    let response = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("traceparent", traceparent)
        .json(&sample_order(customer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let order: order_api::OrderResponse = response.json().await.unwrap();
    let paid = app.wait_terminal(order.id, Duration::from_secs(20)).await;
    assert_eq!(paid.status, order_api::OrderStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_trace_runs_from_the_post_through_redis_to_the_worker_and_the_gateway() {
    // Logs at WARN: spans are filtered apart from logs, so a quiet log level keeps them.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let _telemetry = order_http::telemetry::init_with(
        &test_config(Vec::new(), &[("LOG_LEVEL", "warn")]),
        Some(provider.clone()),
    );
    assert!(order_http::telemetry::traces::enabled());
    let (gateway_url, seen) = gateway().await;
    let app = TestApp::spawn(
        Backend::PostgresRedis,
        &[("PAYMENT_GATEWAY_URL", &gateway_url), ("LOG_LEVEL", "info")],
    )
    .await;

    place_in_trace(&app, &traceparent(), "traced").await;
    // An untraced request starts a trace of its own: none of its spans join the caller's.
    let other = app.place(&sample_order("untraced")).await;
    app.wait_terminal(other.id, Duration::from_secs(20)).await;
    // A caller that does not record its trace: nothing of it is recorded here either, the
    // payment included, and the gateway is not told of it.
    place_in_trace(
        &app,
        &format!("00-{UNSAMPLED}-{CALLER_SPAN}-00"),
        "unsampled",
    )
    .await;
    app.stop().await;
    provider.force_flush().unwrap();

    let trace = TraceId::from_hex(TRACE).unwrap();
    let all = exporter.get_finished_spans().unwrap();
    let spans: Vec<SpanData> = all
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .cloned()
        .collect();
    let request = named(&spans, "POST /api/v1/orders");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap(),
        "the request's span continues the caller's"
    );
    let request_id = request.span_context.span_id();
    let place = named(&spans, "place");
    assert_eq!(place.parent_span_id, request_id);
    for step in ["store insert", "queue enqueue"] {
        assert_eq!(
            named(&spans, step).parent_span_id,
            place.span_context.span_id(),
            "{step} is a step of placing the order"
        );
    }
    let job = named(&spans, "payment job");
    assert_eq!(job.span_kind, SpanKind::Consumer);
    assert_eq!(
        job.parent_span_id, request_id,
        "the worker's job continues the request, from the traceparent that crossed Redis"
    );
    let handle = named(&spans, "handle");
    assert_eq!(handle.parent_span_id, job.span_context.span_id());
    let charge = named(&spans, "POST /charges");
    assert_eq!(charge.span_kind, SpanKind::Client);
    assert_eq!(charge.parent_span_id, handle.span_context.span_id());
    let sent = format!("00-{TRACE}-{}-01", charge.span_context.span_id());
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&sent),
        "the gateway got the charge span's traceparent {sent}; it got {seen:?}"
    );
    assert_eq!(seen.len(), 2, "each charge sends a traceparent: {seen:?}");

    let unsampled = TraceId::from_hex(UNSAMPLED).unwrap();
    assert!(
        all.iter().all(|s| s.span_context.trace_id() != unsampled),
        "no span of a trace its caller does not record"
    );
    assert!(
        seen.iter().all(|t| !t.contains(UNSAMPLED)),
        "the gateway hears nothing of it: {seen:?}"
    );
    assert_eq!(
        all.iter().filter(|s| s.name == "payment job").count(),
        2,
        "the unsampled order's payment is not recorded"
    );

    let untraced_jobs: HashSet<_> = all
        .iter()
        .filter(|s| s.name == "payment job" && s.span_context.trace_id() != trace)
        .map(|s| s.span_context.trace_id())
        .collect();
    assert_eq!(
        untraced_jobs.len(),
        1,
        "the untraced order's job is in the trace its own request started"
    );
}

/// An OTLP/HTTP collector that keeps the bodies posted to `/v1/traces`.
async fn collector() -> (u16, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let keep = Arc::clone(&keep);
            async move {
                keep.lock().unwrap().push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_spans_over_otlp_and_logs_their_trace_ids() {
    let (collector_port, got) = collector().await;
    let endpoint = format!("http://127.0.0.1:{collector_port}");
    let process = Process::start(
        env!("CARGO_BIN_EXE_order-http"),
        &[
            ("LOG_FORMAT", "json"),
            (
                "LOG_LEVEL",
                "info,tower_http=debug,order_http::http::middleware::span=debug",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = &process.base;
    let response = client
        .post(format!("{base}/api/v1/orders"))
        .header("traceparent", traceparent())
        .json(&sample_order("exported"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (exit, lines) = process.stop().await;
    assert!(exit.success(), "the binary stops cleanly: {exit:?}");

    let traced: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["trace_id"] == TRACE)
        .collect();
    assert!(
        !traced.is_empty(),
        "log lines of the request carry its trace id: {lines:#?}"
    );
    assert!(
        traced
            .iter()
            .all(|v| v["span_id"].as_str().is_some_and(|s| s.len() == 16)),
        "and a span id: {traced:#?}"
    );
    let bodies = got.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "the spans were exported on shutdown");
    let trace_bytes = TraceId::from_hex(TRACE).unwrap().to_bytes();
    assert!(
        bodies.iter().any(|(headers, body)| {
            headers["content-type"] == "application/x-protobuf"
                && body.windows(16).any(|w| w == trace_bytes)
        }),
        "an OTLP protobuf export carries the request's trace"
    );
}
