//! `huren bench ingest`: end-to-end batched publishing throughput. A loopback federation of
//! its own (one province, its node on a redb store in a temporary folder, served over mutual
//! TLS), preloaded with `--subjects` GREEN subjects through `PublishStatuses`; then
//! `--rows` status changes of existing subjects are imported through the same engine as
//! `huren admin import` and timed, while (with `--attest-rate`) a gateway identity asks
//! the node for attestations at a fixed rate, whose latency is reported beside.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use huren_pki::ProvinceCode;
use huren_proto::pb;
use pb::status_admin_client::StatusAdminClient;
use tonic::transport::Channel;

use super::progress::ProgressMode;
use super::{Counts, Options, Payload, Start, TokenSink};

/// What to measure.
#[derive(Debug, Clone)]
pub struct IngestBench {
    /// Subjects loaded before the measured import (also timed).
    pub subjects: u64,
    /// Status changes in the measured import.
    pub rows: u64,
    /// Items per batch.
    pub batch: usize,
    /// Batches in flight.
    pub in_flight: usize,
    /// Attest requests per second during the measured import (0: none).
    pub attest_rate: f64,
    /// Folder for the federation (default: a temporary one).
    pub dir: Option<std::path::PathBuf>,
    /// The node's store: fjall instead of redb.
    pub fjall: bool,
}

fn options(kind: &'static str, bench: &IngestBench, total: u64, refusals: &Path, out: Option<&Path>) -> Options {
    Options {
        batch: bench.batch,
        in_flight: bench.in_flight,
        checkpoint: None,
        refusals: refusals.to_owned(),
        out: out.map(Path::to_owned),
        sink: TokenSink::Bench { province: "340000".into() },
        all_or_nothing: false,
        progress: ProgressMode::Auto,
        progress_every: Duration::from_secs(5),
        retry_for: Duration::from_secs(30),
        total_lines: Some(total),
        kind,
    }
}

fn green(subject: u64, id: String) -> Payload {
    let change = pb::UpsertStatusRequest {
        subject_ref: format!("bench-subj-{subject}"),
        status: pb::HealthStatus::Green as i32,
        test_recency: pb::TestRecency::None as i32,
        ..Default::default()
    };
    Payload::Status(pb::PublishStatusItem { item_id: id, change: Some(change) })
}

/// One timed import: its counts and rows per second.
async fn timed(
    client: &StatusAdminClient<Channel>,
    rows: Box<dyn Iterator<Item = (u64, Payload)> + Send>,
    options: &Options,
) -> Result<(Counts, f64, Duration)> {
    let start = Start { source_id: super::random_source_id(), after_line: 0, counts: Counts::default() };
    let summary = super::run(client.clone(), rows, start, options).await?;
    let secs = summary.elapsed.as_secs_f64();
    Ok((summary.counts, summary.lines as f64 / secs.max(1e-9), summary.elapsed))
}

/// Runs the benchmark; returns its report as text and as JSON.
pub async fn run(bench: &IngestBench) -> Result<(String, serde_json::Value)> {
    use crate::federation::Federation;
    if bench.subjects == 0 || bench.rows == 0 {
        bail!("--subjects and --rows must be positive");
    }
    let tmp = tempfile::tempdir()?;
    let dir = bench.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let settings = crate::federation::FederationOptions { node_fjall: bench.fjall, ..Default::default() };
    let federation = Federation::start_with(&dir, &[("340000", "Anhui")], crate::demo::demo_rules(), settings).await?;
    let code: ProvinceCode = "340000".parse()?;
    let client = federation.admin_client(&code)?.max_decoding_message_size(16 << 20);
    let refusals = dir.join("refusals.jsonl");

    let subjects = bench.subjects;
    let preload = Box::new((1..=subjects).map(|i| (i, green(i - 1, format!("preload-{i}")))));
    let (counts, preload_rate, preload_time) =
        timed(&client, preload, &options("statuses", bench, subjects, &refusals, None)).await?;
    if counts.accepted != subjects {
        bail!("preload: {counts:?}");
    }
    eprintln!("preloaded {subjects} subjects in {:.1} s ({preload_rate:.0}/s)", preload_time.as_secs_f64());

    // Tokens for the attestation load, through IssueTokens.
    let tokens_file = dir.join("tokens.txt");
    let token_rows = Box::new((1..=1000u64).map(move |i| {
        let request = pb::IssueTokenRequest {
            subject_ref: format!("bench-subj-{}", (i * 7919) % subjects),
            lifetime_seconds: 86_400,
            purpose: String::new(),
        };
        (i, Payload::Token(request))
    }));
    let mut token_options = options("tokens", bench, 1000, &refusals, Some(&tokens_file));
    token_options.batch = bench.batch.min(huren_node::MAX_TOKEN_ITEMS);
    timed(&client, token_rows, &token_options).await?;

    // The measured import: changes of existing subjects, spread over the store.
    let rows = bench.rows;
    let updates = Box::new((1..=rows).map(move |i| (i, green((i * 104_729) % subjects, format!("update-{i}")))));
    let import_options = options("statuses", bench, rows, &refusals, None);
    let expected = Duration::from_secs_f64((rows as f64 / 20_000.0).max(3.0));
    let attest = async {
        if bench.attest_rate <= 0.0 {
            return Ok(None);
        }
        federation.identity("gateway", "bench-attest")?;
        let issued = dir.join("pki").join("issued").join("gateway-bench-attest");
        let lookup = huren_bench::LookupOptions {
            tls: huren_bench::TlsFiles {
                cert: issued.join("cert.pem"),
                key: issued.join("key.pem"),
                ca: dir.join("pki").join("root").join("ca.pem"),
                trust_domain: huren_pki::DEFAULT_TRUST_DOMAIN.into(),
            },
            target: federation.node_addr(&code)?.to_string(),
            rpc: huren_bench::Rpc::Attest,
            expect: None,
            concurrency: 16,
            connections: Some(2),
            duration: expected,
            warmup: Duration::from_millis(200),
            rate: Some(bench.attest_rate),
            tokens: Some(tokens_file.clone()),
            token: Vec::new(),
            repeat_tokens: false,
            unique_tokens: false,
            batch: 1,
            purpose: "transit.highway".into(),
            timeout: Duration::from_secs(5),
            verify_trust_list: None,
            watch_pid: Vec::new(),
            label: Some("attest during import".into()),
        };
        huren_bench::lookup(&lookup).await.map(Some).context("attest load")
    };
    let started = Instant::now();
    let (import, attest) = tokio::join!(timed(&client, updates, &import_options), attest);
    let (counts, rate, elapsed) = import?;
    let attest = attest?;
    let total_secs = started.elapsed().as_secs_f64();
    let mut text = format!(
        "preload: {subjects} subjects in {:.1} s = {preload_rate:.0} statuses/s\n\
         import:  {rows} status changes into a node holding {subjects} subjects in {:.1} s = {rate:.0} statuses/s \
         (batch {}, {} in flight; {} accepted, {} refused)\n",
        preload_time.as_secs_f64(),
        elapsed.as_secs_f64(),
        bench.batch,
        bench.in_flight,
        counts.accepted,
        counts.refused,
    );
    let attest_json = match &attest {
        Some(report) => {
            text.push_str(&format!(
                "attest during the import ({} req/s offered, {expected:?} from the import's start; import took \
                 {total_secs:.1} s):\n{}",
                bench.attest_rate,
                report.text()
            ));
            report.json.clone()
        }
        None => serde_json::Value::Null,
    };
    let json = serde_json::json!({
        "subjects": subjects,
        "preload_statuses_per_s": preload_rate,
        "rows": rows,
        "import_statuses_per_s": rate,
        "import_seconds": elapsed.as_secs_f64(),
        "batch": bench.batch,
        "in_flight": bench.in_flight,
        "accepted": counts.accepted,
        "attest": attest_json,
    });
    federation.shutdown().await?;
    Ok((text, json))
}
