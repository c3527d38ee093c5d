//! `huren audit`: the auditor's tools — a node's signed tree heads and log consistency,
//! deletion receipts (verified one by one, or fetched from the gateway and verified),
//! non-green statistics (all on [`huren_client`]) and scans of a
//! stopped node's data for records left behind ([`crate::audit`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use huren_client::AuditClient;
use huren_pki::{unix_now, ProvinceCode, TrustList};
use huren_proto::pb;
use prost::Message as _;

use crate::cmd::{read_root, TlsArgs};
use crate::connect::Peer;
use crate::{audit, usage};
use huren_pki::{Identity, Role};
use huren_runtime::tls::ExpectedPeer;

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
    #[command(
        after_help = "Example:\n  huren audit tree-head --province 340000 --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem \\\n    --ca aud/ca.pem --out head.bin"
    )]
    TreeHead {
        #[command(flatten)]
        target: AuditTarget,
        /// Save the signed tree head to this file (for `log verify --old`, `verify-receipt --tree-head`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Transparency log checks.
    #[command(
        after_help = "Example:\n  huren audit log verify --province 340000 --old head.bin --full --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem"
    )]
    Log {
        #[command(subcommand)]
        command: AuditLogCommand,
    },
    /// Check a deletion receipt: signature, province key and its validity, final tree
    /// head, nothing left after a sunset, consistency with a saved tree head.
    #[command(
        after_help = "Example:\n  huren audit verify-receipt data/receipts/manual-1700000000.receipt --trust-list tl.bin --ca root.pem --tree-head head.bin"
    )]
    VerifyReceipt {
        /// The signed deletion receipt file.
        receipt: PathBuf,
        /// Trust list holding the province's keys.
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
    #[command(
        after_help = "Examples:\n  huren audit scan --node-data /var/lib/huren/node --pattern ah-0001\n  huren audit scan --redis redis://127.0.0.1:6379 --redis-prefix huren-node:340000:"
    )]
    Scan {
        /// A stopped node's data folder (its `data_dir`).
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
        /// Expect nothing at all, as after a sunset or `huren node purge --all`: the log's
        /// leaf and interior hashes and the commitment salt, which a purge by time keeps,
        /// count as remaining too.
        #[arg(long)]
        all_deleted: bool,
    },
    /// Deletion receipts collected by the gateway.
    #[command(
        after_help = "Example:\n  huren audit receipts fetch --gateway 127.0.0.1:8443 --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem"
    )]
    Receipts {
        #[command(subcommand)]
        command: AuditReceiptsCommand,
    },

    /// Hubs ranked by the distinct subjects of the province they checked (the node's
    /// per-hub hourly aggregates), flagging those far above their own baseline, checking
    /// outside their registered province or purposes, or not registered.
    #[command(
        after_help = "Example:\n  huren audit hubs --province 370000 --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem \\\n    --since 1796000000 --factor 3"
    )]
    Hubs(HubsArgs),
    /// Non-green status changes per rule and authority in a time window.
    #[command(
        after_help = "Example:\n  huren audit stats --province 340000 --since 1650000000 --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem"
    )]
    Stats {
        #[command(flatten)]
        target: AuditTarget,
        /// Window start, Unix seconds (default: the beginning).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Window end, Unix seconds (default: now).
        #[arg(long)]
        until: Option<i64>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `huren audit hubs`: its arguments.
#[derive(Debug, Args)]
pub struct HubsArgs {
    #[command(flatten)]
    pub target: AuditTarget,
    /// Window start, Unix seconds (default: 7 days ago).
    #[arg(long)]
    pub since: Option<i64>,
    /// Window end, Unix seconds (default: now).
    #[arg(long)]
    pub until: Option<i64>,
    /// Flag a hub whose busiest hour exceeds this many times its median hour.
    #[arg(long, default_value_t = huren_client::OverCheck::DEFAULT.factor)]
    pub factor: f64,
    /// ... and counts at least this many distinct subjects.
    #[arg(long, default_value_t = huren_client::OverCheck::DEFAULT.min_subjects)]
    pub min_subjects: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditReceiptsCommand {
    /// Fetch every receipt the gateway holds (TrustRegistry/ListReceipts), verify each as
    /// `verify-receipt` does and save it: verified ones as <out>/<province>-<time>-<reason>.receipt,
    /// refused ones under <out>/refused/. Prints one JSON line per receipt; exits 1 if any
    /// is refused.
    #[command(
        after_help = "Example:\n  huren audit receipts fetch --gateway 127.0.0.1:8443 --cert aud/cert.pem --key aud/key.pem \\\n    --ca aud/ca.pem --out receipts"
    )]
    Fetch {
        /// A coordinator or auditor identity.
        #[command(flatten)]
        tls: TlsArgs,
        /// Gateway address, host:port.
        #[arg(long)]
        gateway: String,
        /// Trust list to verify against (default: the gateway's, verified against --ca).
        #[arg(long)]
        trust_list: Option<PathBuf>,
        /// Folder to save the receipts in.
        #[arg(long, default_value = "receipts")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditLogCommand {
    /// Check that the log only grew between two tree heads (and that every entry matches
    /// the newer one): `--old` a saved head, `--new` another or (default) the current one.
    #[command(
        after_help = "Example:\n  huren audit log verify --province 340000 --old head.bin --full --trust-list tl.bin --cert aud/cert.pem --key aud/key.pem --ca aud/ca.pem"
    )]
    Verify {
        #[command(flatten)]
        target: AuditTarget,
        /// A tree head saved earlier (`audit tree-head --out`).
        #[arg(long)]
        old: PathBuf,
        /// A newer saved tree head (default: the node's current one).
        #[arg(long)]
        new: Option<PathBuf>,
        /// Also download every entry and recompute the root.
        #[arg(long)]
        full: bool,
    },
}

/// Runs `huren audit …`.
pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::TreeHead { target, out } => {
            let (mut client, peer) = client(&target)?;
            let (signed, head) = peer.explained(client.tree_head().await.map_err(Into::into)).await?;
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
            let (mut client, peer) = client(&target)?;
            let old = read_head(&old)?;
            let new = match new {
                Some(path) => read_head(&path)?,
                None => peer.explained(client.tree_head().await.map_err(Into::into)).await?.0,
            };
            peer.explained(client.verify_consistency(&old, &new).await.map_err(Into::into)).await?;
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
            let signed = pb::SignedDeletionReceipt::decode(bytes.as_slice())
                .map_err(|e| usage(format!("{}: not a deletion receipt: {e}", receipt.display())))?;
            let saved = tree_head.as_deref().map(read_head).transpose()?;
            let checked = huren_client::verify_receipt(&trust, &signed, saved.as_ref())?;
            println!("{}", serde_json::to_string(&checked)?);
        }
        AuditCommand::Receipts { command: AuditReceiptsCommand::Fetch { tls, gateway, trust_list, out } } => {
            fetch_receipts(tls, gateway, trust_list, out).await?
        }
        AuditCommand::Scan { node_data, patterns, patterns_file, redis, redis_prefix, all_deleted } => {
            scan(node_data, patterns, patterns_file, redis, redis_prefix, all_deleted).await?
        }
        AuditCommand::Hubs(args) => hubs(args).await?,
        AuditCommand::Stats { target, since, until, json } => {
            let (mut client, peer) = client(&target)?;
            let (_, head) = peer.explained(client.tree_head().await.map_err(Into::into)).await?;
            let entries = client.fetch_verified(&head).await?;
            let stats = huren_client::stats(&entries, since, until.unwrap_or_else(|| unix_now() + 1));
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
                if !stats.lifts.is_empty() {
                    println!("lifted before lapsing:");
                    println!("{:<8} {:<24} {:<24} {:>8} {:>9}", "", "lifted rule", "lifted by", "lifts", "subjects");
                    for r in &stats.lifts {
                        println!(
                            "{:<8} {:<24} {:<24} {:>8} {:>9}",
                            "", r.lifted_rule_id, r.authority, r.count, r.distinct_subjects
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `huren audit receipts fetch`.
async fn fetch_receipts(tls: TlsArgs, gateway: String, trust_list: Option<PathBuf>, out: PathBuf) -> Result<()> {
    let identity = tls.load()?;
    let trust = match trust_list {
        Some(path) => TrustList::load(&path, identity.root.as_ref()).map_err(usage)?,
        None => {
            let config = huren_runtime::tls::client_config(
                &identity,
                huren_runtime::tls::ExpectedPeer::AnyGateway,
                huren_runtime::tls::Revocations::default(),
            )?;
            let channel =
                huren_runtime::tls::channel(&gateway, config, std::time::Duration::from_secs(3)).map_err(usage)?;
            let signed = pb::trust_registry_client::TrustRegistryClient::new(channel)
                .get_trust_list(pb::GetTrustListRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("gateway gave no trust list: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            TrustList::verify(signed, identity.root.as_ref())
                .map_err(|e| anyhow::anyhow!("the gateway's trust list does not verify: {e}"))?
        }
    };
    let fetched = audit::fetch_receipts(&identity, &gateway, &trust, &out).await?;
    let mut refused = 0;
    for f in &fetched {
        println!("{}", serde_json::to_string(f)?);
        refused += usize::from(matches!(f.outcome, audit::FetchOutcome::Refused { .. }));
    }
    eprintln!("{} receipts fetched into {}, {} verified", fetched.len(), out.display(), fetched.len() - refused);
    if refused > 0 {
        bail!("{refused} of {} receipts do not verify (kept in {})", fetched.len(), out.join("refused").display());
    }
    Ok(())
}

/// What a node's store may hold after a purge by time, as documented: hashes of the
/// transparency log (auditors still verify the log; no record is in them) and the
/// commitment salt (the subjects that remain need it). Kind as counted, and in words.
const KEPT_BY_PURGE: [(&str, &str); 3] = [
    ("log_hash", "leaf hashes of the transparency log"),
    ("log_node", "interior hashes of the transparency log"),
    ("salt", "commitment salt"),
];

/// `huren audit scan`: fails when any subject record or record fragment remains (with
/// `all_deleted`, also the hashes and salt a purge by time keeps).
async fn scan(
    node_data: Option<PathBuf>,
    patterns: Vec<String>,
    patterns_file: Option<PathBuf>,
    redis: Option<String>,
    redis_prefix: String,
    all_deleted: bool,
) -> Result<()> {
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
        let kept_kind = |kind: &str| KEPT_BY_PURGE.iter().any(|(k, _)| *k == kind);
        remaining += counts.iter().filter(|(k, _)| all_deleted || !kept_kind(k)).map(|(_, n)| n).sum::<u64>();
        let kept: Vec<String> = KEPT_BY_PURGE
            .iter()
            .filter_map(|(kind, words)| counts.get(kind).filter(|n| **n > 0).map(|n| format!("{n} {words}")))
            .collect();
        if !kept.is_empty() && !all_deleted {
            println!(
                "kept, as a purge by time keeps them (no subject record in them): {}; \
                 give --all-deleted after a sunset or a purge --all",
                kept.join(", ")
            );
        }
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
    println!("no subject records remain{}", if all_deleted { " (nothing at all)" } else { "" });
    Ok(())
}

/// `huren audit hubs`: ranks and flags the hubs in the node's aggregates.
async fn hubs(args: HubsArgs) -> Result<()> {
    if args.factor.is_nan() || args.factor < 1.0 {
        return Err(usage("--factor must be at least 1"));
    }
    let identity = args.target.tls.load()?;
    let trust = TrustList::load(&args.target.trust_list, identity.root.as_ref()).map_err(usage)?;
    let (mut client, peer) = client(&args.target)?;
    let until = args.until.unwrap_or(0);
    let since = args.since.unwrap_or_else(|| unix_now() - huren_client::DEFAULT_HUB_WINDOW.as_secs() as i64);
    let response = peer.explained(client.hub_aggregates(since, until).await.map_err(Into::into)).await?;
    let rule = huren_client::OverCheck { factor: args.factor, min_subjects: args.min_subjects };
    let ranked = huren_client::rank_hubs(&response.aggregates, &trust, rule);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "province": args.target.province,
                "hubs": ranked,
                "disclosures_dropped": response.disclosures_dropped,
            })
        );
        return Ok(());
    }
    println!(
        "province {}: {} hubs checked its travellers since {}",
        args.target.province,
        ranked.len(),
        huren_client::rfc3339(since)
    );
    println!("{:>4} {:<28} {:<32} {:>9} {:>8} {:>6}  flags", "rank", "hub", "name", "subjects", "checks", "hours");
    for (i, r) in ranked.iter().enumerate() {
        let flags: Vec<String> = r.flags.iter().map(ToString::to_string).collect();
        println!(
            "{:>4} {:<28} {:<32} {:>9} {:>8} {:>6}  {}",
            i + 1,
            r.hub_id,
            r.name,
            r.distinct_subjects,
            r.checks,
            r.active_hours,
            flags.join("; ")
        );
    }
    if response.disclosures_dropped > 0 {
        println!(
            "WARNING: the node could not record {} checks in disclosure logs (see its metrics)",
            response.disclosures_dropped
        );
    }
    Ok(())
}

/// An auditor's client for the target node, checking signatures with its trust list, and
/// the node as a [`Peer`] (to say in words why a connection failed).
fn client(target: &AuditTarget) -> Result<(AuditClient, Peer)> {
    let identity = target.tls.load()?;
    let trust = TrustList::load(&target.trust_list, identity.root.as_ref()).map_err(usage)?;
    let province: ProvinceCode = target.province.parse().map_err(usage)?;
    let addr = match &target.node {
        Some(node) => node.clone(),
        None => trust.province(&province).and_then(|p| p.endpoints.first().cloned()).unwrap_or_default(),
    };
    let expected = ExpectedPeer::Exactly(Identity::new(trust.trust_domain(), Role::Node(province.clone())));
    let client = AuditClient::connect(target.node.as_deref(), &province, &identity, trust)?;
    Ok((client, Peer { addr, identity, expected }))
}

/// A signed tree head saved by `audit tree-head --out`.
fn read_head(path: &Path) -> Result<pb::SignedTreeHead> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    pb::SignedTreeHead::decode(bytes.as_slice()).map_err(|e| usage(format!("{}: {e}", path.display())))
}
