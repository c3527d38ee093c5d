//! `huren bench`: the command line of [`huren_bench`]'s tools.
//!
//! - `lookup`: a gRPC load generator over mutual TLS ([`huren_bench::lookup`]).
//! - `seed`: synthetic subjects and tokens at a node, and a tokens file for `lookup`.
//! - `store`: the node's redb store on its own.
//! - `report`: a `deploy/bench/run.sh` results folder summarised.
//! - `handshake-flood`: a loopback federation of its own under a handshake flood (idle
//!   connections from one address and a trickler, [`huren_bench::flood`]); the latency of
//!   a hub's fresh connection and lookup meanwhile.
//!
//! Targets are refused unless they are loopback addresses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use huren_bench::{BenchError, LookupOptions, SeedOptions, StoreOptions, TlsFiles};

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
    #[command(after_help = "Example:\n  huren bench store --subjects 1000000 --batch 1000 --json")]
    Store(StoreArgs),
    /// Summarise a deploy/bench/run.sh results folder into results.json and results.md.
    #[command(after_help = "Example (see BENCHMARKS.md):\n  huren bench report deploy/bench/results/2026-12-01")]
    Report(ReportArgs),
    /// Start a loopback federation, hold idle connections from one address and a slow-TLS
    /// trickler against its gateway, and time a hub's fresh connection + lookup meanwhile.
    #[command(after_help = "Example:\n  huren bench handshake-flood --json")]
    HandshakeFlood(HandshakeFloodArgs),
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
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Subject reference prefix.
    #[arg(long, default_value = "bench-subj-")]
    pub prefix: String,
    /// Where to write the tokens, one `<province>:<token>` a line.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
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
    /// Folder for the store file (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the store file.
    #[arg(long)]
    pub keep: bool,
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
            let options = args.options();
            huren_bench::seed(&options, &mut |line| eprintln!("{line}")).await.map_err(bench_error)?;
            println!("{}", options.out.display());
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
        BenchCommand::Report(args) => print!("{}", huren_bench::report(&args.dir).map_err(bench_error)?),
        BenchCommand::HandshakeFlood(args) => handshake_flood(args).await?,
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
            purpose: self.purpose.clone(),
            timeout: self.timeout,
            verify_trust_list: self.verify_trust_list.clone(),
            watch_pid: self.watch_pid.clone(),
            label: self.label.clone(),
        }
    }
}

impl SeedArgs {
    fn options(self) -> SeedOptions {
        SeedOptions {
            tls: (&self.tls).into(),
            node: self.node,
            subjects: self.subjects,
            tokens: self.tokens,
            lifetime: self.lifetime,
            concurrency: self.concurrency,
            prefix: self.prefix,
            out: self.out,
        }
    }
}

impl StoreArgs {
    /// The options, and whether to print JSON.
    fn options(self) -> (StoreOptions, bool) {
        let options = StoreOptions {
            subjects: self.subjects,
            batch: self.batch,
            singles: self.singles,
            updates: self.updates,
            lookups: self.lookups,
            dir: self.dir,
            keep: self.keep,
        };
        (options, self.json)
    }
}
