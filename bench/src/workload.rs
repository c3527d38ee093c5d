//! What a load run asks, and of whom: its options, the tokens it cycles through, the
//! server identity it accepts, and the loopback-only rule.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use huren_pki::qr::token_from_text;
use huren_pki::{Identity, ProvinceCode, Role};
use huren_runtime::tls::{self, ExpectedPeer, TlsIdentity};
use serde::Serialize;

use crate::error::{BenchError, Result};

/// A client identity on disk: certificate chain, private key and national root (PEM),
/// and the federation's trust domain.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// National root certificate, PEM.
    pub ca: PathBuf,
    /// Trust domain of the federation (`huren.gov`).
    pub trust_domain: String,
}

impl TlsFiles {
    /// Loads the identity; an unreadable or unusable one is a usage error.
    pub(crate) fn load(&self) -> Result<TlsIdentity> {
        TlsIdentity::load(&self.cert, &self.key, &self.ca, &self.trust_domain).map_err(BenchError::usage)
    }
}

/// Which RPC each request makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rpc {
    /// `huren.v1.Lookup/Lookup` (a hub asking a gateway).
    Lookup,
    /// `huren.v1.Attestation/Attest` (a gateway identity asking a node, or a proxy in front of one).
    Attest,
    /// `huren.v1.Lookup/LookupBatch` (a hub asking a gateway about a manifest of
    /// [`LookupOptions::batch`] tokens); throughput counts attestations, not calls.
    #[serde(rename = "lookup-batch")]
    LookupBatch,
}

/// A load run: `huren bench lookup`.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    /// The identity the load generator presents.
    pub tls: TlsFiles,
    /// Server to load, `host:port` on loopback.
    pub target: String,
    /// RPC to call.
    pub rpc: Rpc,
    /// Server identity to accept: `gateway`, `node` (the node of the tokens' province) or
    /// a full `spiffe://` URI; `None`: gateway for [`Rpc::Lookup`], node for [`Rpc::Attest`].
    pub expect: Option<String>,
    /// Requests in flight at once (closed loop: workers; with a rate: the cap).
    pub concurrency: usize,
    /// Persistent HTTP/2 connections the requests are spread over (`None`: min(concurrency, 4)).
    pub connections: Option<usize>,
    /// Measured time.
    pub duration: Duration,
    /// Unrecorded time before measuring (connections are always established first).
    pub warmup: Duration,
    /// Fixed request rate per second (open loop); `None`: as fast as the server answers.
    pub rate: Option<f64>,
    /// File of tokens, one `<province>:<token>` a line.
    pub tokens: Option<PathBuf>,
    /// Tokens `<province>:<token>`, in addition to the file's.
    pub token: Vec<String>,
    /// Reuse one token for every request (so that a gateway cache would hit).
    pub repeat_tokens: bool,
    /// Use every token at most once (no repeats inside any cache window): once the
    /// tokens run out, requests fail with `TokensExhausted` (counted, never sent).
    pub unique_tokens: bool,
    /// Tokens per `LookupBatch` call (with [`Rpc::LookupBatch`]).
    pub batch: usize,
    /// Purpose declared with each request.
    pub purpose: String,
    /// Deadline of one request.
    pub timeout: Duration,
    /// Verify every answer against this trust list (as a hub does).
    pub verify_trust_list: Option<PathBuf>,
    /// Processes whose CPU time to report over the measured window, `LABEL=PID`.
    pub watch_pid: Vec<String>,
    /// A name for this run, carried into the report.
    pub label: Option<String>,
}

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a plain number of seconds (at most a day).
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

/// Refuses any target that is not on this machine's loopback; returns its `host:port`.
pub fn loopback(target: &str) -> Result<String> {
    let authority = tls::endpoint_authority(target).map_err(BenchError::usage)?;
    let addrs: Vec<SocketAddr> =
        authority.to_socket_addrs().map_err(BenchError::io(format!("resolving {authority}")))?.collect::<Vec<_>>();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(BenchError::usage(format!("{target}: benchmarks only target loopback addresses (127.0.0.1, ::1)")));
    }
    Ok(authority)
}

/// A token to ask about.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) province: ProvinceCode,
    pub(crate) bytes: Vec<u8>,
}

fn parse_token(line: &str) -> Result<Token> {
    let (province, token) = line
        .trim()
        .split_once(':')
        .ok_or_else(|| BenchError::usage(format!("{line:?}: expected <province>:<token>")))?;
    Ok(Token {
        province: province.parse().map_err(BenchError::usage)?,
        bytes: token_from_text(token).map_err(BenchError::usage)?,
    })
}

/// The tokens of the file and the inline ones, in that order (only the first with `repeat`).
pub(crate) fn load_tokens(file: Option<&Path>, inline: &[String], repeat: bool) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(BenchError::io(format!("reading {}", path.display())))?;
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            tokens.push(parse_token(line)?);
        }
    }
    for t in inline {
        tokens.push(parse_token(t)?);
    }
    if tokens.is_empty() {
        return Err(BenchError::usage("give tokens with --tokens FILE or --token <province>:<token>"));
    }
    if repeat {
        tokens.truncate(1);
    }
    Ok(tokens)
}

/// The server identity the run accepts (see [`LookupOptions::expect`]).
pub(crate) fn expected_peer(options: &LookupOptions, tokens: &[Token]) -> Result<ExpectedPeer> {
    let default = match options.rpc {
        Rpc::Lookup | Rpc::LookupBatch => "gateway",
        Rpc::Attest => "node",
    };
    match options.expect.as_deref().unwrap_or(default) {
        "gateway" => Ok(ExpectedPeer::AnyGateway),
        "node" => {
            let province = tokens[0].province.clone();
            if tokens.iter().any(|t| t.province != province) {
                return Err(BenchError::usage(
                    "--expect node needs tokens of one province; give --expect <spiffe URI>",
                ));
            }
            Ok(ExpectedPeer::Exactly(Identity::new(&options.tls.trust_domain, Role::Node(province))))
        }
        uri => Ok(ExpectedPeer::Exactly(uri.parse::<Identity>().map_err(BenchError::usage)?)),
    }
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
}
