//! `huren admin`: the province admin (or authority) client — publish statuses and issue
//! tokens at the province's own node, one at a time or from a file in batches (`import`,
//! `tokens`, on [`crate::ingest`]). Who acts is the certificate's identity.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use huren_pki::{unix_now, Identity, Role};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations};
use pb::status_admin_client::StatusAdminClient;
use tonic::transport::Channel;

use crate::cmd::TlsArgs;
use crate::connect::Peer;
use crate::ingest::progress::ProgressMode;
use crate::ingest::rows::{self, Format};
use crate::ingest::{self, Payload, TokenSink};
use crate::usage;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set a subject's status at the province node.
    #[command(
        after_help = "Examples:\n  huren admin status --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem \\\n    --ca admin-340000/ca.pem ah-0001 GREEN\n  huren admin status --node 127.0.0.1:7443 --cert hefei-cdc/cert.pem --key hefei-cdc/key.pem \\\n    --ca hefei-cdc/ca.pem ah-0002 RED --rule NHC-CC-2022-9 --valid-for 1209600"
    )]
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
    /// Load statuses from a JSON Lines or CSV file in batches (progress, --resume, refusals file).
    #[command(
        after_help = "Example:\n  huren admin import statuses.jsonl --node 127.0.0.1:7443 --cert admin-340000/cert.pem \\\n    --key admin-340000/key.pem --ca admin-340000/ca.pem --checkpoint import.ckpt\n  huren admin import statuses.jsonl ... --checkpoint import.ckpt --resume   # after an interruption\n\nColumns: see the README, \"Connecting your health-code backend\"."
    )]
    Import(IngestArgs),
    /// Issue tokens for the subjects of a JSON Lines or CSV file in batches.
    #[command(
        after_help = "Example:\n  huren admin tokens subjects.csv --format csv --node 127.0.0.1:7443 --cert admin-340000/cert.pem \\\n    --key admin-340000/key.pem --ca admin-340000/ca.pem --out tokens.jsonl"
    )]
    Tokens(IngestArgs),
    /// Issue a fresh token and QR for a subject.
    #[command(
        after_help = "Example:\n  huren admin token --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem \\\n    --ca admin-340000/ca.pem --purpose transit.highway ah-0001"
    )]
    Token {
        #[command(flatten)]
        target: AdminTarget,
        /// Province-internal pseudonymous subject reference (never an ID number).
        subject_ref: String,
        /// Token lifetime in seconds (0 = node default).
        #[arg(long, default_value_t = 0)]
        lifetime: u32,
        /// Print one JSON object ({"token", "expires_at", "qr"}) instead of text.
        #[arg(long)]
        json: bool,
        /// Purpose bound into the QR's embedded attestation, one of the trust list's field
        /// policy (transit.rail, transit.highway, transit.air, transit.general, venue.entry,
        /// or one the coordinators added); default transit.general. Online lookups name
        /// their own purpose; this one decides which fields the QR carries offline.
        #[arg(long, default_value = "")]
        purpose: String,
    },
    /// Who checked a subject: its disclosure log at the province node, newest first, each
    /// hub by its registered name ("Jinan West railway station, transit.rail,
    /// 2026-12-01 08:14", times in UTC+8). The province admin identity only.
    #[command(
        after_help = "Example:\n  huren admin disclosures --node 127.0.0.1:7443 --cert admin-340000/cert.pem \\\n    --key admin-340000/key.pem --ca admin-340000/ca.pem --days 7 ah-0001"
    )]
    Disclosures {
        #[command(flatten)]
        target: AdminTarget,
        /// Province-internal pseudonymous subject reference.
        subject_ref: String,
        /// How many days back (1-366).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Print JSON instead of one line per check.
        #[arg(long)]
        json: bool,
    },
}

/// `huren admin import` and `huren admin tokens`: a file of rows, in batches.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub target: AdminTarget,
    /// The input: a JSON Lines or CSV file, or `-` for standard input.
    pub file: String,
    /// Input format (default: csv for a .csv file, else jsonl; jsonl for standard input).
    #[arg(long, value_enum)]
    pub format: Option<ingest::rows::Format>,
    /// Items per call (statuses: at most 5000; tokens: at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Calls at the node at once.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Checkpoint file (default: FILE.checkpoint; none for standard input unless given).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue a killed or failed run from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Refusals file: one JSON object a line with the input line, reason and message
    /// (default: FILE.refusals.jsonl, or refusals.jsonl for standard input).
    #[arg(long)]
    pub refusals: Option<PathBuf>,
    /// Names the input in item ids (`<source id>:<line>`; default: a digest of the file,
    /// random for standard input). A resumed run takes the checkpoint's.
    #[arg(long)]
    pub source_id: Option<String>,
    /// Progress display: auto (a bar on a terminal, plain lines otherwise), plain, none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Interval of plain progress lines.
    #[arg(long, default_value = "5s", value_parser = huren_bench::parse_duration)]
    pub progress_every: Duration,
    /// How long a batch is retried while the node is unreachable before the run stops.
    #[arg(long, default_value = "30s", value_parser = huren_bench::parse_duration)]
    pub retry_for: Duration,
    /// Statuses: apply each batch whole or not at all (a refused row leaves its batch unapplied).
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Tokens: where the issued tokens go, one JSON object a line (default: FILE.tokens.jsonl).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdminTarget {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The province node, host:port.
    #[arg(long)]
    pub node: String,
}

/// Runs `huren admin …`.
pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Import(args) => ingest_file(args, "statuses").await?,
        AdminCommand::Tokens(args) => ingest_file(args, "tokens").await?,
        AdminCommand::Status { target, subject_ref, status, rule, authority, valid_for } => {
            let status = status_name(&status)?;
            let valid_until = if valid_for > 0 { unix_now() + valid_for } else { 0 };
            let (mut client, peer) = client(&target)?;
            let result = client
                .upsert_status(pb::UpsertStatusRequest {
                    subject_ref,
                    status: status as i32,
                    rule_id: rule,
                    authority,
                    valid_until,
                    test_recency: 0,
                })
                .await
                .map_err(refused);
            let response = peer.explained(result).await?.into_inner();
            println!("status recorded (version {})", response.version);
        }
        AdminCommand::Token { target, subject_ref, lifetime, json, purpose } => {
            let (mut client, peer) = client(&target)?;
            let result = client
                .issue_token(pb::IssueTokenRequest { subject_ref, lifetime_seconds: lifetime, purpose })
                .await
                .map_err(refused);
            let response = peer.explained(result).await?.into_inner();
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
        AdminCommand::Disclosures { target, subject_ref, days, json } => {
            if days == 0 || days > 366 {
                return Err(usage("--days must be 1-366"));
            }
            let (mut client, peer) = client(&target)?;
            let result =
                client.list_disclosures(pb::ListDisclosuresRequest { subject_ref, days }).await.map_err(refused);
            let response = peer.explained(result).await?.into_inner();
            if json {
                let rows: Vec<_> = response
                    .disclosures
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "hub_id": d.hub_id, "hub_name": d.hub_name, "hub_province": d.hub_province,
                            "purpose": d.purpose, "time": d.time, "gateway": d.gateway, "outcome": d.outcome,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if response.disclosures.is_empty() {
                println!("no checks in the last {days} days");
            } else {
                for d in &response.disclosures {
                    println!("{}", disclosure_line(d));
                }
            }
        }
    }
    Ok(())
}

/// `huren admin import` / `tokens`: the file's rows through [`ingest::run`].
async fn ingest_file(args: IngestArgs, kind: &'static str) -> Result<()> {
    let stdin = args.file == "-";
    let path = PathBuf::from(&args.file);
    let beside = |suffix: &str| PathBuf::from(format!("{}{suffix}", args.file));
    let checkpoint = args.checkpoint.clone().or_else(|| (!stdin).then(|| beside(".checkpoint")));
    let refusals =
        args.refusals
            .clone()
            .unwrap_or_else(|| if stdin { "refusals.jsonl".into() } else { beside(".refusals.jsonl") });
    let out = (kind == "tokens").then(|| {
        args.out.clone().unwrap_or_else(|| if stdin { "tokens.jsonl".into() } else { beside(".tokens.jsonl") })
    });
    let mut total = None;
    let start = ingest::Start::decide(kind, checkpoint.as_deref(), args.resume, || {
        Ok(match (&args.source_id, stdin) {
            (Some(id), _) => id.clone(),
            (None, true) => ingest::random_source_id(),
            (None, false) => ingest::digest_and_lines(&path)?.0,
        })
    })?;
    if !stdin {
        total = Some(ingest::digest_and_lines(&path)?.1);
    }
    let input: Box<dyn std::io::BufRead + Send> = if stdin {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&path).map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    };
    let format = args.format.unwrap_or_else(|| if stdin { Format::Jsonl } else { Format::guess(&args.file) });
    let source = start.source_id.clone();
    let rows: Box<dyn Iterator<Item = (u64, Payload)> + Send> = if kind == "statuses" {
        Box::new(rows::read::<rows::StatusRow>(input, format).map(move |(line, row)| {
            let item = row.and_then(|r| r.item(format!("{source}:{line}")));
            (line, item.map_or_else(Payload::Refused, Payload::Status))
        }))
    } else {
        Box::new(rows::read::<rows::TokenRow>(input, format).map(|(line, row)| {
            (line, row.and_then(rows::TokenRow::item).map_or_else(Payload::Refused, Payload::Token))
        }))
    };
    let options = ingest::Options {
        batch: args.batch,
        in_flight: args.in_flight,
        checkpoint,
        refusals: refusals.clone(),
        out,
        sink: TokenSink::Jsonl,
        all_or_nothing: args.all_or_nothing,
        progress: args.progress,
        progress_every: args.progress_every,
        retry_for: args.retry_for,
        total_lines: total,
        kind,
    };
    if start.after_line > 0 {
        eprintln!("resuming after line {} ({})", start.after_line, start.counts.total());
    }
    let summary = ingest::run(client(&args.target)?.0, rows, start, &options).await?;
    println!("{}", summary.text(&refusals));
    if let Some(out) = &options.out {
        println!("tokens in {}", out.display());
    }
    Ok(())
}

/// A `StatusAdmin` client for the caller's own province node.
/// Also returns the node as a [`Peer`], to say in words why a connection failed.
pub(crate) fn client(target: &AdminTarget) -> Result<(StatusAdminClient<Channel>, Peer)> {
    status_admin_client(&target.tls, &target.node)
}

/// A `StatusAdmin` client for the node at `node`, as the province admin or authority `tls`,
/// and the node as a [`Peer`].
pub(crate) fn status_admin_client(tls: &TlsArgs, node: &str) -> Result<(StatusAdminClient<Channel>, Peer)> {
    let target = AdminTarget {
        tls: TlsArgs {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            ca: tls.ca.clone(),
            trust_domain: tls.trust_domain.clone(),
        },
        node: node.to_owned(),
    };
    let identity = target.tls.load()?;
    let province = identity
        .identity
        .role
        .province()
        .cloned()
        .ok_or_else(|| usage(format!("{} is not a province admin or authority identity", identity.identity)))?;
    let expected = ExpectedPeer::Exactly(Identity::new(&target.tls.trust_domain, Role::Node(province)));
    let config = tls::client_config(&identity, expected.clone(), Revocations::default())?;
    let channel = tls::channel(&target.node, config, Duration::from_secs(3)).map_err(usage)?;
    Ok((
        StatusAdminClient::new(channel).max_decoding_message_size(16 << 20),
        Peer { addr: target.node.clone(), identity, expected },
    ))
}

/// One line of `huren admin disclosures`: [`huren_client::disclosure_line`], and for a check
/// the gateway answered from its cache while the node could not answer, what happened in
/// words (the hub was shown a status the node had signed earlier: a status was disclosed).
fn disclosure_line(d: &pb::Disclosure) -> String {
    if d.outcome == huren_node::store::SERVED_FROM_CACHE {
        let shown = pb::Disclosure { outcome: "attested".into(), ..d.clone() };
        return format!(
            "{} (shown from the gateway's cache while the home province's node was unreachable)",
            huren_client::disclosure_line(&shown)
        );
    }
    huren_client::disclosure_line(d)
}

fn status_name(s: &str) -> Result<pb::HealthStatus> {
    pb::HealthStatus::from_str_name(&format!("HEALTH_STATUS_{}", s.to_ascii_uppercase()))
        .filter(|s| *s != pb::HealthStatus::Unspecified)
        .ok_or_else(|| usage(format!("status {s:?} must be GREEN, YELLOW or RED")))
}

fn refused(s: tonic::Status) -> anyhow::Error {
    crate::connect::refused("node", s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_answered_from_the_cache_reads_in_words() {
        let d = pb::Disclosure {
            hub_id: "jinan-west".into(),
            hub_name: "Jinan West railway station".into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            // 2026-12-01 00:14:30 UTC
            time: 1_796_084_070,
            gateway: "spiffe://huren.gov/gateway/national-1".into(),
            outcome: "served_from_cache".into(),
        };
        assert_eq!(
            disclosure_line(&d),
            "Jinan West railway station, transit.rail, 2026-12-01 08:14 (shown from the gateway's cache while the \
             home province's node was unreachable)"
        );
        let attested = pb::Disclosure { outcome: "attested".into(), ..d };
        assert_eq!(disclosure_line(&attested), "Jinan West railway station, transit.rail, 2026-12-01 08:14");
    }
}
