//! The load generator: N concurrent tasks share M persistent HTTP/2 connections over
//! mutual TLS; closed loop by default, open loop at a fixed rate (paced from a dedicated
//! thread, latency also measured from each request's scheduled time, so no coordinated
//! omission). Latencies go into HDR histograms — successes and failures apart, and per
//! (token province, gRPC code) — and the run is bounded and stops by itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use huren_pki::{unix_now, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, Revocations};
use pb::attestation_client::AttestationClient;
use pb::lookup_client::LookupClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::error::{BenchError, Result};
use crate::measure::{histogram, ms, percentiles, process_cpu, round};
use crate::workload::{expected_peer, load_tokens, loopback, LookupOptions, Rpc, Token};

#[derive(Clone)]
enum Client {
    Lookup(LookupClient<Channel>),
    Attest(AttestationClient<Channel>),
    Batch(LookupClient<Channel>),
}

/// Everything a request needs, shared by all workers.
struct Shared {
    tokens: Vec<Token>,
    next: AtomicU64,
    purpose: String,
    timeout: Duration,
    verify: Option<TrustList>,
    unique: bool,
    batch: usize,
}

/// What one request came to: per token answered, its province and `OK` or the gRPC code
/// (or a client-side label).
type Outcome = Vec<(String, Result<(), String>)>;

impl Shared {
    /// The next `n` tokens (fewer, or none, once unique tokens run out).
    fn take(&self, n: usize) -> Vec<&Token> {
        let i = self.next.fetch_add(n as u64, Ordering::Relaxed) as usize;
        (i..i + n)
            .filter(|j| !self.unique || *j < self.tokens.len())
            .map(|j| &self.tokens[j % self.tokens.len()])
            .collect()
    }

    async fn request(&self, client: &mut Client) -> Outcome {
        if let Client::Batch(c) = client {
            return self.batch(c).await;
        }
        let Some(token) = self.take(1).pop() else {
            return vec![("none".to_owned(), Err("TokensExhausted".to_owned()))];
        };
        vec![(token.province.to_string(), self.single(client, token).await)]
    }

    async fn batch(&self, c: &mut LookupClient<Channel>) -> Outcome {
        let tokens = self.take(self.batch);
        if tokens.is_empty() {
            return vec![("none".to_owned(), Err("TokensExhausted".to_owned()))];
        }
        let mut request = tonic::Request::new(pb::LookupBatchRequest {
            purpose: self.purpose.clone(),
            tokens: tokens
                .iter()
                .map(|t| pb::BatchToken { province: t.province.to_string(), token: t.bytes.clone() })
                .collect(),
        });
        request.set_timeout(self.timeout);
        let answers = match c.lookup_batch(request).await {
            Ok(r) => r.into_inner().answers,
            Err(s) => return tokens.iter().map(|t| (t.province.to_string(), Err(format!("{:?}", s.code())))).collect(),
        };
        if answers.len() != tokens.len() {
            return tokens.iter().map(|t| (t.province.to_string(), Err("AnswerCount".to_owned()))).collect();
        }
        let mut out = Vec::with_capacity(tokens.len());
        let mut signed = Vec::new();
        for (i, (token, answer)) in tokens.iter().zip(answers).enumerate() {
            let province = token.province.to_string();
            match answer.answer {
                Some(pb::token_answer::Answer::Attestation(a)) => {
                    signed.push((i, a));
                    out.push((province, Ok(())));
                }
                Some(pb::token_answer::Answer::Refusal(bytes)) => out.push((province, Err(refusal_code(&bytes)))),
                None => out.push((province, Err("EmptyAnswer".to_owned()))),
            }
        }
        if let Some(trust) = &self.verify {
            let items: Vec<_> = signed
                .iter()
                .map(|(i, a)| (a, huren_pki::Expected::lookup(&tokens[*i].province, &tokens[*i].bytes, &self.purpose)))
                .collect();
            for ((i, _), verdict) in signed.iter().zip(huren_pki::verify_attestations(trust, &items, unix_now())) {
                if verdict.is_err() {
                    out[*i].1 = Err("VerifyFailed".to_owned());
                }
            }
        }
        out
    }

    async fn single(&self, client: &mut Client, token: &Token) -> Result<(), String> {
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
                    // A node records every check in the subject's disclosure log.
                    hub_id: "bench-hub".into(),
                    hub_province: String::new(),
                });
                request.set_timeout(self.timeout);
                c.attest(request).await.map(|r| r.into_inner().attestation)
            }
            Client::Batch(_) => return Err("BatchClient".to_owned()),
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

    async fn timed(&self, client: &mut Client) -> Outcome {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), self.request(client)).await {
            Ok(r) => r,
            Err(_) => vec![("unknown".to_owned(), Err("ClientTimeout".to_owned()))],
        }
    }
}

/// The gRPC code name of a per-token refusal (a `google.rpc.Status`).
fn refusal_code(bytes: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
    }
    match <RpcStatus as prost::Message>::decode(bytes) {
        Ok(s) => format!("{:?}", tonic::Code::from(s.code)),
        Err(_) => "UndecodableRefusal".to_owned(),
    }
}

/// What one phase of a run observed.
struct Stats {
    latency: Histogram<u64>,
    scheduled: Histogram<u64>,
    /// Failures are timed too (a fast refusal and a timeout are not the same failure).
    failed: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Per "<province> <code>" (code `OK` for successes): latencies.
    by_province_code: BTreeMap<String, Histogram<u64>>,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency: histogram(),
            scheduled: histogram(),
            failed: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            by_province_code: BTreeMap::new(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration, scheduled: Option<Duration>) {
        let us = (latency.as_micros() as u64).max(1);
        for (province, result) in outcome {
            let code = match &result {
                Ok(()) => "OK",
                Err(code) => code.as_str(),
            };
            let _ = self.by_province_code.entry(format!("{province} {code}")).or_insert_with(histogram).record(us);
            match result {
                Ok(()) => {
                    self.ok += 1;
                    let _ = self.latency.record(us);
                    if let Some(s) = scheduled {
                        let _ = self.scheduled.record((s.as_micros() as u64).max(1));
                    }
                }
                Err(code) => {
                    let _ = self.failed.record(us);
                    *self.errors.entry(code).or_default() += 1;
                }
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.scheduled.add(&other.scheduled);
        let _ = self.failed.add(&other.failed);
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, h) in other.by_province_code {
            let _ = self.by_province_code.entry(k).or_insert_with(histogram).add(&h);
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

/// What a load run saw.
#[derive(Debug, Clone)]
pub struct LookupReport {
    /// The whole report as one JSON object (`huren bench lookup --json`).
    pub json: Value,
    /// Requests answered (and, if asked, verified) in the measured window.
    pub ok: u64,
    text: String,
}

impl LookupReport {
    /// The report for people, a few lines.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Checks the options, connects, sends one request per connection to check the path,
/// warms up, then measures for the run's duration.
pub async fn lookup(options: &LookupOptions) -> Result<LookupReport> {
    if options.concurrency == 0 || options.concurrency > 100_000 {
        return Err(BenchError::usage("--concurrency must be within 1..=100000"));
    }
    let connections = options.connections.unwrap_or(options.concurrency.min(4));
    if connections == 0 || connections > options.concurrency {
        return Err(BenchError::usage("--connections must be within 1..=concurrency"));
    }
    if let Some(rate) = options.rate {
        if !(rate > 0.0 && rate <= 10_000_000.0) {
            return Err(BenchError::usage("--rate must be a positive number of requests per second"));
        }
    }
    if options.duration.is_zero() {
        return Err(BenchError::usage("--duration must be positive"));
    }
    let target = loopback(&options.target)?;
    let identity = options.tls.load()?;
    let tokens = load_tokens(options.tokens.as_deref(), &options.token, options.repeat_tokens)?;
    let expected = expected_peer(options, &tokens)?;
    let verify = match &options.verify_trust_list {
        Some(path) => Some(TrustList::load(path, identity.root.as_ref()).map_err(BenchError::usage)?),
        None => None,
    };
    let watched: Vec<(String, String)> = options
        .watch_pid
        .iter()
        .map(|w| {
            w.split_once('=')
                .map(|(l, p)| (l.to_owned(), p.to_owned()))
                .ok_or_else(|| BenchError::usage(format!("--watch-pid {w:?}: expected LABEL=PID")))
        })
        .collect::<Result<_>>()?;

    // Separate channels are separate HTTP/2 connections.
    let config = tls::client_config(&identity, expected, Revocations::default())?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = tls::channel(&target, config.clone(), Duration::from_secs(3)).map_err(BenchError::usage)?;
        clients.push(match options.rpc {
            Rpc::Lookup => Client::Lookup(LookupClient::new(channel)),
            Rpc::Attest => Client::Attest(AttestationClient::new(channel)),
            Rpc::LookupBatch => Client::Batch(LookupClient::new(channel)),
        });
    }
    let shared = Arc::new(Shared {
        tokens,
        next: AtomicU64::new(0),
        purpose: options.purpose.clone(),
        timeout: options.timeout,
        verify,
        unique: options.unique_tokens,
        batch: options.batch.clamp(1, 500),
    });
    // Connect every channel and check the path works before measuring anything.
    for client in &clients {
        let mut c = client.clone();
        // (With unique tokens these first ones are not used again.)
        for (_, result) in shared.timed(&mut c).await {
            result.map_err(|code| BenchError::FirstRequest { target: target.clone(), code })?;
        }
    }
    let phase = |duration: Duration| {
        let (shared, clients) = (shared.clone(), clients.clone());
        async move {
            match options.rate {
                Some(rate) => open_loop(&shared, &clients, options.concurrency, duration, rate).await,
                None => closed_loop(&shared, &clients, options.concurrency, duration).await,
            }
        }
    };
    if !options.warmup.is_zero() {
        phase(options.warmup).await;
    }
    let cpu_before: Vec<Option<Duration>> = watched.iter().map(|(_, pid)| process_cpu(pid)).collect();
    let self_before = process_cpu("self");
    let started = Instant::now();
    let hard_limit = options.duration + options.timeout + Duration::from_secs(5);
    let stats =
        tokio::time::timeout(hard_limit, phase(options.duration)).await.map_err(|_| BenchError::Overran(hard_limit))?;
    let elapsed = started.elapsed().as_secs_f64();
    let self_after = process_cpu("self");

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
    Ok(report(options, &target, connections, shared.tokens.len(), elapsed, &stats, cpu))
}

/// The JSON and text forms of a run's results.
fn report(
    options: &LookupOptions,
    target: &str,
    connections: usize,
    tokens: usize,
    elapsed: f64,
    stats: &Stats,
    cpu: serde_json::Map<String, Value>,
) -> LookupReport {
    let errors: u64 = stats.errors.values().sum();
    let rps = stats.ok as f64 / elapsed;
    let json = json!({
        "label": options.label,
        "target": target,
        "rpc": options.rpc,
        "connections": connections,
        "concurrency": options.concurrency,
        "rate_target": options.rate,
        "mode": if options.rate.is_some() { "open" } else { "closed" },
        "duration_s": round(elapsed, 3),
        "tokens": tokens,
        "repeat_tokens": options.repeat_tokens,
        "verified_by_client": options.verify_trust_list.is_some(),
        "requests": stats.ok + errors,
        "ok": stats.ok,
        "errors": errors,
        "error_codes": stats.errors,
        "unique_tokens": options.unique_tokens,
        "batch": (options.rpc == Rpc::LookupBatch).then_some(options.batch),
        "failed_latency_us": (errors > 0).then(|| percentiles(&stats.failed)),
        "by_province_code": stats
            .by_province_code
            .iter()
            .map(|(k, h)| (k.clone(), json!({ "count": h.len(), "latency_us": percentiles(h) })))
            .collect::<serde_json::Map<_, _>>(),
        "rps": round(rps, 1),
        "latency_us": percentiles(&stats.latency),
        "scheduled_latency_us": options.rate.map(|_| percentiles(&stats.scheduled)),
        "cpu": cpu,
        "unix_time": unix_now(),
    });
    let mut text = String::new();
    let l = percentiles(&stats.latency);
    let name = options.label.as_deref().map(|l| format!(" [{l}]")).unwrap_or_default();
    let _ = writeln!(
        text,
        "{target}{name}: {:?} over {connections} connections, {} {}, {elapsed:.1} s",
        options.rpc,
        options.concurrency,
        match options.rate {
            Some(r) => format!("in flight at most, open loop at {r} req/s"),
            None => "in flight (closed loop)".to_owned(),
        }
    );
    let _ = writeln!(text, "  requests/s  {rps:.1}   ({} ok, {errors} errors {:?})", stats.ok, stats.errors);
    let _ = writeln!(
        text,
        "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    if errors > 0 {
        let f = percentiles(&stats.failed);
        let _ = writeln!(text, "  failures    p50 {}  p99 {}  max {}", ms(f.p50), ms(f.p99), ms(f.max));
    }
    for (key, h) in &stats.by_province_code {
        let p = percentiles(h);
        let _ = writeln!(text, "  {key:<28} {:>9}  p50 {}  p99 {}", h.len(), ms(p.p50), ms(p.p99));
    }
    if options.rate.is_some() {
        let s = percentiles(&stats.scheduled);
        let _ = writeln!(text, "  from schedule  p50 {}  p99 {}  max {}", ms(s.p50), ms(s.p99), ms(s.max));
    }
    for (label, v) in json["cpu"].as_object().into_iter().flatten() {
        let _ = writeln!(
            text,
            "  cpu {label}: {} s, {} cores busy, {} µs per request",
            v["cpu_s"], v["cores_busy"], v["us_per_request"]
        );
    }
    LookupReport { json, ok: stats.ok, text }
}
