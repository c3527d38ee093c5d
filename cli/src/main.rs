//! `huren`: thin entry point. Parses the command line, runs it (logging and telemetry are
//! set up per command, see `huren_cli::telemetry`) and maps failures to exit codes
//! ([`huren_cli::exit_code`]): 64 for usage, configuration and unusable key or certificate
//! files, 1 for runtime failures; the cause is printed once, on one line.

#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc (its 2.x series) instead of the C library's allocator: measured faster on every
/// lookup path and 1.6× on batched publishing into a fjall store, where the C library's
/// allocator spent a third of the node's time (BENCHMARKS.md, "Allocator, again").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match huren_cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` succeed; every other parse error is bad usage (64).
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { huren_cli::EXIT_USAGE } else { 0 });
        }
    };
    match huren_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("huren: {}", huren_cli::one_line(&e));
            std::process::ExitCode::from(huren_cli::exit_code(&e))
        }
    }
}
