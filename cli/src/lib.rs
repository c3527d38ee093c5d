//! The `huren` command line: one binary for every party of the federation.
//!
//! Layout: [`Cli`] (clap definitions) and [`run`] (dispatch) here; [`hub`] the transport
//! hub's client and [`audit`] the auditor's, from [`huren_client`]; [`federation`] an
//! in-process loopback federation (demo and tests); [`demo`] the story `huren demo`
//! tells. `main.rs` only sets up logging and maps errors to exit codes (64 for bad
//! configuration or usage, 1 otherwise).

#![forbid(unsafe_code)]
// Doc comments on the clap types are `--help` text, where `<name>` is the convention.
#![allow(rustdoc::invalid_html_tags)]

pub mod admin;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod federation;
pub mod hub;
pub mod telemetry;

/// The client library that the `hub` and `audit` commands are built on, for code that
/// links huren-cli only.
pub use huren_client;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use huren_pki::ca::Validity;
use huren_pki::qr::Scanned;
use huren_pki::registry::{PkiDir, RegistryRule};
use huren_pki::{unix_now, ProvinceCode, TrustList};
use huren_runtime::tls::TlsIdentity;

/// Marks an error as a usage/configuration error (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(name = "huren", version, about = "Huren (互认): mutual recognition of health status across provinces")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// National PKI and trust list (coordinators).
    Pki(PkiArgs),
    /// Run a province node (or, with `purge`, delete its data with a signed receipt).
    Node(NodeArgs),
    /// Run the national gateway.
    Gateway(ServerArgs),
    /// Province admin client: publish statuses and issue tokens at the own node.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Transport hub client: look up and verify statuses.
    Hub {
        #[command(subcommand)]
        command: HubCommand,
    },
    /// Auditor tools: tree heads, log consistency, statistics.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Start a three-province federation on loopback and tell its story.
    Demo(DemoArgs),
    /// Benchmarks: gRPC load generator, seeding, node store, suite report.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Debug, Args)]
pub struct PkiArgs {
    /// The coordinator's PKI directory.
    #[arg(long, global = true, env = "HUREN_PKI_DIR", default_value = "huren-pki")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the national root CA.
    Init {
        #[arg(long, default_value = huren_pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Provinces of the federation.
    Province {
        #[command(subcommand)]
        command: ProvinceCommand,
    },
    /// The rule registry.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Issue a role certificate: node|admin <province-code>, authority <province-code>/<name>,
    /// gateway|hub|coordinator|auditor <name>.
    Issue {
        kind: String,
        name: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// For hubs: register the hub for this purpose too (repeatable).
        #[arg(long = "purpose")]
        purposes: Vec<String>,
    },
    /// Transport hub registrations (which purposes each hub may declare).
    Hub {
        #[command(subcommand)]
        command: HubRegistryCommand,
    },
    /// The field policy: which attestation fields may cross a border, per purpose.
    Purpose {
        #[command(subcommand)]
        command: PurposeCommand,
    },
    /// Retention windows (0 = built-in default).
    Retention {
        #[arg(long, default_value_t = 0)]
        status_max_age_seconds: i64,
        #[arg(long, default_value_t = 0)]
        audit_max_age_seconds: i64,
        #[arg(long, default_value_t = 0)]
        cache_max_seconds: i64,
    },
    /// Order the federation to end: gateways stop routing, nodes purge and hand in receipts.
    Sunset {
        /// Effective time, Unix seconds (default: now).
        #[arg(long)]
        at: Option<i64>,
        #[arg(long)]
        reason: String,
    },
    /// Attestation keys: add (published), activate, retire, revoke.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Revoke a certificate: by role and name as issued here, or by serial.
    Revoke {
        /// node|admin|gateway|hub|coordinator|auditor
        kind: Option<String>,
        /// Province code (node, admin) or name.
        name: Option<String>,
        /// Serial number (hex) instead of kind and name.
        #[arg(long, conflicts_with_all = ["kind", "name"])]
        serial: Option<String>,
    },
    /// The signed trust list.
    TrustList {
        #[command(subcommand)]
        command: TrustListCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum HubRegistryCommand {
    /// Register (or re-register) a hub with the purposes it may declare.
    Register {
        id: String,
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The province (code) where the hub checks travellers: lookups are then counted by
        /// province pair.
        #[arg(long)]
        province: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PurposeCommand {
    /// Set the attestation fields allowed for a purpose (adds the purpose if new).
    Set {
        name: String,
        #[arg(long = "field", required = true)]
        fields: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Prepare a rotation: generate a key and publish it (verifies, does not sign yet).
    Add {
        code: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Make a key the one nodes sign with; the previously active key is retired.
    Activate { code: String, kid: String },
    /// Stop signing with a key; it verifies until its not_after.
    Retire { code: String, kid: String },
    /// Revoke a key: nothing it signed verifies any more, online or offline.
    Revoke { code: String, kid: String },
}

#[derive(Debug, Subcommand)]
pub enum ProvinceCommand {
    /// Admit a province: create its CA and first attestation key.
    Add {
        code: String,
        #[arg(long)]
        name: String,
        /// Node endpoint, e.g. https://10.0.0.5:7443 (repeatable).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        #[arg(long, default_value_t = 1825)]
        days: i64,
    },
    /// Replace a province's node endpoints.
    SetEndpoint { code: String, endpoints: Vec<String> },
    /// Remove a province from the federation (its CA certificate is revoked).
    Retire { code: String },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add or replace a rule.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        legal_basis: String,
        /// Status the rule may assign: YELLOW or RED (repeatable).
        #[arg(long = "may-assign")]
        may_assign: Vec<String>,
        #[arg(long, default_value_t = 0)]
        max_duration_seconds: i64,
        #[arg(long, default_value = "")]
        exit_condition: String,
        /// Authority allowed to apply the rule, as <province-code>/<name> (repeatable; at
        /// least one). Only that authority's own certificate can then assign the status.
        #[arg(long = "authority")]
        authorities: Vec<String>,
        /// What the status becomes once it lapses (GREEN or YELLOW); default: no current status.
        #[arg(long)]
        lapses_to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustListCommand {
    /// Sign the next trust list from the registry (writes trust-list.bin).
    Sign,
    /// Show what changed between two trust list files.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// National root certificate (default: the PKI directory's root).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Upload a signed trust list to a gateway (coordinator identity).
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
    Show {
        /// Trust list file (default: the PKI directory's trust-list.bin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// National root certificate (default: the PKI directory's root).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Delete subject data now (the node must be stopped) and write a signed deletion receipt.
    Purge {
        /// TOML configuration file of the node.
        #[arg(long)]
        config: PathBuf,
        /// Delete status records last changed, tokens expired and log entries made before
        /// this time (Unix seconds).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        before: Option<i64>,
        /// Delete every subject record, token and log entry.
        #[arg(long)]
        all: bool,
        /// Where to write the receipt (default: <data_dir>/receipts/manual-<time>.receipt).
        #[arg(long)]
        receipt: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Look a traveller up through the gateway and verify the answer.
    Lookup {
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port.
        #[arg(long)]
        gateway: String,
        /// Purpose of the check, e.g. transit.highway.
        #[arg(long, default_value = hub::DEFAULT_PURPOSE)]
        purpose: String,
        /// Trust list cache: start from it if present, keep the newest verified list in it
        /// (for offline verification).
        #[arg(long)]
        trust_list_cache: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// A QR string (HRN1:...) or <province>:<token>.
        input: String,
    },
    /// Keep a trust list cache in step with the gateway until stopped.
    Watch {
        #[command(flatten)]
        tls: TlsArgs,
        #[arg(long)]
        gateway: String,
        #[arg(long)]
        trust_list_cache: PathBuf,
    },
    /// Verify a QR string offline against a saved trust list.
    Verify {
        #[arg(long)]
        trust_list: PathBuf,
        /// National root certificate, PEM.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        json: bool,
        qr: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set a subject's status at the province node.
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Province-internal pseudonymous subject reference (never an ID number).
        subject_ref: String,
        /// GREEN, YELLOW or RED.
        status: String,
        /// Registered rule that assigns a non-green status.
        #[arg(long, default_value = "")]
        rule: String,
        /// Optional check: the authority the caller's certificate must be (<code>/<name>).
        /// Who applies a status is the certificate's identity, never this text.
        #[arg(long, default_value = "")]
        authority: String,
        /// Validity in seconds from now (0 = node default).
        #[arg(long, default_value_t = 0)]
        valid_for: i64,
    },
    /// Issue a fresh token and QR for a subject.
    Token {
        #[command(flatten)]
        target: AdminTarget,
        subject_ref: String,
        /// Token lifetime in seconds (0 = node default).
        #[arg(long, default_value_t = 0)]
        lifetime: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AuditTarget {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Province whose node to audit.
    #[arg(long)]
    pub province: String,
    /// The node's address (default: its endpoint in the trust list).
    #[arg(long)]
    pub node: Option<String>,
    /// Trust list file used to check the node's signatures.
    #[arg(long)]
    pub trust_list: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Fetch and verify the node's signed tree head; print it (and save it with --out).
    TreeHead {
        #[command(flatten)]
        target: AuditTarget,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Transparency log checks.
    Log {
        #[command(subcommand)]
        command: AuditLogCommand,
    },
    /// Check a deletion receipt: signature, province key and its validity, final tree
    /// head, nothing left after a sunset, consistency with a saved tree head.
    VerifyReceipt {
        receipt: PathBuf,
        #[arg(long)]
        trust_list: PathBuf,
        /// National root certificate, PEM.
        #[arg(long)]
        ca: PathBuf,
        /// A tree head saved earlier (`audit tree-head --out`): the receipt must carry a
        /// consistency proof from its size to the final log, and the proof must verify.
        #[arg(long)]
        tree_head: Option<PathBuf>,
    },
    /// Confirm that no subject record remains in a node's data folder (node stopped):
    /// none in its store, and no record bytes left anywhere in the raw files; with
    /// --redis, no key under the Huren prefix of a Redis server.
    Scan {
        #[arg(long)]
        node_data: Option<PathBuf>,
        /// Also look for these bytes in every raw file, e.g. subject references (repeatable).
        #[arg(long = "pattern")]
        patterns: Vec<String>,
        /// Also look for each line of this file (subject references, say) in every raw file.
        #[arg(long)]
        patterns_file: Option<PathBuf>,
        /// Redis server to scan, e.g. redis://127.0.0.1:6379.
        #[arg(long)]
        redis: Option<String>,
        /// Key prefix to scan: the gateway's (default) or a node store's
        /// (`store_redis_prefix`, by default `huren-node:<province>:`).
        #[arg(long, default_value = "huren:")]
        redis_prefix: String,
    },
    /// Non-green status changes per rule and authority in a time window.
    Stats {
        #[command(flatten)]
        target: AuditTarget,
        /// Window start, Unix seconds (default: the beginning).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Window end, Unix seconds (default: now).
        #[arg(long)]
        until: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditLogCommand {
    /// Check that the log only grew between two tree heads (and that every entry matches
    /// the newer one): `--old` a saved head, `--new` another or (default) the current one.
    Verify {
        #[command(flatten)]
        target: AuditTarget,
        #[arg(long)]
        old: PathBuf,
        #[arg(long)]
        new: Option<PathBuf>,
        /// Also download every entry and recompute the root.
        #[arg(long)]
        full: bool,
    },
}

#[derive(Debug, Args)]
pub struct AdminTarget {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The province node, host:port.
    #[arg(long)]
    pub node: String,
}

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
    #[arg(long, default_value = huren_pki::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the story once and exit (0 when every step behaved as expected).
    #[arg(long)]
    pub once: bool,
    /// Print one JSON object with each step's outcome.
    #[arg(long)]
    pub json: bool,
    /// Keep the federation's files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Record every message crossing the gateway to this file (JSON lines), for
    /// inspection: what really crosses a province border.
    #[arg(long)]
    pub capture: Option<PathBuf>,
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(UsageError(e.to_string()))
}

fn validity(days: i64) -> Result<Validity> {
    if !(1..=36_500).contains(&days) {
        return Err(usage("--days must be within 1..=36500"));
    }
    Ok(Validity::days(days))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    // Servers set up telemetry once their configuration is read; everything else logs only.
    let _telemetry = match &cli.command {
        Command::Node(NodeArgs { command: None, .. }) | Command::Gateway(_) => None,
        _ => Some(telemetry::init("huren", None)?),
    };
    match cli.command {
        Command::Pki(args) => pki(args).await,
        Command::Node(NodeArgs { command: Some(NodeCommand::Purge { config, before, all, receipt }), .. }) => {
            node_purge(&config, before, all, receipt)
        }
        Command::Node(args) => node(args.server).await,
        Command::Gateway(args) => gateway(args).await,
        Command::Admin { command } => admin_command(command).await,
        Command::Hub { command } => hub_command(command).await,
        Command::Audit { command } => audit_command(command).await,
        Command::Demo(args) => demo_command(args).await,
        Command::Bench { command } => bench::run(command).await,
    }
}

async fn pki(args: PkiArgs) -> Result<()> {
    let dir = args.dir;
    match args.command {
        PkiCommand::Init { trust_domain, days } => {
            let pki = PkiDir::init(&dir, &trust_domain, validity(days)?)?;
            println!("national root created: {}", pki.root_cert_path().display());
            println!("keep {} offline", dir.join("root/ca.key").display());
        }
        PkiCommand::Province { command: ProvinceCommand::Add { code, name, endpoints, days } } => {
            let code: ProvinceCode = code.parse().map_err(usage)?;
            let pki = PkiDir::open(&dir)?;
            let key = pki.add_province(&code, &name, &endpoints, validity(days)?)?;
            println!("province {code} {name} admitted; attestation key {} (active)", key.kid());
            println!("sign a new trust list to publish it: huren pki trust-list sign");
        }
        PkiCommand::Province { command: ProvinceCommand::Retire { code } } => {
            let code: ProvinceCode = code.parse().map_err(usage)?;
            PkiDir::open(&dir)?.retire_province(&code)?;
            println!("province {code} retired and its CA revoked; sign and upload a new trust list to publish it");
        }
        PkiCommand::Key { command } => {
            let pki = PkiDir::open(&dir)?;
            let (code, kid, status) = match command {
                KeyCommand::Add { code, days } => {
                    let code: ProvinceCode = code.parse().map_err(usage)?;
                    let key = pki.add_key(&code, validity(days)?)?;
                    println!("key {} of province {code} published (not yet signing)", key.kid());
                    println!(
                        "give {} to the province node, then activate it",
                        pki.attestation_key_path(&code, &key.kid().hex()).display()
                    );
                    return Ok(());
                }
                KeyCommand::Activate { code, kid } => (code, kid, "active"),
                KeyCommand::Retire { code, kid } => (code, kid, "retired"),
                KeyCommand::Revoke { code, kid } => (code, kid, "revoked"),
            };
            let code: ProvinceCode = code.parse().map_err(usage)?;
            pki.set_key_status(&code, &kid, status)?;
            println!("key {kid} of province {code} is now {status}; sign and upload a new trust list to publish it");
        }
        PkiCommand::Revoke { kind, name, serial } => {
            let pki = PkiDir::open(&dir)?;
            let serial = match (kind, name, serial) {
                (_, _, Some(serial)) => {
                    pki.revoke_serial(&serial)?;
                    serial
                }
                (Some(kind), Some(name), None) => pki.revoke_issued(&kind, &name)?,
                _ => return Err(usage("give <kind> <name> or --serial <hex>")),
            };
            println!("certificate {serial} revoked; sign and upload a new trust list to publish it");
        }
        PkiCommand::Province { command: ProvinceCommand::SetEndpoint { code, endpoints } } => {
            let code: ProvinceCode = code.parse().map_err(usage)?;
            PkiDir::open(&dir)?.set_endpoints(&code, &endpoints)?;
            println!("province {code} endpoints set; sign a new trust list to publish them");
        }
        PkiCommand::Rule {
            command:
                RuleCommand::Add {
                    id,
                    title,
                    legal_basis,
                    may_assign,
                    max_duration_seconds,
                    exit_condition,
                    authorities,
                    lapses_to,
                },
        } => {
            PkiDir::open(&dir)?.put_rule(RegistryRule {
                id: id.clone(),
                title,
                legal_basis,
                may_assign,
                max_duration_seconds,
                exit_condition,
                authorities,
                lapses_to,
            })?;
            println!("rule {id} registered; sign a new trust list to publish it");
        }
        PkiCommand::Retention { status_max_age_seconds, audit_max_age_seconds, cache_max_seconds } => {
            PkiDir::open(&dir)?.set_retention(huren_pki::registry::RegistryRetention {
                status_max_age_seconds,
                audit_max_age_seconds,
                cache_max_seconds,
            })?;
            println!("retention set; sign and upload a new trust list to publish it");
        }
        PkiCommand::Sunset { at, reason } => {
            let at = at.unwrap_or_else(unix_now);
            PkiDir::open(&dir)?.set_sunset(at, &reason)?;
            println!("sunset ordered for {}; sign and upload a new trust list to publish it", hub::rfc3339(at));
        }
        PkiCommand::Hub { command: HubRegistryCommand::Register { id, purposes, province } } => {
            let province: Option<huren_pki::ProvinceCode> = province.map(|p| p.parse()).transpose().map_err(usage)?;
            let pki = PkiDir::open(&dir)?;
            pki.register_hub(&id, &purposes)?;
            pki.set_hub_province(&id, province.as_ref())?;
            println!("hub {id} registered for {}; sign and upload a new trust list to publish it", purposes.join(", "));
        }
        PkiCommand::Purpose { command: PurposeCommand::Set { name, fields } } => {
            PkiDir::open(&dir)?.set_purpose(&name, &fields)?;
            println!("purpose {name} allows {}; sign and upload a new trust list to publish it", fields.join(", "));
        }
        PkiCommand::Issue { kind, name, days, purposes } => {
            let pki = PkiDir::open(&dir)?;
            if !purposes.is_empty() {
                if kind != "hub" {
                    return Err(usage("--purpose is for hub certificates"));
                }
                pki.register_hub(&name, &purposes)?;
            }
            let issued = pki.issue(&kind, &name, validity(days)?)?;
            println!("{}", issued.identity);
            println!("cert:   {}", issued.cert.display());
            println!("key:    {}", issued.key.display());
            println!("serial: {}", issued.serial_hex);
        }
        PkiCommand::TrustList { command: TrustListCommand::Sign } => {
            let pki = PkiDir::open(&dir)?;
            let list = pki.sign_trust_list()?;
            println!("trust list sequence {} signed: {}", list.sequence(), pki.trust_list_path().display());
        }
        PkiCommand::TrustList { command: TrustListCommand::Diff { old, new, ca } } => {
            let ca = match ca {
                Some(c) => c,
                None => PkiDir::open(&dir)?.root_cert_path(),
            };
            let root = read_root(&ca)?;
            let (old, new) = (TrustList::load(&old, &root)?, TrustList::load(&new, &root)?);
            for line in huren_pki::trust::diff(&old, &new) {
                println!("{line}");
            }
        }
        PkiCommand::TrustList { command: TrustListCommand::Upload { tls, gateway, file } } => {
            let file = match file {
                Some(f) => f,
                None => PkiDir::open(&dir)?.trust_list_path(),
            };
            let identity = TlsIdentity::load(&tls.cert, &tls.key, &tls.ca, &tls.trust_domain).map_err(usage)?;
            let list = TrustList::load(&file, identity.root.as_ref())?;
            // The list being uploaded is the newest: refuse a gateway certificate it revokes.
            let config = huren_runtime::tls::client_config(
                &identity,
                huren_runtime::tls::ExpectedPeer::AnyGateway,
                huren_runtime::tls::Revocations::new(list.revoked_serials().clone()),
            )?;
            let channel =
                huren_runtime::tls::channel(&gateway, config, std::time::Duration::from_secs(3)).map_err(usage)?;
            let response = huren_proto::pb::trust_registry_client::TrustRegistryClient::new(channel)
                .upload(list.signed().clone())
                .await
                .map_err(|s| anyhow!("gateway refused the upload: {:?}: {}", s.code(), s.message()))?;
            println!("gateway {gateway} now serves trust list sequence {}", response.into_inner().sequence);
        }
        PkiCommand::TrustList { command: TrustListCommand::Show { file, ca } } => {
            let (file, ca) = match (file, ca) {
                (Some(f), Some(c)) => (f, c),
                (f, c) => {
                    let pki = PkiDir::open(&dir)?;
                    (f.unwrap_or_else(|| pki.trust_list_path()), c.unwrap_or_else(|| pki.root_cert_path()))
                }
            };
            let list = TrustList::load(&file, &read_root(&ca)?)?;
            println!("{}", serde_json::to_string_pretty(&trust_list_json(&list))?);
        }
    }
    Ok(())
}

fn read_root(path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(huren_pki::ca::pem_to_der(&pem)?)
}

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
                    "status": huren_proto::pb::KeyStatus::try_from(k.status).map(|s| s.as_str_name()).unwrap_or("?"),
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
        })).collect::<Vec<_>>(),
        "revoked_serials": raw.revoked_serials,
    })
}

async fn shutdown_signal() {
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

/// Starts the admin HTTP endpoint; returns a sender that stops it.
async fn start_admin(
    listen: &str,
    metrics: telemetry::PrometheusMetrics,
    readiness: admin::Readiness,
) -> Result<tokio::sync::oneshot::Sender<()>> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding admin endpoint {listen}"))?;
    eprintln!("admin endpoint (/metrics, /healthz, /readyz) on http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = admin::serve(listener, metrics, readiness, shutdown).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    Ok(stop)
}

async fn node(args: ServerArgs) -> Result<()> {
    if args.print_default_config {
        print!("{}", toml::to_string_pretty(&huren_node::NodeConfig::default())?);
        return Ok(());
    }
    let path = args.config.ok_or_else(|| usage("--config is required"))?;
    let config = huren_node::NodeConfig::load(&path).map_err(usage)?;
    let telemetry = telemetry::init("huren-node", config.otlp_endpoint.as_deref())?;
    let node = huren_node::Node::from_config(&config).map_err(usage)?.with_meter(telemetry.metrics.meter("huren-node"));
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let health = node.clone();
    let admin =
        start_admin(&config.admin_listen, telemetry.metrics.clone(), Arc::new(move || health.readiness())).await?;
    eprintln!("huren node {} listening on {}", node.province(), listener.local_addr()?);
    node.serve(listener, shutdown_signal()).await?;
    let _ = admin.send(());
    Ok(())
}

async fn gateway(args: ServerArgs) -> Result<()> {
    if args.print_default_config {
        print!("{}", toml::to_string_pretty(&huren_gateway::GatewayConfig::default())?);
        return Ok(());
    }
    let path = args.config.ok_or_else(|| usage("--config is required"))?;
    let config = huren_gateway::GatewayConfig::load(&path).map_err(usage)?;
    let telemetry = telemetry::init("huren-gateway", config.otlp_endpoint.as_deref())?;
    let gateway = huren_gateway::Gateway::from_config(&config).map_err(usage)?;
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let health = gateway.clone();
    let admin = start_admin(
        &config.admin_listen,
        telemetry.metrics.clone(),
        Arc::new(move || {
            let h = health.health();
            (!h.sunset, h.summary())
        }),
    )
    .await?;
    eprintln!(
        "huren gateway listening on {} (trust list sequence {})",
        listener.local_addr()?,
        gateway.trust_sequence()
    );
    gateway.serve(listener, shutdown_signal()).await?;
    let _ = admin.send(());
    Ok(())
}

fn node_purge(config: &Path, before: Option<i64>, all: bool, receipt: Option<PathBuf>) -> Result<()> {
    use prost::Message as _;
    let config = huren_node::NodeConfig::load(config).map_err(usage)?;
    let store = huren_node::open_store(&config)
        .map_err(|e| anyhow!("cannot open the status store (is the node still running? stop it first): {e}"))?;
    let tls = TlsIdentity::load(&config.cert, &config.key, &config.ca, &config.trust_domain).map_err(usage)?;
    let trust = huren_runtime::live::LiveTrust::open(
        tls.root.to_vec(),
        Some(config.data_dir.join("trust-list.bin")),
        Some(&config.trust_list),
    )?
    .current();
    let keys = huren_node::KeyRing::load(&config.attestation_key)?;
    let province = config.province_code().map_err(usage)?;
    let plan = huren_node::store::PurgePlan {
        statuses_changed_before: before,
        tokens_expired_before: before,
        log_entries_before: before,
        everything: all,
    };
    let total: u64 =
        store.counts()?.iter().filter(|(k, _)| matches!(**k, "status" | "token" | "log_entry")).map(|(_, v)| v).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records examined for deletion ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let now = unix_now();
    let signed =
        huren_node::retention::purge_with_receipt(&*store, &keys, &trust, &province, &plan, "manual", now, &mut |n| {
            bar.set_position(n)
        })
        .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    let path = receipt.unwrap_or_else(|| config.data_dir.join("receipts").join(format!("manual-{now}.receipt")));
    huren_pki::fsio::write_atomic(&path, &signed.encode_to_vec())?;
    let r = huren_proto::pb::DeletionReceipt::decode(signed.receipt.as_slice())?;
    let counts: Vec<String> = r.counts.iter().map(|c| format!("{} {}", c.count, c.kind)).collect();
    println!(
        "deleted {} (changes from {} to {}); {}; receipt ({} consistency proofs): {}",
        if counts.is_empty() { "nothing".to_owned() } else { counts.join(", ") },
        r.range_start,
        r.range_end,
        match config.store {
            huren_node::config::StoreBackend::Redis => "deleted keys are gone from Redis",
            _ => "store file rewritten",
        },
        r.consistency.len(),
        path.display()
    );
    Ok(())
}

fn admin_client(
    target: &AdminTarget,
) -> Result<huren_proto::pb::status_admin_client::StatusAdminClient<tonic::transport::Channel>> {
    use huren_runtime::tls::{self, ExpectedPeer, Revocations};
    let t = &target.tls;
    let identity = TlsIdentity::load(&t.cert, &t.key, &t.ca, &t.trust_domain).map_err(usage)?;
    let province = identity
        .identity
        .role
        .province()
        .cloned()
        .ok_or_else(|| usage(format!("{} is not a province admin or authority identity", identity.identity)))?;
    let expected = ExpectedPeer::Exactly(huren_pki::Identity::new(&t.trust_domain, huren_pki::Role::Node(province)));
    let config = tls::client_config(&identity, expected, Revocations::default())?;
    let channel = tls::channel(&target.node, config, std::time::Duration::from_secs(3)).map_err(usage)?;
    Ok(huren_proto::pb::status_admin_client::StatusAdminClient::new(channel))
}

fn status_name(s: &str) -> Result<huren_proto::pb::HealthStatus> {
    huren_proto::pb::HealthStatus::from_str_name(&format!("HEALTH_STATUS_{}", s.to_ascii_uppercase()))
        .filter(|s| *s != huren_proto::pb::HealthStatus::Unspecified)
        .ok_or_else(|| usage(format!("status {s:?} must be GREEN, YELLOW or RED")))
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("node refused: {:?}: {}", s.code(), s.message())
}

async fn admin_command(command: AdminCommand) -> Result<()> {
    use huren_proto::pb;
    match command {
        AdminCommand::Status { target, subject_ref, status, rule, authority, valid_for } => {
            let status = status_name(&status)?;
            let valid_until = if valid_for > 0 { unix_now() + valid_for } else { 0 };
            let response = admin_client(&target)?
                .upsert_status(pb::UpsertStatusRequest {
                    subject_ref,
                    status: status as i32,
                    rule_id: rule,
                    authority,
                    valid_until,
                    test_recency: 0,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("status recorded (version {})", response.version);
        }
        AdminCommand::Token { target, subject_ref, lifetime, json } => {
            let response = admin_client(&target)?
                .issue_token(pb::IssueTokenRequest { subject_ref, lifetime_seconds: lifetime, purpose: String::new() })
                .await
                .map_err(status_error)?
                .into_inner();
            let token = huren_pki::qr::token_to_text(&response.token);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": token, "expires_at": response.expires_at, "qr": response.qr})
                );
            } else {
                println!("token:      {token}");
                println!("expires_at: {}", response.expires_at);
                println!("qr:         {}", response.qr);
            }
        }
    }
    Ok(())
}

fn audit_client(target: &AuditTarget) -> Result<audit::AuditClient> {
    let t = &target.tls;
    let identity = TlsIdentity::load(&t.cert, &t.key, &t.ca, &t.trust_domain).map_err(usage)?;
    let trust = TrustList::load(&target.trust_list, identity.root.as_ref()).map_err(usage)?;
    let province: ProvinceCode = target.province.parse().map_err(usage)?;
    Ok(audit::AuditClient::connect(target.node.as_deref(), &province, &identity, trust)?)
}

fn read_head(path: &Path) -> Result<huren_proto::pb::SignedTreeHead> {
    use prost::Message as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    huren_proto::pb::SignedTreeHead::decode(bytes.as_slice()).map_err(|e| usage(format!("{}: {e}", path.display())))
}

async fn audit_command(command: AuditCommand) -> Result<()> {
    #[allow(unused_imports)]
    use anyhow::bail;
    use prost::Message as _;
    match command {
        AuditCommand::TreeHead { target, out } => {
            let mut client = audit_client(&target)?;
            let (signed, head) = client.tree_head().await?;
            if let Some(out) = out {
                huren_pki::fsio::write_atomic(&out, &signed.encode_to_vec())?;
            }
            println!(
                "{}",
                serde_json::json!({
                    "province": head.province,
                    "tree_size": head.tree_size,
                    "root_hash": data_encoding::HEXLOWER.encode(&head.root_hash),
                    "timestamp": head.timestamp,
                    "kid": data_encoding::HEXLOWER.encode(&signed.kid),
                })
            );
        }
        AuditCommand::Log { command: AuditLogCommand::Verify { target, old, new, full } } => {
            let mut client = audit_client(&target)?;
            let old = read_head(&old)?;
            let new = match new {
                Some(path) => read_head(&path)?,
                None => client.tree_head().await?.0,
            };
            client.verify_consistency(&old, &new).await?;
            let (old_head, new_head) = (client.verify_head(&old)?, client.verify_head(&new)?);
            if full {
                client.fetch_verified(&new_head).await?;
            }
            println!(
                "consistent: the log of province {} grew from {} to {} entries without rewriting history{}",
                new_head.province,
                old_head.tree_size,
                new_head.tree_size,
                if full { "; every entry matches the signed root" } else { "" }
            );
        }
        AuditCommand::VerifyReceipt { receipt, trust_list, ca, tree_head } => {
            let trust = TrustList::load(&trust_list, &read_root(&ca)?).map_err(usage)?;
            let bytes = std::fs::read(&receipt).with_context(|| format!("reading {}", receipt.display()))?;
            let signed = huren_proto::pb::SignedDeletionReceipt::decode(bytes.as_slice())
                .map_err(|e| usage(format!("{}: not a deletion receipt: {e}", receipt.display())))?;
            let saved = tree_head.as_deref().map(read_head).transpose()?;
            let checked = audit::verify_receipt(&trust, &signed, saved.as_ref())?;
            println!("{}", serde_json::to_string(&checked)?);
        }
        AuditCommand::Scan { node_data, patterns, patterns_file, redis, redis_prefix } => {
            if node_data.is_none() && redis.is_none() {
                return Err(usage("give --node-data <dir> and/or --redis <url>"));
            }
            let mut patterns: Vec<Vec<u8>> = patterns.into_iter().map(String::into_bytes).collect();
            if let Some(path) = &patterns_file {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                patterns.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()));
            }
            if node_data.is_none() && !patterns.is_empty() {
                return Err(usage("--pattern and --patterns-file need --node-data <dir>"));
            }
            let mut remaining = 0u64;
            if let Some(dir) = node_data {
                let counts = audit::scan_node_data(&dir)?;
                println!("{}: {}", dir.display(), serde_json::to_string(&counts)?);
                remaining += counts.values().sum::<u64>();
                let raw = audit::scan_node_data_raw(&dir, &patterns)?;
                for f in &raw {
                    println!("{}: {} occurrence(s) of {:?} in the raw bytes", f.file, f.occurrences, f.pattern);
                }
                remaining += raw.iter().map(|f| f.occurrences).sum::<u64>();
            }
            if let Some(url) = redis {
                let keys = audit::scan_redis(&url, &redis_prefix).await?;
                println!("redis {redis_prefix}*: {keys} keys");
                remaining += keys;
            }
            if remaining > 0 {
                bail!("{remaining} subject records or record fragments remain");
            }
            println!("no subject records remain");
        }
        AuditCommand::Stats { target, since, until, json } => {
            let mut client = audit_client(&target)?;
            let (_, head) = client.tree_head().await?;
            let entries = client.fetch_verified(&head).await?;
            let stats = audit::stats(&entries, since, until.unwrap_or_else(|| unix_now() + 1));
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                println!(
                    "province {}: {} status changes in the window (log verified, {} entries)",
                    head.province, stats.entries, head.tree_size
                );
                println!("{:<8} {:<24} {:<24} {:>8} {:>9}", "status", "rule", "authority", "changes", "subjects");
                for r in &stats.non_green {
                    println!(
                        "{:<8} {:<24} {:<24} {:>8} {:>9}",
                        r.status, r.rule_id, r.authority, r.count, r.distinct_subjects
                    );
                }
            }
        }
    }
    Ok(())
}

async fn hub_command(command: HubCommand) -> Result<()> {
    match command {
        HubCommand::Lookup { tls, gateway, purpose, trust_list_cache, json, input } => {
            let scanned = Scanned::parse(&input).map_err(usage)?;
            let identity = TlsIdentity::load(&tls.cert, &tls.key, &tls.ca, &tls.trust_domain).map_err(usage)?;
            let mut client = hub::HubClient::connect(&gateway, &identity).map_err(usage)?;
            if let Some(path) = &trust_list_cache {
                client = client.with_cache(path)?;
            }
            match client.refresh_trust_list().await {
                // A gateway serving an older list than the cached one is not followed, but
                // the hub keeps working on its last good copy (degrade, don't stop).
                Ok(_) => {}
                Err(e @ hub::HubError::Rollback { .. }) => eprintln!("warning: {e}; using the cached trust list"),
                Err(e) => return Err(e.into()),
            }
            let status = client.lookup(scanned.province(), scanned.token(), &purpose).await?;
            print_status(&status, json)?;
        }
        HubCommand::Watch { tls, gateway, trust_list_cache } => {
            let identity = TlsIdentity::load(&tls.cert, &tls.key, &tls.ca, &tls.trust_domain).map_err(usage)?;
            let live = match TrustList::load(&trust_list_cache, identity.root.as_ref()) {
                Ok(list) => huren_runtime::live::LiveTrust::new(list, identity.root.to_vec(), Some(trust_list_cache))?,
                Err(cache_error) => {
                    // No usable cache: the gateway is the only source, and if it fails too
                    // both causes are reported.
                    let cache_problem = trust_list_cache
                        .exists()
                        .then(|| format!("trust list cache {} unusable ({cache_error})", trust_list_cache.display()));
                    let mut client = hub::HubClient::connect(&gateway, &identity).map_err(usage)?;
                    let list = match client.refresh_trust_list().await {
                        Ok(list) => {
                            if let Some(problem) = &cache_problem {
                                eprintln!("warning: {problem}; replaced with the list from {gateway}");
                            }
                            list.clone()
                        }
                        Err(e) => match cache_problem {
                            Some(problem) => return Err(anyhow!("{problem}, and {e}")),
                            None => return Err(e.into()),
                        },
                    };
                    huren_runtime::live::LiveTrust::new(list, identity.root.to_vec(), Some(trust_list_cache))?
                }
            };
            eprintln!("following {gateway}; trust list sequence {}", live.current().sequence());
            let _follow = huren_runtime::live::follow(live.clone(), &gateway, &identity)?;
            let mut updates = live.subscribe();
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = async {
                    while updates.changed().await.is_ok() {
                        eprintln!("trust list sequence {}", updates.borrow_and_update().sequence());
                    }
                } => {}
            }
        }
        HubCommand::Verify { trust_list, ca, json, qr } => {
            let trust = TrustList::load(&trust_list, &read_root(&ca)?).map_err(usage)?;
            let status = hub::verify_offline(&trust, &qr, unix_now())?;
            print_status(&status, json)?;
        }
    }
    Ok(())
}

fn print_status(status: &hub::VerifiedStatus, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(status)?);
    } else {
        println!("{}", status.line());
    }
    Ok(())
}

async fn demo_command(args: DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            if d.join("pki").exists() {
                bail!(UsageError(format!("{} already holds a demo federation; choose an empty folder", d.display())));
            }
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("huren-demo-").tempdir()?;
            temp.path().to_owned()
        }
    };
    // Tokens live an hour when the demo keeps serving, so the printed commands keep working.
    let lifetime = if args.once { 300 } else { 3600 };
    let mut options = federation::FederationOptions::default();
    if let Some(path) = &args.capture {
        let capture =
            huren_gateway::FileCapture::create(path).with_context(|| format!("creating {}", path.display()))?;
        options.gateway.capture = Some(std::sync::Arc::new(capture));
    }
    let (federation, qrs, report) = demo::run(&dir, lifetime, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        demo::print_human(&report);
    }
    if args.once {
        federation.shutdown().await?;
        if !report.ok {
            bail!("the demo story did not go as expected");
        }
        return Ok(());
    }
    let pki = federation.pki.path().to_owned();
    let hub_dir = pki.join("issued/hub-sd-jinan-highway-g3");
    eprintln!("\nThe federation keeps serving. Query it from another terminal, e.g.:");
    for (s, issued) in &qrs {
        eprintln!(
            "  huren hub lookup --gateway {} --cert {} --key {} --ca {} --purpose transit.highway {}:{}    # {}",
            federation.gateway_addr(),
            hub_dir.join("cert.pem").display(),
            hub_dir.join("key.pem").display(),
            pki.join("root/ca.pem").display(),
            s.province,
            huren_pki::qr::token_to_text(&issued.token),
            s.subject_ref,
        );
    }
    eprintln!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    federation.shutdown().await
}
