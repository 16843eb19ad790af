//! `order-cli`: a client of the order service for scripts and people.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use order_cli::cli::{Cli, Command};
use order_cli::run;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output.unwrap_or(if std::io::stdout().is_terminal() {
        order_cli::output::Format::Table
    } else {
        order_cli::output::Format::Json
    });
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "order-cli",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    match run(&cli, format).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-cli: {e}");
            e.exit_code()
        }
    }
}
