//! `huren pki trust-list sign|diff|upload|show`: the signed trust list that gateways,
//! nodes and hubs follow.

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
    /// Show what changed between two trust list files.
    #[command(
        after_help = "Example:\n  cp huren-pki/trust-list.bin old-trust-list.bin   # before signing the next one\n  huren pki trust-list diff old-trust-list.bin huren-pki/trust-list.bin"
    )]
    Diff {
        /// The older trust list file.
        old: PathBuf,
        /// The newer trust list file.
        new: PathBuf,
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
            let ca = match ca {
                Some(c) => c,
                None => PkiDir::open(dir)?.root_cert_path(),
            };
            let root = read_root(&ca)?;
            let (old, new) = (TrustList::load(&old, &root)?, TrustList::load(&new, &root)?);
            for line in huren_pki::trust::diff(&old, &new) {
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
        TrustListCommand::Show { file, ca } => {
            let (file, ca) = match (file, ca) {
                (Some(f), Some(c)) => (f, c),
                (f, c) => {
                    let pki = PkiDir::open(dir)?;
                    (f.unwrap_or_else(|| pki.trust_list_path()), c.unwrap_or_else(|| pki.root_cert_path()))
                }
            };
            let list = TrustList::load(&file, &read_root(&ca)?)?;
            println!("{}", serde_json::to_string_pretty(&trust_list_json(&list))?);
        }
    }
    Ok(())
}

/// The trust list as `show` prints it: provinces (sorted by code) with their keys, rules,
/// revoked serials, attestation bounds.
fn trust_list_json(list: &TrustList) -> serde_json::Value {
    let raw = list.raw();
    let mut provinces: Vec<_> = raw
        .provinces
        .iter()
        .map(|p| {
            serde_json::json!({
                "code": p.code,
                "name": p.name,
                "endpoints": p.endpoints,
                "attestation_keys": p.attestation_keys.iter().map(|k| serde_json::json!({
                    "kid": data_encoding::HEXLOWER.encode(&k.kid),
                    "status": pb::KeyStatus::try_from(k.status).map(|s| s.as_str_name()).unwrap_or("?"),
                    "not_before": k.not_before,
                    "not_after": k.not_after,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    provinces.sort_by(|a, b| a["code"].as_str().cmp(&b["code"].as_str()));
    serde_json::json!({
        "sequence": raw.sequence,
        "issued_at": raw.issued_at,
        "next_update": raw.next_update,
        "trust_domain": raw.trust_domain,
        "provinces": provinces,
        "rules": raw.rules.iter().map(|r| serde_json::json!({
            "id": r.id, "title": r.title, "legal_basis": r.legal_basis,
            "max_duration_seconds": r.max_duration_seconds, "exit_condition": r.exit_condition,
            "authorities": r.authorities,
            // Who may lift its status before it lapses (the authorities when not set).
            "may_lift": huren_pki::TrustList::lifters(r),
        })).collect::<Vec<_>>(),
        "revoked_serials": raw.revoked_serials,
        // The bound in force (the built-in default when the list sets none).
        "attestation_bounds": { "max_lifetime_seconds": list.attestation_bounds().max_lifetime },
    })
}
