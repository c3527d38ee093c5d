//! `huren gateway` / `huren node` configuration through the real binary: the printed
//! defaults, `HUREN_GATEWAY_<KEY>` / `HUREN_NODE_<KEY>` overrides, and exit code 64 with one
//! line for a bad configuration.

use std::path::Path;
use std::process::{Command, Output};

const HUREN: &str = env!("CARGO_BIN_EXE_huren");

/// Runs `huren` with none of the test process's `HUREN_*` variables, only `env`.
fn huren(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(HUREN);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HUREN_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().expect("huren runs")
}

/// Asserts exit code 64 and returns the single line on stderr.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = huren(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "huren {args:?} with {env:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr.trim_end().to_owned()
}

fn printed_default(role: &str) -> String {
    let out = huren(&[role, "--print-default-config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn print_default_config_prints_toml_that_parses_back() {
    let text = printed_default("gateway");
    let parsed: huren_gateway::GatewayConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(toml::to_string(&parsed).unwrap(), toml::to_string(&huren_gateway::GatewayConfig::default()).unwrap());
    let text = printed_default("node");
    let parsed: huren_node::NodeConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(toml::to_string(&parsed).unwrap(), toml::to_string(&huren_node::NodeConfig::default()).unwrap());
}

/// The printed defaults get through the binary's own loader (unknown keys refused,
/// validation, relative paths from the file's folder): the first failure is the
/// missing certificate — unless an override says otherwise.
#[test]
fn printed_defaults_load_and_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let gateway = write(dir.path(), "gateway.toml", &printed_default("gateway"));
    let line = config_error(&["gateway", "--config", &gateway], &[]);
    assert!(line.starts_with(&format!("huren: cannot read {d}/gateway.pem")), "{line}");

    // As deploy/compose/docker-compose.yml sets the gateway certificate, plus the variables
    // Kubernetes injects for the huren-gateway Service (no settings, not typos).
    let cert = format!("{d}/issued/gateway-national-2/cert.pem");
    let env = [
        ("HUREN_GATEWAY_CERT", cert.as_str()),
        ("HUREN_GATEWAY_SERVICE_HOST", "10.96.0.10"),
        ("HUREN_GATEWAY_SERVICE_PORT_GRPC", "8443"),
        ("HUREN_GATEWAY_PORT_8443_TCP_ADDR", "10.96.0.10"),
    ];
    let line = config_error(&["gateway", "--config", &gateway], &env);
    assert!(line.starts_with(&format!("huren: cannot read {cert}")), "{line}");

    let line = config_error(&["gateway", "--config", &gateway], &[("HUREN_GATEWAY_LISTEN", "nowhere:8443")]);
    assert_eq!(line, "huren: invalid gateway config: listen \"nowhere:8443\" is not an ip:port address");

    // The node's defaults name no province: the file alone is refused, the environment completes it.
    let node = write(dir.path(), "node.toml", &printed_default("node"));
    let line = config_error(&["node", "--config", &node], &[]);
    assert!(line.starts_with("huren: invalid node config: province: "), "{line}");
    for province in ["340000", "\"340000\""] {
        let line = config_error(&["node", "--config", &node], &[("HUREN_NODE_PROVINCE", province)]);
        assert!(line.starts_with(&format!("huren: cannot read {d}/node.pem")), "{province}: {line}");
    }
    let env = [("HUREN_NODE_PROVINCE", "340000"), ("HUREN_NODE_ADMIN_LISTEN", "nowhere")];
    let line = config_error(&["node", "--config", &node], &env);
    assert_eq!(line, "huren: invalid node config: admin_listen \"nowhere\" is not an ip:port address");
}

#[test]
fn bad_environment_values_exit_64_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = write(dir.path(), "gateway.toml", "listen = \"127.0.0.1:8443\"\n");
    let line = config_error(&["gateway", "--config", &gateway], &[("HUREN_GATEWAY_NODE_TIMEOUT_MS", "soon")]);
    assert_eq!(line, "huren: invalid gateway config: HUREN_GATEWAY_NODE_TIMEOUT_MS: expected an integer, got \"soon\"");
    let line = config_error(&["gateway", "--config", &gateway], &[("HUREN_GATEWAY_CACHE", "yes")]);
    assert_eq!(line, "huren: invalid gateway config: HUREN_GATEWAY_CACHE: expected true or false, got \"yes\"");
    let env = [("HUREN_GATEWAY_REDIS_ULR", "redis://:hunter2@redis:6379/")];
    let line = config_error(&["gateway", "--config", &gateway], &env);
    assert!(line.starts_with("huren: invalid gateway config: HUREN_GATEWAY_REDIS_ULR: not a setting"), "{line}");
    assert!(!line.contains("hunter2"), "a value that may be a secret is never echoed: {line}");

    let node = write(dir.path(), "node.toml", "province = \"340000\"\n");
    let line = config_error(&["node", "--config", &node], &[("HUREN_NODE_TOKEN_LIFETIME_SECONDS", "5m")]);
    assert_eq!(line, "huren: invalid node config: HUREN_NODE_TOKEN_LIFETIME_SECONDS: expected an integer, got \"5m\"");
    let line = config_error(&["node", "--config", &node], &[("HUREN_NODE_ATTESTATION_TTL_SECONDS", "-1x")]);
    assert!(line.starts_with("huren: invalid node config: HUREN_NODE_ATTESTATION_TTL_SECONDS: expected an integer"));
    let line = config_error(&["node", "--config", &node], &[("HUREN_NODE_LISTNE", "0.0.0.0:7443")]);
    assert!(line.starts_with("huren: invalid node config: HUREN_NODE_LISTNE: not a setting"), "{line}");
}

/// Every key is printed: those with a default with their value, the optional ones
/// commented out under their meaning; uncommented, they still parse as top-level keys.
#[test]
fn print_default_config_prints_every_key_the_optional_ones_commented_with_their_meaning() {
    use huren_runtime::config::Settings;
    fn check<C: Settings>(role: &str) {
        let text = printed_default(role);
        for key in C::OPTIONAL_KEYS {
            let line = format!("# {key} = ");
            let at = text.find(&line).unwrap_or_else(|| panic!("{role}: optional key {key} not printed:\n{text}"));
            let before = text[..at].trim_end().lines().last().unwrap_or_default();
            assert!(before.starts_with("# ") && before.len() > 20, "{role}: {key} has no meaning above it: {before:?}");
        }
        let uncommented: String = text
            .lines()
            .map(|l| if C::OPTIONAL_KEYS.iter().any(|k| l.starts_with(&format!("# {k} = "))) { &l[2..] } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: C = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{role}: {e}\n{uncommented}"));
        let json = serde_json::to_value(toml::Value::try_from(&parsed).unwrap()).unwrap();
        for key in C::OPTIONAL_KEYS {
            assert!(json.get(*key).is_some(), "{role}: {key} set once uncommented");
        }
    }
    check::<huren_node::NodeConfig>("node");
    check::<huren_gateway::GatewayConfig>("gateway");
}
