//! `node.toml`: what a province IT team configures.

use std::path::{Path, PathBuf};

use huren_pki::ProvinceCode;
use serde::{Deserialize, Serialize};

/// Node configuration. Relative paths are resolved against the config file's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// GB/T 2260 code of the province this node serves, e.g. "340000".
    pub province: String,
    /// Address to listen on for mTLS gRPC.
    pub listen: String,
    /// SPIFFE trust domain of the federation.
    pub trust_domain: String,
    /// Folder for the status store (`status.redb`).
    pub data_dir: PathBuf,
    /// This node's certificate chain (leaf + province CA), PEM.
    pub cert: PathBuf,
    /// This node's TLS private key, PEM.
    pub key: PathBuf,
    /// National root certificate, PEM.
    pub ca: PathBuf,
    /// The province's Ed25519 attestation key (PKCS#8 PEM), or a folder of
    /// `attestation-*.key` files during a key rotation.
    pub attestation_key: PathBuf,
    /// Gateway to follow for trust-list updates (`host:port`); none = the configured file only.
    pub gateway: Option<String>,
    /// Signed trust list file (verified against `ca` at start).
    pub trust_list: PathBuf,
    /// Longest validity of an attestation, seconds.
    pub attestation_ttl_seconds: i64,
    /// Default token lifetime when IssueToken asks for none, seconds.
    pub token_lifetime_seconds: u32,
    /// Default validity of a status when UpsertStatus gives none, seconds.
    pub default_status_validity_seconds: i64,
    /// Plain HTTP for /metrics, /healthz, /readyz (no personal data is ever exposed).
    pub admin_listen: String,
    /// OTLP/gRPC collector for traces and metrics, e.g. "http://otel-collector:4317".
    pub otlp_endpoint: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            province: String::new(),
            listen: "127.0.0.1:7443".into(),
            trust_domain: huren_pki::DEFAULT_TRUST_DOMAIN.into(),
            data_dir: PathBuf::from("data"),
            cert: PathBuf::from("node.pem"),
            key: PathBuf::from("node.key"),
            ca: PathBuf::from("root.pem"),
            attestation_key: PathBuf::from("attestation.key"),
            trust_list: PathBuf::from("trust-list.bin"),
            gateway: None,
            attestation_ttl_seconds: 300,
            token_lifetime_seconds: 300,
            default_status_validity_seconds: 7 * 24 * 3600,
            admin_listen: "127.0.0.1:9091".into(),
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
    #[error("invalid node config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config: Self =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        if let Some(base) = path.parent() {
            config.resolve_relative(base);
        }
        config.validate()?;
        Ok(config)
    }

    fn resolve_relative(&mut self, base: &Path) {
        for p in [
            &mut self.data_dir,
            &mut self.cert,
            &mut self.key,
            &mut self.ca,
            &mut self.attestation_key,
            &mut self.trust_list,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.province_code()?;
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| ConfigError::Invalid(format!("listen {:?} is not an ip:port address", self.listen)))?;
        self.admin_listen.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError::Invalid(format!("admin_listen {:?} is not an ip:port address", self.admin_listen))
        })?;
        if self.attestation_ttl_seconds <= 0 || self.attestation_ttl_seconds > 86_400 {
            return Err(ConfigError::Invalid("attestation_ttl_seconds must be within 1..=86400".into()));
        }
        if self.token_lifetime_seconds == 0 || self.token_lifetime_seconds > 86_400 {
            return Err(ConfigError::Invalid("token_lifetime_seconds must be within 1..=86400".into()));
        }
        if let Some(gateway) = &self.gateway {
            huren_pki::tls::endpoint_authority(gateway).map_err(|e| ConfigError::Invalid(format!("gateway: {e}")))?;
        }
        if self.default_status_validity_seconds <= 0 {
            return Err(ConfigError::Invalid("default_status_validity_seconds must be positive".into()));
        }
        Ok(())
    }

    pub fn province_code(&self) -> Result<ProvinceCode, ConfigError> {
        self.province.parse().map_err(|e| ConfigError::Invalid(format!("province: {e}")))
    }

    /// Path of the redb status store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("status.redb")
    }
}
