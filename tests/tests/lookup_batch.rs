//! `Lookup/LookupBatch` end to end: a manifest of tokens from several provinces in one call,
//! one verified answer or one precise refusal per token, in order; the limit; unknown
//! tokens counted one by one; a forged attestation among good ones refused alone.

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::FederationOptions;
use huren_gateway::MissPolicy;
use huren_pki::qr::{self, Scanned};
use huren_pki::ProvinceCode;
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

#[tokio::test]
async fn a_forged_attestation_among_good_ones_is_refused_alone() {
    let mut f = start().await;
    let shandong = code("370000");
    let key = f.attestation_key(&shandong).unwrap();
    // A compromised node: a good signature for every token but the one starting with 0xee,
    // whose signature is spoiled.
    let _fake = replace_node_with_fake(
        &mut f,
        &shandong,
        signing_script(move |req| {
            let mut signed = key.sign(&green_payload(req, "370000"));
            if req.token.first() == Some(&0xee) {
                signed.signature[10] ^= 1;
            }
            signed
        }),
    )
    .await;
    let mut hub = f.hub("flight-manifest").await.unwrap();
    let token = |first: u8| {
        let mut t = qr::new_token().unwrap().to_vec();
        t[0] = first;
        t
    };
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
