//! `order-http`: runs the order service's API and payment worker.

use std::process::ExitCode;

use clap::Parser;
use order_http::startup::shutdown_signal;
use order_http::{Application, Config, Role};

/// The order service: HTTP API and payment worker. Configured through the environment (and
/// a `.env` file); with no DATABASE_URL/REDIS_URL it runs everything in memory.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// What this process runs.
    #[arg(value_enum, default_value = "all")]
    role: Role,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("order-http: {e}");
            return ExitCode::from(2);
        }
    };
    order_http::telemetry::init(&config);
    let run = async {
        Application::build(&config, cli.role)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "order-http stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
