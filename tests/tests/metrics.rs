//! Metrics as Prometheus reads them and logs as collectors read them, from a live
//! federation on loopback: the gateway's and a node's `/metrics` pass `promtool check
//! metrics`, durations are histograms in seconds, every counter exists at 0 before its
//! first event, a lookup for a made-up province creates no label value, node counters
//! move with publishes and attestations; JSON log lines parse and carry no token.
//!
//! promtool comes with Debian's `prometheus` package. Without it the promtool checks are
//! skipped with a notice, unless `CI` is set: then its absence fails the test.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::FederationOptions;
use huren_cli::telemetry::{LogFormat, PrometheusMetrics};
use huren_gateway::metrics::SECONDS_BUCKETS;
use huren_gateway::{Gateway, GatewaySettings};
use huren_pki::qr::{self, Scanned};
use huren_proto::pb;
use huren_runtime::live::LiveTrust;
use huren_tests::{code, http_get, serve_admin, start_with, Deadline};
use tonic::Code;

/// `promtool`, if installed; panics without it when `CI` is set.
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("promtool")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (CI is set): install Debian's prometheus package (apt-get install -y prometheus)"
        );
        eprintln!("NOTICE: promtool not found; skipping `promtool check metrics` (apt-get install -y prometheus)");
    }
    found
}

/// Runs `promtool check metrics` on a scrape; panics with its complaints.
fn promtool_check(what: &str, body: &str) {
    let Some(promtool) = promtool() else { return };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("scrape written to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what} scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The body of `GET /metrics` at `admin`.
async fn scrape(admin: std::net::SocketAddr) -> String {
    let response = http_get(admin, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// One sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Every sample line of a scrape.
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            let labels = rest
                .trim_end_matches('}')
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The value of the one series `name` whose labels include `labels`.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(body)
        .into_iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, v)| v)
        .collect();
    assert!(matching.len() <= 1, "{name}{labels:?} names {} series", matching.len());
    matching.first().copied()
}

/// Every value label `label` takes in the series of `name`.
fn label_values(body: &str, name: &str, label: &str) -> BTreeSet<String> {
    samples(body)
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .flat_map(|(_, l, _)| l.into_iter().filter(|(k, _)| k == label).map(|(_, v)| v))
        .collect()
}

/// Scrapes `admin` until `ready` holds of the body, within the tests' deadline.
async fn scrape_until(admin: std::net::SocketAddr, what: &str, ready: impl Fn(&str) -> bool) -> String {
    async {
        loop {
            let body = scrape(admin).await;
            if ready(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .deadline(what)
    .await
}

#[tokio::test]
async fn a_live_scrape_passes_promtool_is_bounded_and_primed_and_node_counters_move() {
    let (gateway_metrics, node_metrics) = (PrometheusMetrics::new().unwrap(), PrometheusMetrics::new().unwrap());
    let mut options = FederationOptions::default();
    options.gateway.meter = Some(gateway_metrics.meter("huren-gateway"));
    options.gateway.cache = true;
    options.node.meter = Some(node_metrics.meter("huren-node"));
    let (f, _dir) = start_with(options).await;
    let ready: huren_cli::admin::Readiness = Arc::new(|| (true, "ok".into()));
    let (gateway_admin, _stop_gateway) = serve_admin(&gateway_metrics, ready.clone()).await;
    let (node_admin, _stop_node) = serve_admin(&node_metrics, ready).await;

    // Before any lookup, publish or attestation: the counters are there, at 0.
    let gateway = scrape(gateway_admin).await;
    for (name, labels) in [
        ("huren_gateway_lookups_total", vec![("from", "unknown"), ("province", "340000"), ("outcome", "ok")]),
        ("huren_gateway_lookups_total", vec![("from", "unknown"), ("province", "unknown"), ("outcome", "not_found")]),
        ("huren_gateway_policy_violations_total", vec![("province", "370000"), ("reason", "bad_signature")]),
        ("huren_gateway_cache_lookups_total", vec![("result", "hit")]),
        ("huren_gateway_node_retries_total", vec![("province", "440000")]),
        ("huren_gateway_breaker_transitions_total", vec![("province", "440000"), ("to", "open")]),
    ] {
        assert_eq!(value(&gateway, name, &labels), Some(0.0), "{name}{labels:?} at 0 before any event:\n{gateway}");
    }
    let anhui = [("province", "340000")];
    let node = scrape_until(node_admin, "the nodes' counters to be registered", |body| {
        value(body, "huren_node_attestations_total", &[anhui[0], ("outcome", "ok")]).is_some()
    })
    .await;
    for (name, labels) in [
        ("huren_node_attestations_total", vec![anhui[0], ("outcome", "ok")]),
        ("huren_node_attestations_total", vec![anhui[0], ("outcome", "token_unknown")]),
        ("huren_node_status_changes_total", vec![anhui[0], ("status", "red"), ("outcome", "ok")]),
        ("huren_node_status_changes_total", vec![anhui[0], ("status", "green"), ("outcome", "lift_not_allowed")]),
        ("huren_node_tokens_issued_total", vec![anhui[0], ("outcome", "ok")]),
    ] {
        assert_eq!(value(&node, name, &labels), Some(0.0), "{name}{labels:?} at 0 before any event:\n{node}");
    }
    for body in [&gateway, &node] {
        assert_eq!(value(body, "huren_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
        assert!(value(body, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0), "{body}");
        assert!(value(body, "process_start_time_seconds", &[]).is_some(), "{body}");
    }
    promtool_check("gateway (before any event)", &gateway);
    promtool_check("node (before any event)", &node);

    // Publishes and tokens at every node, then lookups: known, unknown, made-up provinces.
    let mut issued = Vec::new();
    for subject in demo_subjects() {
        issued.push(seed(&f, &subject, 600).await.unwrap());
    }
    let mut hub = f.hub("metered").deadline("hub metered registered on every server").await.unwrap();
    let mut tokens = Vec::new();
    for i in &issued {
        let scanned = Scanned::parse(&i.qr).unwrap();
        hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
        tokens.push(qr::token_to_text(scanned.token()));
    }
    let err = hub.lookup(&code("340000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    for province in ["990000", "123456", "abc"] {
        let request = pb::LookupRequest {
            province: province.into(),
            token: qr::new_token().unwrap().to_vec(),
            purpose: "transit.rail".into(),
        };
        let status = hub.lookup_raw(request).await.unwrap_err();
        assert!(matches!(status.code(), Code::NotFound | Code::InvalidArgument), "{status}");
    }

    let gateway = scrape(gateway_admin).await;
    for made_up in ["990000", "123456", "abc", "invalid"] {
        assert!(!gateway.contains(&format!("\"{made_up}\"")), "{made_up} became a label value:\n{gateway}");
    }
    let provinces = label_values(&gateway, "huren_gateway_lookups_total", "province");
    let expected: BTreeSet<String> = ["340000", "370000", "440000", "unknown"].map(String::from).into();
    assert_eq!(provinces, expected, "province labels: the trust list's provinces and `unknown` only");
    assert_eq!(label_values(&gateway, "huren_gateway_lookup_duration_seconds_bucket", "province"), expected);
    assert!(
        value(&gateway, "huren_gateway_lookups_total", &[("province", "unknown"), ("outcome", "not_found")])
            >= Some(2.0),
        "{gateway}"
    );
    // Durations in seconds, with buckets from 0.5 ms to 10 s.
    let bucket_labels = [("province", "340000"), ("outcome", "ok")];
    let buckets: Vec<(f64, f64)> = samples(&gateway)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "huren_gateway_lookup_duration_seconds_bucket"
                && bucket_labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, l, count)| {
            let le = l.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone()).expect("le label");
            (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") }, count)
        })
        .collect();
    let mut bounds: Vec<f64> = SECONDS_BUCKETS.to_vec();
    bounds.push(f64::INFINITY);
    assert_eq!(buckets.iter().map(|(le, _)| *le).collect::<Vec<_>>(), bounds, "{gateway}");
    assert_eq!(buckets.last().map(|(_, n)| *n), Some(1.0), "one ok lookup at Anhui");
    let sum = value(&gateway, "huren_gateway_lookup_duration_seconds_sum", &bucket_labels).unwrap();
    assert!(sum > 0.0 && sum < 10.0, "a loopback lookup takes seconds, not milliseconds as units: {sum}");
    promtool_check("gateway (after lookups)", &gateway);

    // The nodes counted what they did: publishes, tokens, attestations, and the store.
    let node = scrape_until(node_admin, "the node's store gauges to show the publishes", |body| {
        value(body, "huren_node_log_size", &anhui).is_some_and(|n| n >= 1.0)
    })
    .await;
    let ok = ("outcome", "ok");
    for province in ["340000", "370000", "440000"] {
        let p = ("province", province);
        let changes: f64 = ["green", "yellow", "red"]
            .iter()
            .filter_map(|s| value(&node, "huren_node_status_changes_total", &[p, ("status", s), ok]))
            .sum();
        assert!(changes >= 1.0, "{province}: status changes counted\n{node}");
        assert!(value(&node, "huren_node_tokens_issued_total", &[p, ok]) >= Some(1.0), "{node}");
        assert!(value(&node, "huren_node_attestations_total", &[p, ok]) >= Some(1.0), "{node}");
        assert!(value(&node, "huren_node_attestation_duration_seconds_count", &[p, ok]) >= Some(1.0), "{node}");
        assert!(value(&node, "huren_node_store_records", &[p, ("kind", "status")]).is_some(), "{node}");
    }
    assert_eq!(value(&node, "huren_node_attestations_total", &[anhui[0], ("outcome", "token_unknown")]), Some(1.0));
    assert!(
        value(&node, "huren_node_attestation_duration_seconds_bucket", &[anhui[0], ok, ("le", "0.0005")]).is_some(),
        "node durations have the seconds buckets too"
    );
    promtool_check("node (after publishes and attestations)", &node);
    for token in &tokens {
        assert!(!gateway.contains(token) && !node.contains(token), "a token reached the metrics");
    }
    for subject in demo_subjects() {
        assert!(!node.contains(subject.subject_ref), "a subject reference reached the metrics");
    }
}

/// A `MakeWriter` collecting log lines in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log lines are UTF-8")
    }

    /// Waits until a line's message contains `message`.
    async fn until(&self, message: &str) {
        async {
            while !self.text().lines().any(|l| l.contains(message)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        .deadline(&format!("a log line saying {message:?}"))
        .await
    }
}

#[tokio::test]
async fn json_log_lines_parse_name_lifecycle_events_and_carry_no_token() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(huren_cli::telemetry::SERVER_LOG_FILTER))
        .with(huren_cli::telemetry::log_layer(LogFormat::Json, false, move || writer.clone()));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let mut hub = f.hub("logged").deadline("hub logged registered on every server").await.unwrap();
    lines.until("trust list updated").await;
    let mut tokens = Vec::new();
    for subject in demo_subjects() {
        let issued = seed(&f, &subject, 600).await.unwrap();
        let scanned = Scanned::parse(&issued.qr).unwrap();
        hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
        tokens.push(qr::token_to_text(scanned.token()));
    }
    let unknown = qr::new_token().unwrap();
    tokens.push(qr::token_to_text(&unknown));
    hub.lookup(&code("340000"), &unknown, "transit.rail").await.unwrap_err();
    // Guangdong goes down: its breaker opens after five failures.
    f.stop_node(&code("440000")).deadline("Guangdong's node to stop").await.unwrap();
    for _ in 0..5 {
        hub.lookup(&code("440000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
    }
    lines.until("circuit breaker opened").await;
    // A gateway whose Redis is down from the start says so.
    let tls = f.identity("gateway", "no-redis").unwrap();
    let trust = LiveTrust::new(f.gateway_trust().unwrap().current().as_ref().clone(), tls.root.to_vec(), None).unwrap();
    let settings = GatewaySettings { redis_url: Some("redis://127.0.0.1:1/".into()), ..GatewaySettings::default() };
    let lonely = Gateway::new(tls, trust, settings).unwrap();
    let (_addr, _stop) = huren_tests::serve_gateway(&lonely).await;
    lines.until("redis down at start").await;

    let text = lines.text();
    let mut messages = Vec::new();
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{line}");
        messages.push(event["fields"]["message"].as_str().unwrap_or_default().to_owned());
        assert!(!line.contains('\u{1b}'), "an ANSI escape in a JSON line: {line}");
    }
    for expected in ["trust list updated", "circuit breaker opened", "redis down at start", "attestation key in use"] {
        assert!(messages.iter().any(|m| m.contains(expected)), "no {expected:?} among {messages:#?}");
    }
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token reached the logs");
    }
    for subject in demo_subjects() {
        for secret in [subject.subject_ref, subject.name, subject.id_number, subject.phone] {
            assert!(!text.contains(secret), "personal data reached the logs");
        }
    }
}
