//! The handshake flood: idle TCP connections that never start TLS, all from one address,
//! and a client that trickles its ClientHello one byte at a time (slowloris), held while
//! legitimate clients connect and call. What `huren bench handshake-flood` measures, and
//! what the tests hold the servers to.
//!
//! The attack comes from its own loopback addresses ([`ATTACKER`], [`TRICKLER`]: Linux
//! routes all of 127.0.0.0/8 to `lo`), so a legitimate client on 127.0.0.1 is another
//! source, as it would be on a network.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{BenchError, Result};
use crate::measure::{histogram, ms, percentiles, Percentiles};

/// Where the idle connections come from.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Where the trickler connects from.
pub const TRICKLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A TCP connection to `target` from `source` (any port).
pub async fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// Opens up to `n` TCP connections to `target` from `source` and holds them without
/// sending a byte. Stops early, returning what it holds, when three connections in a row
/// are not established within a second each (the server's listen backlog is full: it
/// stopped accepting) or fail; one slow connect on a busy machine is not taken for that.
pub async fn open_idle(target: SocketAddr, source: IpAddr, n: usize) -> Vec<TcpStream> {
    const GIVE_UP_AFTER: usize = 3;
    let mut held = Vec::with_capacity(n);
    let mut failed_in_a_row = 0;
    while held.len() < n && failed_in_a_row < GIVE_UP_AFTER {
        match tokio::time::timeout(Duration::from_secs(1), connect_from(source, target)).await {
            Ok(Ok(tcp)) => {
                held.push(tcp);
                failed_in_a_row = 0;
            }
            _ => failed_in_a_row += 1,
        }
    }
    held
}

/// Whether the server has closed `tcp` (end of stream or reset), without waiting.
pub fn closed_by_server(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match tcp.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Raises this process's soft limit on open files towards `want` (never above the hard
/// limit) and returns the limit now in force, if known.
pub fn raise_open_files_limit(want: u64) -> Option<u64> {
    rlimit::increase_nofile_limit(want).ok().or_else(open_files_limit)
}

/// The soft limit on open files of this process (`/proc/self/limits`), if known.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A TLS 1.3 ClientHello (x25519, TLS_AES_128_GCM_SHA256, ALPN h2): well formed, so the
/// server waits for the rest of it rather than refusing it.
pub fn client_hello() -> Vec<u8> {
    client_hello_for(&[0x1301], true)
}

/// A ClientHello offering `suites` (IANA numbers), x25519, ECDSA/Ed25519 signatures and
/// ALPN h2; with `tls13`, also TLS 1.3 (supported_versions and an x25519 key share), else
/// a TLS 1.2-only hello. For probing what a server accepts or refuses at the handshake.
pub fn client_hello_for(suites: &[u16], tls13: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    body.extend(u16::try_from(suites.len() * 2).unwrap_or(u16::MAX).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null only
    let mut ext = Vec::new();
    ext.extend([0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]); // supported_groups: x25519
    ext.extend([0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x07]); // signature_algorithms
    ext.extend([0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2']); // ALPN h2
    if tls13 {
        ext.extend([0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]); // supported_versions: TLS 1.3
        ext.extend([0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]); // key_share: x25519
        ext.extend([0x11; 32]);
    }
    body.extend(u16::try_from(ext.len()).unwrap_or(u16::MAX).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![0x01];
    handshake.extend(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16::try_from(handshake.len()).unwrap_or(u16::MAX).to_be_bytes());
    record.extend(handshake);
    record
}

/// One trickled connection the server closed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrickleClose {
    /// How long after it connected.
    pub after_ms: u64,
    /// Bytes of the ClientHello sent by then.
    pub sent: usize,
    /// Bytes of the whole ClientHello.
    pub hello_len: usize,
}

/// A slowloris client: sends a ClientHello one byte every `every`, and when the server
/// closes the connection, records it and starts again. Stops when dropped.
#[derive(Debug)]
pub struct Trickler {
    task: tokio::task::JoinHandle<()>,
    closes: tokio::sync::watch::Receiver<Vec<TrickleClose>>,
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Trickler {
    /// Starts trickling to `target` from `source`.
    pub fn start(target: SocketAddr, source: IpAddr, every: Duration) -> Self {
        let (tx, closes) = tokio::sync::watch::channel(Vec::new());
        let task = tokio::spawn(async move {
            let hello = client_hello();
            loop {
                let Ok(mut tcp) = connect_from(source, target).await else {
                    tokio::time::sleep(every).await;
                    continue;
                };
                let started = Instant::now();
                let mut sent = 0;
                let mut buf = [0u8; 256];
                loop {
                    if sent < hello.len() {
                        if tcp.write_all(&hello[sent..=sent]).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    tokio::select! {
                        r = tcp.read(&mut buf) => match r {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {} // a server answer to a whole hello: keep reading
                        },
                        _ = tokio::time::sleep(every), if sent < hello.len() => {}
                    }
                }
                let close =
                    TrickleClose { after_ms: started.elapsed().as_millis() as u64, sent, hello_len: hello.len() };
                tx.send_modify(|c| c.push(close));
            }
        });
        Self { task, closes }
    }

    /// The connections the server has closed so far, as they happen.
    pub fn closes(&self) -> tokio::sync::watch::Receiver<Vec<TrickleClose>> {
        self.closes.clone()
    }
}

/// What `huren bench handshake-flood` does.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The server under attack (a gateway).
    pub target: SocketAddr,
    /// Idle connections to hold from [`ATTACKER`].
    pub idle: usize,
    /// Interval between the trickler's bytes.
    pub trickle_every: Duration,
    /// Legitimate connect + call attempts measured, one after the other.
    pub lookups: usize,
}

/// What the flood left the legitimate clients.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// Idle connections requested.
    pub idle_requested: usize,
    /// Idle connections established and held (fewer when the server stopped accepting).
    pub idle_held: usize,
    /// Of those, how many the server had closed by the end.
    pub idle_closed_by_server: usize,
    /// Legitimate attempts that completed.
    pub ok: usize,
    /// Failed attempts, with their errors (first few).
    pub failed: usize,
    /// Up to five error messages of failed attempts.
    pub errors: Vec<String>,
    /// Latency of one fresh connection (TCP, TLS handshake) plus its call, µs; failed
    /// attempts included, at the time they failed.
    latency_us: Percentiles,
    /// Trickled connections the server closed.
    pub trickler_closes: Vec<TrickleClose>,
    /// Seconds the whole measurement took.
    pub seconds: f64,
}

impl FloodReport {
    /// The report as one JSON object.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The p99 latency of a legitimate connect + call, µs.
    pub fn p99_us(&self) -> u64 {
        self.latency_us.p99
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let trickle = match self.trickler_closes.first() {
            Some(c) => format!(
                "{} closed by the server (first after {} ms, {} of {} hello bytes sent)",
                self.trickler_closes.len(),
                c.after_ms,
                c.sent,
                c.hello_len
            ),
            None => "never closed by the server".into(),
        };
        format!(
            "idle connections: {} held of {} asked ({} closed by the server)\n\
             trickler: {trickle}\n\
             legitimate connect + lookup: {} ok, {} failed\n\
             latency: p50 {}  p90 {}  p99 {}  max {}\n{}",
            self.idle_held,
            self.idle_requested,
            self.idle_closed_by_server,
            self.ok,
            self.failed,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max),
            self.errors.iter().map(|e| format!("error: {e}\n")).collect::<String>(),
        )
    }
}

/// Holds `options.idle` idle connections from [`ATTACKER`] and a trickler from
/// [`TRICKLER`] against `options.target`, then times `options.lookups` calls of
/// `attempt` (each a fresh connection and a call; an `Err` is a failed attempt).
pub async fn handshake_flood<F, Fut>(options: &FloodOptions, mut attempt: F) -> Result<FloodReport>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    if !options.target.ip().is_loopback() {
        return Err(BenchError::Usage(format!("{} is not a loopback address", options.target)));
    }
    if options.lookups == 0 {
        return Err(BenchError::Usage("--lookups must be at least 1".into()));
    }
    if let Some(limit) = raise_open_files_limit(options.idle as u64 * 2 + 256) {
        // Each idle connection is one descriptor here and, while accepted, one at the server.
        if options.idle as u64 * 2 + 256 > limit {
            return Err(BenchError::Usage(format!(
                "--idle {} needs about {} open files; the limit is {limit} (ulimit -n)",
                options.idle,
                options.idle * 2 + 256
            )));
        }
    }
    let started = Instant::now();
    let idle = open_idle(options.target, ATTACKER, options.idle).await;
    let trickler = Trickler::start(options.target, TRICKLER, options.trickle_every);
    let mut h = histogram();
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    for _ in 0..options.lookups {
        let t = Instant::now();
        let outcome = attempt().await;
        let _ = h.record((t.elapsed().as_micros() as u64).max(1));
        match outcome {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
    let trickler_closes = trickler.closes().borrow().clone();
    drop(trickler);
    Ok(FloodReport {
        idle_requested: options.idle,
        idle_held: idle.len(),
        idle_closed_by_server: idle.iter().filter(|t| closed_by_server(t)).count(),
        ok,
        failed,
        errors,
        latency_us: percentiles(&h),
        trickler_closes,
        seconds: crate::measure::round(started.elapsed().as_secs_f64(), 2),
    })
}
