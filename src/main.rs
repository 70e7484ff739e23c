use std::process::ExitCode;

use clap::Parser as _;
use sommelier::cli::{run, Cli, Command};

/// How long, once the command has finished, blocking work (a training abandoned at shutdown)
/// may delay the exit.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_cli());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run_cli() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let json = cli.json;
    sommelier::registry::faults::arm_from_env();
    let json_logs = sommelier::config::json_logs_from_env();
    // The server logs at info; CLI commands stay quiet unless RUST_LOG asks.
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    sommelier::telemetry::logging::init(json_logs, level);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.already_reported() => ExitCode::FAILURE,
        Err(error) if json => {
            println!("{}", error.to_json());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refuses: under `--json` one JSON object on stdout (exit 2, as clap's
/// own), else clap's message. Help and version are printed as usual.
fn usage_error(error: clap::Error) -> ExitCode {
    let wants_json = std::env::args().any(|arg| arg == "--json");
    if !wants_json || !error.use_stderr() {
        error.exit();
    }
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    println!("{}", serde_json::json!({"error": message, "field": null}));
    ExitCode::from(2)
}
