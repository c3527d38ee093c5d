//! `huren hub`: the transport hub's client (on [`huren_client`]) — online lookups that
//! the hub verifies itself, a trust list cache kept in step with the gateway, and offline
//! QR checks.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use huren_client::{HubClient, HubError, VerifiedStatus};
use huren_pki::qr::Scanned;
use huren_pki::{unix_now, TrustList};
use huren_runtime::live::{self, LiveTrust};
use huren_runtime::tls::{ExpectedPeer, TlsIdentity};

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
        /// Gateway address, host:port.
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
        /// A QR string (HRN1:...) or <province>:<token>.
        input: String,
    },
    /// Keep a trust list cache in step with the gateway until stopped.
    #[command(
        after_help = "Example:\n  huren hub watch --gateway 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca hub/ca.pem \\\n    --trust-list-cache hub/trust-list.bin"
    )]
    Watch {
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port.
        #[arg(long)]
        gateway: String,
        /// Trust list cache to start from (if it verifies) and keep current.
        #[arg(long)]
        trust_list_cache: PathBuf,
    },
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
        HubCommand::Lookup { tls, gateway, purpose, trust_list_cache, json, input } => {
            let scanned = Scanned::parse(&input).map_err(usage)?;
            let identity = tls.load()?;
            let mut client = HubClient::connect(&gateway, &identity).map_err(usage)?;
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
            let status =
                explained(&gateway, &identity, client.lookup(scanned.province(), scanned.token(), &purpose).await)
                    .await?;
            print_status(&status, json)?;
        }
        HubCommand::Watch { tls, gateway, trust_list_cache } => watch(tls, gateway, trust_list_cache).await?,
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
    let identity = tls.load()?;
    let live = match TrustList::load(&cache, identity.root.as_ref()) {
        Ok(list) => LiveTrust::new(list, identity.root.to_vec(), Some(cache))?,
        Err(cache_error) => {
            // No usable cache: the gateway is the only source, and if it fails too
            // both causes are reported.
            let cache_problem =
                cache.exists().then(|| format!("trust list cache {} unusable ({cache_error})", cache.display()));
            let mut client = HubClient::connect(&gateway, &identity).map_err(usage)?;
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
    let _follow = live::follow(live.clone(), &gateway, &identity)?;
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

/// A hub call's result, a failed connection to the gateway in words.
async fn explained<T>(gateway: &str, identity: &TlsIdentity, r: Result<T, HubError>) -> Result<T> {
    crate::connect::explained(gateway, identity, &ExpectedPeer::AnyGateway, r.map_err(Into::into)).await
}

fn print_status(status: &VerifiedStatus, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(status)?);
    } else {
        println!("{}", status.line());
    }
    Ok(())
}
