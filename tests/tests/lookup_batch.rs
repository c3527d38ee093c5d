//! `Lookup/LookupBatch` end to end: a manifest of tokens from several provinces in one call,
//! one verified answer or one precise refusal per token, in order; the limit; unknown
//! tokens counted one by one; a forged attestation among good ones refused alone.

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::FederationOptions;
use huren_gateway::MissPolicy;
use huren_pki::qr::{self, Scanned};
use huren_pki::ProvinceCode;
use huren_proto::pb;
use huren_tests::{code, green_payload, replace_node_with_fake, signing_script, start, start_with, RED_RULE};
use tonic::Code;

/// Every demo subject's token, scanned: (subject, province, token).
async fn seeded(f: &huren_cli::federation::Federation) -> Vec<(String, ProvinceCode, Vec<u8>)> {
    let mut out = Vec::new();
    for s in demo_subjects() {
        let issued = seed(f, &s, 300).await.expect("seed");
        let scanned = Scanned::parse(&issued.qr).expect("qr");
        out.push((s.subject_ref.to_owned(), scanned.province().clone(), scanned.token().to_vec()));
    }
    out
}

#[tokio::test]
async fn a_manifest_gets_one_answer_per_token_in_order() {
    let f = start().await;
    let issued = seeded(&f).await;
    let mut hub = f.hub("rail-manifest").await.unwrap();
    let find = |subject: &str| issued.iter().find(|(s, _, _)| s == subject).expect("seeded").clone();
    let (_, ah, ah_token) = find("ah-driver-0001");
    let (_, sd, sd_token) = find("sd-traveller-0002");
    let unknown = qr::new_token().unwrap().to_vec();
    let manifest = vec![
        (ah.clone(), ah_token.clone()),
        (sd.clone(), sd_token.clone()),
        (ah.clone(), unknown),
        (sd.clone(), vec![1, 2, 3]),
        (code("440000"), qr::new_token().unwrap().to_vec()),
        (ah.clone(), ah_token.clone()),
    ];
    let answers = hub.lookup_batch(&manifest, "transit.rail").await.unwrap();
    assert_eq!(answers.len(), manifest.len());
    let green = answers[0].as_ref().expect("Anhui's token answers");
    assert_eq!((green.status.as_str(), green.province_name.as_str()), ("GREEN", "Anhui"));
    assert_eq!(green.purpose, "transit.rail");
    let red = answers[1].as_ref().expect("Shandong's token answers");
    assert_eq!((red.status.as_str(), red.rule_id.as_deref()), ("RED", Some(RED_RULE)));
    let unknown = answers[2].as_ref().unwrap_err();
    assert_eq!((unknown.code(), unknown.reason()), (Some(Code::NotFound), Some("TOKEN_UNKNOWN")), "{unknown}");
    let malformed = answers[3].as_ref().unwrap_err();
    assert_eq!(
        (malformed.code(), malformed.reason()),
        (Some(Code::InvalidArgument), Some("INVALID_REQUEST")),
        "{malformed}"
    );
    assert!(malformed.to_string().contains("token must be 16 bytes, got 3"), "{malformed}");
    assert_eq!(answers[4].as_ref().unwrap_err().reason(), Some("TOKEN_UNKNOWN"));
    assert_eq!(answers[5].as_ref().unwrap().status, "GREEN", "the same token twice is answered twice");

    // The same answers as single lookups give.
    for ((province, token), answer) in manifest.iter().zip(&answers) {
        let single = hub.lookup(province, token, "transit.rail").await;
        match (single, answer) {
            (Ok(a), Ok(b)) => assert_eq!((a.status, a.province), (b.status.clone(), b.province.clone())),
            (Err(a), Err(b)) => assert_eq!((a.code(), a.reason()), (b.code(), b.reason())),
            (a, b) => panic!("single {a:?} but batch {b:?}"),
        }
    }
}

#[tokio::test]
async fn a_manifest_over_the_limit_or_for_an_unregistered_purpose_is_refused_whole() {
    let f = start().await;
    let mut hub = f.hub_for("bus-manifest", &["transit.rail"]).await.unwrap();
    let too_many: Vec<_> = (0..501).map(|_| (code("340000"), qr::new_token().unwrap().to_vec())).collect();
    let err = hub.lookup_batch(&too_many, "transit.rail").await.unwrap_err();
    assert_eq!((err.code(), err.reason()), (Some(Code::InvalidArgument), Some("INVALID_REQUEST")), "{err}");
    assert!(err.to_string().contains("at most 500 tokens per LookupBatch, got 501"), "{err}");
    let one = vec![(code("340000"), qr::new_token().unwrap().to_vec())];
    let err = hub.lookup_batch(&one, "venue.entry").await.unwrap_err();
    assert_eq!((err.code(), err.reason()), (Some(Code::PermissionDenied), Some("PURPOSE_NOT_REGISTERED")), "{err}");
}

#[tokio::test]
async fn every_unknown_token_counts_and_the_limit_cuts_the_manifest_short() {
    let mut options = FederationOptions::default();
    options.gateway.miss_policy = MissPolicy { burst: 3.0, refill_per_sec: 0.001 };
    let (f, _dir) = start_with(options).await;
    let issued = seeded(&f).await;
    let (_, province, known) = issued[0].clone();
    let mut hub = f.hub("scanner").await.unwrap();
    let mut manifest: Vec<_> = (0..4).map(|_| (province.clone(), qr::new_token().unwrap().to_vec())).collect();
    manifest.insert(1, (province.clone(), known.clone()));
    manifest.push((province.clone(), known.clone()));
    let answers = hub.lookup_batch(&manifest, "transit.rail").await.unwrap();
    let reasons: Vec<_> = answers.iter().map(|a| a.as_ref().err().and_then(|e| e.reason()).unwrap_or("ok")).collect();
    assert_eq!(
        reasons,
        ["TOKEN_UNKNOWN", "ok", "TOKEN_UNKNOWN", "TOKEN_UNKNOWN", "TOO_MANY_UNKNOWN_TOKENS", "TOO_MANY_UNKNOWN_TOKENS"],
        "three misses reach the limit of three: every later token is refused, known or not"
    );
    // And the hub stays throttled, for single lookups and manifests alike.
    let err = hub.lookup(&province, &known, "transit.rail").await.unwrap_err();
    assert_eq!(err.reason(), Some("TOO_MANY_UNKNOWN_TOKENS"), "{err}");
    let err = hub.lookup_batch(&[(province, known)], "transit.rail").await.unwrap_err();
    assert_eq!(err.reason(), Some("TOO_MANY_UNKNOWN_TOKENS"), "{err}");
}

/// Replaces `province`'s node by a compromised one: a good signature for every token but
/// one starting with 0xee, whose signature is spoiled.
async fn forging_node(
    f: &mut huren_cli::federation::Federation,
    province: &ProvinceCode,
) -> tokio::sync::oneshot::Sender<()> {
    let key = f.attestation_key(province).unwrap();
    let code = province.to_string();
    replace_node_with_fake(
        f,
        province,
        signing_script(move |req| {
            let mut signed = key.sign(&green_payload(req, &code));
            if req.token.first() == Some(&0xee) {
                signed.signature[10] ^= 1;
            }
            signed
        }),
    )
    .await
}

/// A fresh token whose first byte is `first` (0xee: the forging node spoils its answer).
fn token(first: u8) -> Vec<u8> {
    let mut t = qr::new_token().unwrap().to_vec();
    t[0] = first;
    t
}

#[tokio::test]
async fn a_forged_attestation_among_good_ones_is_refused_alone() {
    let mut f = start().await;
    let shandong = code("370000");
    let _fake = forging_node(&mut f, &shandong).await;
    let mut hub = f.hub("flight-manifest").await.unwrap();
    let manifest: Vec<_> = [1, 2, 0xee, 3, 4].into_iter().map(|b| (shandong.clone(), token(b))).collect();
    let answers = hub.lookup_batch(&manifest, "transit.general").await.unwrap();
    let reasons: Vec<_> = answers.iter().map(|a| a.as_ref().err().and_then(|e| e.reason()).unwrap_or("ok")).collect();
    assert_eq!(reasons, ["ok", "ok", "POLICY_VIOLATION", "ok", "ok"]);
    let err = answers[2].as_ref().unwrap_err();
    assert!(err.to_string().contains("bad_signature") || err.to_string().contains("signature"), "{err}");
    for answer in answers.iter().filter_map(|a| a.as_ref().ok()) {
        assert_eq!((answer.status.as_str(), answer.province.as_str()), ("GREEN", "370000"));
    }
}

/// Verified once: a replica checks a cached attestation's signature the first time it meets
/// those exact bytes, and only what can change on later hits. A cache entry rewritten in
/// Redis behind its back (here: the same attestation with a spoiled signature) is bytes it
/// has not verified: it is verified afresh, refused, and the node is asked instead — the hub
/// (which verifies every answer itself) gets a good attestation.
#[tokio::test]
async fn a_cache_entry_rewritten_in_redis_is_verified_afresh_not_trusted() {
    use huren_cli::telemetry::PrometheusMetrics;
    use huren_gateway::shared::{CachedAttestation, RedisState};
    use huren_gateway::{Gateway, GatewaySettings};
    use huren_runtime::live::LiveTrust;
    use huren_tests::{Deadline, RedisPrefix};
    use prost::Message as _;

    let redis = RedisPrefix::new("verified-once");
    let metrics = PrometheusMetrics::new().unwrap();
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("verified-once-hub", &["transit.rail"]).await.unwrap();
    let tls = f.identity("gateway", "verified-once-gw").unwrap();
    let trust = LiveTrust::new(f.gateway_trust().unwrap().current().as_ref().clone(), tls.root.to_vec(), None).unwrap();
    let settings = GatewaySettings {
        cache: true,
        cache_fresh: std::time::Duration::from_secs(600),
        redis_url: Some(redis.url.clone()),
        redis_prefix: redis.prefix.clone(),
        meter: Some(metrics.meter("huren-gateway")),
        ..GatewaySettings::default()
    };
    let gateway = Gateway::new(tls, trust, settings).unwrap();
    let (addr, _stop) = huren_tests::serve_gateway(&gateway).await;
    gateway.redis_states().wait_for(|s| *s == RedisState::Up).deadline("redis up").await.unwrap();
    let issued = seed(&f, &huren_tests::demo_subject("340000"), 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub =
        huren_client::HubClient::connect(&addr.to_string(), &f.identity("hub", "verified-once-hub").unwrap()).unwrap();
    let hits = || metrics.value("huren_gateway_cache_lookups_total", &[("result", "hit")]);
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.expect("asked the node, cached");
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.expect("a hit");
    assert_eq!(hits(), 1.0);

    // Rewrite the entry in Redis: same attestation, one signature bit flipped.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, format!("{}att:*", redis.prefix)).await.unwrap();
    assert_eq!(keys.len(), 1, "one cached attestation");
    let bytes: Vec<u8> = redis::AsyncCommands::get(&mut conn, &keys[0]).await.unwrap();
    let mut entry = CachedAttestation::decode(bytes.as_slice()).unwrap();
    let mut signed = pb::SignedAttestation::decode(entry.attestation.as_slice()).unwrap();
    signed.signature[7] ^= 1;
    entry.attestation = signed.encode_to_vec();
    let _: () = redis::AsyncCommands::set(&mut conn, &keys[0], entry.encode_to_vec()).await.unwrap();

    let status = hub.lookup(scanned.province(), scanned.token(), "transit.rail").await;
    assert_eq!(status.expect("the hub got an attestation that verifies").status, "GREEN");
    assert_eq!(hits(), 1.0, "the rewritten entry was served as a hit");
}

/// Issue 19's collection window (`verify_batch_window`): single lookups arriving together
/// are verified as one batch with exactly one-by-one verdicts. A compromised node's spoiled
/// signature among them is refused to its own lookup alone; every other lookup, and a lone
/// lookup after them, gets its verified answer.
#[tokio::test]
async fn concurrent_lookups_verified_in_one_window_refuse_only_the_forged_answer() {
    let mut options = FederationOptions::default();
    // Wide enough that the lookups below, sent at once, meet in one window.
    options.gateway.verify_batch_window = std::time::Duration::from_millis(200);
    options.gateway.verify_batch_max = 64;
    let (mut f, _dir) = start_with(options).await;
    let shandong = code("370000");
    let _fake = forging_node(&mut f, &shandong).await;
    let mut gates = Vec::new();
    for first in [1u8, 2, 0xee, 3, 4, 5] {
        gates.push((first, f.hub(&format!("gate-{first}")).await.unwrap()));
    }
    let mut lookups = Vec::new();
    for (first, mut hub) in gates {
        let (province, token) = (shandong.clone(), token(first));
        lookups.push(tokio::spawn(async move {
            let answer = hub.lookup(&province, &token, "transit.general").await;
            (hub, answer)
        }));
    }
    let (mut hubs, mut answers) = (Vec::new(), Vec::new());
    for lookup in lookups {
        let (hub, answer) = lookup.await.unwrap();
        hubs.push(hub);
        answers.push(answer);
    }
    let reasons: Vec<_> = answers.iter().map(|a| a.as_ref().err().and_then(|e| e.reason()).unwrap_or("ok")).collect();
    assert_eq!(reasons, ["ok", "ok", "POLICY_VIOLATION", "ok", "ok", "ok"]);
    for answer in answers.iter().filter_map(|a| a.as_ref().ok()) {
        assert_eq!((answer.status.as_str(), answer.province.as_str()), ("GREEN", "370000"));
    }
    // A lone lookup is answered when its window closes.
    let lone = hubs[0].lookup(&shandong, &token(7), "transit.general").await.unwrap();
    assert_eq!(lone.status, "GREEN");
    let err = hubs[1].lookup(&shandong, &token(0xee), "transit.general").await.unwrap_err();
    assert_eq!(err.reason(), Some("POLICY_VIOLATION"), "{err}");
}
