//! `huren bench ingest`: end-to-end batched publishing throughput. A loopback federation of
//! its own (one province, its node on a redb store in a temporary folder, served over mutual
//! TLS), preloaded with `--subjects` GREEN subjects through `PublishStatuses`; then
//! `--rows` status changes of existing subjects are imported through the same engine as
//! `huren admin import` and timed, while (with `--attest-rate`) a gateway identity asks
//! the node for attestations at a fixed rate, whose latency is reported beside. The
//! `Attest` window lies inside the import (the report says what share of it did). With
//! `--importer-process` the measured import runs as `huren admin import` in a process of its
//! own (optionally under `nice`), as a province's importer would, not on this process's
//! runtime beside the node; with `--attest-process` the `Attest` load runs as `huren bench
//! lookup` in a process of its own.

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
    /// Seconds of `Attest` load, from the import's start (`None`: rows / 100,000, at least
    /// 2): the window must end before the import does, or quiet time dilutes the tail.
    pub attest_seconds: Option<f64>,
    /// Run the measured import as its own process (`huren admin import` on a file written
    /// first), as a province runs its importer, instead of in this process.
    pub importer_process: bool,
    /// Niceness the importer process runs at (with `importer_process`; Linux `nice`).
    pub importer_nice: u8,
    /// Run the `Attest` load generator as `huren bench lookup` in a process of its own, so
    /// that it does not share the node's runtime.
    pub attest_process: bool,
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
    if let Some(s) = bench.attest_seconds.filter(|s| !(s.is_finite() && *s > 0.0 && *s <= 86_400.0)) {
        bail!("--attest-seconds must be a positive number of seconds, at most 86400 (got {s})");
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
    let window = Duration::from_secs_f64(bench.attest_seconds.unwrap_or((rows as f64 / 100_000.0).max(2.0)));
    let warmup = Duration::from_millis(200);
    let import_file = dir.join("import.jsonl");
    if bench.importer_process {
        write_import_file(&import_file, rows, subjects)?;
    }
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
            duration: window,
            warmup,
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
        if bench.attest_process {
            return attest_process(&lookup).await.map(Some);
        }
        let report = huren_bench::lookup(&lookup).await.context("attest load")?;
        Ok(Some((report.text().to_owned(), report.json)))
    };
    let started = Instant::now();
    let import = async {
        if bench.importer_process {
            import_process(&dir, &code, &federation, &import_file, bench, rows).await
        } else {
            timed(&client, updates, &import_options).await
        }
    };
    let (import, attest) = tokio::join!(import, attest);
    let (counts, rate, elapsed) = import?;
    // Share of the Attest window (warm-up included) during which the import ran.
    let overlap = (elapsed.as_secs_f64() / (warmup + window).as_secs_f64()).min(1.0);
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
        Some((report_text, report_json)) => {
            text.push_str(&format!(
                "attest during the import ({} req/s offered for {window:?} after {warmup:?} of warm-up, from the \
                 import's start; the import ran for {:.0}% of that{}; import took {total_secs:.1} s):\n{}",
                bench.attest_rate,
                overlap * 100.0,
                if overlap < 1.0 {
                    ", so the tail is diluted: give --attest-seconds below the import's time"
                } else {
                    ""
                },
                report_text
            ));
            report_json.clone()
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
        "attest_seconds": window.as_secs_f64(),
        "attest_overlap": overlap,
        "importer": if bench.importer_process { "process" } else { "in-process" },
        "importer_nice": bench.importer_nice,
        "attest_generator": if bench.attest_process { "process" } else { "in-process" },
    });
    federation.shutdown().await?;
    Ok((text, json))
}

/// The measured import's rows as a JSON Lines file for `huren admin import`: the same
/// changes, in the same order, as the in-process import sends.
fn write_import_file(path: &Path, rows: u64, subjects: u64) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 1..=rows {
        let subject = (i * 104_729) % subjects;
        writeln!(out, r#"{{"subject_ref":"bench-subj-{subject}","status":"GREEN","item_id":"update-{i}"}}"#)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Runs `huren admin import` on `file` as a process of its own (under `nice` when asked),
/// as the province's admin; its counts are read back from its summary line (the run fails
/// unless every row was accepted), its rate is rows over its run time.
async fn import_process(
    dir: &Path,
    code: &ProvinceCode,
    federation: &crate::federation::Federation,
    file: &Path,
    bench: &IngestBench,
    rows: u64,
) -> Result<(Counts, f64, Duration)> {
    federation.identity("admin", code.as_str())?;
    let issued = dir.join("pki").join("issued").join(format!("admin-{code}"));
    let refusals = dir.join("import.refusals.jsonl");
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = if bench.importer_nice > 0 {
        let mut c = std::process::Command::new("nice");
        c.arg("-n").arg(bench.importer_nice.to_string()).arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    command
        .args(["admin", "import"])
        .arg(file)
        .arg("--node")
        .arg(federation.node_addr(code)?.to_string())
        .arg("--cert")
        .arg(issued.join("cert.pem"))
        .arg("--key")
        .arg(issued.join("key.pem"))
        .arg("--ca")
        .arg(dir.join("pki").join("root").join("ca.pem"))
        .args(["--batch", &bench.batch.to_string(), "--in-flight", &bench.in_flight.to_string()])
        .args(["--progress", "none", "--format", "jsonl"])
        .arg("--refusals")
        .arg(&refusals)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let output = run_child(command, "the importer process").await?;
    let elapsed = started.elapsed();
    // Its summary line: "done: A accepted, R refused, S skipped as already applied; …".
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().chain(String::from_utf8_lossy(&output.stderr).lines()).find_map(|l| {
        let rest = l.trim().strip_prefix("done: ")?;
        let number = |word: &str| -> Option<u64> {
            let end = rest.find(&format!(" {word}"))?;
            rest[..end].rsplit(' ').next()?.parse().ok()
        };
        Some((number("accepted")?, number("refused")?, number("skipped")?))
    });
    let Some((accepted, refused, skipped)) = summary else {
        bail!("the importer process printed no summary: {}", stdout.trim());
    };
    let counts = Counts { accepted, refused, skipped, not_applied: 0 };
    if accepted != rows {
        bail!("the importer process: {counts:?} of {rows} rows (refusals in {})", refusals.display());
    }
    Ok((counts, rows as f64 / elapsed.as_secs_f64().max(1e-9), elapsed))
}

/// Runs the `Attest` load of `lookup` as `huren bench lookup --json` in a process of its
/// own; its report as a line of text and as JSON.
async fn attest_process(lookup: &huren_bench::LookupOptions) -> Result<(String, serde_json::Value)> {
    let exe = std::env::current_exe().context("finding this program")?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut command = std::process::Command::new(exe);
    command
        .args(["bench", "lookup", "--rpc", "attest", "--json"])
        .arg("--cert")
        .arg(&lookup.tls.cert)
        .arg("--key")
        .arg(&lookup.tls.key)
        .arg("--ca")
        .arg(&lookup.tls.ca)
        .args(["--target", &lookup.target])
        .args(["--concurrency", &lookup.concurrency.to_string()])
        .args(["--connections", &lookup.connections.unwrap_or(1).to_string()])
        .args(["--duration", &ms(lookup.duration), "--warmup", &ms(lookup.warmup), "--timeout", &ms(lookup.timeout)])
        .args(["--rate", &lookup.rate.unwrap_or(0.0).to_string(), "--purpose", &lookup.purpose])
        .arg("--tokens")
        .arg(lookup.tokens.as_deref().context("the attest load needs a tokens file")?)
        .args(["--label", lookup.label.as_deref().unwrap_or("attest")]);
    let output = run_child(command, "the attest load process").await?;
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the attest load process printed no JSON report")?;
    let latency = &json["latency_us"];
    let ms_of = |key: &str| latency[key].as_f64().map_or("?".to_owned(), |us| format!("{:.3}", us / 1000.0));
    let text = format!(
        "  attest load in its own process: {} ok, {} errors; latency p50 {} ms  p99 {} ms  p99.9 {} ms  max {} ms\n",
        json["ok"],
        json["errors"],
        ms_of("p50"),
        ms_of("p99"),
        ms_of("p999"),
        ms_of("max")
    );
    Ok((text, json))
}

/// Runs `command` to its end off the runtime's workers; its output, or an error naming
/// `what` with its exit status and standard error when it failed.
async fn run_child(mut command: std::process::Command, what: &str) -> Result<std::process::Output> {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .with_context(|| format!("waiting for {what}"))?
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}
