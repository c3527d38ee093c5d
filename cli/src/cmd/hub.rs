//! `huren hub`: the transport hub's client (on [`huren_client`]) — online lookups that
//! the hub verifies itself, a trust list cache kept in step with the gateways, and offline
//! QR checks — and `huren hub serve`, the agent for gate scanners (on [`huren_hub_agent`]).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use huren_client::{HubClient, HubError, VerifiedStatus};
use huren_hub_agent::{Agent, AgentConfig, AgentError};
use huren_pki::qr::Scanned;
use huren_pki::{unix_now, TrustList};
use huren_runtime::live::{self, LiveTrust};
use huren_runtime::tls::{ExpectedPeer, TlsIdentity};

use crate::cmd::server::ServerArgs;
use crate::cmd::{read_root, shutdown_signal, TlsArgs};
use crate::usage;

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Look a traveller up through the gateway and verify the answer.
    #[command(
        after_help = "Examples:\n  huren hub lookup --gateway 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca hub/ca.pem \\\n    --purpose transit.highway --trust-list-cache hub/trust-list.bin 'HRN1:…'\n  huren hub lookup … 340000:AAAAAAAAAAAAAAAAAAAAAAAAAA --json"
    )]
    Lookup {
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port; several replicas as a,b,… (a lookup fails over to
        /// the next when one cannot be reached, never on a refusal).
        #[arg(long)]
        gateway: String,
        /// Purpose of the check, e.g. transit.highway.
        #[arg(long, default_value = huren_client::DEFAULT_PURPOSE)]
        purpose: String,
        /// Trust list cache: start from it if present, keep the newest verified list in it
        /// (for offline verification).
        #[arg(long)]
        trust_list_cache: Option<PathBuf>,
        /// Print the verified status as one JSON object instead of a line.
        #[arg(long)]
        json: bool,
        /// A manifest: a file with one QR string or <province>:<token> per line (blank
        /// lines and lines starting with # skipped), at most 500, looked up in one
        /// LookupBatch call; one answer line per token, in order. Exits 0 when the call
        /// was answered, even if some tokens were refused (their lines say why).
        #[arg(long, conflicts_with = "input")]
        batch: Option<PathBuf>,
        /// A QR string (HRN1:...) or <province>:<token>.
        #[arg(required_unless_present = "batch")]
        input: Option<String>,
    },
    /// Keep a trust list cache in step with the gateway until stopped.
    #[command(
        after_help = "Example:\n  huren hub watch --gateway 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca hub/ca.pem \\\n    --trust-list-cache hub/trust-list.bin"
    )]
    Watch {
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port; several replicas as a,b,… (every one is followed,
        /// the highest sequence wins).
        #[arg(long)]
        gateway: String,
        /// Trust list cache to start from (if it verifies) and keep current.
        #[arg(long)]
        trust_list_cache: PathBuf,
    },
    /// Run the hub agent for gate scanners: a local HTTP/JSON API (`POST /v1/check`,
    /// `/healthz`, `/metrics`) that checks online through the gateways, offline against
    /// the followed trust list when none answers.
    #[command(
        after_help = "Example:\n  huren hub serve --print-default-config > agent.toml   # then set gateway, cert, key, ca\n  huren hub serve --config agent.toml\n  curl -s -XPOST 127.0.0.1:8480/v1/check -d '{\"scan\":\"HRN1:...\",\"purpose\":\"transit.rail\"}'"
    )]
    Serve(ServerArgs),
    /// Verify a QR string offline against a saved trust list.
    #[command(after_help = "Example:\n  huren hub verify --trust-list hub/trust-list.bin --ca hub/ca.pem 'HRN1:…'")]
    Verify {
        /// A saved trust list (e.g. a lookup's --trust-list-cache).
        #[arg(long)]
        trust_list: PathBuf,
        /// National root certificate, PEM.
        #[arg(long)]
        ca: PathBuf,
        /// Print the verified status as one JSON object instead of a line.
        #[arg(long)]
        json: bool,
        /// The scanned QR string, HRN1:…
        qr: String,
    },
}

/// Runs `huren hub …`.
pub async fn run(command: HubCommand) -> Result<()> {
    match command {
        HubCommand::Lookup { tls, gateway, purpose, trust_list_cache, json, batch, input } => {
            let manifest = batch.as_deref().map(read_manifest).transpose()?;
            let scanned = match (&manifest, input) {
                (None, Some(input)) => Some(Scanned::parse(&input).map_err(usage)?),
                _ => None,
            };
            let gateways = gateway_list(&gateway)?;
            let identity = tls.load()?;
            let mut client = HubClient::connect_any(&gateways, &identity).map_err(usage)?;
            if let Some(path) = &trust_list_cache {
                client = client.with_cache(path)?;
            }
            match client.refresh_trust_list().await {
                // A gateway serving an older list than the cached one is not followed, but
                // the hub keeps working on its last good copy (degrade, don't stop).
                Ok(_) => {}
                Err(e @ HubError::Rollback { .. }) => eprintln!("warning: {e}; using the cached trust list"),
                Err(e) => return explained(&gateway, &identity, Err(e)).await,
            }
            match (manifest, scanned) {
                (Some(manifest), _) => {
                    let answers =
                        explained(&gateway, &identity, client.lookup_batch(&manifest, &purpose).await).await?;
                    for (n, answer) in answers.iter().enumerate() {
                        print_answer(n + 1, answer, json)?;
                    }
                }
                (None, Some(scanned)) => {
                    let status = explained(
                        &gateway,
                        &identity,
                        client.lookup(scanned.province(), scanned.token(), &purpose).await,
                    )
                    .await?;
                    print_status(&status, json)?;
                }
                (None, None) => return Err(usage(anyhow!("give a QR string, <province>:<token>, or --batch FILE"))),
            }
        }
        HubCommand::Watch { tls, gateway, trust_list_cache } => watch(tls, gateway, trust_list_cache).await?,
        HubCommand::Serve(args) => serve(args).await?,
        HubCommand::Verify { trust_list, ca, json, qr } => {
            let trust = TrustList::load(&trust_list, &read_root(&ca)?).map_err(usage)?;
            let status = huren_client::verify_offline(&trust, &qr, unix_now())?;
            print_status(&status, json)?;
        }
    }
    Ok(())
}

/// `huren hub watch`: follows the gateway's trust list until stopped, starting from the
/// cache if it verifies, else from the gateway.
async fn watch(tls: TlsArgs, gateway: String, cache: PathBuf) -> Result<()> {
    let gateways = gateway_list(&gateway)?;
    let identity = tls.load()?;
    let live = match TrustList::load(&cache, identity.root.as_ref()) {
        Ok(list) => LiveTrust::new(list, identity.root.to_vec(), Some(cache))?,
        Err(cache_error) => {
            // No usable cache: the gateway is the only source, and if it fails too
            // both causes are reported.
            let cache_problem =
                cache.exists().then(|| format!("trust list cache {} unusable ({cache_error})", cache.display()));
            let mut client = HubClient::connect_any(&gateways, &identity).map_err(usage)?;
            let list = match client.refresh_trust_list().await {
                Ok(list) => {
                    if let Some(problem) = &cache_problem {
                        eprintln!("warning: {problem}; replaced with the list from {gateway}");
                    }
                    list.clone()
                }
                Err(e) => {
                    let Err(e) = explained::<()>(&gateway, &identity, Err(e)).await else { unreachable!() };
                    match cache_problem {
                        Some(problem) => return Err(anyhow!("{problem}, and {}", crate::one_line(&e))),
                        None => return Err(e),
                    }
                }
            };
            LiveTrust::new(list, identity.root.to_vec(), Some(cache))?
        }
    };
    eprintln!("following {gateway}; trust list sequence {}", live.current().sequence());
    let _follow = live::follow_all(live.clone(), &gateways, &identity)?;
    let mut updates = live.subscribe();
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = async {
            while updates.changed().await.is_ok() {
                eprintln!("trust list sequence {}", updates.borrow_and_update().sequence());
            }
        } => {}
    }
    Ok(())
}

/// `huren hub serve`: the hub agent, from its TOML configuration, until stopped.
async fn serve(args: ServerArgs) -> Result<()> {
    let Some(path) = args.config_file::<AgentConfig>()? else { return Ok(()) };
    let config = AgentConfig::load(path).map_err(usage)?;
    let addr = config.listen_addr().map_err(usage)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let agent = Agent::start(config).await.map_err(|e| match e {
        AgentError::Identity(_) => usage(e),
        other => other.into(),
    })?;
    eprintln!(
        "hub agent on http://{} (POST /v1/check, GET /healthz, GET /metrics); trust list sequence {}",
        listener.local_addr()?,
        agent.trust().current().sequence()
    );
    agent.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// The endpoints of a `--gateway a,b,…` value; none is a usage error.
pub(crate) fn gateway_list(value: &str) -> Result<Vec<String>> {
    let gateways = huren_client::split_endpoints(value);
    if gateways.is_empty() {
        return Err(usage("--gateway names no endpoint"));
    }
    Ok(gateways)
}

/// A hub call's result, a failed connection to the gateway in words.
async fn explained<T>(gateway: &str, identity: &TlsIdentity, r: Result<T, HubError>) -> Result<T> {
    crate::connect::explained(gateway, identity, &ExpectedPeer::AnyGateway, r.map_err(Into::into)).await
}

/// Reads a manifest: one QR string or `<province>:<token>` per line.
fn read_manifest(path: &std::path::Path) -> Result<Vec<(huren_pki::ProvinceCode, Vec<u8>)>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(anyhow!("cannot read manifest {}: {e}", path.display())))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let scanned =
            Scanned::parse(line).map_err(|e| usage(anyhow!("manifest {} line {}: {e}", path.display(), n + 1)))?;
        tokens.push((scanned.province().clone(), scanned.token().to_vec()));
    }
    if tokens.len() > huren_client::MAX_BATCH_TOKENS {
        return Err(usage(anyhow!(
            "manifest {} has {} tokens; at most {} per lookup",
            path.display(),
            tokens.len(),
            huren_client::MAX_BATCH_TOKENS
        )));
    }
    Ok(tokens)
}

/// One manifest answer: `<n>: <status line>` or `<n>: refused: <cause>` (JSON: one object
/// per line with `n` and `status` or `refused`).
fn print_answer(n: usize, answer: &Result<VerifiedStatus, HubError>, json: bool) -> Result<()> {
    match (answer, json) {
        (Ok(status), true) => println!("{}", serde_json::json!({ "n": n, "status": status })),
        (Ok(status), false) => println!("{n}: {}", status.line()),
        (Err(e), true) => println!("{}", serde_json::json!({ "n": n, "refused": e.to_string(), "reason": e.reason() })),
        (Err(e), false) => println!("{n}: refused: {e}"),
    }
    Ok(())
}

fn print_status(status: &VerifiedStatus, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(status)?);
    } else {
        println!("{}", status.line());
    }
    Ok(())
}
