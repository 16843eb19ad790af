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
