//! The `order-http` binary as an operator runs it: starts on the embedded default, answers
//! the original's curl example, refuses bad configuration by name, stops on SIGTERM.

use std::process::Command;

use order_http::testing::Process;

#[tokio::test]
async fn the_binary_serves_the_original_example_and_stops_gracefully_on_sigterm() {
    let process = Process::start(env!("CARGO_BIN_EXE_order-http"), &[("LOG_FORMAT", "json")]).await;
    let client = reqwest::Client::new();
    let base = &process.base;
    let response = client
        .post(format!("{base}/api/v1/orders"))
        .header("Content-Type", "application/json")
        .body(
            r#"{"customer_id": "customer_123", "items": [
                {"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": 12.99}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let order: order_api::OrderResponse = response.json().await.unwrap();
    assert_eq!(order.total_amount.to_string(), "25.98");

    let (exit, lines) = process.stop().await;
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let log = lines.join("\n");
    assert!(
        log.contains("nothing is persisted"),
        "the embedded default says so: {log}"
    );
    assert!(
        log.contains("payment worker stopped"),
        "the worker drained: {log}"
    );
}

#[test]
fn a_bad_setting_stops_the_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_order-http"))
        .env_clear()
        .env("PAYMENT_RETRY_ATTEMPTS", "zero")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PAYMENT_RETRY_ATTEMPTS"), "{stderr}");
}

#[tokio::test]
async fn tasks_that_read_the_store_wait_for_postgres_instead_of_failing_meanwhile() {
    // Nothing listens on port 1: PostgreSQL is down for the whole run.
    let process = Process::start(
        env!("CARGO_BIN_EXE_order-http"),
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/orders")],
    )
    .await;
    // The dispatcher polls every 50 ms, the purges and the sampler start at once.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (exit, lines) = process.stop().await;
    assert!(exit.success(), "{exit:?}");
    let log = lines.join("\n");
    assert!(
        log.contains("PostgreSQL is not ready"),
        "the migrator reports the outage: {log}"
    );
    for failure in [
        "webhook dispatch failed",
        "purging webhook history failed",
        "sampling the webhook outbox",
        "purging idempotency keys failed",
    ] {
        assert!(
            !log.contains(failure),
            "{failure:?} logged before the store was ready: {log}"
        );
    }
}

#[tokio::test]
async fn on_postgres_every_request_needs_a_key_unless_auth_is_turned_off_which_warns() {
    // PostgreSQL is down (port 1): a request without a key is refused before any store is
    // asked.
    let down = ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/orders");
    let closed = Process::start(env!("CARGO_BIN_EXE_order-http"), &[down, ("AUTH_MODE", "")]).await;
    let client = reqwest::Client::new();
    for path in [
        order_api::paths::ORDERS,
        order_api::paths::API_KEYS,
        order_api::paths::WEBHOOK_ENDPOINTS,
    ] {
        let response = client
            .get(format!("{}{path}", closed.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "GET {path} without a key");
    }
    let (_, lines) = closed.stop().await;
    let log = lines.join("\n");
    assert!(!log.contains("AUTH_MODE=none"), "{log}");

    let open = Process::start(
        env!("CARGO_BIN_EXE_order-http"),
        &[down, ("AUTH_MODE", "none")],
    )
    .await;
    let (_, lines) = open.stop().await;
    let warning = lines
        .iter()
        .find(|line| line.contains("AUTH_MODE=none: anyone who reaches"))
        .unwrap_or_else(|| panic!("no warning: {lines:?}"));
    assert!(warning.contains("WARN"), "{warning}");
}

#[test]
fn help_lists_every_setting_with_its_default_for_each_role() {
    for args in [&["--help"][..], &["serve", "--help"], &["worker", "--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_order-http"))
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        for variable in order_http::config::variables::VARIABLES {
            assert!(
                help.contains(&format!("[env: {}]", variable.name))
                    && help.contains(&variable.help_line()),
                "{args:?} lists {}: {help}",
                variable.name
            );
        }
    }
}
