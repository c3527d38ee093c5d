//! The `huren` command line: one binary for every party of the federation.
//!
//! Layout:
//! - here: [`Cli`] and [`Command`], the top-level command line, and [`run`], the
//!   dispatcher; [`UsageError`] marks what `main.rs` turns into exit code 64.
//! - [`cmd`]: one module per command (`pki`, `node`, `gateway`, `admin`, `hub`, `audit`,
//!   `demo`, `bench`, `console`), each with its clap definitions and its `run`.
//! - [`federation`]: an in-process loopback federation (the demo and the tests);
//!   [`demo`]: the story `huren demo` tells against it.
//! - [`admin`]: the plain-HTTP admin endpoint of the servers (`/metrics`, `/healthz`,
//!   `/readyz`); [`telemetry`]: logging, traces and metrics set up per command.
//! - [`ingest`]: batched loading of statuses and tokens (`huren admin import`, `tokens`,
//!   `huren bench seed`): file formats, checkpoints, progress.
//! - [`audit`]: scans of a stopped node's data and of Redis for records left behind,
//!   with the audit client of [`huren_client`] re-exported; [`hub`]: the hub client of
//!   [`huren_client`], re-exported.
//!
//! `main.rs` only parses, runs and maps errors to exit codes (64 for bad configuration
//! or usage, 1 otherwise). The hub and audit clients live in the `huren-client` library
//! and the load generator in `huren-bench`; the commands call them.

#![forbid(unsafe_code)]
// Doc comments on the clap types are `--help` text, where `<name>` is the convention.
#![allow(rustdoc::invalid_html_tags)]

pub mod admin;
pub mod audit;
pub mod cmd;
mod connect;
pub mod demo;
pub mod federation;
pub mod hub;
pub mod ingest;
pub mod telemetry;

/// The client library that the `hub` and `audit` commands are built on, for code that
/// links huren-cli only.
pub use huren_client;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};

/// Exit code of bad usage, a bad configuration, or an unusable key, certificate or input
/// file (`EX_USAGE` of sysexits).
pub const EXIT_USAGE: u8 = 64;
/// Exit code of a runtime failure: a server refused, a check failed, a peer is down.
pub const EXIT_FAILURE: u8 = 1;

/// The exit code for a failed command: [`EXIT_USAGE`] when the cause is something the
/// caller must fix in what they gave (a [`UsageError`], configuration, key or certificate
/// files, a QR string or token, a registry edit that is not well-formed), else
/// [`EXIT_FAILURE`]. Decided here, once, from the error's types, so every command
/// agrees.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use huren_pki::registry::RegistryError as R;
    let usage = e.chain().any(|c| {
        if c.is::<UsageError>()
            || c.is::<huren_runtime::tls::TlsError>()
            || c.is::<huren_runtime::config::ConfigError>()
            || c.is::<huren_pki::qr::QrError>()
            || c.is::<huren_pki::serial::InvalidSerial>()
            || c.is::<huren_pki::identity::InvalidProvinceCode>()
            || c.is::<huren_pki::identity::InvalidIdentity>()
        {
            return true;
        }
        if let Some(h) = c.downcast_ref::<huren_client::HubError>() {
            return matches!(h, huren_client::HubError::Input(_) | huren_client::HubError::Tls(_));
        }
        if let Some(a) = c.downcast_ref::<huren_client::AuditError>() {
            return matches!(
                a,
                huren_client::AuditError::Tls(_)
                    | huren_client::AuditError::UnknownProvince(_)
                    | huren_client::AuditError::NoEndpoint(_)
            );
        }
        // Registry edits: what was asked is malformed or does not fit the registry (exit
        // 64); reading, writing, generating or signing failed (exit 1).
        c.downcast_ref::<R>().is_some_and(|r| !matches!(r, R::Io { .. } | R::Ca(_) | R::Key(_) | R::TrustList(_)))
    });
    if usage {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// The error and its causes on one line, each said once: a cause whose text its wrapper
/// already printed (a `"…: {0}"` message over its own source) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// Marks an error as a usage/configuration error (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A usage error (exit code 64) with `e`'s message.
pub(crate) fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(UsageError(e.to_string()))
}

#[derive(Debug, Parser)]
#[command(name = "huren", version, about = "Huren (互认): mutual recognition of health status across provinces")]
#[command(after_help = "\
Examples:
  huren demo --once                       a three-province federation on loopback, and its story
  huren pki --help                        a coordinator's first day, step by step
  huren hub lookup --help                 check a traveller's status as a hub

Exit codes, the same for every command:
  0   done
  64  bad usage, a bad configuration, an unusable key or certificate file, or a client
      pointed at the wrong place (a port that does not speak TLS, a server of another role)
  1   a runtime failure: a server refused, a check failed, a server is down
The cause is printed once, on one line, on standard error.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// National PKI and trust list (coordinators).
    #[command(after_help = cmd::pki::FIRST_DAY)]
    Pki(cmd::pki::PkiArgs),
    /// Run a province node (or, with `purge`, delete its data with a signed receipt).
    #[command(
        after_help = "Examples:\n  huren node --config node-340000/node.toml\n  huren node --print-default-config > node.toml"
    )]
    Node(cmd::node::NodeArgs),
    /// Run the national gateway.
    #[command(
        after_help = "Examples:\n  huren gateway --config gateway/gateway.toml\n  huren gateway --print-default-config > gateway.toml"
    )]
    Gateway(cmd::server::ServerArgs),
    /// Province admin client: publish statuses and issue tokens at the own node.
    #[command(
        after_help = "Examples:\n  huren admin status --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem --ca admin-340000/ca.pem ah-0001 GREEN\n  huren admin token --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem --ca admin-340000/ca.pem ah-0001"
    )]
    Admin {
        #[command(subcommand)]
        command: cmd::admin::AdminCommand,
    },
    /// Transport hub client: look up and verify statuses.
    #[command(
        after_help = "Examples:\n  huren hub lookup --gateway 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca hub/ca.pem --purpose transit.highway 'HRN1:…'\n  huren hub verify --trust-list hub/trust-list.bin --ca hub/ca.pem 'HRN1:…'"
    )]
    Hub {
        #[command(subcommand)]
        command: cmd::hub::HubCommand,
    },
    /// Auditor tools: tree heads, log consistency, statistics.
    #[command(
        after_help = "Examples:\n  huren audit tree-head --province 340000 --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem --out head.bin\n  huren audit scan --node-data /var/lib/huren/node"
    )]
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
    /// Start a three-province federation on loopback and tell its story.
    #[command(
        after_help = "Examples:\n  huren demo               tell the story, then keep serving\n  huren demo --once --json run the story once and print each step's outcome"
    )]
    Demo(cmd::demo::DemoArgs),
    /// Benchmarks: gRPC load generator, seeding, node store, suite report.
    #[command(after_help = "Examples:\n  huren bench store --json\n  huren bench handshake-flood --help")]
    Bench {
        #[command(subcommand)]
        command: cmd::bench::BenchCommand,
    },
    /// The coordinator's read-only web console on a local address.
    #[command(
        after_help = "Example:\n  huren console --gateway 127.0.0.1:8443 --gateway-metrics http://127.0.0.1:9090/metrics \\\n    --cert huren-pki/issued/coordinator-nhc/cert.pem --key huren-pki/issued/coordinator-nhc/key.pem \\\n    --ca huren-pki/root/ca.pem --pki-dir huren-pki --listen 127.0.0.1:8490\n  # then open http://127.0.0.1:8490/ (read-only; keep it on loopback or behind your own access control)"
    )]
    Console(cmd::console::ConsoleArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    // Servers set up telemetry once their configuration is read; everything else logs only.
    let _telemetry = match &cli.command {
        Command::Node(args) if args.serves() => None,
        Command::Gateway(_) => None,
        _ => Some(telemetry::init("huren", None)?),
    };
    match cli.command {
        Command::Pki(args) => cmd::pki::run(args).await,
        Command::Node(args) => cmd::node::run(args).await,
        Command::Gateway(args) => cmd::gateway::run(args).await,
        Command::Admin { command } => cmd::admin::run(command).await,
        Command::Hub { command } => cmd::hub::run(command).await,
        Command::Audit { command } => cmd::audit::run(command).await,
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Bench { command } => cmd::bench::run(command).await,
        Command::Console(args) => cmd::console::run(args).await,
    }
}
