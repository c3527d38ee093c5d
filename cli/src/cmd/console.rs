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
            hub_window: huren_client::DEFAULT_HUB_WINDOW,
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
    /// How far back the Hubs page ranks the hubs that checked each province's travellers,
    /// in days or hours: 7d, 36h (default: 7 days, as `huren audit hubs`). Needs an
    /// auditor identity.
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub hub_window: Option<Duration>,
}

/// The longest `--hub-window`, in days.
const MAX_HUB_WINDOW_DAYS: u64 = 366;

/// `--hub-window`: whole days (`7d`) or hours (`36h`), from an hour to a year.
fn parse_window(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a window like 7d or 36h");
    let t = s.trim();
    let (number, per) = match (t.strip_suffix('d'), t.strip_suffix('h')) {
        (Some(n), _) => (n, 24),
        (_, Some(n)) => (n, 1),
        _ => return Err(bad()),
    };
    let hours = number.parse::<u64>().ok().and_then(|n| n.checked_mul(per)).ok_or_else(bad)?;
    if !(1..=MAX_HUB_WINDOW_DAYS * 24).contains(&hours) {
        return Err(format!("{s:?}: give a window from 1h to {MAX_HUB_WINDOW_DAYS}d"));
    }
    Ok(Duration::from_secs(hours * 3600))
}

/// Runs `huren console` until Ctrl-C or SIGTERM.
pub async fn run(args: ConsoleArgs) -> Result<()> {
    let pki = args.pki_dir.as_deref().map(PkiDir::open).transpose().map_err(usage)?;
    let mut sources = args.sources.sources(pki)?;
    if let Some(window) = args.hub_window {
        sources.hub_window = window;
    }
    let console = Console::new(sources);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    println!("console: http://{addr}/");
    huren_console::server::serve(listener, console, Duration::from_secs(60), shutdown_signal())
        .await
        .context("serving the console")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_windows_are_whole_days_or_hours_within_a_year() {
        assert_eq!(parse_window("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_window("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_window("366d"), Ok(Duration::from_secs(366 * 86_400)));
        for bad in ["", "7", "d", "0h", "1.5d", "-1d", "7w", "7é", "367d", "99999999999999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad:?} accepted");
        }
    }
}
