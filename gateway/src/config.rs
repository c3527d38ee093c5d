//! `gateway.toml`: what the national operator configures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use huren_runtime::config::ConfigError;
use huren_runtime::config::{self, Settings};
use huren_runtime::handshake::{self, HandshakeLimits};
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
    /// Deadline for one call to a province node, milliseconds (unless
    /// `province_timeout_ms` names the province). A lookup waiting for a slot under the
    /// province's concurrency limit waits within this deadline too.
    pub node_timeout_ms: u64,
    /// Deadline for connecting to a province node, milliseconds.
    pub connect_timeout_ms: u64,
    /// Serve repeated lookups from the attestation cache (bounded by each attestation's
    /// expiry and the trust list's cache retention).
    pub cache: bool,
    /// Seconds after its issue that a cached attestation is served without asking the
    /// node. Older ones are served only when the node fails (stale-if-error), while still
    /// valid and within the trust list's cache retention cap. 0 = ask the node every time.
    pub cache_fresh_seconds: u64,
    /// Redis shared by the gateway replicas; absent = in-process cache and local limits.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Requests per second one hub may make (0 = unlimited).
    pub hub_rate_per_sec: u64,
    /// Unknown-token misses a hub may produce before it is throttled (anti-enumeration).
    pub miss_burst: u64,
    /// Misses per second the allowance refills by; the counting window is
    /// `miss_burst / miss_refill_per_sec` seconds (1 s to 1 day; 0 = one hour).
    pub miss_refill_per_sec: f64,
    /// Calls in flight to one province's node at most; further lookups for that province
    /// queue (within its deadline) while other provinces are unaffected.
    pub node_concurrency: u64,
    /// Consecutive failures (transport errors, missed deadlines) that open a province's
    /// circuit breaker: its lookups then fail fast instead of waiting out the deadline.
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one trial call is let through, milliseconds.
    pub breaker_open_ms: u64,
    /// Share of a province's lookups (0 to 1) whose failed node call may be retried once
    /// (connection failures and UNAVAILABLE only; on the next listed endpoint, within the
    /// same deadline), on top of `retry_min_per_sec`. Both 0: no retries.
    pub retry_ratio: f64,
    /// Retries per second a province may get whatever its traffic (0 to 1000).
    pub retry_min_per_sec: u32,
    /// Collection window for verifying the node answers of concurrent lookups together,
    /// microseconds (0 = each verified at once, the default: an exact batch saves no CPU
    /// here, see BENCHMARKS.md). At most 10000.
    pub verify_batch_window_us: u64,
    /// Most answers verified in one batch (1 to 1024).
    pub verify_batch_max: u64,
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
    /// connection over this is closed at once. Hubs behind one NAT share it.
    pub handshake_max_pending_per_source: u64,
    /// Deadline for a whole TLS handshake while at most half the slots are taken, ms.
    pub handshake_timeout_ms: u64,
    /// Deadline for a whole TLS handshake when all slots are taken, ms (the deadline
    /// falls linearly from `handshake_timeout_ms` as the slots fill beyond half).
    pub handshake_min_timeout_ms: u64,
    /// Per-province deadlines overriding `node_timeout_ms`, milliseconds by province code,
    /// e.g. `{ 650000 = 4000 }` for a province whose node sits behind a slow link.
    pub province_timeout_ms: BTreeMap<String, u64>,
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
            cache_fresh_seconds: 10,
            redis_url: None,
            redis_prefix: "huren:".into(),
            hub_rate_per_sec: 200,
            miss_burst: 30,
            miss_refill_per_sec: 0.5,
            node_concurrency: 256,
            breaker_failures: 5,
            breaker_open_ms: 5_000,
            retry_ratio: 0.2,
            retry_min_per_sec: 10,
            verify_batch_window_us: 0,
            verify_batch_max: 64,
            admin_listen: "127.0.0.1:9090".into(),
            otlp_endpoint: None,
            log_format: huren_runtime::config::LogFormat::Text,
            handshake_max_pending: handshake::DEFAULT_MAX_PENDING as u64,
            handshake_max_pending_per_source: handshake::DEFAULT_MAX_PENDING_PER_SOURCE as u64,
            handshake_timeout_ms: handshake::DEFAULT_TIMEOUT.as_millis() as u64,
            handshake_min_timeout_ms: handshake::DEFAULT_MIN_TIMEOUT.as_millis() as u64,
            province_timeout_ms: BTreeMap::new(),
        }
    }
}

impl GatewayConfig {
    /// Reads the file at `path`, applies the `HUREN_GATEWAY_<KEY>` overrides from the
    /// process environment, resolves relative paths and validates (rules in
    /// [`huren_runtime::config`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::load(path)
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

    /// The per-province deadline overrides.
    pub fn province_timeouts(&self) -> std::collections::HashMap<String, Duration> {
        self.province_timeout_ms.iter().map(|(p, ms)| (p.clone(), Duration::from_millis(*ms))).collect()
    }

    /// The anti-enumeration allowance.
    pub fn miss_policy(&self) -> crate::MissPolicy {
        crate::MissPolicy { burst: self.miss_burst as f64, refill_per_sec: self.miss_refill_per_sec }
    }

    /// The per-province circuit breaker.
    pub fn breaker_policy(&self) -> crate::breaker::BreakerPolicy {
        crate::breaker::BreakerPolicy {
            failures: self.breaker_failures,
            open_for: Duration::from_millis(self.breaker_open_ms),
        }
    }

    /// How many failed node calls may be retried, per province.
    pub fn retry_budget(&self) -> crate::retry::RetryBudget {
        crate::retry::RetryBudget { min_per_sec: self.retry_min_per_sec, ratio: self.retry_ratio as f32 }
    }

    /// The default deadline for a call to a province node.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// The deadline for connecting to a province node.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Where the last good trust list is kept.
    pub fn persisted_trust_list(&self) -> PathBuf {
        self.data_dir.join("trust-list.bin")
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::invalid::<GatewayConfig>(message)
}

impl Settings for GatewayConfig {
    const ROLE: &'static str = "gateway";
    const ENV_PREFIX: &'static str = "HUREN_GATEWAY_";
    const OPTIONAL_KEYS: &'static [&'static str] = &["redis_url", "otlp_endpoint"];
    const OPTIONAL_HELP: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "redis_url",
            "Redis shared by the gateway replicas (cache, per-hub limits, trust-list fan-out); absent: in-process cache and local limits.",
            "\"redis://127.0.0.1:6379/0\"",
        ),
        (
            "otlp_endpoint",
            "OTLP/gRPC collector for traces and metrics; absent: none exported.",
            "\"http://otel-collector:4317\"",
        ),
    ];

    fn paths(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.cert, &mut self.key, &mut self.ca, &mut self.trust_list, &mut self.data_dir]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| invalid(format!("listen {:?} is not an ip:port address", self.listen)))?;
        if !(1..=60_000).contains(&self.node_timeout_ms) {
            return Err(invalid("node_timeout_ms must be within 1..=60000"));
        }
        self.admin_listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| invalid(format!("admin_listen {:?} is not an ip:port address", self.admin_listen)))?;
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str()).map_err(|e| invalid(format!("redis_url: {e}")))?;
        }
        if !(1..=60_000).contains(&self.connect_timeout_ms) {
            return Err(invalid("connect_timeout_ms must be within 1..=60000"));
        }
        for (province, ms) in &self.province_timeout_ms {
            province
                .parse::<huren_pki::ProvinceCode>()
                .map_err(|e| invalid(format!("province_timeout_ms: {province:?} is not a province code: {e}")))?;
            if !(1..=60_000).contains(ms) {
                return Err(invalid(format!(
                    "province_timeout_ms: the deadline for {province} must be within 1..=60000"
                )));
            }
        }
        self.retry_budget().validate().map_err(|e| invalid(format!("retry_ratio/retry_min_per_sec: {e}")))?;
        if self.cache_fresh_seconds > 86_400 {
            return Err(invalid(
                "cache_fresh_seconds must be within 0..=86400 (the trust list's cache retention caps it anyway)",
            ));
        }
        if self.verify_batch_window_us > 10_000 {
            return Err(invalid("verify_batch_window_us must be within 0..=10000 (10 ms)"));
        }
        if !(1..=1024).contains(&self.verify_batch_max) {
            return Err(invalid("verify_batch_max must be within 1..=1024"));
        }
        if !(1..=1_000_000).contains(&self.miss_burst) {
            return Err(invalid("miss_burst must be within 1..=1000000"));
        }
        if !(self.miss_refill_per_sec.is_finite() && (0.0..=1_000_000.0).contains(&self.miss_refill_per_sec)) {
            return Err(invalid("miss_refill_per_sec must be a number within 0..=1000000"));
        }
        if !(1..=65_536).contains(&self.node_concurrency) {
            return Err(invalid("node_concurrency must be within 1..=65536"));
        }
        if !(1..=1_000).contains(&self.breaker_failures) {
            return Err(invalid("breaker_failures must be within 1..=1000"));
        }
        if !(1..=600_000).contains(&self.breaker_open_ms) {
            return Err(invalid("breaker_open_ms must be within 1..=600000"));
        }
        self.handshake_limits()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "listen = \"127.0.0.1:8443\"\nnode_timeout_ms = 1500\nredis_url = \"redis://file:6379/\"\n";

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        config::from_sources(Path::new("/etc/huren/gateway.toml"), text, vars)
    }

    #[test]
    fn environment_wins_over_file_and_file_over_defaults() {
        let c = load(
            FILE,
            &[
                ("HUREN_GATEWAY_NODE_TIMEOUT_MS", "250"),
                ("HUREN_GATEWAY_CACHE", "false"),
                ("HUREN_GATEWAY_CERT", "/pki/issued/gateway-national-2/cert.pem"),
                ("HUREN_GATEWAY_KEY", "keys/gateway.key"),
                ("HUREN_GATEWAY_OTLP_ENDPOINT", "http://otel-collector:4317"),
                ("HUREN_NODE_LISTEN", "not for the gateway"),
                ("PATH", "/usr/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.node_timeout_ms, 250, "environment over file");
        assert_eq!(c.listen, "127.0.0.1:8443", "file over defaults");
        assert_eq!(c.connect_timeout_ms, GatewayConfig::default().connect_timeout_ms, "defaults");
        assert!(!c.cache);
        assert_eq!(c.redis_url.as_deref(), Some("redis://file:6379/"));
        assert_eq!(c.cert, Path::new("/pki/issued/gateway-national-2/cert.pem"));
        assert_eq!(c.key, Path::new("/etc/huren/keys/gateway.key"), "relative paths from the environment too");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://otel-collector:4317"));

        let c = load(FILE, &[("HUREN_GATEWAY_REDIS_URL", "")]).unwrap();
        assert_eq!(c.redis_url, None, "an empty value unsets an optional key");
    }

    /// Every key the struct has can be set from the environment, by the documented name.
    #[test]
    fn every_key_has_an_environment_override() {
        let full = GatewayConfig {
            listen: "0.0.0.0:18443".into(),
            trust_domain: "example.test".into(),
            cert: "/c/cert.pem".into(),
            key: "/c/key.pem".into(),
            ca: "/c/root.pem".into(),
            trust_list: "/c/trust-list.bin".into(),
            data_dir: "/var/lib/x".into(),
            node_timeout_ms: 1234,
            connect_timeout_ms: 567,
            cache: false,
            cache_fresh_seconds: 3,
            redis_url: Some("redis://redis:6379/".into()),
            redis_prefix: "x:".into(),
            hub_rate_per_sec: 7,
            miss_burst: 9,
            miss_refill_per_sec: 0.25,
            node_concurrency: 16,
            breaker_failures: 3,
            breaker_open_ms: 750,
            retry_ratio: 0.5,
            retry_min_per_sec: 3,
            verify_batch_window_us: 250,
            verify_batch_max: 32,
            admin_listen: "0.0.0.0:19090".into(),
            otlp_endpoint: Some("http://otel:4317".into()),
            log_format: huren_runtime::config::LogFormat::Json,
            handshake_max_pending: 100,
            handshake_max_pending_per_source: 10,
            handshake_timeout_ms: 5_000,
            handshake_min_timeout_ms: 500,
            province_timeout_ms: BTreeMap::from([("650000".to_owned(), 4000)]),
        };
        config::check_every_key_overridable(full, "").unwrap();
    }

    #[test]
    fn bad_values_name_the_variable_and_the_type() {
        let err = load(FILE, &[("HUREN_GATEWAY_NODE_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(err.variable(), Some(("HUREN_GATEWAY_NODE_TIMEOUT_MS", "expected an integer, got \"soon\"")));
        assert_eq!(
            err.to_string(),
            "invalid gateway config: HUREN_GATEWAY_NODE_TIMEOUT_MS: expected an integer, got \"soon\""
        );
        let err = load(FILE, &[("HUREN_GATEWAY_HUB_RATE_PER_SEC", "-1")]).unwrap_err();
        let named = err.variable().is_some_and(|(var, m)| var == "HUREN_GATEWAY_HUB_RATE_PER_SEC" && m.contains("u64"));
        assert!(named, "{err}");
        let err = load(FILE, &[("HUREN_GATEWAY_CACHE", "yes")]).unwrap_err();
        assert_eq!(err.variable(), Some(("HUREN_GATEWAY_CACHE", "expected true or false, got \"yes\"")));
        let err = load(FILE, &[("HUREN_GATEWAY_REDIS_ULR", "redis://:hunter2@redis:6379/")]).unwrap_err();
        let (var, message) = err.variable().expect("an environment error");
        assert_eq!(var, "HUREN_GATEWAY_REDIS_ULR");
        assert!(message.starts_with("not a setting") && message.contains("redis_url"), "{message}");
        let line = err.to_string();
        assert!(!line.contains("hunter2") && !line.contains('\n'), "{line}");
        // A URL that is no Redis URL is refused without echoing it either.
        let err = load("redis_url = \"http://:hunter2@redis:6379/\"\n", &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid gateway config: redis_url") && !err.to_string().contains("hunter2")
        );
    }

    #[test]
    fn overridden_values_are_validated() {
        let err = load(FILE, &[("HUREN_GATEWAY_LISTEN", "nowhere")]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        assert_eq!(err.to_string(), "invalid gateway config: listen \"nowhere\" is not an ip:port address");
        let err = load(FILE, &[("HUREN_GATEWAY_NODE_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("node_timeout_ms must be within"), "{err}");
        // An override fixes a bad file value instead of tripping over it.
        let c = load("listen = \"nowhere\"\n", &[("HUREN_GATEWAY_LISTEN", "127.0.0.1:1")]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
    }

    #[test]
    fn kubernetes_service_variables_are_not_typos() {
        // A Service named huren-gateway puts these into every pod of its namespace.
        let c = load(
            FILE,
            &[
                ("HUREN_GATEWAY_SERVICE_HOST", "10.96.0.10"),
                ("HUREN_GATEWAY_SERVICE_PORT", "8443"),
                ("HUREN_GATEWAY_SERVICE_PORT_GRPC", "8443"),
                ("HUREN_GATEWAY_PORT", "tcp://10.96.0.10:8443"),
                ("HUREN_GATEWAY_PORT_8443_TCP", "tcp://10.96.0.10:8443"),
                ("HUREN_GATEWAY_PORT_8443_TCP_PROTO", "tcp"),
                ("HUREN_GATEWAY_PORT_8443_TCP_PORT", "8443"),
                ("HUREN_GATEWAY_PORT_8443_TCP_ADDR", "10.96.0.10"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8443");
    }

    #[test]
    fn resilience_and_throttle_defaults_are_the_embedded_ones() {
        let c = GatewayConfig::default();
        let embedded = crate::GatewaySettings::default();
        assert_eq!(c.node_timeout(), embedded.node_timeout);
        assert_eq!(c.miss_policy(), embedded.miss_policy);
        assert_eq!(c.breaker_policy(), embedded.breaker);
        assert_eq!(c.retry_budget(), embedded.retry_budget);
        assert_eq!(Duration::from_secs(c.cache_fresh_seconds), embedded.cache_fresh);
        assert_eq!(c.node_concurrency as usize, embedded.node_concurrency);
        assert!(c.province_timeouts().is_empty() && embedded.province_timeouts.is_empty());
        assert_eq!(c.handshake_limits().unwrap(), embedded.handshakes);
    }

    #[test]
    fn resilience_and_throttle_settings_from_file_and_environment() {
        let text = "province_timeout_ms = { 370000 = 500, 440000 = 9000 }\nnode_concurrency = 8\n\
                    breaker_failures = 2\nbreaker_open_ms = 1500\nmiss_burst = 12\nmiss_refill_per_sec = 0.1\n";
        let c = load(text, &[("HUREN_GATEWAY_MISS_REFILL_PER_SEC", "2")]).unwrap();
        assert_eq!(c.province_timeouts().get("370000"), Some(&Duration::from_millis(500)));
        assert_eq!(c.province_timeouts().get("440000"), Some(&Duration::from_secs(9)));
        assert_eq!(c.node_concurrency, 8);
        assert_eq!(
            c.breaker_policy(),
            crate::breaker::BreakerPolicy { failures: 2, open_for: Duration::from_millis(1500) }
        );
        assert_eq!(c.miss_policy(), crate::MissPolicy { burst: 12.0, refill_per_sec: 2.0 }, "an integer for a number");
        let c = load(text, &[("HUREN_GATEWAY_PROVINCE_TIMEOUT_MS", "{ 340000 = 250 }")]).unwrap();
        assert_eq!(
            c.province_timeout_ms,
            BTreeMap::from([("340000".to_owned(), 250)]),
            "the environment replaces the table"
        );

        for (bad, expect) in [
            ("province_timeout_ms = { 37000 = 500 }", "province_timeout_ms: \"37000\" is not a province code"),
            ("province_timeout_ms = { 370000 = 0 }", "the deadline for 370000 must be within 1..=60000"),
            ("node_concurrency = 0", "node_concurrency must be within"),
            ("breaker_failures = 0", "breaker_failures must be within"),
            ("breaker_open_ms = 0", "breaker_open_ms must be within"),
            ("miss_burst = 0", "miss_burst must be within"),
            ("retry_ratio = 1.5", "retry_ratio/retry_min_per_sec: retry ratio must be within 0..=1, got 1.5"),
            ("retry_ratio = -0.1", "retry ratio must be within 0..=1"),
            ("retry_min_per_sec = 5000", "retry minimum must be within 0..=1000 per second, got 5000"),
            ("cache_fresh_seconds = 100000", "cache_fresh_seconds must be within 0..=86400"),
            ("verify_batch_window_us = 20000", "verify_batch_window_us must be within 0..=10000"),
            ("verify_batch_max = 0", "verify_batch_max must be within 1..=1024"),
            ("miss_refill_per_sec = -1.0", "miss_refill_per_sec must be a number within"),
            ("miss_refill_per_sec = nan", "miss_refill_per_sec must be a number within"),
            ("handshake_max_pending = 0", "handshake_max_pending must be within 1..=65536"),
            ("handshake_max_pending_per_source = 600", "handshake_max_pending_per_source must be within"),
            ("handshake_timeout_ms = 0", "handshake_timeout_ms must be within 100..=600000"),
            ("handshake_min_timeout_ms = 60000", "handshake_min_timeout_ms must be within"),
        ] {
            let err = load(bad, &[]).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }) && err.to_string().contains(expect), "{bad}: {err}");
        }
        let err = load("", &[("HUREN_GATEWAY_PROVINCE_TIMEOUT_MS", "500")]).unwrap_err();
        let (var, message) = err.variable().expect("an environment error");
        assert_eq!(var, "HUREN_GATEWAY_PROVINCE_TIMEOUT_MS");
        assert!(message.contains("an inline TOML table"), "{message}");
    }

    /// deploy/examples/gateway.toml loads, and names every key.
    #[test]
    fn the_example_config_is_valid_and_names_every_key() {
        let text = include_str!("../../deploy/examples/gateway.toml");
        let c = load(text, &[]).unwrap();
        assert_eq!(c.breaker_policy(), crate::breaker::BreakerPolicy::default(), "the example shows the defaults");
        assert_eq!(c.miss_policy(), crate::MissPolicy::default());
        let defaults = toml::Table::try_from(GatewayConfig::default()).unwrap();
        for key in defaults.keys().map(String::as_str).chain(GatewayConfig::OPTIONAL_KEYS.iter().copied()) {
            assert!(text.lines().any(|l| l.trim_start_matches(['#', ' ', '[']).starts_with(key)), "{key} missing");
        }
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let err = load("listen = \"127.0.0.1:1\"\nnode_timeout_ms = \"soon\"\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let line = err.to_string();
        assert!(line.starts_with("/etc/huren/gateway.toml: line 2: ") && !line.contains('\n'), "{line}");
    }
}
