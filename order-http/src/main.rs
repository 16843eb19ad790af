//! `order-http`: runs the order service's API and payment worker, and manages its API keys.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use order_http::config::variables;
use order_http::keys::{self, KeysCommand};
use order_http::startup::shutdown_signal;
use order_http::{Application, Config, Role};

/// jemalloc rather than the system allocator: under load the worker spent a fifth of its CPU
/// in glibc's malloc and free (BENCHMARKS.md). mimalloc saved as much CPU but peaked a third
/// higher in RSS. Only the binary chooses; the library crates leave the choice to whoever
/// links them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The order service: HTTP API and payment worker. Configured through the environment (and
/// a `.env` file); with no DATABASE_URL/REDIS_URL it runs everything in memory.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// What to run; the API and the worker if nothing is named.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP API and the payment worker (the default).
    All,
    /// Only the HTTP API.
    Serve,
    /// Only the payment worker.
    Worker,
    /// Manage API keys straight in the store (DATABASE_URL, or API_KEYS_FILE).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let matches = variables::with_settings(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match Config::from_lookup(|name| variables::lookup(&matches, name)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("order-http: {e}");
            return ExitCode::from(2);
        }
    };
    let role = match cli.command.unwrap_or(Command::All) {
        Command::All => Role::All,
        Command::Serve => Role::Serve,
        Command::Worker => Role::Worker,
        Command::Keys(command) => {
            return match keys::run(&config, command).await {
                Ok(out) => {
                    let _ = std::io::stdout().write_all(out.as_bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("order-http keys: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let telemetry = order_http::telemetry::init(&config);
    let run = async {
        Application::build(&config, role)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    let code = match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "order-http stopped: {e}");
            ExitCode::FAILURE
        }
    };
    // The exporter's last batch leaves on a thread of its own: not from the runtime's.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
