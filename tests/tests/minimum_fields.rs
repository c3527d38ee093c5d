//! Minimum fields cross the border: strict policy, purpose binding, tokens, capture scan.

use std::sync::Arc;

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::FederationOptions;
use huren_cli::telemetry::PrometheusMetrics;
use huren_gateway::{FileCapture, MissPolicy};
use huren_pki::attest::AttestationKey;
use huren_pki::policy::{present_fields, FieldPolicy, DEFAULT_PURPOSES};
use huren_pki::qr::{self, Scanned};
use huren_pki::unix_now;
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_tests::{
    code, demo_subject, replace_node_with_fake, signing_script, start_with, token_request, Deadline, RED_RULE,
};
use prost::Message;
use tonic::Code;

fn green(req: &pb::AttestRequest) -> pb::AttestationPayload {
    huren_tests::green_payload(req, "370000")
}

type Forge = fn(&pb::AttestRequest, &AttestationKey) -> pb::SignedAttestation;

/// Each violation class: name, counter reason, forged answer, text the hub's error holds.
fn violation_cases() -> Vec<(&'static str, &'static str, Forge, &'static str)> {
    vec![
        (
            "unknown protobuf field",
            "unknown_field",
            |r, k| {
                let mut bytes = green(r).encode_to_vec();
                bytes.extend_from_slice(&[(15 << 3) as u8, 1]); // field 15 = 1: e.g. a smuggled flag
                k.sign_bytes(bytes)
            },
            "unknown protobuf field number 15",
        ),
        (
            "smuggled personal data in an unknown field",
            "unknown_field",
            |r, k| {
                let mut bytes = green(r).encode_to_vec();
                let id = "370102199107224321".as_bytes();
                bytes.extend_from_slice(&[(12 << 3 | 2) as u8, id.len() as u8]);
                bytes.extend_from_slice(id);
                k.sign_bytes(bytes)
            },
            "unknown protobuf field number 12",
        ),
        (
            "repeated field",
            "duplicate_field",
            |r, k| {
                let mut bytes = green(r).encode_to_vec();
                bytes.extend_from_slice(&[(3 << 3) as u8, pb::HealthStatus::Red as u8]);
                k.sign_bytes(bytes)
            },
            "repeats protobuf field number 3",
        ),
        (
            "oversized payload",
            "oversized",
            |r, k| {
                let mut p = green(r);
                p.status = pb::HealthStatus::Red as i32;
                p.rule_id = "R".repeat(400);
                k.sign(&p)
            },
            "exceeds the 256-byte limit",
        ),
        (
            "field outside the purpose's policy",
            "field_not_allowed",
            |r, k| {
                let mut p = green(r);
                p.test_recency = pb::TestRecency::Within24h as i32;
                k.sign(&p)
            },
            "field test_recency is not allowed for purpose \"venue.entry\"",
        ),
        (
            "non-green status without a rule",
            "missing_rule",
            |r, k| {
                let mut p = green(r);
                p.status = pb::HealthStatus::Yellow as i32;
                k.sign(&p)
            },
            "non-green attestation cites no rule",
        ),
        (
            "non-green status citing an unregistered rule",
            "unregistered_rule",
            |r, k| {
                let mut p = green(r);
                p.status = pb::HealthStatus::Red as i32;
                p.rule_id = "BANK-DEPOSITORS-2022".into();
                k.sign(&p)
            },
            "not in the rule registry",
        ),
    ]
}

#[tokio::test]
async fn every_violation_class_is_refused_counted_and_not_passed_on() {
    let cases = violation_cases();
    let metrics = PrometheusMetrics::new().unwrap();
    let mut options = FederationOptions::default();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    let (mut f, _dir) = start_with(options).await;
    let shandong = code("370000");
    let key = Arc::new(f.attestation_key(&shandong).unwrap());
    let which = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let forges: Arc<Vec<Forge>> = Arc::new(cases.iter().map(|c| c.2).collect());
    let (w, fs) = (which.clone(), forges.clone());
    let _fake = replace_node_with_fake(
        &mut f,
        &shandong,
        signing_script(move |req| fs[w.load(std::sync::atomic::Ordering::SeqCst)](req, &key)),
    )
    .await;
    let mut hub = f.hub("inspector").await.unwrap();
    for (i, (name, reason, _, text)) in cases.iter().enumerate() {
        which.store(i, std::sync::atomic::Ordering::SeqCst);
        let before =
            metrics.value("huren_gateway_policy_violations_total", &[("province", "370000"), ("reason", reason)]);
        let token = qr::new_token().unwrap().to_vec();
        let err = hub
            .lookup_raw(pb::LookupRequest { province: "370000".into(), token, purpose: "venue.entry".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}: {}", err.message());
        assert!(err.message().starts_with("attestation from province 370000 refused"), "{name}: {}", err.message());
        assert!(err.message().contains(text), "{name}: {:?} lacks {text:?}", err.message());
        let after =
            metrics.value("huren_gateway_policy_violations_total", &[("province", "370000"), ("reason", reason)]);
        assert_eq!(after - before, 1.0, "{name}: violation counter");
    }
    assert!(metrics.render().contains("huren_gateway_lookups_total"));
}

#[tokio::test]
async fn each_purpose_gets_exactly_its_field_set() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let driver = demo_subject("340000");
    assert_ne!(driver.test_recency, pb::TestRecency::Unspecified);
    let issued = seed(&f, &driver, 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("all-purposes").await.unwrap();
    let policy = FieldPolicy::default();
    for purpose in DEFAULT_PURPOSES {
        let response = hub
            .lookup_raw(pb::LookupRequest {
                province: "340000".into(),
                token: scanned.token().to_vec(),
                purpose: purpose.into(),
            })
            .await
            .unwrap();
        let payload = pb::AttestationPayload::decode(response.attestation.unwrap().payload.as_slice()).unwrap();
        let mut expected: Vec<&str> =
            policy.allowed(purpose).unwrap().iter().copied().filter(|f| *f != "rule_id").collect();
        expected.sort();
        let mut got = present_fields(&payload);
        got.sort();
        assert_eq!(got, expected, "fields for {purpose}");
    }
}

#[tokio::test]
async fn purposes_are_bound_to_hub_registrations() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let issued = seed(&f, &demo_subjects()[0], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut rail = f.hub_for("rail-only", &["transit.rail"]).await.unwrap();
    rail.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    let err = rail.lookup(scanned.province(), scanned.token(), "transit.air").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert!(err.to_string().contains("hub rail-only is not registered for purpose transit.air"), "{err}");
    // A hub with a valid certificate but no registration may not look anything up.
    let unregistered = f.identity("hub", "unregistered").unwrap();
    let mut client = huren_cli::hub::HubClient::connect(&f.gateway_addr().to_string(), &unregistered).unwrap();
    let err = client.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert!(err.to_string().contains("hub unregistered is not registered in the trust list"), "{err}");
}

#[tokio::test]
async fn tokens_rotate_and_expire_on_the_node_clock() {
    let (clock, hand) = Clock::manual(unix_now());
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    let (f, _dir) = start_with(options).await;
    let subject = demo_subjects()[0].clone();
    let first = seed(&f, &subject, 300).await.unwrap();
    let second = seed(&f, &subject, 300).await.unwrap();
    assert_ne!(first.token, second.token, "each issue rotates to a fresh token");
    assert_eq!(first.token.len(), 16, "128-bit tokens");
    let mut hub = f.hub("clocked").await.unwrap();
    for t in [&first, &second] {
        hub.lookup(&code("340000"), &t.token, "transit.rail").await.unwrap();
    }
    hand.advance(301);
    for t in [&first, &second] {
        let err = hub.lookup(&code("340000"), &t.token, "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    }
    // A QR whose token expired no longer verifies offline either.
    let trust = f.gateway_trust().unwrap().current();
    let err = huren_cli::hub::verify_offline(&trust, &first.qr, hand.now()).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn a_hub_producing_many_misses_is_throttled_and_reported() {
    let metrics = PrometheusMetrics::new().unwrap();
    let mut options = FederationOptions::default();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    options.gateway.miss_policy = MissPolicy { burst: 5.0, refill_per_sec: 0.001 };
    let (f, _dir) = start_with(options).await;
    let issued = seed(&f, &demo_subjects()[0], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut scanner = f.hub("scanner").await.unwrap();
    let mut honest = f.hub("honest").await.unwrap();
    for _ in 0..5 {
        let guess = qr::new_token().unwrap();
        let err = scanner.lookup(&code("340000"), &guess, "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::NotFound));
    }
    // The bucket is empty: even a valid token is refused for this hub...
    let err = scanner.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("hub scanner is throttled"), "{err}");
    // ...others are unaffected, and the throttling is reported.
    honest.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert_eq!(metrics.value("huren_gateway_hub_throttled_total", &[("hub", "scanner")]), 1.0);
    assert_eq!(metrics.value("huren_gateway_hub_throttled_total", &[("hub", "honest")]), 0.0);
}

#[tokio::test]
async fn captured_traffic_holds_only_policy_fields_and_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let capture_path = dir.path().join("capture.jsonl");
    let mut options = FederationOptions::default();
    options.gateway.capture = Some(Arc::new(FileCapture::create(&capture_path).unwrap()));
    let (f, _fdir) = start_with(options).await;
    let mut tokens = Vec::new();
    for s in demo_subjects() {
        tokens.push((s.clone(), seed(&f, &s, 600).await.unwrap()));
    }
    let mut hub = f.hub("auditor-hub").await.unwrap();
    for (_, issued) in &tokens {
        let scanned = Scanned::parse(&issued.qr).unwrap();
        for purpose in DEFAULT_PURPOSES {
            hub.lookup(scanned.province(), scanned.token(), purpose).await.unwrap();
        }
    }
    let _ = hub.lookup(&code("340000"), &qr::new_token().unwrap(), "transit.rail").await;

    let policy = f.gateway_trust().unwrap().current().field_policy().clone();
    let text = std::fs::read_to_string(&capture_path).unwrap();
    let mut attestations = 0;
    let mut messages = 0;
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = data_encoding::BASE64.decode(record["message"].as_str().unwrap().as_bytes()).unwrap();
        messages += 1;
        for (s, _) in &tokens {
            for secret in [s.name, s.id_number, s.phone, s.subject_ref] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret:?} crossed the gateway in {line}"
                );
            }
        }
        let signed = match (record["rpc"].as_str().unwrap(), record["direction"].as_str().unwrap()) {
            ("Attest", "node->gateway") => pb::AttestResponse::decode(bytes.as_slice()).unwrap().attestation,
            ("Lookup", "gateway->hub") => pb::LookupResponse::decode(bytes.as_slice()).unwrap().attestation,
            _ => None,
        };
        if let Some(signed) = signed {
            attestations += 1;
            huren_pki::policy::wire_fields(&signed.payload).unwrap();
            let payload = pb::AttestationPayload::decode(signed.payload.as_slice()).unwrap();
            let allowed = policy.allowed(&payload.purpose).unwrap();
            for field in present_fields(&payload) {
                assert!(allowed.contains(field), "{field} crossed for {}", payload.purpose);
            }
        }
    }
    assert_eq!(attestations, 2 * 3 * DEFAULT_PURPOSES.len(), "every answer was captured both ways");
    assert!(messages > attestations);
    let _ = RED_RULE;
}

/// Log lines written by the test's own (thread-local) subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const REDIS: &str = "redis://127.0.0.1:6379/";

/// The keys in the shared Redis matching `pattern`.
async fn redis_keys(pattern: &str) -> Vec<String> {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::AsyncCommands::keys(&mut conn, pattern).await.unwrap()
}

/// With the cache on (in process and in Redis) and the same token asked twice, a violating
/// answer is refused both times and never cached (nothing stored; the node is asked again),
/// while a valid one is cached; each refusal is logged with province and reason and
/// without token or payload content.
#[tokio::test]
async fn violating_attestations_are_never_cached_and_are_logged_without_personal_data() {
    // Current-thread test runtime: the gateway's tasks log through this subscriber.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let cases = violation_cases();
    let prefix = format!("huren-test-nocache-{}-{}:", std::process::id(), unix_now());
    let cached = format!("{prefix}att:*");
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    options.gateway.redis_url = Some(REDIS.into());
    options.gateway.redis_prefix = prefix.clone();
    let (mut f, _dir) = start_with(options).await;
    let shandong = code("370000");
    let key = Arc::new(f.attestation_key(&shandong).unwrap());
    // Case `cases.len()` is the control: a valid GREEN attestation.
    let which = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let forges: Arc<Vec<Forge>> = Arc::new(cases.iter().map(|c| c.2).collect());
    let (w, n, fs) = (which.clone(), calls.clone(), forges.clone());
    let _fake = replace_node_with_fake(
        &mut f,
        &shandong,
        signing_script(move |req| {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match fs.get(w.load(std::sync::atomic::Ordering::SeqCst)) {
                Some(forge) => forge(req, &key),
                None => key.sign(&green(req)),
            }
        }),
    )
    .await;
    let mut hub = f.hub("twice").await.unwrap();
    let calls_now = || calls.load(std::sync::atomic::Ordering::SeqCst);
    for (i, (name, reason, _, text)) in cases.iter().enumerate() {
        which.store(i, std::sync::atomic::Ordering::SeqCst);
        let token = qr::new_token().unwrap().to_vec();
        let before = calls_now();
        for attempt in ["first", "second"] {
            let err = hub
                .lookup_raw(pb::LookupRequest {
                    province: "370000".into(),
                    token: token.clone(),
                    purpose: "venue.entry".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{name}, {attempt} lookup: {}", err.message());
            assert!(err.message().contains(text), "{name}, {attempt} lookup: {}", err.message());
        }
        assert_eq!(calls_now() - before, 2, "{name}: the violating attestation was served from the cache");

        let text = logs.text();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("policy violation: attestation refused")).collect();
        assert!(
            lines.iter().any(|l| l.contains("province=370000") && l.contains(reason)),
            "{name}: no log line in\n{text}"
        );
        let token_texts =
            [qr::token_to_text(&token), data_encoding::HEXLOWER.encode(&token), data_encoding::BASE64.encode(&token)];
        for secret in token_texts.iter().map(String::as_str).chain(["370102199107224321", "BANK-DEPOSITORS", "RRRR"]) {
            assert!(!text.contains(secret), "{name}: {secret:?} reached the log:\n{text}");
        }
    }
    assert_eq!(
        text_count(&logs.text(), "policy violation: attestation refused"),
        2 * cases.len(),
        "one line per refusal"
    );
    assert_eq!(redis_keys(&cached).await, Vec::<String>::new(), "a violating attestation was cached in Redis");

    // The control: a valid attestation is cached, so the node is asked once.
    which.store(cases.len(), std::sync::atomic::Ordering::SeqCst);
    let token = qr::new_token().unwrap().to_vec();
    let before = calls_now();
    for _ in 0..2 {
        hub.lookup_raw(pb::LookupRequest {
            province: "370000".into(),
            token: token.clone(),
            purpose: "venue.entry".into(),
        })
        .await
        .unwrap();
    }
    assert_eq!(calls_now() - before, 1, "a valid attestation is served from the cache the second time");
    assert_eq!(redis_keys(&cached).await.len(), 1, "the valid attestation is cached in Redis");
    // Stop the servers first, so that nothing writes under the prefix after the clean-up.
    drop(_fake);
    f.shutdown().deadline("the federation to shut down").await.unwrap();
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for k in redis_keys(&format!("{prefix}*")).await {
        let _: () = redis::AsyncCommands::del(&mut conn, k).await.unwrap();
    }
}

fn text_count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// A lapsed status ("no current status" at the node) is a clear FAILED_PRECONDITION for
/// the hub, not an unknown-token miss: it never counts toward the anti-enumeration throttle.
#[tokio::test]
async fn a_lapsed_status_is_a_clear_refusal_and_not_a_miss() {
    let metrics = PrometheusMetrics::new().unwrap();
    let (clock, hand) = Clock::manual(unix_now());
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    options.gateway.miss_policy = MissPolicy { burst: 3.0, refill_per_sec: 0.001 };
    let (f, _dir) = start_with(options).await;
    let anhui = code("340000");
    let mut admin = f.admin_client(&anhui).unwrap();
    // GREEN for a minute, a QR for ten: after the minute the status has lapsed.
    admin
        .upsert_status(pb::UpsertStatusRequest {
            valid_until: hand.now() + 60,
            ..huren_tests::change("ah-lapsing-0009", pb::HealthStatus::Green, "", "")
        })
        .await
        .unwrap();
    let issued = admin.issue_token(token_request("ah-lapsing-0009", 600)).await.unwrap().into_inner();
    let mut hub = f.hub("platform-3").await.unwrap();
    hub.lookup(&anhui, &issued.token, "transit.rail").await.unwrap();
    hand.advance(120);

    for _ in 0..5 {
        let err = hub.lookup(&anhui, &issued.token, "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");
        assert!(
            err.to_string().contains("province 340000 holds no current status for this token (it lapsed)"),
            "{err}"
        );
    }
    // Five lapsed lookups against a burst of three: the hub is not throttled.
    let err = hub.lookup(&anhui, &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound), "an unknown token is a plain miss: {err}");
    assert_eq!(metrics.value("huren_gateway_hub_throttled_total", &[("hub", "platform-3")]), 0.0);
    assert_eq!(
        metrics.value("huren_gateway_lookups_total", &[("province", "340000"), ("outcome", "no_current_status")]),
        5.0
    );
}
