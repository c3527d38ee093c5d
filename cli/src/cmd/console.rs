//! `huren console`: the coordinator's read-only web console ([`huren_console`]) on a local
//! address. The console reaches the gateway and the nodes with the coordinator's or
//! auditor's own mTLS identity; the browser needs no client certificate. [`SourceArgs`]
//! (who the console is and where it looks) is shared with `huren pki status`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use huren_console::{Console, Sources};
use huren_pki::registry::PkiDir;

use crate::cmd::{shutdown_signal, TlsArgs};
use crate::usage;

/// Who the console is and where it looks.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A coordinator or auditor identity: --cert, --key, --ca.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The gateway's mTLS address, host:port.
    #[arg(long)]
    pub gateway: String,
    /// The gateway's metrics on its admin port, e.g. http://10.0.0.2:9090/metrics
    /// (lookups, violations, circuit breakers).
    #[arg(long)]
    pub gateway_metrics: Option<String>,
    /// A node's metrics on its admin port, as <code>=http://host:port/metrics, for the
    /// trust-list sequence it holds (repeatable).
    #[arg(long = "node-metrics", value_name = "CODE=URL")]
    pub node_metrics: Vec<String>,
    /// Deadline of each call to a gateway or node, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

impl SourceArgs {
    /// The console's sources; a wrong identity or argument is a usage error.
    pub(crate) fn sources(&self, pki_dir: Option<PkiDir>) -> Result<Sources> {
        let identity = self.tls.load()?;
        let kind = identity.identity.role.kind();
        if kind != "coordinator" && kind != "auditor" {
            return Err(usage(format!(
                "the console needs a coordinator or auditor identity, not {}",
                identity.identity.uri()
            )));
        }
        let mut node_metrics = BTreeMap::new();
        for m in &self.node_metrics {
            let (code, url) = m.split_once('=').ok_or_else(|| usage(format!("--node-metrics {m:?}: give CODE=URL")))?;
            let code: huren_pki::ProvinceCode = code.parse().map_err(usage)?;
            node_metrics.insert(code.to_string(), url.to_owned());
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(usage("--timeout-ms must be within 1..=600000"));
        }
        Ok(Sources {
            identity,
            gateway: self.gateway.clone(),
            gateway_metrics: self.gateway_metrics.clone(),
            node_metrics,
            pki_dir,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Where to serve the console (plain HTTP: keep it on loopback or behind your own
    /// access control).
    #[arg(long, default_value = "127.0.0.1:8490")]
    pub listen: String,
    /// The coordinator's PKI directory: shows the root and every certificate issued there.
    #[arg(long, env = "HUREN_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
}

/// Runs `huren console` until Ctrl-C or SIGTERM.
pub async fn run(args: ConsoleArgs) -> Result<()> {
    let pki = args.pki_dir.as_deref().map(PkiDir::open).transpose().map_err(usage)?;
    let console = Console::new(args.sources.sources(pki)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    println!("console: http://{addr}/");
    huren_console::server::serve(listener, console, Duration::from_secs(60), shutdown_signal())
        .await
        .context("serving the console")
}
