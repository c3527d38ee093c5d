//! `huren bench`: benchmark tooling.
//!
//! - [`BenchCommand::Lookup`]: a gRPC load generator over mutual TLS. N concurrent tasks
//!   share M persistent HTTP/2 connections (tonic channels built with
//!   [`huren_runtime::tls::channel`]); each request is a real `Lookup` (through a gateway) or
//!   `Attest` (straight to a node, or through a proxy). Closed loop by default; `--rate`
//!   paces requests open-loop from a dedicated thread and measures latency from each
//!   request's scheduled time too (no coordinated omission). Latencies go into an HDR
//!   histogram; the run is bounded by `--duration` and stops by itself. `--json` prints
//!   one object for machines.
//! - [`BenchCommand::Seed`]: publishes synthetic subjects and issues tokens at a node
//!   through `StatusAdmin` (admin identity) and writes a tokens file for `lookup`.
//! - [`BenchCommand::Store`]: the node's redb store on its own: bulk ingest
//!   (`upsert_batch`), single durable upserts, random batched updates and point lookups,
//!   with load rate, file size and peak memory.
//! - [`BenchCommand::Report`]: turns a `deploy/bench/run.sh` results folder into
//!   `results.json` and `results.md` (ratios, added p99, targets).
//!
//! Targets are refused unless they are loopback addresses: this tool only ever loads
//! servers on the machine it runs on.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use huren_pki::qr::{token_from_text, token_to_text};
use huren_pki::{unix_now, Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use pb::attestation_client::AttestationClient;
use pb::lookup_client::LookupClient;
use pb::status_admin_client::StatusAdminClient;
use serde::Serialize;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{usage, TlsArgs};

/// `huren bench …`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// gRPC load generator over mTLS: requests/s, p50/p90/p99/max latency, errors.
    Lookup(LookupArgs),
    /// Publish synthetic subjects and issue tokens at a node (admin identity); writes a tokens file.
    Seed(SeedArgs),
    /// Node store on its own: bulk ingest, single upserts, updates, point lookups, size, memory.
    Store(StoreArgs),
    /// Summarise a deploy/bench/run.sh results folder into results.json and results.md.
    Report(ReportArgs),
}

/// Which RPC each request makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rpc {
    /// `huren.v1.Lookup/Lookup` (a hub asking a gateway).
    Lookup,
    /// `huren.v1.Attestation/Attest` (a gateway identity asking a node, or a proxy in front of one).
    Attest,
}

#[derive(Debug, clap::Args)]
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
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded time before measuring (connections are always established first).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
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
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
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

#[derive(Debug, clap::Args)]
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

#[derive(Debug, clap::Args)]
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Results folder written by deploy/bench/run.sh.
    pub dir: PathBuf,
}

/// Runs a `huren bench` command.
pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Lookup(args) => lookup(args).await,
        BenchCommand::Seed(args) => seed(args).await,
        BenchCommand::Store(args) => tokio::task::spawn_blocking(move || store(args)).await?,
        BenchCommand::Report(args) => report(&args.dir),
    }
}

// ------------------------------------------------------------------ helpers

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Refuses any target that is not on this machine's loopback.
fn loopback(target: &str) -> Result<String> {
    let authority = tls::endpoint_authority(target).map_err(usage)?;
    let addrs: Vec<SocketAddr> =
        authority.to_socket_addrs().with_context(|| format!("resolving {authority}"))?.collect::<Vec<_>>();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(usage(format!("{target}: benchmarks only target loopback addresses (127.0.0.1, ::1)")));
    }
    Ok(authority)
}

fn load_identity(t: &TlsArgs) -> Result<TlsIdentity> {
    TlsIdentity::load(&t.cert, &t.key, &t.ca, &t.trust_domain).map_err(usage)
}

/// A token to ask about.
#[derive(Debug, Clone)]
struct Token {
    province: ProvinceCode,
    bytes: Vec<u8>,
}

fn parse_token(line: &str) -> Result<Token> {
    let (province, token) =
        line.trim().split_once(':').ok_or_else(|| usage(format!("{line:?}: expected <province>:<token>")))?;
    Ok(Token { province: province.parse().map_err(usage)?, bytes: token_from_text(token).map_err(usage)? })
}

fn load_tokens(file: Option<&Path>, inline: &[String], repeat: bool) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            tokens.push(parse_token(line)?);
        }
    }
    for t in inline {
        tokens.push(parse_token(t)?);
    }
    if tokens.is_empty() {
        return Err(usage("give tokens with --tokens FILE or --token <province>:<token>"));
    }
    if repeat {
        tokens.truncate(1);
    }
    Ok(tokens)
}

fn expected_peer(args: &LookupArgs, trust_domain: &str, tokens: &[Token]) -> Result<ExpectedPeer> {
    let default = match args.rpc {
        Rpc::Lookup => "gateway",
        Rpc::Attest => "node",
    };
    match args.expect.as_deref().unwrap_or(default) {
        "gateway" => Ok(ExpectedPeer::AnyGateway),
        "node" => {
            let province = tokens[0].province.clone();
            if tokens.iter().any(|t| t.province != province) {
                return Err(usage("--expect node needs tokens of one province; give --expect <spiffe URI>"));
            }
            Ok(ExpectedPeer::Exactly(Identity::new(trust_domain, Role::Node(province))))
        }
        uri => Ok(ExpectedPeer::Exactly(uri.parse::<Identity>().map_err(usage)?)),
    }
}

/// CPU time (user + system) of a process so far, from /proc (Linux; clock ticks of 1/100 s).
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Peak and current resident memory of this process, in KiB (VmHWM, VmRSS).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn histogram() -> Histogram<u64> {
    // Microseconds (or nanoseconds for the store), 3 significant digits, up to one hour.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, Serialize)]
struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
    count: u64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: (h.mean() * 10.0).round() / 10.0,
        count: h.len(),
    }
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

// ------------------------------------------------------------------ lookup

#[derive(Clone)]
enum Client {
    Lookup(LookupClient<Channel>),
    Attest(AttestationClient<Channel>),
}

/// Everything a request needs, shared by all workers.
struct Shared {
    tokens: Vec<Token>,
    next: AtomicU64,
    purpose: String,
    timeout: Duration,
    verify: Option<TrustList>,
}

impl Shared {
    async fn request(&self, client: &mut Client) -> Result<(), String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let token = &self.tokens[i % self.tokens.len()];
        let signed = match client {
            Client::Lookup(c) => {
                let mut request = tonic::Request::new(pb::LookupRequest {
                    province: token.province.to_string(),
                    token: token.bytes.clone(),
                    purpose: self.purpose.clone(),
                });
                request.set_timeout(self.timeout);
                c.lookup(request).await.map(|r| r.into_inner().attestation)
            }
            Client::Attest(c) => {
                let mut request = tonic::Request::new(pb::AttestRequest {
                    token: token.bytes.clone(),
                    purpose: self.purpose.clone(),
                });
                request.set_timeout(self.timeout);
                c.attest(request).await.map(|r| r.into_inner().attestation)
            }
        }
        .map_err(|s| format!("{:?}", s.code()))?;
        let signed = signed.ok_or_else(|| "EmptyAnswer".to_owned())?;
        if let Some(trust) = &self.verify {
            let expected = huren_pki::Expected::lookup(&token.province, &token.bytes, &self.purpose);
            huren_pki::verify_attestation(trust, &signed, &expected, unix_now())
                .map_err(|_| "VerifyFailed".to_owned())?;
        }
        Ok(())
    }

    async fn timed(&self, client: &mut Client) -> Result<(), String> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), self.request(client)).await {
            Ok(r) => r,
            Err(_) => Err("ClientTimeout".to_owned()),
        }
    }
}

/// What one phase of a run observed.
struct Stats {
    latency: Histogram<u64>,
    scheduled: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Self {
        Self { latency: histogram(), scheduled: histogram(), ok: 0, errors: BTreeMap::new() }
    }

    fn record(&mut self, outcome: Result<(), String>, latency: Duration, scheduled: Option<Duration>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                let _ = self.latency.record((latency.as_micros() as u64).max(1));
                if let Some(s) = scheduled {
                    let _ = self.scheduled.record((s.as_micros() as u64).max(1));
                }
            }
            Err(code) => *self.errors.entry(code).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.scheduled.add(&other.scheduled);
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Closed loop: `concurrency` workers, each sending its next request as soon as the last one answered.
async fn closed_loop(shared: &Arc<Shared>, clients: &[Client], concurrency: usize, duration: Duration) -> Stats {
    let end = Instant::now() + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut client = clients[w % clients.len()].clone();
        let shared = shared.clone();
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            while Instant::now() < end {
                let start = Instant::now();
                let outcome = shared.timed(&mut client).await;
                stats.record(outcome, start.elapsed(), None);
            }
            stats
        }));
    }
    let mut total = Stats::new();
    for w in workers {
        if let Ok(stats) = w.await {
            total.merge(stats);
        }
    }
    total
}

/// Open loop: a pacing thread releases one request every 1/rate seconds; at most
/// `concurrency` are in flight, later ones wait (and their wait counts in the
/// scheduled-time latency).
async fn open_loop(
    shared: &Arc<Shared>,
    clients: &[Client],
    concurrency: usize,
    duration: Duration,
    rate: f64,
) -> Stats {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now();
    let end = start + duration;
    let pacer = std::thread::spawn(move || {
        let mut k: u64 = 0;
        loop {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            if at >= end {
                break;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(at).is_err() {
                break;
            }
            k += 1;
        }
    });
    let stats = Arc::new(Mutex::new(Stats::new()));
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut n = 0usize;
    while let Some(at) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let mut client = clients[n % clients.len()].clone();
        n += 1;
        let (shared, stats) = (shared.clone(), stats.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = shared.timed(&mut client).await;
            let done = Instant::now();
            stats.lock().unwrap_or_else(|e| e.into_inner()).record(outcome, done - sent, Some(done - at));
            drop(permit);
        });
    }
    let _ = pacer.join();
    let _ = slots.acquire_many(concurrency as u32).await;
    let mut guard = stats.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *guard, Stats::new())
}

async fn lookup(args: LookupArgs) -> Result<()> {
    if args.concurrency == 0 || args.concurrency > 100_000 {
        return Err(usage("--concurrency must be within 1..=100000"));
    }
    let connections = args.connections.unwrap_or(args.concurrency.min(4));
    if connections == 0 || connections > args.concurrency {
        return Err(usage("--connections must be within 1..=concurrency"));
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate <= 10_000_000.0) {
            return Err(usage("--rate must be a positive number of requests per second"));
        }
    }
    if args.duration.is_zero() {
        return Err(usage("--duration must be positive"));
    }
    let target = loopback(&args.target)?;
    let identity = load_identity(&args.tls)?;
    let tokens = load_tokens(args.tokens.as_deref(), &args.token, args.repeat_tokens)?;
    let expected = expected_peer(&args, &args.tls.trust_domain, &tokens)?;
    let verify = match &args.verify_trust_list {
        Some(path) => Some(TrustList::load(path, identity.root.as_ref()).map_err(usage)?),
        None => None,
    };
    let watched: Vec<(String, String)> = args
        .watch_pid
        .iter()
        .map(|w| {
            w.split_once('=')
                .map(|(l, p)| (l.to_owned(), p.to_owned()))
                .ok_or_else(|| usage(format!("--watch-pid {w:?}: expected LABEL=PID")))
        })
        .collect::<Result<_>>()?;

    // Separate channels are separate HTTP/2 connections.
    let config = tls::client_config(&identity, expected, Revocations::default())?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = tls::channel(&target, config.clone(), Duration::from_secs(3)).map_err(usage)?;
        clients.push(match args.rpc {
            Rpc::Lookup => Client::Lookup(LookupClient::new(channel)),
            Rpc::Attest => Client::Attest(AttestationClient::new(channel)),
        });
    }
    let shared = Arc::new(Shared {
        tokens,
        next: AtomicU64::new(0),
        purpose: args.purpose.clone(),
        timeout: args.timeout,
        verify,
    });
    // Connect every channel and check the path works before measuring anything.
    for client in &clients {
        let mut c = client.clone();
        shared.timed(&mut c).await.map_err(|code| {
            anyhow!("first request to {target} failed ({code}); check the target, the certificates and the tokens")
        })?;
    }
    let phase = |duration: Duration| {
        let (shared, clients) = (shared.clone(), clients.clone());
        async move {
            match args.rate {
                Some(rate) => open_loop(&shared, &clients, args.concurrency, duration, rate).await,
                None => closed_loop(&shared, &clients, args.concurrency, duration).await,
            }
        }
    };
    if !args.warmup.is_zero() {
        phase(args.warmup).await;
    }
    let cpu_before: Vec<Option<Duration>> = watched.iter().map(|(_, pid)| process_cpu(pid)).collect();
    let self_before = process_cpu("self");
    let started = Instant::now();
    let hard_limit = args.duration + args.timeout + Duration::from_secs(5);
    let stats = tokio::time::timeout(hard_limit, phase(args.duration))
        .await
        .map_err(|_| anyhow!("the run did not finish within {hard_limit:?}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let self_after = process_cpu("self");

    let errors: u64 = stats.errors.values().sum();
    let rps = stats.ok as f64 / elapsed;
    let mut cpu = serde_json::Map::new();
    let mut cpu_entry = |label: &str, before: Option<Duration>, after: Option<Duration>| {
        if let (Some(b), Some(a)) = (before, after) {
            let seconds = a.saturating_sub(b).as_secs_f64();
            cpu.insert(
                label.to_owned(),
                json!({
                    "cpu_s": round(seconds, 3),
                    "cores_busy": round(seconds / elapsed, 3),
                    "us_per_request": if stats.ok > 0 { round(seconds * 1e6 / stats.ok as f64, 1) } else { 0.0 },
                }),
            );
        }
    };
    cpu_entry("loadgen", self_before, self_after);
    for ((label, pid), before) in watched.iter().zip(cpu_before) {
        cpu_entry(label, before, process_cpu(pid));
    }
    let result = json!({
        "label": args.label,
        "target": target,
        "rpc": args.rpc,
        "connections": connections,
        "concurrency": args.concurrency,
        "rate_target": args.rate,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "duration_s": round(elapsed, 3),
        "tokens": shared.tokens.len(),
        "repeat_tokens": args.repeat_tokens,
        "verified_by_client": args.verify_trust_list.is_some(),
        "requests": stats.ok + errors,
        "ok": stats.ok,
        "errors": errors,
        "error_codes": stats.errors,
        "rps": round(rps, 1),
        "latency_us": percentiles(&stats.latency),
        "scheduled_latency_us": args.rate.map(|_| percentiles(&stats.scheduled)),
        "cpu": cpu,
        "unix_time": unix_now(),
    });
    if args.json {
        println!("{result}");
    } else {
        let l = percentiles(&stats.latency);
        let name = args.label.as_deref().map(|l| format!(" [{l}]")).unwrap_or_default();
        println!(
            "{target}{name}: {:?} over {connections} connections, {} {}, {elapsed:.1} s",
            args.rpc,
            args.concurrency,
            match args.rate {
                Some(r) => format!("in flight at most, open loop at {r} req/s"),
                None => "in flight (closed loop)".to_owned(),
            }
        );
        println!("  requests/s  {rps:.1}   ({} ok, {errors} errors {:?})", stats.ok, stats.errors);
        println!(
            "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
        if args.rate.is_some() {
            let s = percentiles(&stats.scheduled);
            println!("  from schedule  p50 {}  p99 {}  max {}", ms(s.p50), ms(s.p99), ms(s.max));
        }
        for (label, v) in result["cpu"].as_object().into_iter().flatten() {
            println!(
                "  cpu {label}: {} s, {} cores busy, {} µs per request",
                v["cpu_s"], v["cores_busy"], v["us_per_request"]
            );
        }
    }
    if stats.ok == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

// ------------------------------------------------------------------ seed

fn admin_client(args: &SeedArgs, node: &str) -> Result<(StatusAdminClient<Channel>, ProvinceCode)> {
    let identity = load_identity(&args.tls)?;
    let Role::Admin(province) = identity.identity.role.clone() else {
        return Err(usage(format!("{} is not a province admin identity", identity.identity)));
    };
    let expected = ExpectedPeer::Exactly(Identity::new(&args.tls.trust_domain, Role::Node(province.clone())));
    let config = tls::client_config(&identity, expected, Revocations::default())?;
    let channel = tls::channel(node, config, Duration::from_secs(3)).map_err(usage)?;
    Ok((StatusAdminClient::new(channel), province))
}

/// Runs `count` calls with at most `concurrency` in flight; `call(i)` makes call `i`.
async fn fan_out<T, F, Fut>(count: u64, concurrency: usize, call: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        if set.len() >= concurrency {
            if let Some(r) = set.join_next().await {
                out.push(r??);
            }
        }
        set.spawn(call(i));
    }
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

async fn seed(args: SeedArgs) -> Result<()> {
    if args.subjects == 0 || args.tokens == 0 || args.concurrency == 0 {
        return Err(usage("--subjects, --tokens and --concurrency must be positive"));
    }
    let node = loopback(&args.node)?;
    let (client, province) = admin_client(&args, &node)?;
    let started = Instant::now();
    let prefix = args.prefix.clone();
    fan_out(args.subjects, args.concurrency, |i| {
        let mut client = client.clone();
        let subject_ref = format!("{prefix}{i}");
        async move {
            client
                .upsert_status(pb::UpsertStatusRequest {
                    subject_ref,
                    status: pb::HealthStatus::Green as i32,
                    rule_id: String::new(),
                    authority: String::new(),
                    valid_until: 0,
                    test_recency: pb::TestRecency::None as i32,
                })
                .await
                .map_err(|s| anyhow!("UpsertStatus refused: {:?}: {}", s.code(), s.message()))?;
            Ok(())
        }
    })
    .await?;
    eprintln!("{} subjects published in {:.1} s", args.subjects, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let (subjects, lifetime) = (args.subjects, args.lifetime);
    let tokens = fan_out(args.tokens, args.concurrency, |i| {
        let mut client = client.clone();
        let subject_ref = format!("{prefix}{}", i % subjects);
        async move {
            let response = client
                .issue_token(pb::IssueTokenRequest { subject_ref, lifetime_seconds: lifetime, purpose: String::new() })
                .await
                .map_err(|s| anyhow!("IssueToken refused: {:?}: {}", s.code(), s.message()))?;
            Ok(token_to_text(&response.into_inner().token))
        }
    })
    .await?;
    eprintln!("{} tokens issued in {:.1} s", tokens.len(), started.elapsed().as_secs_f64());
    let mut text = String::new();
    for t in &tokens {
        text.push_str(&format!("{province}:{t}\n"));
    }
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", args.out.display());
    Ok(())
}

// ------------------------------------------------------------------ store

/// A fixed pseudo-random permutation of 0..n (multiplication by a unit mod n), so that
/// subjects arrive in no particular key order, as they would from a province backend.
struct Permutation {
    n: u64,
    step: u64,
}

impl Permutation {
    fn new(n: u64) -> Self {
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let mut step = 2_654_435_761 % n.max(1);
        while n > 1 && gcd(step, n) != 1 {
            step += 1;
        }
        Self { n, step: step.max(1) }
    }

    fn at(&self, i: u64) -> u64 {
        ((i as u128 * self.step as u128) % self.n as u128) as u64
    }
}

/// xorshift64*: cheap, deterministic randomness for picking subjects.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn subject(i: u64) -> String {
    format!("subj-{i:010}")
}

fn record(i: u64, now: i64) -> huren_node::store::StatusRecord {
    let red = matches!(i % 50, 0);
    huren_node::store::StatusRecord {
        status: if red { pb::HealthStatus::Red as i32 } else { pb::HealthStatus::Green as i32 },
        rule_id: if red { "NHC-CC-2022-9".into() } else { String::new() },
        authority: if red { "spiffe://huren.gov/province/340000/authority/hefei-cdc".into() } else { String::new() },
        valid_until: now + 7 * 86_400,
        test_recency: pb::TestRecency::Within48h as i32,
        updated_at: now,
        version: 0,
    }
}

fn store(args: StoreArgs) -> Result<()> {
    use huren_node::{NodeStore as _, Store};
    if args.subjects == 0 || args.batch == 0 {
        return Err(usage("--subjects and --batch must be positive"));
    }
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("huren-bench-store-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let path = dir.join("status.redb");
    if path.exists() {
        return Err(usage(format!("{} exists; give an empty --dir", path.display())));
    }
    let store = Store::open(&path)?;
    let now = unix_now();
    let n = args.subjects;
    let order = Permutation::new(n);

    // 1. Bulk load: upsert_batch, one durable transaction per batch.
    let started = Instant::now();
    let mut batch_latency = histogram();
    let mut next_report = n / 10;
    let mut i = 0u64;
    while i < n {
        let end = (i + args.batch as u64).min(n);
        let batch: Vec<_> = (i..end).map(|k| order.at(k)).map(|s| (subject(s), record(s, now))).collect();
        let t = Instant::now();
        store.upsert_batch(batch)?;
        let _ = batch_latency.record(t.elapsed().as_micros() as u64);
        i = end;
        if !args.json && i >= next_report && i < n {
            eprintln!("  loaded {i} subjects ({:.0}/s)", i as f64 / started.elapsed().as_secs_f64());
            next_report += n / 10;
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    let after_load_mem = memory_kib();
    let file_bytes = std::fs::metadata(&path)?.len();

    // 2. Random updates of existing subjects, batched (what a province backend's stream looks like).
    let updates = args.updates.unwrap_or(n.min(500_000));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut done = 0u64;
    while done < updates {
        let size = (args.batch as u64).min(updates - done);
        let batch: Vec<_> = (0..size).map(|_| rng.below(n)).map(|s| (subject(s), record(s + 1, now))).collect();
        store.upsert_batch(batch)?;
        done += size;
    }
    let update_s = started.elapsed().as_secs_f64();

    // 3. Single durable upserts (one transaction each), for comparison.
    let mut single = histogram();
    let started = Instant::now();
    for _ in 0..args.singles {
        let s = rng.below(n);
        let t = Instant::now();
        store.upsert(&subject(s), record(s, now))?;
        let _ = single.record((t.elapsed().as_micros() as u64).max(1));
    }
    let single_s = started.elapsed().as_secs_f64();

    // 4. Random point lookups of existing subjects (one read transaction each, as the node does).
    let mut lookup = histogram();
    let started = Instant::now();
    for _ in 0..args.lookups {
        let s = subject(rng.below(n));
        let t = Instant::now();
        let found = store.status(&s)?;
        let _ = lookup.record((t.elapsed().as_nanos() as u64).max(1));
        if found.is_none() {
            bail!("subject {s} is missing after the load");
        }
    }
    let lookup_s = started.elapsed().as_secs_f64();
    let count = store.subject_count()?;
    let file_bytes_final = std::fs::metadata(&path)?.len();
    let (peak_kib, rss_kib) = memory_kib();
    drop(store);
    if args.keep {
        eprintln!("store kept at {}", path.display());
    } else if args.dir.is_some() {
        std::fs::remove_file(&path)?;
    }

    let lookups = percentiles(&lookup);
    let singles = percentiles(&single);
    let result = json!({
        "subjects": n,
        "subject_count": count,
        "batch": args.batch,
        "load": {
            "seconds": round(load_s, 2),
            "subjects_per_s": round(n as f64 / load_s, 0),
            "batch_commit_us": percentiles(&batch_latency),
            "rss_kib_after": after_load_mem.1,
        },
        "updates": {
            "count": updates,
            "seconds": round(update_s, 2),
            "updates_per_s": round(updates as f64 / update_s.max(1e-9), 0),
        },
        "single_upserts": {
            "count": args.singles,
            "per_s": round(args.singles as f64 / single_s.max(1e-9), 0),
            "latency_us": singles,
        },
        "lookups": {
            "count": args.lookups,
            "per_s": round(args.lookups as f64 / lookup_s.max(1e-9), 0),
            "latency_ns": lookups,
        },
        "file_bytes": file_bytes_final,
        "file_bytes_after_load": file_bytes,
        "bytes_per_subject": round(file_bytes_final as f64 / n as f64, 1),
        "peak_rss_kib": peak_kib,
        "rss_kib": rss_kib,
        "unix_time": unix_now(),
    });
    if args.json {
        println!("{result}");
    } else {
        println!("node store, {n} subjects (batches of {}):", args.batch);
        println!("  bulk load        {:.0} subjects/s ({load_s:.1} s)", n as f64 / load_s);
        println!("  batched updates  {:.0} updates/s ({updates} random)", updates as f64 / update_s.max(1e-9));
        println!(
            "  single upserts   {:.0}/s, p50 {} p99 {}",
            args.singles as f64 / single_s.max(1e-9),
            ms(singles.p50),
            ms(singles.p99)
        );
        println!(
            "  point lookups    p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs ({:.0}/s, one thread)",
            lookups.p50 as f64 / 1000.0,
            lookups.p99 as f64 / 1000.0,
            lookups.max as f64 / 1000.0,
            args.lookups as f64 / lookup_s.max(1e-9)
        );
        println!(
            "  file             {:.1} MiB ({:.0} bytes/subject)",
            file_bytes_final as f64 / 1048576.0,
            file_bytes_final as f64 / n as f64
        );
        println!("  memory           peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
    }
    Ok(())
}

// ------------------------------------------------------------------ report

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

/// The suite's paths, in the order they are reported.
const PATHS: [(&str, &str); 5] = [
    ("direct", "1. hub → node direct"),
    ("gateway", "2. hub → gateway → node (miss)"),
    ("cached", "3. hub → gateway (cache hit, in-process)"),
    ("cached-redis", "3r. hub → gateway (cache hit, shared Redis cache)"),
    ("nginx", "4. hub → nginx grpc_pass → node"),
];

/// Buckets of a flat `perf report --sort dso,sym` listing: where a process's CPU goes.
const CPU_BUCKETS: [(&str, &[&str]); 11] = [
    (
        "kernel and syscalls (loopback TCP, scheduling)",
        &["[k]", "[kernel", "[.] syscall", "epoll", "writev", "__libc_recv", "__libc_send", "vdso"],
    ),
    ("Ed25519 (attestation sign/verify)", &["curve25519", "ed25519", "sha512"]),
    ("TLS record crypto (ring AES-GCM)", &["aes_", "gcm", "ghash", "chacha", "ring_core", "ring::aead", "poly1305"]),
    ("rustls (records, state)", &["rustls"]),
    (
        "HTTP/2 and service plumbing (h2, hyper, tower, bytes)",
        &[
            "h2::",
            "hyper",
            "http::",
            "http_body",
            "httparse",
            "tower",
            "axum",
            "matchit",
            "bytes::",
            "slab::",
            "indexmap",
        ],
    ),
    ("gRPC and protobuf (tonic, prost)", &["tonic", "prost", "huren_proto"]),
    ("metrics and tracing", &["opentelemetry", "tracing", "metrics"]),
    ("redb store", &["redb"]),
    ("tokio runtime and locks", &["tokio", "futex", "parking_lot", "std::sys::sync", "mio::"]),
    (
        "allocation and copying (libc)",
        &["malloc", "free", "_int_", "memmove", "memcpy", "memset", "memcmp", "unlink_chunk", "realloc", "consolidate"],
    ),
    ("Huren logic", &["huren_"]),
];

/// Sums a profile listing into [`CPU_BUCKETS`] (percent of the process's samples).
fn cpu_breakdown(listing: &str) -> Vec<(String, f64)> {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for line in listing.lines() {
        let line = line.trim();
        let Some((pct, rest)) = line.split_once('%') else { continue };
        let Ok(pct) = pct.trim().parse::<f64>() else { continue };
        let bucket = CPU_BUCKETS
            .iter()
            .find(|(_, needles)| needles.iter().any(|n| rest.contains(n)))
            .map(|(name, _)| *name)
            .unwrap_or("other");
        *sums.entry(bucket).or_default() += pct;
    }
    let mut out: Vec<(String, f64)> = sums.into_iter().map(|(k, v)| (k.to_owned(), round(v, 1))).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

fn report(dir: &Path) -> Result<()> {
    let meta = read_json(&dir.join("meta.json")).unwrap_or(json!({}));
    let max: BTreeMap<&str, Value> =
        PATHS.iter().filter_map(|(k, _)| read_json(&dir.join(format!("max-{k}.json"))).map(|v| (*k, v))).collect();
    let half: BTreeMap<&str, Value> =
        PATHS.iter().filter_map(|(k, _)| read_json(&dir.join(format!("half-{k}.json"))).map(|v| (*k, v))).collect();
    if max.is_empty() {
        bail!("{}: no max-*.json results", dir.display());
    }
    let rps = |k: &str| max.get(k).and_then(|v| num(v, "/rps"));
    let ratio = |a: &str, b: &str| match (rps(a), rps(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(round(x / y, 3)),
        _ => None,
    };
    let p99_half = |k: &str| half.get(k).and_then(|v| num(v, "/latency_us/p99"));
    let added = |k: &str| match (p99_half(k), p99_half("direct")) {
        (Some(a), Some(b)) => Some(round((a - b) / 1000.0, 3)),
        _ => None,
    };
    // CPU of everything under test per request (all watched processes but the load generator):
    // on a shared or noisy machine, 1e6 / that is the steadier capacity estimate per core.
    let sut_us = |k: &str| -> Option<f64> {
        let cpu = max.get(k)?.get("cpu")?.as_object()?;
        let sum: f64 = cpu.iter().filter(|(l, _)| *l != "loadgen").filter_map(|(_, v)| num(v, "/us_per_request")).sum();
        (sum > 0.0).then_some(sum)
    };
    let per_core = |k: &str| sut_us(k).map(|us| round(1e6 / us, 0));
    let cpu_ratio = |a: &str, b: &str| match (sut_us(a), sut_us(b)) {
        (Some(x), Some(y)) => Some(round(y / x, 3)),
        _ => None,
    };
    let cpu_ratios = json!({
        "gateway_over_direct": cpu_ratio("gateway", "direct"),
        "gateway_over_nginx": cpu_ratio("gateway", "nginx"),
        "cached_over_gateway": cpu_ratio("cached", "gateway"),
        "cached_redis_over_gateway": cpu_ratio("cached-redis", "gateway"),
    });
    let ratios = json!({
        "gateway_over_direct": ratio("gateway", "direct"),
        "gateway_over_nginx": ratio("gateway", "nginx"),
        "cached_over_gateway": ratio("cached", "gateway"),
        "cached_redis_over_gateway": ratio("cached-redis", "gateway"),
    });
    let added_p99_ms = json!({
        "gateway": added("gateway"),
        "cached": added("cached"),
        "cached-redis": added("cached-redis"),
        "nginx": added("nginx"),
    });
    let store = read_json(&dir.join("store.json"));
    let check = |value: Option<f64>, pass: &dyn Fn(f64) -> bool| match value {
        Some(v) if pass(v) => "met",
        Some(_) => "missed",
        None => "not measured",
    };
    let cached_note = if max.contains_key("cached") { None } else { Some("not yet available") };
    let targets = json!([
        {"target": "gateway miss path ≥ 1.0× nginx grpc_pass throughput", "value": ratios["gateway_over_nginx"],
         "result": check(ratio("gateway", "nginx"), &|v| v >= 1.0)},
        {"target": "gateway miss path ≥ 0.6× direct", "value": ratios["gateway_over_direct"],
         "result": check(ratio("gateway", "direct"), &|v| v >= 0.6)},
        {"target": "cached ≥ 2× miss path", "value": ratios["cached_over_gateway"],
         "result": cached_note.unwrap_or_else(|| check(ratio("cached", "gateway"), &|v| v >= 2.0))},
        {"target": "added p99 ≤ 1 ms at 50% load (gateway)", "value": added_p99_ms["gateway"],
         "result": match added("gateway") {
             Some(v) if v < -0.05 => "inconclusive (negative: noise)",
             v => check(v, &|v| v <= 1.0),
         }},
        {"target": "node ingest ≥ 100k updates/s (upsert_batch)",
         "value": store.as_ref().and_then(|s| num(s, "/updates/updates_per_s")),
         "result": check(store.as_ref().and_then(|s| num(s, "/updates/updates_per_s")), &|v| v >= 100_000.0)},
        {"target": "store lookup p99 < 1 ms",
         "value": store.as_ref().and_then(|s| num(s, "/lookups/latency_ns/p99")).map(|ns| round(ns / 1e6, 4)),
         "result": check(store.as_ref().and_then(|s| num(s, "/lookups/latency_ns/p99")), &|v| v < 1e6)},
    ]);
    let profiles: BTreeMap<&str, Vec<(String, f64)>> = ["gateway", "node"]
        .into_iter()
        .filter_map(|who| {
            let text = std::fs::read_to_string(dir.join(format!("profile-{who}.txt"))).ok()?;
            Some((who, cpu_breakdown(&text)))
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let summary = json!({
        "meta": meta,
        "cpu_profile_percent": profiles,
        "max": max,
        "half_load": half,
        "ratios": ratios,
        "cpu_normalised_ratios": cpu_ratios,
        "sut_cpu_us_per_request": PATHS.iter().map(|(k, _)| (*k, sut_us(k))).collect::<BTreeMap<_, _>>(),
        "added_p99_ms_at_half_load": added_p99_ms,
        "store": store,
        "targets": targets,
    });
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&summary)? + "\n")?;

    let mut md = String::new();
    md.push_str(&format!(
        "Machine: {} · {} · date {} · git {}\n\n",
        meta["cpu_model"].as_str().unwrap_or("?"),
        meta["cores"].as_u64().map(|c| format!("{c} cores")).unwrap_or_default(),
        meta["date"].as_str().unwrap_or("?"),
        meta["git"].as_str().unwrap_or("?"),
    ));
    md.push_str("| path | max req/s | p50 | p99 | max | errors | SUT CPU µs/req | req/s per SUT core | p99 at half load | added p99 |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let f_ms = |v: Option<f64>| v.map(|us| format!("{:.2} ms", us / 1000.0)).unwrap_or_else(|| "—".into());
    for (k, name) in PATHS {
        let Some(m) = max.get(k) else {
            md.push_str(&format!("| {name} | not yet available | | | | | | | | |\n"));
            continue;
        };
        let sut_cpu: f64 = m["cpu"]
            .as_object()
            .map(|o| o.iter().filter(|(l, _)| *l != "loadgen").filter_map(|(_, v)| num(v, "/us_per_request")).sum())
            .unwrap_or(0.0);
        md.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} |\n",
            num(m, "/rps").unwrap_or(0.0),
            f_ms(num(m, "/latency_us/p50")),
            f_ms(num(m, "/latency_us/p99")),
            f_ms(num(m, "/latency_us/max")),
            num(m, "/errors").unwrap_or(0.0),
            sut_cpu,
            per_core(k).unwrap_or(0.0),
            f_ms(p99_half(k)),
            match (k, added(k)) {
                ("direct", _) => "(baseline)".to_owned(),
                (_, Some(v)) => format!("{v:+.2} ms"),
                _ => "—".to_owned(),
            },
        ));
    }
    let r = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into());
    md.push_str(&format!(
        "\nRatios: 2/1 (gateway/direct) = {}, 2/4 (gateway/nginx) = {}, 3/2 (cached/miss) = {}\n",
        r(&ratios["gateway_over_direct"]),
        r(&ratios["gateway_over_nginx"]),
        if cached_note.is_some() { "not yet available".to_owned() } else { r(&ratios["cached_over_gateway"]) },
    ));
    if ratios["cached_redis_over_gateway"].is_number() {
        md.push_str(&format!(
            "Shared Redis cache: 3r/2 (cached-redis/miss) = {}, CPU-normalised {}\n",
            r(&ratios["cached_redis_over_gateway"]),
            r(&cpu_ratios["cached_redis_over_gateway"]),
        ));
    }
    md.push_str(&format!(
        "CPU-normalised (req/s per core of everything under test): 2/1 = {}, 2/4 = {}, 3/2 = {}\n",
        r(&cpu_ratios["gateway_over_direct"]),
        r(&cpu_ratios["gateway_over_nginx"]),
        if cached_note.is_some() { "not yet available".to_owned() } else { r(&cpu_ratios["cached_over_gateway"]) },
    ));
    if let Some(rate) = half.values().next().and_then(|v| num(v, "/rate_target")) {
        md.push_str(&format!(
            "Half load: every path driven open-loop at {rate:.0} req/s (50% of the gateway miss path's maximum).\n"
        ));
    }
    if let Some(s) = &store {
        md.push_str(&format!(
            "\nNode store, {} subjects: bulk load {:.0}/s, batched random updates {:.0}/s, single upserts {:.0}/s, \
             lookup p50 {:.1} µs p99 {:.1} µs, file {:.1} MiB, peak RSS {:.1} MiB\n",
            num(s, "/subjects").unwrap_or(0.0),
            num(s, "/load/subjects_per_s").unwrap_or(0.0),
            num(s, "/updates/updates_per_s").unwrap_or(0.0),
            num(s, "/single_upserts/per_s").unwrap_or(0.0),
            num(s, "/lookups/latency_ns/p50").unwrap_or(0.0) / 1000.0,
            num(s, "/lookups/latency_ns/p99").unwrap_or(0.0) / 1000.0,
            num(s, "/file_bytes").unwrap_or(0.0) / 1048576.0,
            num(s, "/peak_rss_kib").unwrap_or(0.0) / 1024.0,
        ));
    }
    md.push_str("\n| target | value | result |\n|---|---:|---|\n");
    for t in targets.as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            t["target"].as_str().unwrap_or(""),
            t["value"].as_f64().map(|v| format!("{v}")).unwrap_or_else(|| "—".into()),
            t["result"].as_str().unwrap_or("")
        ));
    }
    if !profiles.is_empty() {
        md.push_str("\nWhere the CPU goes on the gateway path (perf, share of each process's samples):\n\n");
        md.push_str("| process | bucket | share |\n|---|---|---:|\n");
        for (who, buckets) in &profiles {
            for (bucket, pct) in buckets {
                md.push_str(&format!("| {who} | {bucket} | {pct:.1}% |\n"));
            }
        }
    }
    std::fs::write(dir.join("results.md"), &md)?;
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn only_loopback_targets() {
        assert!(loopback("127.0.0.1:8443").is_ok());
        assert!(loopback("https://127.0.0.1:8443").is_ok());
        assert!(loopback("10.0.0.5:8443").is_err());
        assert!(loopback("192.168.1.1:8443").is_err());
    }

    #[test]
    fn profile_buckets() {
        let listing = "    40.00%  huren  [.] curve25519_dalek::field::mul\n    \
                       25.00%  [kernel.kallsyms]  [k] tcp_sendmsg\n    \
                       10.00%  libc.so.6  [.] malloc\n     5.00%  huren  [.] h2::proto::x\n";
        let b = cpu_breakdown(listing);
        assert_eq!(b[0], ("Ed25519 (attestation sign/verify)".to_owned(), 40.0));
        assert_eq!(b[1], ("kernel and syscalls (loopback TCP, scheduling)".to_owned(), 25.0));
        assert_eq!(b.iter().map(|(_, v)| v).sum::<f64>(), 80.0);
    }

    #[test]
    fn permutation_is_a_permutation() {
        for n in [1u64, 2, 10, 1000, 1024] {
            let p = Permutation::new(n);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
