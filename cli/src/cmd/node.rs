//! `huren node`: run a province node from its TOML configuration; `huren node purge`:
//! delete its subject data (node stopped) and write a signed deletion receipt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use huren_node::NodeConfig;
use huren_pki::unix_now;
use huren_runtime::tls::TlsIdentity;
use prost::Message as _;

use crate::cmd::server::{announce, Bound, ServerArgs};
use crate::cmd::shutdown_signal;
use crate::{telemetry, usage};

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
    #[command(
        after_help = "Examples:\n  huren node purge --config node.toml --before 1700000000\n  huren node purge --config node.toml --all --receipt purge.receipt"
    )]
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

impl NodeArgs {
    /// Whether this runs the server (which sets up its own telemetry from its config).
    pub fn serves(&self) -> bool {
        self.command.is_none()
    }
}

/// Runs `huren node …`.
pub async fn run(args: NodeArgs) -> Result<()> {
    match args.command {
        Some(NodeCommand::Purge { config, before, all, receipt }) => purge(&config, before, all, receipt),
        None => serve(args.server).await,
    }
}

async fn serve(args: ServerArgs) -> Result<()> {
    let Some(path) = args.config_file::<NodeConfig>()? else { return Ok(()) };
    let config = NodeConfig::load(path).map_err(usage)?;
    // A key that is not the certificate's is found here, before anything listens.
    crate::connect::load_identity(&config.cert, &config.key, &config.ca, &config.trust_domain)?;
    let telemetry = telemetry::init_with(
        "huren-node",
        config.otlp_endpoint.as_deref(),
        config.log_format,
        telemetry::SERVER_LOG_FILTER,
    )?;
    let node = huren_node::Node::from_config(&config).map_err(usage)?.with_meter(telemetry.metrics.meter("huren-node"));
    let health = node.clone();
    let readiness = Arc::new(move || health.readiness());
    let bound =
        Bound::bind(&config.listen, &config.admin_listen, telemetry.metrics.clone(), readiness, config.log_format)
            .await?;
    announce(config.log_format, &format!("huren node {} listening on {}", node.province(), bound.addr()?));
    bound.serve(|listener| node.serve(listener, shutdown_signal())).await
}

fn purge(config: &Path, before: Option<i64>, all: bool, receipt: Option<PathBuf>) -> Result<()> {
    let config = NodeConfig::load(config).map_err(usage)?;
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
        disclosures_before: before,
        hub_aggregates_before: before,
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
