//! `/metrics` of real `order-http` processes, scraped after orders were placed and paid:
//! the names an operator's dashboards and alerts use are there, the counters add up with
//! what the orders themselves record, and the text parses as Prometheus's format.

#![allow(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    reason = "the counters compared are whole numbers, exact in an f64"
)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_api::OrderClient;
use order_http::testing::{Storage, free_port, sample_order};

/// One sample: a metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format strictly: every line is a comment (`# HELP`, `# TYPE`)
/// or `name{label="value",...} number`. Panics naming the first line that is neither.
pub fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE"), "unknown comment: {line}");
            if kind == "TYPE" {
                let t = comment.rsplit(' ').next().unwrap_or_default();
                assert!(
                    matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped"),
                    "unknown type: {line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed: {line}"));
                let mut labels = BTreeMap::new();
                for pair in split_labels(body) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label: {line}"));
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(body: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts
}

/// The sum of every sample of `name` whose labels include `with`.
pub fn sum(samples: &BTreeMap<Series, f64>, name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The names every process of its role must serve (the dashboard and the alerts use them).
const API_NAMES: &[&str] = &[
    "order_build_info",
    "order_http_requests_total",
    "order_http_request_duration_seconds_bucket",
    "order_orders_placed_total",
    "order_group_commit_batch_size_bucket",
    "order_queue_jobs",
    "order_queue_oldest_job_age_seconds",
];
const WORKER_NAMES: &[&str] = &[
    "order_build_info",
    "order_payment_attempts_total",
    "order_gateway_call_duration_seconds_bucket",
    "order_payments_in_flight",
    "order_circuit_breaker_state",
    "order_circuit_breaker_transitions_total",
    "order_time_to_terminal_seconds_bucket",
    "order_reconciler_requeued_total",
    "order_jobs_dead_lettered_total",
    "order_queue_jobs",
    "order_queue_oldest_job_age_seconds",
    "order_webhook_attempts_total",
    "order_webhook_events_fanned_out_total",
    "order_webhook_outbox_oldest_event_age_seconds",
];

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], env: &[(String, String)]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_order-http"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("AUTH_MODE", "none")
            .env("LOG_LEVEL", "warn")
            .env("PAYMENT_MOCK_SUCCESS_RATE", "0.7")
            .env("PAYMENT_MOCK_LATENCY_MIN", "5")
            .env("PAYMENT_MOCK_LATENCY_MAX", "20")
            .env("PAYMENT_RETRY_DELAY", "0.05")
            .env("PAYMENT_RETRY_MAX_DELAY", "0.2")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn scrape(http: &reqwest::Client, url: &str) -> BTreeMap<Series, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http.get(url).send().await {
            assert_eq!(response.status(), 200, "{url}");
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
            return parse(&response.text().await.unwrap());
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Places 30 orders (cancelling 3 of them at once) and waits until all are terminal.
/// Returns how many payment attempts the orders recorded.
async fn place_and_pay(client: &OrderClient) -> usize {
    let mut ids = Vec::new();
    for i in 0..30 {
        let placed = loop {
            match client.create(&sample_order(&format!("m{i}")), None).await {
                Ok(placed) => break placed,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        if i % 10 == 0 {
            let _ = client
                .cancel(
                    placed.order.id,
                    &order_api::CancelOrderRequest::default(),
                    None,
                )
                .await;
        }
        ids.push(placed.order.id);
    }
    let mut attempts = 0;
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let order = client.get(id).await.unwrap();
            if order.status.is_terminal() {
                attempts += order.payment_attempts.len();
                break;
            }
            assert!(Instant::now() < deadline, "{id} never settled");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    attempts
}

fn check_names(samples: &BTreeMap<Series, f64>, names: &[&str], who: &str) {
    for name in names {
        assert!(
            samples.keys().any(|(n, _)| n == name),
            "{who} does not serve {name}"
        );
    }
    for (name, labels) in samples.keys() {
        for value in labels.values() {
            assert!(
                uuid::Uuid::parse_str(value).is_err() && !value.contains("/api/v1/orders/0"),
                "{name} has an unbounded label value {value}"
            );
        }
    }
}

fn check_counts(api: &BTreeMap<Series, f64>, worker: &BTreeMap<Series, f64>, attempts: usize) {
    assert_eq!(sum(api, "order_orders_placed_total", &[]), 30.0);
    assert_eq!(
        sum(
            api,
            "order_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/orders"),
                ("status", "202")
            ]
        ),
        30.0
    );
    assert!(
        sum(
            api,
            "order_http_requests_total",
            &[("method", "GET"), ("route", "/api/v1/orders/{id}")]
        ) >= 30.0,
        "reads are counted by their route template"
    );
    let recorded: f64 = ["captured", "declined", "retryable", "timed_out"]
        .iter()
        .map(|o| sum(worker, "order_payment_attempts_total", &[("outcome", o)]))
        .sum();
    assert_eq!(
        recorded, attempts as f64,
        "attempts by outcome = attempts on the orders"
    );
    // An attempt charges, or (after a time-out) looks the payment up first and charges
    // only when nothing was charged.
    let calls = |operation| {
        sum(
            worker,
            "order_gateway_call_duration_seconds_count",
            &[("operation", operation)],
        )
    };
    let (charges, lookups) = (calls("charge"), calls("lookup"));
    assert!(
        charges <= recorded && charges + lookups >= recorded,
        "{charges} charges and {lookups} look-ups for {recorded} attempts"
    );
    // One process of the embedded default is both: count it once.
    let terminal = sum(api, "order_time_to_terminal_seconds_count", &[])
        + if std::ptr::eq(api, worker) {
            0.0
        } else {
            sum(worker, "order_time_to_terminal_seconds_count", &[])
        };
    assert_eq!(terminal, 30.0, "every order reached its end once");
    assert_eq!(
        sum(worker, "order_payments_in_flight", &[]),
        0.0,
        "nothing in flight at rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_serves_its_metrics_with_the_api() {
    let port = free_port();
    let _process = start(&[], &[("PORT".into(), port.to_string())]);
    let base = format!("http://127.0.0.1:{port}");
    let client = OrderClient::new(&base).unwrap();
    let attempts = place_and_pay(&client).await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(6)).await; // one sample of the queue's gauges
    let samples = scrape(&http, &format!("{base}/metrics")).await;
    check_names(&samples, API_NAMES, "the embedded default");
    check_names(&samples, WORKER_NAMES, "the embedded default");
    check_counts(&samples, &samples, attempts);
    assert_eq!(
        sum(&samples, "order_queue_jobs", &[("state", "waiting")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_roles_on_postgres_and_redis_each_serve_their_metrics() {
    let storage = Storage::create().await;
    let env = storage.env();
    let (api_port, metrics_port, worker_port) = (free_port(), free_port(), free_port());
    let mut api_env = env.clone();
    api_env.push(("PORT".into(), api_port.to_string()));
    api_env.push(("METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")));
    let mut worker_env = env.clone();
    worker_env.push(("PORT".into(), worker_port.to_string()));
    let api_process = start(&["serve"], &api_env);
    let worker_process = start(&["worker"], &worker_env);
    let base = format!("http://127.0.0.1:{api_port}");
    let client = OrderClient::new(&base).unwrap();
    let attempts = place_and_pay(&client).await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let api = scrape(&http, &format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    let worker = scrape(&http, &format!("http://127.0.0.1:{worker_port}/metrics")).await;
    check_names(&api, API_NAMES, "the API process");
    check_names(&worker, WORKER_NAMES, "the worker process");
    check_counts(&api, &worker, attempts);
    the_dashboard_and_the_alerts_use_only_served_metrics(&api, &worker);
    let moved = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        moved.status(),
        404,
        "METRICS_ADDR moves /metrics off the API's port"
    );
    drop((api_process, worker_process));
    storage.drop().await;
}

/// Every `order_…` name the Grafana dashboard and the Prometheus alert rules in `deploy/`
/// use is a series the API or the worker serves.
fn the_dashboard_and_the_alerts_use_only_served_metrics(
    api: &BTreeMap<Series, f64>,
    worker: &BTreeMap<Series, f64>,
) {
    let served: std::collections::BTreeSet<&str> = api
        .keys()
        .chain(worker.keys())
        .map(|(name, _)| name.as_str())
        .collect();
    for (file, text) in [
        (
            "dashboard",
            include_str!("../../../deploy/grafana/dashboards/order-service.json"),
        ),
        (
            "alerts",
            include_str!("../../../deploy/prometheus/alerts.yml"),
        ),
    ] {
        let mut used = 0;
        for (start, _) in text.match_indices("order_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                served.contains(name.as_str()),
                "the {file} uses {name}, which nothing serves"
            );
            used += 1;
        }
        assert!(used > 5, "the {file} uses metrics");
    }
}
