//! One module per top-level command: each owns its clap definitions (an `Args` struct
//! or a `Subcommand` enum) and a `run` function; [`crate::run`] only dispatches.
//!
//! - [`pki`]: the coordinator's PKI, registry and trust list (`registry`, `trust_list`).
//! - [`node`], [`gateway`]: the servers, sharing [`server`] (configuration, admin endpoint).
//! - [`admin`]: the province admin client.
//! - [`hub`], [`audit`]: the hub's and the auditor's clients, on [`huren_client`].
//! - [`demo`]: the loopback federation and its story.
//! - [`bench`](mod@bench): the benchmark tools, on [`huren_bench`].
//! - [`console`]: the coordinator's web console, on [`huren_console`].
//!
//! Shared here: [`TlsArgs`] (a client identity) and small helpers.

pub mod admin;
pub mod audit;
pub mod bench;
pub mod console;
pub mod demo;
pub mod gateway;
pub mod hub;
pub mod node;
pub mod pki;
pub mod server;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use huren_runtime::tls::TlsIdentity;

/// A client identity: `--cert`, `--key`, `--ca`, `--trust-domain`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Certificate chain, PEM.
    #[arg(long)]
    pub cert: PathBuf,
    /// Private key, PEM.
    #[arg(long)]
    pub key: PathBuf,
    /// National root certificate, PEM.
    #[arg(long)]
    pub ca: PathBuf,
    /// SPIFFE trust domain of the federation's identities (what `huren pki init` was given).
    #[arg(long, default_value = huren_pki::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

impl TlsArgs {
    /// Loads the identity; an unreadable or unusable one is a usage error.
    pub(crate) fn load(&self) -> Result<TlsIdentity> {
        crate::connect::load_identity(&self.cert, &self.key, &self.ca, &self.trust_domain)
    }
}

/// Reads a PEM root certificate; returns its DER.
pub(crate) fn read_root(path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(huren_pki::ca::pem_to_der(&pem)?)
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested; draining");
}
