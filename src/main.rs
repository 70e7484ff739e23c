use std::process::ExitCode;

use clap::Parser;
use sommelier::cli::{run, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    sommelier::registry::faults::arm_from_env();
    let json_logs = std::env::var("SOMMELIER_LOG_FORMAT").is_ok_and(|f| f == "json");
    // The server logs at info; CLI commands stay quiet unless RUST_LOG asks.
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    sommelier::telemetry::logging::init(json_logs, level);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
