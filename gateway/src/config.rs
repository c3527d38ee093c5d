//! `gateway.toml`: what the national operator configures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Gateway configuration. Relative paths are resolved against the config file's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on for mTLS gRPC (hubs, coordinators).
    pub listen: String,
    /// SPIFFE trust domain of the federation.
    pub trust_domain: String,
    /// This gateway's certificate (issued by the national root), PEM.
    pub cert: PathBuf,
    /// This gateway's TLS private key, PEM.
    pub key: PathBuf,
    /// National root certificate, PEM.
    pub ca: PathBuf,
    /// Signed trust list to start from when none is persisted in `data_dir` yet.
    pub trust_list: PathBuf,
    /// Folder where the last good trust list is persisted.
    pub data_dir: PathBuf,
    /// Deadline for one call to a province node, milliseconds.
    pub node_timeout_ms: u64,
    /// Deadline for connecting to a province node, milliseconds.
    pub connect_timeout_ms: u64,
    /// Serve repeated lookups from the attestation cache (bounded by each attestation's
    /// expiry and the trust list's cache retention).
    pub cache: bool,
    /// Redis shared by the gateway replicas; absent = in-process cache and local limits.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Requests per second one hub may make (0 = unlimited).
    pub hub_rate_per_sec: u64,
    /// Plain HTTP for /metrics, /healthz, /readyz (no personal data is ever exposed).
    pub admin_listen: String,
    /// OTLP/gRPC collector for traces and metrics, e.g. "http://otel-collector:4317".
    pub otlp_endpoint: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            trust_domain: huren_pki::DEFAULT_TRUST_DOMAIN.into(),
            cert: PathBuf::from("gateway.pem"),
            key: PathBuf::from("gateway.key"),
            ca: PathBuf::from("root.pem"),
            trust_list: PathBuf::from("trust-list.bin"),
            data_dir: PathBuf::from("data"),
            node_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            cache: true,
            redis_url: None,
            redis_prefix: "huren:".into(),
            hub_rate_per_sec: 200,
            admin_listen: "127.0.0.1:9090".into(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid gateway config: {0}")]
    Invalid(String),
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config: Self =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        if let Some(base) = path.parent() {
            for p in [&mut config.cert, &mut config.key, &mut config.ca, &mut config.trust_list, &mut config.data_dir] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| ConfigError::Invalid(format!("listen {:?} is not an ip:port address", self.listen)))?;
        if !(1..=60_000).contains(&self.node_timeout_ms) {
            return Err(ConfigError::Invalid("node_timeout_ms must be within 1..=60000".into()));
        }
        self.admin_listen.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError::Invalid(format!("admin_listen {:?} is not an ip:port address", self.admin_listen))
        })?;
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str()).map_err(|e| ConfigError::Invalid(format!("redis_url: {e}")))?;
        }
        if !(1..=60_000).contains(&self.connect_timeout_ms) {
            return Err(ConfigError::Invalid("connect_timeout_ms must be within 1..=60000".into()));
        }
        Ok(())
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Where the last good trust list is kept.
    pub fn persisted_trust_list(&self) -> PathBuf {
        self.data_dir.join("trust-list.bin")
    }
}
