//! `node.toml`: what a province IT team configures.

use std::path::{Path, PathBuf};

use huren_pki::ProvinceCode;
pub use huren_runtime::config::ConfigError;
use huren_runtime::config::{self, Settings};
use huren_runtime::gateways::GatewayList;
use huren_runtime::handshake::{self, HandshakeLimits};
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
    /// Folder for the status store (`status.redb`, or the folder `status.fjall/`) and the
    /// persisted trust list.
    pub data_dir: PathBuf,
    /// Where the status store lives: `redb` (a file in `data_dir`), `fjall` (an LSM
    /// database, a folder in `data_dir`: faster for random updates of many subjects) or
    /// `redis`.
    pub store: StoreBackend,
    /// Redis server of the status store when `store = "redis"`, e.g. "redis://127.0.0.1:6379/0".
    pub store_redis_url: Option<String>,
    /// Prefix of every key of the status store in Redis (default `huren-node:<province>:`),
    /// so several nodes can share one server.
    pub store_redis_prefix: Option<String>,
    /// This node's certificate chain (leaf + province CA), PEM.
    pub cert: PathBuf,
    /// This node's TLS private key, PEM.
    pub key: PathBuf,
    /// National root certificate, PEM.
    pub ca: PathBuf,
    /// The province's Ed25519 attestation key (PKCS#8 PEM), or a folder of
    /// `attestation-*.key` files during a key rotation.
    pub attestation_key: PathBuf,
    /// Gateways to follow for trust-list updates: `"host:port"`, several replicas as
    /// `"gw1:8443,gw2:8443"` or `["gw1:8443", "gw2:8443"]` (every one is followed and the
    /// highest sequence wins, so one replica down delays nothing); none = the configured
    /// file only. A deletion receipt goes to the first that takes it.
    pub gateway: Option<GatewayList>,
    /// Signed trust list file (verified against `ca` at start).
    pub trust_list: PathBuf,
    /// Longest validity of an attestation, seconds. What is signed is also clamped to the
    /// trust list's attestation lifetime bound (default 3600) and the key's `not_after`,
    /// so a longer value here never produces an attestation verifiers refuse.
    pub attestation_ttl_seconds: i64,
    /// Default token lifetime when IssueToken asks for none, seconds.
    pub token_lifetime_seconds: u32,
    /// Default validity of a status when UpsertStatus gives none, seconds.
    pub default_status_validity_seconds: i64,
    /// Plain HTTP for /metrics, /healthz, /readyz (no personal data is ever exposed).
    pub admin_listen: String,
    /// OTLP/gRPC collector for traces and metrics, e.g. "http://otel-collector:4317".
    pub otlp_endpoint: Option<String>,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line).
    /// Levels come from the `HUREN_LOG` variable (default: `info` for Huren, `warn` for
    /// libraries).
    pub log_format: huren_runtime::config::LogFormat,
    /// TLS handshakes in progress at once; when all are taken, a new connection evicts
    /// the oldest (so idle or trickling connections cannot hoard them).
    pub handshake_max_pending: u64,
    /// TLS handshakes in progress at once from one source (IPv4 address, IPv6 /64); a
    /// connection over this is closed at once.
    pub handshake_max_pending_per_source: u64,
    /// Deadline for a whole TLS handshake while at most half the slots are taken, ms.
    pub handshake_timeout_ms: u64,
    /// Deadline for a whole TLS handshake when all slots are taken, ms (the deadline
    /// falls linearly from `handshake_timeout_ms` as the slots fill beyond half).
    pub handshake_min_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            province: String::new(),
            listen: "127.0.0.1:7443".into(),
            trust_domain: huren_pki::DEFAULT_TRUST_DOMAIN.into(),
            data_dir: PathBuf::from("data"),
            store: StoreBackend::Redb,
            store_redis_url: None,
            store_redis_prefix: None,
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
            log_format: huren_runtime::config::LogFormat::Text,
            handshake_max_pending: handshake::DEFAULT_MAX_PENDING as u64,
            handshake_max_pending_per_source: handshake::DEFAULT_MAX_PENDING_PER_SOURCE as u64,
            handshake_timeout_ms: handshake::DEFAULT_TIMEOUT.as_millis() as u64,
            handshake_min_timeout_ms: handshake::DEFAULT_MIN_TIMEOUT.as_millis() as u64,
        }
    }
}

/// Backend of the status store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StoreBackend {
    /// An embedded redb file, `status.redb` in `data_dir`.
    Redb,
    /// An embedded fjall (LSM) database, the folder `status.fjall/` in `data_dir`.
    Fjall,
    /// A Redis server (`store_redis_url`), keys under `store_redis_prefix`.
    Redis,
}

impl NodeConfig {
    /// Reads a config file, applies the `HUREN_NODE_<KEY>` overrides from the process
    /// environment, resolves relative paths and validates (rules in [`huren_runtime::config`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::load(path)
    }

    /// The province this node serves, as a code.
    pub fn province_code(&self) -> Result<ProvinceCode, ConfigError> {
        self.province.parse().map_err(|e| invalid(format!("province: {e}")))
    }

    /// Key prefix of the status store in Redis.
    pub fn redis_prefix(&self) -> String {
        self.store_redis_prefix.clone().unwrap_or_else(|| crate::redis_store::default_prefix(&self.province))
    }

    /// The limits on TLS handshakes in progress.
    pub fn handshake_limits(&self) -> Result<HandshakeLimits, ConfigError> {
        HandshakeLimits::from_config(
            self.handshake_max_pending,
            self.handshake_max_pending_per_source,
            self.handshake_timeout_ms,
            self.handshake_min_timeout_ms,
        )
        .map_err(|e| invalid(e.to_string()))
    }

    /// The gateways to follow (none when `gateway` is unset).
    pub fn gateways(&self) -> &[String] {
        self.gateway.as_ref().map(GatewayList::endpoints).unwrap_or_default()
    }

    /// Path of the redb status store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("status.redb")
    }

    /// Folder of the fjall status store.
    pub fn fjall_path(&self) -> PathBuf {
        self.data_dir.join("status.fjall")
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::invalid::<NodeConfig>(message)
}

impl Settings for NodeConfig {
    const ROLE: &'static str = "node";
    const ENV_PREFIX: &'static str = "HUREN_NODE_";
    const OPTIONAL_KEYS: &'static [&'static str] =
        &["gateway", "otlp_endpoint", "store_redis_url", "store_redis_prefix"];
    const OPTIONAL_HELP: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "gateway",
            "Gateway to follow for trust-list updates (host:port); absent: the trust_list file only.",
            "\"10.0.0.2:8443\"",
        ),
        (
            "otlp_endpoint",
            "OTLP/gRPC collector for traces and metrics; absent: none exported.",
            "\"http://otel-collector:4317\"",
        ),
        (
            "store_redis_url",
            "Redis server of the status store when store = \"redis\" (it needs persistence: appendfsync always); \
             store is \"redb\" (data_dir/status.redb), \"fjall\" (data_dir/status.fjall/) or \"redis\".",
            "\"redis://127.0.0.1:6379/0\"",
        ),
        (
            "store_redis_prefix",
            "Prefix of the status store's Redis keys; absent: huren-node:<province>:.",
            "\"huren-node:340000:\"",
        ),
    ];

    fn paths(&mut self) -> Vec<&mut PathBuf> {
        vec![
            &mut self.data_dir,
            &mut self.cert,
            &mut self.key,
            &mut self.ca,
            &mut self.attestation_key,
            &mut self.trust_list,
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.province_code()?;
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| invalid(format!("listen {:?} is not an ip:port address", self.listen)))?;
        self.admin_listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| invalid(format!("admin_listen {:?} is not an ip:port address", self.admin_listen)))?;
        if self.attestation_ttl_seconds <= 0 || self.attestation_ttl_seconds > 86_400 {
            return Err(invalid("attestation_ttl_seconds must be within 1..=86400"));
        }
        if self.token_lifetime_seconds == 0 || self.token_lifetime_seconds > 86_400 {
            return Err(invalid("token_lifetime_seconds must be within 1..=86400"));
        }
        if let Some(gateway) = &self.gateway {
            gateway.validate().map_err(|e| invalid(format!("gateway: {e}")))?;
        }
        self.handshake_limits()?;
        if self.default_status_validity_seconds <= 0 {
            return Err(invalid("default_status_validity_seconds must be positive"));
        }
        if let Some(url) = &self.store_redis_url {
            let parsed = redis::Client::open(url.as_str()).map(|c| c.get_connection_info().clone());
            if parsed.is_err() {
                // The URL may carry a password: never echo it.
                return Err(invalid("store_redis_url is not a redis:// or rediss:// URL"));
            }
        }
        if self.store == StoreBackend::Redis && self.store_redis_url.is_none() {
            return Err(invalid("store = \"redis\" needs store_redis_url"));
        }
        if let Some(prefix) = &self.store_redis_prefix {
            if prefix.is_empty()
                || prefix.len() > 128
                || prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(invalid(
                    "store_redis_prefix must be 1-128 characters without spaces or control characters",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "province = \"340000\"\nlisten = \"127.0.0.1:7443\"\ntoken_lifetime_seconds = 120\n";

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        config::from_sources(Path::new("/etc/huren/node.toml"), text, vars)
    }

    #[test]
    fn environment_wins_over_file_and_file_over_defaults() {
        let c = load(
            FILE,
            &[
                ("HUREN_NODE_TOKEN_LIFETIME_SECONDS", "60"),
                ("HUREN_NODE_ADMIN_LISTEN", "0.0.0.0:9091"),
                ("HUREN_NODE_GATEWAY", "huren-gateway.huren.svc.cluster.local:8443"),
                ("HUREN_NODE_DATA_DIR", "state"),
                ("HUREN_GATEWAY_LISTEN", "not for the node"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.token_lifetime_seconds, 60, "environment over file");
        assert_eq!(c.province, "340000", "file over defaults");
        assert_eq!(c.attestation_ttl_seconds, NodeConfig::default().attestation_ttl_seconds, "defaults");
        assert_eq!(c.admin_listen, "0.0.0.0:9091");
        assert_eq!(c.gateways(), ["huren-gateway.huren.svc.cluster.local:8443"]);
        assert_eq!(c.data_dir, Path::new("/etc/huren/state"), "relative paths from the environment too");
    }

    #[test]
    fn the_gateway_is_one_endpoint_or_several() {
        let c = load(&format!("{FILE}gateway = \"gw1:8443\"\n"), &[]).unwrap();
        assert_eq!(c.gateways(), ["gw1:8443"], "the single string of older configs");
        let c = load(&format!("{FILE}gateway = [\"gw1:8443\", \"https://gw2:8443\"]\n"), &[]).unwrap();
        assert_eq!(c.gateways(), ["gw1:8443", "https://gw2:8443"]);
        let c = load(FILE, &[("HUREN_NODE_GATEWAY", "gw1:8443, gw2:8443")]).unwrap();
        assert_eq!(c.gateways(), ["gw1:8443", "gw2:8443"]);
        let err = load(FILE, &[("HUREN_NODE_GATEWAY", "gw1:8443,gw2")]).unwrap_err();
        assert!(err.to_string().starts_with("invalid node config: gateway: "), "{err}");
        assert!(load(FILE, &[]).unwrap().gateways().is_empty());
    }

    #[test]
    fn province_codes_stay_strings_quoted_or_not() {
        for raw in ["440000", "\"440000\"", "'440000'"] {
            let c = load(FILE, &[("HUREN_NODE_PROVINCE", raw)]).unwrap();
            assert_eq!(c.province, "440000", "{raw}");
        }
        let c = load("", &[("HUREN_NODE_PROVINCE", "370000")]).unwrap();
        assert_eq!(c.province_code().unwrap().to_string(), "370000");
    }

    /// Every key the struct has can be set from the environment, by the documented name.
    #[test]
    fn every_key_has_an_environment_override() {
        let full = NodeConfig {
            province: "440000".into(),
            listen: "0.0.0.0:17443".into(),
            trust_domain: "example.test".into(),
            data_dir: "/var/lib/x".into(),
            store: StoreBackend::Redis,
            store_redis_url: Some("redis://redis.example:6380/1".into()),
            store_redis_prefix: Some("huren-node:test:".into()),
            cert: "/c/cert.pem".into(),
            key: "/c/key.pem".into(),
            ca: "/c/root.pem".into(),
            attestation_key: "/c/keys".into(),
            gateway: Some(GatewayList::parse("gateway-1.example:8443,gateway-2.example:8443")),
            trust_list: "/c/trust-list.bin".into(),
            attestation_ttl_seconds: 600,
            token_lifetime_seconds: 60,
            default_status_validity_seconds: 3600,
            admin_listen: "0.0.0.0:19091".into(),
            otlp_endpoint: Some("http://otel:4317".into()),
            log_format: huren_runtime::config::LogFormat::Json,
            handshake_max_pending: 100,
            handshake_max_pending_per_source: 10,
            handshake_timeout_ms: 5_000,
            handshake_min_timeout_ms: 500,
        };
        // The file names a province (the default has none) unless the variable does.
        // The file names a Redis URL too, so that `store = "redis"` alone validates.
        let file = "province = \"340000\"\nstore_redis_url = \"redis://127.0.0.1:6379\"\n";
        config::check_every_key_overridable(full, file).unwrap();
    }

    #[test]
    fn bad_values_name_the_variable_and_the_type() {
        let err = load(FILE, &[("HUREN_NODE_ATTESTATION_TTL_SECONDS", "5m")]).unwrap_err();
        assert_eq!(err.variable(), Some(("HUREN_NODE_ATTESTATION_TTL_SECONDS", "expected an integer, got \"5m\"")));
        assert_eq!(
            err.to_string(),
            "invalid node config: HUREN_NODE_ATTESTATION_TTL_SECONDS: expected an integer, got \"5m\""
        );
        for raw in ["-5", "4294967296"] {
            let err = load(FILE, &[("HUREN_NODE_TOKEN_LIFETIME_SECONDS", raw)]).unwrap_err();
            let named =
                err.variable().is_some_and(|(var, m)| var == "HUREN_NODE_TOKEN_LIFETIME_SECONDS" && m.contains("u32"));
            assert!(named, "{err}");
        }
        let err = load(FILE, &[("HUREN_NODE_GATEWAYS", "gateway.example:8443")]).unwrap_err();
        let (var, message) = err.variable().expect("an environment error");
        assert_eq!(var, "HUREN_NODE_GATEWAYS");
        assert!(message.starts_with("not a setting") && message.contains("gateway"), "{message}");
        let line = err.to_string();
        assert!(!line.contains("gateway.example") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn overridden_values_are_validated() {
        let err = load(FILE, &[("HUREN_NODE_PROVINCE", "34000")]).unwrap_err();
        assert!(err.to_string().starts_with("invalid node config: province: "), "{err}");
        let err = load(FILE, &[("HUREN_NODE_LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(err.to_string(), "invalid node config: listen \"nowhere\" is not an ip:port address");
        let err = load(FILE, &[("HUREN_NODE_TOKEN_LIFETIME_SECONDS", "0")]).unwrap_err();
        assert!(err.to_string().contains("token_lifetime_seconds must be within"), "{err}");
        let c = load("province = 340000\n", &[("HUREN_NODE_PROVINCE", "340000")]).unwrap();
        assert_eq!(c.province, "340000", "the environment fixes a bad file value");
    }

    #[test]
    fn the_store_backend_is_redb_by_default_and_redis_needs_a_url() {
        let c = load(FILE, &[]).unwrap();
        assert_eq!((c.store, c.redis_prefix()), (StoreBackend::Redb, "huren-node:340000:".to_owned()));
        let err = load(FILE, &[("HUREN_NODE_STORE", "redis")]).unwrap_err();
        assert_eq!(err.to_string(), "invalid node config: store = \"redis\" needs store_redis_url");
        let c = load(
            FILE,
            &[
                ("HUREN_NODE_STORE", "redis"),
                ("HUREN_NODE_STORE_REDIS_URL", "redis://:secret@10.0.0.5:6379/2"),
                ("HUREN_NODE_STORE_REDIS_PREFIX", "ah:"),
            ],
        )
        .unwrap();
        assert_eq!((c.store, c.redis_prefix()), (StoreBackend::Redis, "ah:".to_owned()));
        let c = load(FILE, &[("HUREN_NODE_STORE", "fjall")]).unwrap();
        assert_eq!((c.store, c.fjall_path()), (StoreBackend::Fjall, c.data_dir.join("status.fjall")));
        let err = load(FILE, &[("HUREN_NODE_STORE", "postgres")]).unwrap_err();
        assert!(["redb", "fjall", "redis"].iter().all(|b| err.to_string().contains(b)), "{err}");
        let err = load("province = \"340000\"\nstore_redis_url = \"http://:secret@x\"\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "invalid node config: store_redis_url is not a redis:// or rediss:// URL");
        let err = load(FILE, &[("HUREN_NODE_STORE_REDIS_PREFIX", "a b")]).unwrap_err();
        assert!(err.to_string().contains("store_redis_prefix must be"), "{err}");
    }

    #[test]
    fn handshake_limits_default_to_the_runtime_ones_and_are_validated() {
        let c = load(FILE, &[]).unwrap();
        assert_eq!(c.handshake_limits().unwrap(), HandshakeLimits::default());
        let c = load(FILE, &[("HUREN_NODE_HANDSHAKE_MAX_PENDING_PER_SOURCE", "8")]).unwrap();
        assert_eq!(c.handshake_limits().unwrap().max_pending_per_source, 8);
        for (var, value, expect) in [
            ("HUREN_NODE_HANDSHAKE_MAX_PENDING", "0", "handshake_max_pending must be within"),
            ("HUREN_NODE_HANDSHAKE_MAX_PENDING_PER_SOURCE", "513", "handshake_max_pending_per_source must be"),
            ("HUREN_NODE_HANDSHAKE_TIMEOUT_MS", "10", "handshake_timeout_ms must be within"),
            ("HUREN_NODE_HANDSHAKE_MIN_TIMEOUT_MS", "20000", "handshake_min_timeout_ms must be within"),
        ] {
            let err = load(FILE, &[(var, value)]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("invalid node config: {expect}")), "{var}: {err}");
        }
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let err = load("province = \"340000\"\n\nlistne = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let line = err.to_string();
        assert!(
            line.starts_with("/etc/huren/node.toml: line 3: unknown field `listne`") && !line.contains('\n'),
            "{line}"
        );
    }
}
