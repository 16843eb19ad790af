//! The `order-http` binary as an operator runs it: starts on the embedded default, answers
//! the original's curl example, refuses bad configuration by name, stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use order_http::testing::free_port;

#[tokio::test]
async fn the_binary_serves_the_original_example_and_stops_gracefully_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-http"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the binary did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let log = lines.join().unwrap().join("\n");
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
