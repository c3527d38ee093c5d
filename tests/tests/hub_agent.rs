//! `huren hub serve`, the hub agent for gate scanners: `POST /v1/check` online through
//! the gateways, offline against the followed trust list when none answers, 400 with a
//! reason for malformed input, `/healthz`, `/metrics`, and no token in its logs.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use huren_cli::demo::seed;
use huren_hub_agent::{Agent, AgentConfig};
use huren_pki::ca::Validity;
use huren_pki::qr::{token_to_text, Scanned};
use huren_tests::{demo_subject, http_get, start, Deadline, RED_RULE};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything logged while the test runs (this thread: the test runtime is single-threaded).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `POST path` with a JSON body; the status code and the body.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: scanner\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).deadline("the agent to answer").await.unwrap();
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

async fn check(addr: SocketAddr, scan: &str, purpose: &str) -> (u16, Value) {
    let body = serde_json::json!({ "scan": scan, "purpose": purpose }).to_string();
    let (code, text) = post(addr, "/v1/check", &body).await;
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

#[tokio::test]
async fn the_agent_checks_online_then_offline_refuses_malformed_input_and_never_logs_tokens() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let mut f = start().await;
    let green = seed(&f, &demo_subject("340000"), 600).await.unwrap();
    let red = seed(&f, &demo_subject("370000"), 600).await.unwrap();
    let red_scanned = Scanned::parse(&red.qr).unwrap();
    let red_pair = format!("370000:{}", token_to_text(red_scanned.token()));
    f.register_hub("gate-agent", &["transit.rail", "transit.highway"]).await.unwrap();

    // The agent's configuration, through the loader: a dead replica listed first, so
    // every online check also fails over.
    let dir = tempfile::tempdir().unwrap();
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let issued = f.pki.issue("hub", "gate-agent", Validity::days(1)).unwrap();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ngateway = [\"{dead}\", \"{}\"]\ncert = {:?}\nkey = {:?}\nca = {:?}\ntrust_list_cache = \"cache/trust-list.bin\"\ndefault_purpose = \"transit.rail\"\n",
        f.gateway_addr(),
        issued.cert,
        issued.key,
        f.pki.root_cert_path(),
    );
    std::fs::create_dir_all(dir.path().join("cache")).unwrap();
    let path = dir.path().join("hub-agent.toml");
    std::fs::write(&path, toml).unwrap();
    let config = AgentConfig::load(&path).unwrap();
    let agent = Agent::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.clone().serve(listener, async {
        let _ = stopped.await;
    }));

    // Online: a QR, and a typed province:token.
    let (code, answer) = check(addr, &green.qr, "transit.rail").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["checked"], "online");
    assert_eq!((answer["status"].as_str(), answer["province"].as_str()), (Some("GREEN"), Some("340000")));
    assert_eq!(answer["purpose"], "transit.rail");
    assert!(answer["valid_until"].as_str().is_some_and(|t| t.ends_with('Z')), "{answer}");
    assert!(answer["rule_title"].is_null() && answer.get("offline_because").is_none(), "{answer}");

    let (code, answer) = check(addr, &red_pair, "transit.highway").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!((answer["checked"].as_str(), answer["status"].as_str()), (Some("online"), Some("RED")));
    assert_eq!(answer["rule_id"], RED_RULE);
    assert_eq!(answer["rule_title"], "Close contact of a confirmed case");
    assert_eq!(answer["purpose"], "transit.highway");

    // The purpose defaults to the configured one.
    let (code, answer) = post(addr, "/v1/check", &serde_json::json!({ "scan": green.qr }).to_string()).await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"purpose\":\"transit.rail\""), "{answer}");

    // A refusal from the gateway is the answer (not an offline check).
    let unknown = format!("340000:{}", token_to_text(&[7u8; 16]));
    let (code, answer) = check(addr, &unknown, "transit.rail").await;
    assert_eq!(
        (code, answer["error"].as_str(), answer["reason"].as_str()),
        (422, Some("refused"), Some("TOKEN_UNKNOWN"))
    );

    // Malformed input: 400 and a reason.
    for (body, reason) in [
        ("{\"scan\": ", "INVALID_JSON"),
        ("{\"qr\": \"HRN1:AAAA\"}", "INVALID_JSON"),
        ("{\"scan\": \"not a scan\"}", "INVALID_SCAN"),
        ("{\"scan\": \"HRN1:!!!\"}", "INVALID_SCAN"),
        ("{\"scan\": \"340000:AAAA\"}", "INVALID_SCAN"),
        ("{\"scan\": \"x\", \"purpose\": \"Transit Rail\"}", "INVALID_PURPOSE"),
    ] {
        let (code, text) = post(addr, "/v1/check", body).await;
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{body}: not JSON ({e}): {text}"));
        assert_eq!((code, answer["error"].as_str()), (400, Some("bad_request")), "{body}: {text}");
        assert_eq!(answer["reason"], reason, "{body}: {text}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    }

    // An oversized body is refused before it is read.
    let (code, _) = post(addr, "/v1/check", &format!("{{\"scan\": \"{}\"}}", "A".repeat(9000))).await;
    assert_eq!(code, 413);

    // Health and metrics.
    let health = http_get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let sequence = f.gateway_trust().unwrap().current().sequence();
    assert!(health.contains(&format!("\"trust_list_sequence\":{sequence}")), "{health}");
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("huren_hub_agent_checks_total{checked=\"online\",outcome=\"verified\"} 3"), "{metrics}");
    assert!(metrics.contains("huren_hub_agent_checks_total{checked=\"none\",outcome=\"bad_request\"} 6"), "{metrics}");
    assert!(metrics.contains(&format!("huren_hub_agent_trust_list_sequence {sequence}")), "{metrics}");

    // Every gateway down: a QR is checked offline against the followed list, and the
    // answer says so and why; a typed token cannot be.
    f.stop_gateway().await.unwrap();
    let (code, answer) = check(addr, &red.qr, "transit.highway").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!((answer["checked"].as_str(), answer["status"].as_str()), (Some("offline"), Some("RED")));
    assert_eq!(answer["rule_title"], "Close contact of a confirmed case");
    assert!(answer["offline_because"].as_str().is_some_and(|w| w.contains("no gateway")), "{answer}");
    let (code, answer) = check(addr, &green.qr, "transit.rail").await;
    assert_eq!((code, answer["checked"].as_str(), answer["status"].as_str()), (200, Some("offline"), Some("GREEN")));
    let (code, answer) = check(addr, &red_pair, "transit.rail").await;
    assert_eq!((code, answer["error"].as_str()), (503, Some("unavailable")), "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("scan the QR")), "{answer}");
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("huren_hub_agent_checks_total{checked=\"offline\",outcome=\"verified\"} 2"), "{metrics}");

    // The logs: one line per check with its outcome, and no token in any form.
    let _ = stop.send(());
    let text = logs.text();
    assert!(text.contains("outcome=\"verified\"") || text.contains("outcome=verified"), "no check was logged: {text}");
    assert!(text.contains("checked=\"offline\"") || text.contains("checked=offline"), "{text}");
    for (what, secret) in [
        ("green QR", green.qr.clone()),
        ("red QR", red.qr.clone()),
        ("red token", token_to_text(red_scanned.token())),
        ("unknown token", token_to_text(&[7u8; 16])),
        ("green token", token_to_text(Scanned::parse(&green.qr).unwrap().token())),
    ] {
        assert!(!text.to_ascii_uppercase().contains(&secret.to_ascii_uppercase()), "the logs carry the {what}");
    }
}

#[tokio::test]
async fn without_a_cache_and_with_no_gateway_up_the_agent_does_not_start() {
    let f = start().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let issued = f.pki.issue("hub", "cold-start", Validity::days(1)).unwrap();
    let config = AgentConfig {
        gateway: Some(huren_runtime::gateways::GatewayList::parse(&dead.to_string())),
        cert: issued.cert.clone(),
        key: issued.key.clone(),
        ca: f.pki.root_cert_path(),
        trust_list_cache: dir.path().join("trust-list.bin"),
        ..AgentConfig::default()
    };
    let err = Agent::start(config).await.unwrap_err();
    assert!(err.to_string().starts_with("no trust list: "), "{err}");

    // A non-hub identity is refused.
    let gateway = f.pki.issue("gateway", "not-a-hub", Validity::days(1)).unwrap();
    let config = AgentConfig {
        gateway: Some(huren_runtime::gateways::GatewayList::parse(&f.gateway_addr().to_string())),
        cert: gateway.cert.clone(),
        key: gateway.key.clone(),
        ca: f.pki.root_cert_path(),
        trust_list_cache: dir.path().join("trust-list.bin"),
        ..AgentConfig::default()
    };
    let err = Agent::start(config).await.unwrap_err();
    assert!(err.to_string().contains("is not a hub identity"), "{err}");
}
