//! `hub-agent.toml`: what a hub configures for its agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use huren_runtime::config::{self, ConfigError, Settings};
use huren_runtime::gateways::GatewayList;
use serde::{Deserialize, Serialize};

/// Agent configuration. Relative paths are resolved against the config file's folder;
/// every key can be overridden by `HUREN_HUB_AGENT_<KEY>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Local address of the HTTP API, `ip:port`: loopback or the interface the scanners'
    /// network reaches. The API has no authentication of its own, so a wildcard address
    /// (`0.0.0.0`, `[::]`) is refused.
    pub listen: String,
    /// Gateways: `"host:port"`, several replicas as `"gw1:8443,gw2:8443"` or an array.
    /// Lookups fail over between them; the trust list is followed from all of them.
    pub gateway: Option<GatewayList>,
    /// The hub's certificate chain (`spiffe://<td>/hub/<id>`), PEM.
    pub cert: PathBuf,
    /// The hub's TLS private key, PEM.
    pub key: PathBuf,
    /// National root certificate, PEM: every trust list and attestation is verified
    /// against it.
    pub ca: PathBuf,
    /// SPIFFE trust domain of the federation.
    pub trust_domain: String,
    /// The trust list cache: the agent starts from it (so it checks offline from the
    /// first second, even with every gateway down) and keeps the newest list in it.
    pub trust_list_cache: PathBuf,
    /// Purpose of a check whose request names none, e.g. `transit.rail`.
    pub default_purpose: String,
    /// How long an online check may wait for the gateways before it is done offline, ms.
    pub online_timeout_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8480".into(),
            gateway: None,
            cert: PathBuf::from("hub.pem"),
            key: PathBuf::from("hub.key"),
            ca: PathBuf::from("root.pem"),
            trust_domain: huren_pki::DEFAULT_TRUST_DOMAIN.into(),
            trust_list_cache: PathBuf::from("trust-list.bin"),
            default_purpose: huren_client::DEFAULT_PURPOSE.into(),
            online_timeout_ms: 1500,
        }
    }
}

impl AgentConfig {
    /// Reads a config file, applies the `HUREN_HUB_AGENT_<KEY>` overrides from the process
    /// environment, resolves relative paths and validates.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        config::load(path)
    }

    /// The gateways to use.
    pub fn gateways(&self) -> &[String] {
        self.gateway.as_ref().map(GatewayList::endpoints).unwrap_or_default()
    }

    /// The online deadline.
    pub fn online_timeout(&self) -> Duration {
        Duration::from_millis(self.online_timeout_ms)
    }

    /// The address of the HTTP API.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr =
            self.listen.parse().map_err(|_| invalid(format!("listen {:?} is not an ip:port address", self.listen)))?;
        if addr.ip().is_unspecified() {
            return Err(invalid(format!(
                "listen {:?} is a wildcard address; name the interface the scanners reach (the API has no authentication)",
                self.listen
            )));
        }
        Ok(addr)
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::invalid::<AgentConfig>(message)
}

impl Settings for AgentConfig {
    const ROLE: &'static str = "hub-agent";
    const ENV_PREFIX: &'static str = "HUREN_HUB_AGENT_";
    const OPTIONAL_KEYS: &'static [&'static str] = &["gateway"];

    fn paths(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.cert, &mut self.key, &mut self.ca, &mut self.trust_list_cache]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        match &self.gateway {
            Some(list) if !list.is_empty() => list.validate().map_err(|e| invalid(format!("gateway: {e}")))?,
            _ => return Err(invalid("gateway: name at least one gateway (host:port)")),
        }
        if !(50..=60_000).contains(&self.online_timeout_ms) {
            return Err(invalid("online_timeout_ms must be within 50..=60000"));
        }
        crate::check::valid_purpose(&self.default_purpose).map_err(|e| invalid(format!("default_purpose: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        config::from_sources(Path::new("/etc/huren/hub-agent.toml"), text, vars)
    }

    #[test]
    fn every_key_has_an_environment_override() {
        let full = AgentConfig {
            listen: "10.8.0.2:9480".into(),
            gateway: Some(GatewayList::parse("gw1.example:8443,gw2.example:8443")),
            cert: "/c/hub.pem".into(),
            key: "/c/hub.key".into(),
            ca: "/c/root.pem".into(),
            trust_domain: "example.test".into(),
            trust_list_cache: "/var/lib/agent/trust-list.bin".into(),
            default_purpose: "transit.rail".into(),
            online_timeout_ms: 800,
        };
        config::check_every_key_overridable(full, "gateway = \"gw.example:8443\"\n").unwrap();
    }

    #[test]
    fn wildcard_addresses_a_missing_gateway_and_bad_values_are_refused() {
        let base = "gateway = [\"gw1:8443\", \"gw2:8443\"]\n";
        let c = load(base, &[]).unwrap();
        assert_eq!(c.gateways(), ["gw1:8443", "gw2:8443"]);
        assert_eq!(c.cert, Path::new("/etc/huren/hub.pem"));
        let err = load(base, &[("HUREN_HUB_AGENT_LISTEN", "0.0.0.0:8480")]).unwrap_err();
        assert!(err.to_string().contains("wildcard"), "{err}");
        let err = load("", &[]).unwrap_err();
        assert!(err.to_string().contains("gateway: name at least one gateway"), "{err}");
        let err = load(base, &[("HUREN_HUB_AGENT_ONLINE_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("online_timeout_ms"), "{err}");
        let err = load(base, &[("HUREN_HUB_AGENT_DEFAULT_PURPOSE", "Transit Rail")]).unwrap_err();
        assert!(err.to_string().contains("default_purpose"), "{err}");
    }
}
