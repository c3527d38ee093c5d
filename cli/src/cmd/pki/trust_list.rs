//! `huren pki trust-list sign|diff|upload|show`: the signed trust list that gateways,
//! nodes and hubs follow. Signing keeps every list in `history/`; `show` and `diff` render
//! every field ([`super::describe`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use huren_pki::registry::PkiDir;
use huren_pki::TrustList;
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations};

use crate::cmd::{read_root, TlsArgs};
use crate::usage;

#[derive(Debug, Subcommand)]
pub enum TrustListCommand {
    /// Sign the next trust list from the registry (writes trust-list.bin).
    #[command(after_help = "Example:\n  huren pki trust-list sign")]
    Sign,
    /// Show every field that changed between two trust list files; without files, between
    /// the last signed list and the one signed before it (kept in `history/`).
    #[command(
        after_help = "Examples:\n  huren pki trust-list diff                      # the last signed list against the one before it\n  huren pki trust-list diff huren-pki/history/trust-list-7.bin huren-pki/trust-list.bin"
    )]
    Diff {
        /// The older list (default: the list signed before NEW, from `history/`).
        old: Option<PathBuf>,
        /// The newer list (default: the PKI directory's trust-list.bin).
        new: Option<PathBuf>,
        /// National root certificate (default: the PKI directory's root).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Upload a signed trust list to a gateway (coordinator identity).
    #[command(
        after_help = "Example:\n  huren pki trust-list upload --gateway 10.0.0.2:8443 --ca huren-pki/root/ca.pem \\\n    --cert huren-pki/issued/coordinator-nhc/cert.pem --key huren-pki/issued/coordinator-nhc/key.pem"
    )]
    Upload {
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port.
        #[arg(long)]
        gateway: String,
        /// Trust list file (default: the PKI directory's trust-list.bin).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Verify a trust list file and print it as JSON.
    #[command(
        after_help = "Examples:\n  huren pki trust-list show\n  huren pki trust-list show --file hub/trust-list.bin --ca hub/ca.pem"
    )]
    Show {
        /// Trust list file (default: the PKI directory's trust-list.bin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// National root certificate (default: the PKI directory's root).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Print JSON (the default; every field of the list).
        #[arg(long)]
        json: bool,
    },
}

/// Runs `huren pki trust-list …` on the PKI directory `dir`.
pub(crate) async fn run(dir: &Path, command: TrustListCommand) -> Result<()> {
    match command {
        TrustListCommand::Sign => {
            let pki = PkiDir::open(dir)?;
            let list = pki.sign_trust_list()?;
            println!("trust list sequence {} signed: {}", list.sequence(), pki.trust_list_path().display());
        }
        TrustListCommand::Diff { old, new, ca } => {
            let pki = || PkiDir::open(dir);
            let ca = match ca {
                Some(c) => c,
                None => pki()?.root_cert_path(),
            };
            let root = read_root(&ca)?;
            let new_path = match new {
                Some(n) => n,
                None => pki()?.trust_list_path(),
            };
            let new = TrustList::load(&new_path, &root).map_err(usage)?;
            let old_path = match old {
                Some(o) => o,
                None => pki()?.previous_trust_list_path(new.sequence())?.ok_or_else(|| {
                    usage(format!(
                        "no trust list signed before sequence {} in {}; give OLD and NEW files",
                        new.sequence(),
                        pki().map(|p| p.history_dir().display().to_string()).unwrap_or_default()
                    ))
                })?,
            };
            let old = TrustList::load(&old_path, &root).map_err(usage)?;
            for line in super::describe::diff(&old, &new) {
                println!("{line}");
            }
        }
        TrustListCommand::Upload { tls, gateway, file } => {
            let file = match file {
                Some(f) => f,
                None => PkiDir::open(dir)?.trust_list_path(),
            };
            let identity = tls.load()?;
            let list = TrustList::load(&file, identity.root.as_ref())?;
            // The list being uploaded is the newest: refuse a gateway certificate it revokes.
            let config = tls::client_config(
                &identity,
                ExpectedPeer::AnyGateway,
                Revocations::new(list.revoked_serials().clone()),
            )?;
            let channel = tls::channel(&gateway, config, Duration::from_secs(3)).map_err(usage)?;
            let result = pb::trust_registry_client::TrustRegistryClient::new(channel)
                .upload(list.signed().clone())
                .await
                .map_err(|s| crate::connect::refused("gateway (upload)", s));
            let response = crate::connect::explained(&gateway, &identity, &ExpectedPeer::AnyGateway, result).await?;
            println!("gateway {gateway} now serves trust list sequence {}", response.into_inner().sequence);
        }
        TrustListCommand::Show { file, ca, json: _ } => {
            let (file, ca) = match (file, ca) {
                (Some(f), Some(c)) => (f, c),
                (f, c) => {
                    let pki = PkiDir::open(dir)?;
                    (f.unwrap_or_else(|| pki.trust_list_path()), c.unwrap_or_else(|| pki.root_cert_path()))
                }
            };
            let list = TrustList::load(&file, &read_root(&ca)?)?;
            println!("{}", serde_json::to_string_pretty(&super::describe::trust_list_json(&list))?);
        }
    }
    Ok(())
}
