//! `order-cli` as a script runs it, against a real server on the embedded default.

#![allow(
    clippy::too_many_lines,
    reason = "one scenario walks every subcommand in order"
)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use order_api::OrderResponse;
use order_api::health::Readiness;
use order_api::orders::OrderStatus;
use order_cli::load::{LoadMode, Report};
use order_cli::{AllOrders, HealthReport, StatusChange};
use order_http::testing::{Backend, TestApp, free_port};
use serde::de::DeserializeOwned;

#[path = "cli/webhooks.rs"]
mod webhooks;

/// Runs the CLI with `args` (and `stdin`), off the async runtime.
async fn cli(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let (url, args, stdin) = (
        url.to_owned(),
        args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        stdin.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_order-cli"))
            .args(&args)
            .env("ORDER_SERVICE_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// The command's standard output, read as the contract type it prints.
fn json<T: DeserializeOwned>(output: &Output) -> T {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_prints_json_or_a_table_and_exits_with_a_meaningful_code() {
    let server = TestApp::spawn(Backend::Memory, &[("LOG_LEVEL", "error")]).await;
    let url = &server.base;
    let customer = format!("cli-{}", std::process::id());

    // create from flags, JSON.
    let created = cli(
        url,
        &[
            "create",
            "--customer",
            &customer,
            "--item",
            "item_001:Burger:2:12.99",
            "--item",
            "item_002:Fries:1:4.99",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let order: OrderResponse = json(&created);
    assert_eq!(order.total_amount.to_string(), "30.97");
    let id = order.id.to_string();

    // create from standard input, table.
    let body = format!(
        r#"{{"customer_id": "{customer}", "items": [{{"item_id": "i", "item_name": "Soda", "quantity": 1, "price": 2.5}}]}}"#
    );
    let table = cli(url, &["create", "--file", "-", "-o", "table"], Some(&body)).await;
    assert_eq!(table.status.code(), Some(0));
    let text = stdout(&table);
    assert!(
        text.contains("STATUS") && text.contains("pending") && text.contains("Soda"),
        "{text}"
    );

    // watch until terminal.
    let watched = cli(
        url,
        &["watch", &id, "--interval", "0.05", "-o", "json"],
        None,
    )
    .await;
    assert_eq!(watched.status.code(), Some(0));
    let last: StatusChange = stdout(&watched)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!((last.id, last.status), (order.id, OrderStatus::Confirmed));

    // get, both formats.
    let got = cli(url, &["get", &id, "-o", "json"], None).await;
    assert_eq!(json::<OrderResponse>(&got).status, OrderStatus::Confirmed);
    let got = cli(url, &["get", &id, "-o", "table"], None).await;
    assert!(stdout(&got).contains("ATTEMPT") && stdout(&got).contains("succeeded"));

    // list --all walks every page.
    for _ in 0..3 {
        assert_eq!(
            cli(
                url,
                &[
                    "create",
                    "--customer",
                    &customer,
                    "--item",
                    "x:Tea:1:1",
                    "-o",
                    "json"
                ],
                None
            )
            .await
            .status
            .code(),
            Some(0)
        );
    }
    let all = cli(
        url,
        &[
            "list",
            "--customer",
            &customer,
            "--page-size",
            "2",
            "--all",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    let all: AllOrders = json(&all);
    assert_eq!(all.total, 5);
    assert_eq!(all.orders.len(), 5);
    let one_page = cli(
        url,
        &[
            "list",
            "--customer",
            &customer,
            "--page-size",
            "2",
            "-o",
            "table",
        ],
        None,
    )
    .await;
    assert!(
        stdout(&one_page).contains("2 of 5 orders"),
        "{}",
        stdout(&one_page)
    );

    // health.
    let health = cli(url, &["health", "-o", "json"], None).await;
    assert_eq!(health.status.code(), Some(0));
    assert_eq!(json::<HealthReport>(&health).ready.status, Readiness::Ready);

    // Exit codes: not found 3, invalid input 4, unavailable 5, usage 2.
    let missing = cli(url, &["get", "01936f0e-0000-7000-8000-000000000000"], None).await;
    assert_eq!(missing.status.code(), Some(3));
    let invalid = cli(
        url,
        &["create", "--customer", &customer, "--item", "x:Tea:0:1"],
        None,
    )
    .await;
    assert_eq!(invalid.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("items[0].quantity"));
    assert_eq!(
        cli(url, &["get", "not-a-uuid"], None).await.status.code(),
        Some(4)
    );
    assert_eq!(
        cli(url, &["create", "--file", "-"], Some("{not json"))
            .await
            .status
            .code(),
        Some(4)
    );
    let port = free_port();
    let down = cli(&format!("http://127.0.0.1:{port}"), &["health"], None).await;
    assert_eq!(down.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unavailable"));
    assert_eq!(cli(url, &["frobnicate"], None).await.status.code(), Some(2));

    // completions.
    let completions = cli(url, &["completions", "bash"], None).await;
    assert!(stdout(&completions).contains("order-cli"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_report_adds_up_in_both_modes() {
    let server = TestApp::spawn(Backend::Memory, &[("LOG_LEVEL", "error")]).await;
    for args in [
        vec![
            "load",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--json",
            "--quiet",
            "--settle",
            "--seed",
            "1",
        ],
        vec![
            "load",
            "--connections",
            "4",
            "--duration",
            "1s",
            "--json",
            "--quiet",
        ],
    ] {
        let output = cli(&server.base, &args, None).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Report = json(&output);
        let errors: u64 = report.errors.values().sum();
        assert_eq!(
            report.sent,
            report.accepted + errors,
            "every sent request is accepted or an error: {report:?}"
        );
        assert!(report.accepted > 0);
        let l = &report.latency_ms;
        assert!(
            l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
            "{l:?}"
        );
        if report.mode == LoadMode::Open {
            assert_eq!(report.sent + report.dropped, 200, "200/s for 1 s");
            let settle = report.settle.as_ref().expect("--settle reports the drain");
            assert_eq!(settle.confirmed + settle.failed, report.accepted);
            assert!(
                (settle.confirmation_rate - 1.0).abs() < f64::EPSILON,
                "all approved"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_follows_the_order_to_cancelled_and_a_failed_one_exits_6() {
    let server = TestApp::spawn(Backend::Memory, &[("LOG_LEVEL", "error")]).await;
    let url = &server.base;
    let order = server
        .place(&order_http::testing::sample_order("cli-cancel"))
        .await;
    server
        .wait_terminal(order.id, std::time::Duration::from_secs(10))
        .await;
    let id = order.id.to_string();

    let cancelled = cli(
        url,
        &["cancel", &id, "--reason", "duplicate", "-o", "json"],
        None,
    )
    .await;

    assert_eq!(
        cancelled.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let answer: OrderResponse = json(&cancelled);
    assert!(
        matches!(
            answer.status,
            OrderStatus::Cancelling | OrderStatus::Cancelled
        ),
        "{answer:?}"
    );
    let watched = cli(
        url,
        &["watch", &id, "--interval", "0.05", "-o", "json"],
        None,
    )
    .await;
    let last: StatusChange = stdout(&watched)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(
        last.status,
        OrderStatus::Cancelled,
        "watch follows it to the end"
    );
    let table = cli(url, &["get", &id, "-o", "table"], None).await;
    assert!(
        stdout(&table).contains("refund") && stdout(&table).contains("succeeded"),
        "{}",
        stdout(&table)
    );
    let bad = cli(url, &["cancel", &id, "--reason", "bored"], None).await;
    assert_eq!(bad.status.code(), Some(4));
    server.stop().await;

    let declining = TestApp::spawn(
        Backend::Memory,
        &[
            ("LOG_LEVEL", "error"),
            ("PAYMENT_MOCK_SUCCESS_RATE", "0"),
            ("PAYMENT_MOCK_DECLINE_SHARE", "1"),
            ("PAYMENT_MOCK_TIMEOUT_SHARE", "0"),
        ],
    )
    .await;
    let failed = declining
        .place(&order_http::testing::sample_order("cli-cancel-failed"))
        .await;
    declining
        .wait_terminal(failed.id, std::time::Duration::from_secs(10))
        .await;
    let refused = cli(&declining.base, &["cancel", &failed.id.to_string()], None).await;
    assert_eq!(
        refused.status.code(),
        Some(6),
        "a payment_failed order is a conflict"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("payment_failed"));
    declining.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_gives_back_items_part_of_them_or_the_rest_and_a_conflict_exits_6() {
    let server = TestApp::spawn(
        Backend::Memory,
        &[("LOG_LEVEL", "error"), ("PAYMENT_MOCK_SUCCESS_RATE", "1")],
    )
    .await;
    let url = &server.base;
    let order = server
        .place(&order_http::testing::sample_order("cli-refund"))
        .await;
    server.wait_status(order.id, OrderStatus::Confirmed).await;
    let id = order.id.to_string();
    let refund = |args: &'static [&'static str]| {
        let mut all = vec!["refund", id.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            cli(url, &args, None).await
        }
    };

    // Half of a cold burger (12.99), then all of what is left.
    let half = refund(&[
        "--item",
        "item_001=1",
        "--amount",
        "6.50",
        "--reason",
        "cold",
    ])
    .await;
    assert_eq!(
        half.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );
    let answer: OrderResponse = json(&half);
    assert_eq!(answer.refunds[0].amount, "6.50".parse().unwrap());
    assert_eq!(answer.refunds[0].items[0].item_id, "item_001");
    let rest = refund(&[]).await;
    assert_eq!(rest.status.code(), Some(0));
    let answer: OrderResponse = json(&rest);
    assert_eq!(answer.refunds[1].amount, "24.47".parse().unwrap());
    assert_eq!(answer.status, OrderStatus::Confirmed);
    let payment = answer.payment.expect("a payment");
    assert_eq!(payment.refunded_amount, "30.97".parse().unwrap());

    let nothing_left = refund(&["--amount", "1"]).await;
    assert_eq!(nothing_left.status.code(), Some(6), "a conflict");
    let bad = refund(&["--item", "item_001"]).await;
    assert_eq!(bad.status.code(), Some(4), "not ITEM_ID=QUANTITY");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_managed_with_the_cli_and_a_key_in_the_environment_is_sent() {
    // The first key goes into the file the embedded default reads, by what
    // `order-http keys create` runs.
    let file = std::env::temp_dir().join(format!("cli-keys-{}.jsonl", free_port()));
    let path = file.to_string_lossy().into_owned();
    let config =
        order_http::Config::from_lookup(|k| (k == "API_KEYS_FILE").then(|| path.clone())).unwrap();
    let admin = order_http::keys::run(
        &config,
        order_http::keys::KeysCommand::Create {
            name: "admin".into(),
            scopes: vec![
                order_core::access::Scope::KeysManage,
                order_core::access::Scope::OrdersRead,
            ],
            customer: None,
            expires_in: None,
        },
    )
    .await
    .unwrap()
    .trim()
    .to_owned();
    let server = TestApp::spawn(
        Backend::Memory,
        &[
            ("LOG_LEVEL", "error"),
            ("AUTH_MODE", "api_key"),
            ("API_KEYS_FILE", &path),
        ],
    )
    .await;
    let url = server.base.clone();
    let with_key = |key: &str, args: &[&str]| {
        let mut full = vec!["--api-key", key];
        full.extend_from_slice(args);
        full.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    let denied = cli(&url, &["list"], None).await;
    assert_eq!(denied.status.code(), Some(7), "no key: not allowed");
    let made = cli(
        &url,
        &with_key(
            &admin,
            &[
                "-o",
                "table",
                "keys",
                "create",
                "--name",
                "reader",
                "--scopes",
                "orders:read",
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        None,
    )
    .await;
    assert!(made.status.success(), "{made:?}");
    let reader = stdout(&made).trim().to_owned();
    assert!(reader.starts_with("ordk_"), "the key alone: {reader:?}");

    let args = with_key(&reader, &["-o", "json", "list"]);
    let listed = cli(
        &url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    )
    .await;
    assert!(listed.status.success(), "{listed:?}");
    let args = with_key(
        &reader,
        &["create", "--customer", "c", "--item", "i:n:1:1.00"],
    );
    let refused = cli(
        &url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    )
    .await;
    assert_eq!(
        refused.status.code(),
        Some(7),
        "orders:read cannot place orders"
    );
    let args = with_key(&admin, &["-o", "json", "keys", "list"]);
    let keys: order_api::keys::ApiKeyList = json(
        &cli(
            &url,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )
        .await,
    );
    assert_eq!(keys.keys.len(), 2);
    let reader_id = keys
        .keys
        .iter()
        .find(|k| k.name == "reader")
        .unwrap()
        .id
        .clone();
    let args = with_key(&admin, &["keys", "revoke", &reader_id]);
    let revoked = cli(
        &url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    )
    .await;
    assert!(revoked.status.success(), "{revoked:?}");
    let args = with_key(&reader, &["list"]);
    let after = cli(
        &url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    )
    .await;
    assert_eq!(after.status.code(), Some(7), "revoked");
    server.stop().await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_service_is_reached_over_tls() {
    // A TLS server with a fresh self-signed certificate: the CLI must get as far as the
    // handshake and refuse the certificate (without TLS it could not even try).
    let server = order_http::testing::TlsServer::start();
    let url = server.url();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stderr = loop {
        let output = cli(&url, &["health"], None).await;
        let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
        if stderr.contains("certificate") || std::time::Instant::now() > deadline {
            assert_eq!(output.status.code(), Some(5), "{stderr}");
            break stderr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    drop(server);
    assert!(
        stderr.contains("certificate"),
        "a TLS handshake that refuses the certificate: {stderr}"
    );
}
