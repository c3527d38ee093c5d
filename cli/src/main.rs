//! `huren`: thin entry point. Parses the command line, runs it (logging and telemetry are
//! set up per command, see `huren_cli::telemetry`) and maps failures to exit codes: 64 for
//! usage or configuration errors, 1 otherwise.

#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = huren_cli::Cli::parse();
    match huren_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.downcast_ref::<huren_cli::UsageError>().is_some() { 64 } else { 1 };
            eprintln!("huren: {}", one_line(&e));
            std::process::ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}
