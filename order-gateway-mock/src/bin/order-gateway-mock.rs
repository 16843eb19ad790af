//! `order-gateway-mock`: the simulated payment gateway as an HTTP service.
//!
//! Settings: `GATEWAY_HOST` (127.0.0.1), `GATEWAY_PORT` (8100), `PAYMENT_MOCK_SUCCESS_RATE`,
//! `PAYMENT_MOCK_LATENCY_MIN`/`_MAX` (ms), `PAYMENT_MOCK_DECLINE_SHARE`,
//! `PAYMENT_MOCK_TIMEOUT_SHARE`, `PAYMENT_MOCK_TIMEOUT_DELAY` (ms, 5000),
//! `PAYMENT_MOCK_SEED`; all changeable at run time through `/admin/config`.
//! `GATEWAY_LEDGER_PATH` keeps the ledger in a file, appended and synced before each answer,
//! so a killed and restarted gateway still knows every capture and refund.

use std::process::ExitCode;

use order_gateway_mock::server::{Behaviour, router};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};

fn setting<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("invalid {name}: {v:?}")),
        _ => Ok(default),
    }
}

fn settings() -> Result<(String, Behaviour, Option<u64>), String> {
    let d = Behaviour::default();
    let behaviour = Behaviour {
        success_rate: setting("PAYMENT_MOCK_SUCCESS_RATE", d.success_rate)?,
        latency_min_ms: setting("PAYMENT_MOCK_LATENCY_MIN", d.latency_min_ms)?,
        latency_max_ms: setting("PAYMENT_MOCK_LATENCY_MAX", d.latency_max_ms)?,
        decline_share: setting("PAYMENT_MOCK_DECLINE_SHARE", d.decline_share)?,
        timeout_share: setting("PAYMENT_MOCK_TIMEOUT_SHARE", d.timeout_share)?,
        timeout_delay_ms: setting("PAYMENT_MOCK_TIMEOUT_DELAY", d.timeout_delay_ms)?,
    };
    let host: String = setting("GATEWAY_HOST", "127.0.0.1".to_owned())?;
    let port: u16 = setting("GATEWAY_PORT", 8100)?;
    let seed = std::env::var("PAYMENT_MOCK_SEED")
        .ok()
        .map(|s| {
            s.parse()
                .map_err(|_| format!("invalid PAYMENT_MOCK_SEED: {s:?}"))
        })
        .transpose()?;
    Ok((format!("{host}:{port}"), behaviour, seed))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    let (addr, behaviour, seed) = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("order-gateway-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let config = seed.map_or_else(SimulationConfig::default, |s| {
        SimulationConfig::default().with_seed(s)
    });
    let mut gateway = SimulatedGateway::new(config);
    if let Some(path) = std::env::var_os("GATEWAY_LEDGER_PATH").filter(|p| !p.is_empty()) {
        gateway = match gateway.with_ledger_file(std::path::Path::new(&path)) {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!(
                    "order-gateway-mock: cannot use GATEWAY_LEDGER_PATH {}: {e}",
                    std::path::Path::new(&path).display()
                );
                return ExitCode::from(2);
            }
        };
    }
    let app = match router(gateway, behaviour) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("order-gateway-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("order-gateway-mock: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%addr, "payment gateway mock listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if served.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
