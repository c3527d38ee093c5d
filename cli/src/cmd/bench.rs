//! `huren bench`: the command line of [`huren_bench`]'s tools.
//!
//! - `lookup`: a gRPC load generator over mutual TLS ([`huren_bench::lookup`]).
//! - `seed`: synthetic subjects and tokens at a node through the batched import of
//!   `huren admin import` ([`crate::ingest`]), and a tokens file for `lookup`.
//! - `store`: the node's store on its own, on redb or fjall.
//! - `ingest`: batched publishing end to end into a loopback node, with Attest latency
//!   meanwhile ([`crate::ingest::bench`]).
//! - `report`: a `deploy/bench/run.sh` results folder summarised.
//! - `handshake-flood`: a loopback federation of its own under a handshake flood (idle
//!   connections from one address and a trickler, [`huren_bench::flood`]); the latency of
//!   a hub's fresh connection and lookup meanwhile.
//! - `agent`: a loopback federation and a hub agent; `POST /v1/check` checks/s and
//!   latency, online (gateway up) then offline (gateway stopped).
//!
//! Targets are refused unless they are loopback addresses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use huren_bench::{BenchError, LookupOptions, StoreEngine, StoreOptions, TlsFiles};

use crate::cmd::TlsArgs;
use crate::usage;

/// `huren bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// gRPC load generator over mTLS: requests/s, p50/p90/p99/max latency, errors.
    #[command(
        after_help = "Example (see BENCHMARKS.md):\n  huren bench lookup --target 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca hub/ca.pem \\\n    --tokens tokens.txt --concurrency 64 --duration 10s --json"
    )]
    Lookup(LookupArgs),
    /// Publish synthetic subjects and issue tokens at a node (admin identity); writes a tokens file.
    #[command(
        after_help = "Example (see BENCHMARKS.md):\n  huren bench seed --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem \\\n    --ca admin-340000/ca.pem --subjects 10000 --tokens 10000 --out tokens.txt"
    )]
    Seed(SeedArgs),
    /// Node store on its own: bulk ingest, single upserts, updates, point lookups, size, memory.
    #[command(
        after_help = "Examples (compare the backends, same phases):\n  huren bench store --backend redb --subjects 1000000 --batch 1000 --json\n  huren bench store --backend fjall --subjects 1000000 --batch 1000 --json"
    )]
    Store(StoreArgs),
    /// Batched publishing end to end: a loopback node preloaded with subjects, a timed import
    /// through PublishStatuses, and Attest latency at a fixed rate meanwhile.
    #[command(
        after_help = "Example (see BENCHMARKS.md):\n  huren bench ingest --subjects 1000000 --rows 200000 --attest-rate 500 --json"
    )]
    Ingest(IngestArgs),
    /// Summarise a deploy/bench/run.sh results folder into results.json and results.md.
    #[command(after_help = "Example (see BENCHMARKS.md):\n  huren bench report deploy/bench/results/2026-12-01")]
    Report(ReportArgs),
    /// Start a loopback federation, hold idle connections from one address and a slow-TLS
    /// trickler against its gateway, and time a hub's fresh connection + lookup meanwhile.
    #[command(after_help = "Example:\n  huren bench handshake-flood --json")]
    HandshakeFlood(HandshakeFloodArgs),
    /// Start a loopback federation and a hub agent (`huren hub serve`); load its
    /// `POST /v1/check` with a QR, online (gateway up), then offline (gateway stopped):
    /// checks/s and p50/p99/max latency of each.
    #[command(after_help = "Example (see BENCHMARKS.md):\n  huren bench agent --concurrency 16 --duration 10s --json")]
    Agent(AgentBenchArgs),
}

#[derive(Debug, Args)]
pub struct AgentBenchArgs {
    /// Checks in flight at once (closed loop: one keep-alive HTTP/1.1 connection each).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measured time of each phase (online, then offline).
    #[arg(long, default_value = "10s", value_parser = huren_bench::parse_duration)]
    pub duration: Duration,
    /// Unrecorded time before each phase.
    #[arg(long, default_value = "1s", value_parser = huren_bench::parse_duration)]
    pub warmup: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HandshakeFloodArgs {
    /// Idle TCP connections held from 127.0.0.2 (they never start TLS).
    #[arg(long, default_value_t = 5000)]
    pub idle: usize,
    /// Fresh hub connections + lookups timed, one after the other (from 127.0.0.1).
    #[arg(long, default_value_t = 200)]
    pub lookups: usize,
    /// Interval between the bytes of the trickler's ClientHello (from 127.0.0.3).
    #[arg(long, default_value = "1s", value_parser = huren_bench::parse_duration)]
    pub trickle_every: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which RPC each request makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rpc {
    /// `huren.v1.Lookup/Lookup` (a hub asking a gateway).
    Lookup,
    /// `huren.v1.Attestation/Attest` (a gateway identity asking a node, or a proxy in front of one).
    Attest,
    /// `huren.v1.Lookup/LookupBatch`: manifests of --batch tokens (throughput in attestations).
    LookupBatch,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Server to load, host:port on loopback (127.0.0.1, ::1, localhost).
    #[arg(long)]
    pub target: String,
    /// RPC to call: lookup (gateway) or attest (node, or a proxy in front of a node).
    #[arg(long, value_enum, default_value_t = Rpc::Lookup)]
    pub rpc: Rpc,
    /// Server identity to accept: "gateway", "node" (the node of the tokens' province) or a
    /// full spiffe:// URI. Default: gateway for lookup, node for attest.
    #[arg(long)]
    pub expect: Option<String>,
    /// Requests in flight at once (closed loop: workers; with --rate: the cap).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Persistent HTTP/2 connections the requests are spread over (default: min(concurrency, 4)).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = huren_bench::parse_duration)]
    pub duration: Duration,
    /// Unrecorded time before measuring (connections are always established first).
    #[arg(long, default_value = "1s", value_parser = huren_bench::parse_duration)]
    pub warmup: Duration,
    /// Fixed request rate per second (open loop); default: as fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// File of tokens, one `<province>:<token>` a line (as written by `huren bench seed`).
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// A token `<province>:<token>` (repeatable).
    #[arg(long = "token")]
    pub token: Vec<String>,
    /// Reuse one token for every request (so that a gateway cache would hit).
    #[arg(long)]
    pub repeat_tokens: bool,
    /// Use every token at most once (a unique-token workload: nothing repeats inside any
    /// cache window); requests past the last token fail as TokensExhausted.
    #[arg(long, conflicts_with = "repeat_tokens")]
    pub unique_tokens: bool,
    /// Tokens per LookupBatch call (--rpc lookup-batch), at most 500.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Purpose declared with each request.
    #[arg(long, default_value = "transit.highway")]
    pub purpose: String,
    /// Deadline of one request.
    #[arg(long, default_value = "5s", value_parser = huren_bench::parse_duration)]
    pub timeout: Duration,
    /// Verify every answer against this trust list (as a hub does); costs client CPU.
    #[arg(long)]
    pub verify_trust_list: Option<PathBuf>,
    /// Also report the CPU time a process spent during the measured window: LABEL=PID (repeatable).
    #[arg(long = "watch-pid")]
    pub watch_pid: Vec<String>,
    /// A name for this run, carried into the output.
    #[arg(long)]
    pub label: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The province node, host:port on loopback.
    #[arg(long)]
    pub node: String,
    /// Subjects to publish (GREEN, pseudonymous refs `<prefix><n>`).
    #[arg(long, default_value_t = 1000)]
    pub subjects: u64,
    /// Tokens to issue (round robin over the subjects).
    #[arg(long, default_value_t = 1000)]
    pub tokens: u64,
    /// Token lifetime in seconds (at most 86400).
    #[arg(long, default_value_t = 86_400)]
    pub lifetime: u32,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Items per batch (statuses at most 5000, tokens at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Subject reference prefix.
    #[arg(long, default_value = "bench-subj-")]
    pub prefix: String,
    /// Where to write the tokens, one `<province>:<token>` a line.
    #[arg(long)]
    pub out: PathBuf,
}

/// The embedded backends `huren bench store` measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreBackendArg {
    /// One redb file, the node's default (`store = "redb"`).
    Redb,
    /// A fjall LSM database folder (`store = "fjall"`).
    Fjall,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store backend to measure.
    #[arg(long, value_enum, default_value_t = StoreBackendArg::Redb)]
    pub backend: StoreBackendArg,
    /// Subjects to load.
    #[arg(long, env = "HUREN_BENCH_SUBJECTS", default_value_t = 1_000_000)]
    pub subjects: u64,
    /// Subjects per durable transaction during the bulk load and the updates.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Single durable upserts (one transaction each), for comparison.
    #[arg(long, default_value_t = 1_000)]
    pub singles: u64,
    /// Random updates of existing subjects, in batches (default: min(subjects, 500000)).
    #[arg(long)]
    pub updates: Option<u64>,
    /// Random point lookups after loading.
    #[arg(long, default_value_t = 200_000)]
    pub lookups: u64,
    /// Threads writing batches at once during the bulk load and the updates (a node serving
    /// an import has several batches in flight).
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Folder for the store (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the store.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Subjects loaded before the measured import (timed too).
    #[arg(long, default_value_t = 1_000_000)]
    pub subjects: u64,
    /// Status changes of existing subjects in the measured import.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Items per batch (at most 5000).
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Batches in flight.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Attest requests per second to the node during the measured import (0: none).
    #[arg(long, default_value_t = 500.0)]
    pub attest_rate: f64,
    /// Folder for the federation and its store (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The node's store backend.
    #[arg(long, value_enum, default_value_t = StoreBackendArg::Redb)]
    pub backend: StoreBackendArg,
    /// Seconds of Attest load from the import's start (default: rows / 100,000, at least 2);
    /// keep it below the import's time, or quiet time dilutes the tail.
    #[arg(long)]
    pub attest_seconds: Option<f64>,
    /// Run the measured import as `huren admin import` in a process of its own, as a
    /// province's importer runs, instead of in this process beside the node.
    #[arg(long)]
    pub importer_process: bool,
    /// Niceness of the importer process (with --importer-process).
    #[arg(long, default_value_t = 0, requires = "importer_process")]
    pub importer_nice: u8,
    /// Run the Attest load generator as `huren bench lookup` in a process of its own, apart
    /// from the node's runtime.
    #[arg(long)]
    pub attest_process: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results folder written by deploy/bench/run.sh.
    pub dir: PathBuf,
}

/// Runs `huren bench …`.
pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Lookup(args) => {
            let report = huren_bench::lookup(&args.options()).await.map_err(bench_error)?;
            if args.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text());
            }
            if report.ok == 0 {
                bail!("no request succeeded");
            }
        }
        BenchCommand::Seed(args) => {
            seed(&args).await?;
            println!("{}", args.out.display());
        }
        BenchCommand::Store(args) => {
            let (options, json) = args.options();
            let report = tokio::task::spawn_blocking(move || {
                // The progress lines are for people; --json output stays one object.
                huren_bench::store(&options, &mut |line| {
                    if !json {
                        eprintln!("{line}")
                    }
                })
            })
            .await?
            .map_err(bench_error)?;
            if let Some(path) = &report.kept {
                eprintln!("store kept at {}", path.display());
            }
            if json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text());
            }
        }
        BenchCommand::Ingest(args) => {
            let bench = crate::ingest::bench::IngestBench {
                subjects: args.subjects,
                rows: args.rows,
                batch: args.batch.min(huren_node::MAX_STATUS_ITEMS),
                in_flight: args.in_flight,
                attest_rate: args.attest_rate,
                dir: args.dir,
                fjall: matches!(args.backend, StoreBackendArg::Fjall),
                attest_seconds: args.attest_seconds,
                importer_process: args.importer_process,
                importer_nice: args.importer_nice,
                attest_process: args.attest_process,
            };
            let (text, json) = crate::ingest::bench::run(&bench).await?;
            if args.json {
                println!("{json}");
            } else {
                print!("{text}");
            }
        }
        BenchCommand::Report(args) => print!("{}", huren_bench::report(&args.dir).map_err(bench_error)?),
        BenchCommand::HandshakeFlood(args) => handshake_flood(args).await?,
        BenchCommand::Agent(args) => agent(args).await?,
    }
    Ok(())
}

/// `huren bench handshake-flood`: a demo federation in a temporary folder, one GREEN
/// Anhui subject, a hub registered for `transit.rail`; each timed attempt is a new
/// [`HubClient`](huren_client::HubClient) (its own connection, 3 s connect timeout) and one lookup.
async fn handshake_flood(args: HandshakeFloodArgs) -> Result<()> {
    use crate::demo::{demo_rules, demo_subjects, seed};
    use crate::federation::{Federation, DEMO_PROVINCES};
    let dir = tempfile::tempdir()?;
    let federation = Federation::start(dir.path(), &DEMO_PROVINCES, demo_rules()).await?;
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").context("an Anhui demo subject")?;
    let token = seed(&federation, &subject, 3600).await?.token;
    federation.register_hub("bench-flood-hub", &["transit.rail"]).await?;
    let identity = federation.identity("hub", "bench-flood-hub")?;
    let gateway = federation.gateway_addr();
    let province: huren_pki::ProvinceCode = "340000".parse()?;
    let options = huren_bench::flood::FloodOptions {
        target: gateway,
        idle: args.idle,
        trickle_every: args.trickle_every,
        lookups: args.lookups,
    };
    let attempt = || {
        let (identity, token, province) = (&identity, &token, &province);
        async move {
            let mut hub =
                huren_client::HubClient::connect(&gateway.to_string(), identity).map_err(|e| e.to_string())?;
            hub.lookup(province, token, "transit.rail").await.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    let report = huren_bench::flood::handshake_flood(&options, attempt).await.map_err(bench_error)?;
    federation.shutdown().await?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.ok == 0 {
        bail!("no lookup succeeded");
    }
    Ok(())
}

/// `huren bench seed`: GREEN subjects `<prefix><n>` and then tokens round robin over them,
/// through the batched import of `huren admin import` (`PublishStatuses`, `IssueTokens`),
/// with its progress; the tokens go to `--out` as `<province>:<token>` lines.
async fn seed(args: &SeedArgs) -> Result<()> {
    use crate::ingest::{self, Payload, Start, TokenSink};
    use huren_proto::pb;
    if args.subjects == 0 || args.tokens == 0 || args.concurrency == 0 || args.batch == 0 {
        return Err(usage("--subjects, --tokens, --concurrency and --batch must be positive"));
    }
    let node = huren_bench::loopback(&args.node).map_err(bench_error)?;
    let province = match args.tls.load()?.identity.role {
        huren_pki::Role::Admin(p) => p.to_string(),
        other => return Err(usage(format!("a province admin identity is needed, not a {} identity", other.kind()))),
    };
    let (client, _node) = crate::cmd::admin::status_admin_client(&args.tls, &node)?;
    let run = ingest::random_source_id();
    let options = |kind, batch: usize, out: Option<PathBuf>, total| ingest::Options {
        batch,
        in_flight: args.concurrency,
        checkpoint: None,
        refusals: args.out.with_extension("refusals.jsonl"),
        out,
        sink: TokenSink::Bench { province: province.clone() },
        all_or_nothing: false,
        progress: crate::ingest::progress::ProgressMode::Auto,
        progress_every: Duration::from_secs(5),
        retry_for: Duration::from_secs(30),
        total_lines: Some(total),
        kind,
    };
    let fresh = || Start { source_id: run.clone(), after_line: 0, counts: Default::default() };
    let prefix = args.prefix.clone();
    let statuses = (1..=args.subjects).map(move |i| {
        let change = pb::UpsertStatusRequest {
            subject_ref: format!("{prefix}{}", i - 1),
            status: pb::HealthStatus::Green as i32,
            test_recency: pb::TestRecency::None as i32,
            ..Default::default()
        };
        (i, Payload::Status(pb::PublishStatusItem { item_id: format!("seed-{i}"), change: Some(change) }))
    });
    let opts = options("statuses", args.batch.min(huren_node::MAX_STATUS_ITEMS), None, args.subjects);
    let summary = ingest::run(client.clone(), Box::new(statuses), fresh(), &opts).await?;
    eprintln!("subjects: {}", summary.text(&opts.refusals));
    // A subject an earlier seed of this node published (same item id) counts as published.
    if summary.counts.accepted + summary.counts.skipped != args.subjects {
        bail!("not every subject was published (see {})", opts.refusals.display());
    }
    let (prefix, subjects, lifetime) = (args.prefix.clone(), args.subjects, args.lifetime);
    let tokens = (1..=args.tokens).map(move |i| {
        let request = pb::IssueTokenRequest {
            subject_ref: format!("{prefix}{}", (i - 1) % subjects),
            lifetime_seconds: lifetime,
            purpose: String::new(),
        };
        (i, Payload::Token(request))
    });
    let opts = options("tokens", args.batch.min(huren_node::MAX_TOKEN_ITEMS), Some(args.out.clone()), args.tokens);
    let summary = ingest::run(client, Box::new(tokens), fresh(), &opts).await?;
    eprintln!("tokens: {}", summary.text(&opts.refusals));
    if summary.counts.accepted != args.tokens {
        bail!("not every token was issued (see {})", opts.refusals.display());
    }
    Ok(())
}

/// `huren bench agent`: a demo federation in a temporary folder, one GREEN Anhui subject,
/// a hub agent following the gateway; `concurrency` workers post the subject's QR to
/// `/v1/check` over keep-alive connections, first with the gateway up (every check
/// online: lookup through the gateway + local verification), then with it stopped (every
/// check offline: a refused connection, then the QR's own attestation verified).
async fn agent(args: AgentBenchArgs) -> Result<()> {
    use crate::demo::{demo_rules, demo_subjects, seed};
    use crate::federation::{Federation, DEMO_PROVINCES};
    if args.concurrency == 0 || args.duration.is_zero() {
        return Err(usage("--concurrency and --duration must be positive"));
    }
    let dir = tempfile::tempdir()?;
    let mut federation = Federation::start(dir.path(), &DEMO_PROVINCES, demo_rules()).await?;
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").context("an Anhui demo subject")?;
    let qr = seed(&federation, &subject, 3600).await?.qr;
    federation.register_hub("bench-agent", &["transit.rail"]).await?;
    let issued = federation.pki.issue("hub", "bench-agent", huren_pki::ca::Validity::days(1))?;
    let config = huren_hub_agent::AgentConfig {
        gateway: Some(huren_runtime::gateways::GatewayList::parse(&federation.gateway_addr().to_string())),
        cert: issued.cert,
        key: issued.key,
        ca: federation.pki.root_cert_path(),
        trust_list_cache: dir.path().join("agent-trust-list.bin"),
        default_purpose: "transit.rail".into(),
        ..Default::default()
    };
    let agent = huren_hub_agent::Agent::start(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.serve(listener, async {
        let _ = stopped.await;
    }));
    let body = serde_json::json!({ "scan": qr, "purpose": "transit.rail" }).to_string();
    let online = agent_phase(addr, &body, "online", &args).await?;
    federation.stop_gateway().await?;
    let offline = agent_phase(addr, &body, "offline", &args).await?;
    let _ = stop.send(());
    federation.shutdown().await?;
    if args.json {
        println!("{}", serde_json::json!({ "concurrency": args.concurrency, "online": online, "offline": offline }));
    } else {
        for (name, p) in [("online", &online), ("offline", &offline)] {
            println!(
                "{name:>7}: {:.0} checks/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} checks, {} not {name})",
                p["checks_per_sec"].as_f64().unwrap_or(0.0),
                p["p50_ms"].as_f64().unwrap_or(0.0),
                p["p99_ms"].as_f64().unwrap_or(0.0),
                p["max_ms"].as_f64().unwrap_or(0.0),
                p["checks"],
                p["wrong"],
            );
        }
    }
    if online["checks"] == 0 || offline["checks"] == 0 {
        bail!("a phase made no check");
    }
    Ok(())
}

/// One phase of `huren bench agent`: warm-up, then `duration` of closed-loop checks;
/// counts answers that were not `200` checked as `expect`.
async fn agent_phase(
    addr: std::net::SocketAddr,
    body: &str,
    expect: &'static str,
    args: &AgentBenchArgs,
) -> Result<serde_json::Value> {
    use std::time::Instant;
    let request = format!(
        "POST /v1/check HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let end = measure_from + args.duration;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await?);
            let (mut latencies, mut wrong) = (Vec::new(), 0u64);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let (code, answer) = http_exchange(&mut conn, request.as_bytes()).await?;
                let ok = code == 200 && answer.contains(&format!("\"checked\":\"{expect}\""));
                if sent >= measure_from {
                    latencies.push(sent.elapsed().as_micros() as u64);
                    wrong += u64::from(!ok);
                }
            }
            anyhow::Ok((latencies, wrong))
        }));
    }
    let (mut latencies, mut wrong) = (Vec::new(), 0);
    for worker in workers {
        let (l, w) = worker.await??;
        latencies.extend(l);
        wrong += w;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0) as f64
            / 1000.0
    };
    Ok(serde_json::json!({
        "checks": latencies.len(),
        "wrong": wrong,
        "checks_per_sec": latencies.len() as f64 / args.duration.as_secs_f64(),
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    }))
}

/// Sends one HTTP/1.1 request on a keep-alive connection and reads the answer (a
/// `Content-Length` body, as the agent sends).
async fn http_exchange(
    conn: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    request: &[u8],
) -> Result<(u16, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    conn.write_all(request).await?;
    conn.flush().await?;
    let mut status = String::new();
    conn.read_line(&mut status).await?;
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed mid-answer");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().context("bad content-length")?;
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// A bench error for `main`: usage errors exit 64.
fn bench_error(e: BenchError) -> anyhow::Error {
    match e {
        BenchError::Usage(message) => usage(message),
        e => e.into(),
    }
}

impl From<&TlsArgs> for TlsFiles {
    fn from(t: &TlsArgs) -> Self {
        TlsFiles { cert: t.cert.clone(), key: t.key.clone(), ca: t.ca.clone(), trust_domain: t.trust_domain.clone() }
    }
}

impl LookupArgs {
    fn options(&self) -> LookupOptions {
        LookupOptions {
            tls: (&self.tls).into(),
            target: self.target.clone(),
            rpc: match self.rpc {
                Rpc::Lookup => huren_bench::Rpc::Lookup,
                Rpc::Attest => huren_bench::Rpc::Attest,
                Rpc::LookupBatch => huren_bench::Rpc::LookupBatch,
            },
            expect: self.expect.clone(),
            concurrency: self.concurrency,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            tokens: self.tokens.clone(),
            token: self.token.clone(),
            repeat_tokens: self.repeat_tokens,
            unique_tokens: self.unique_tokens,
            batch: self.batch,
            purpose: self.purpose.clone(),
            timeout: self.timeout,
            verify_trust_list: self.verify_trust_list.clone(),
            watch_pid: self.watch_pid.clone(),
            label: self.label.clone(),
        }
    }
}

impl StoreArgs {
    /// The options, and whether to print JSON.
    fn options(self) -> (StoreOptions, bool) {
        let options = StoreOptions {
            engine: match self.backend {
                StoreBackendArg::Redb => StoreEngine::Redb,
                StoreBackendArg::Fjall => StoreEngine::Fjall,
            },
            subjects: self.subjects,
            batch: self.batch,
            singles: self.singles,
            updates: self.updates,
            lookups: self.lookups,
            writers: self.writers,
            dir: self.dir,
            keep: self.keep,
        };
        (options, self.json)
    }
}
