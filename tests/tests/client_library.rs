//! The client library as an integrator uses it: `client/examples/lookup.rs` itself (its
//! option parsing and its `lookup`) against a live loopback federation — a verified
//! status, the trust list cache it keeps, a refusal with its gRPC code (and its
//! `ErrorInfo` reason when the gateway attaches one), and an offline check of a QR with
//! the cached list.
//!
//! (Here rather than in `client/tests/`: the federation comes from huren-tests, which
//! depends on huren-cli, which depends on huren-client.)

use huren_cli::demo::{demo_subjects, seed, RED_RULE};
use huren_pki::ca::Validity;
use huren_pki::qr::token_to_text;
use huren_pki::unix_now;

/// The example, compiled into this test as it is written.
#[allow(dead_code)]
mod example {
    include!("../../client/examples/lookup.rs");
}

use example::{lookup, Options};
use huren_client::{verify_offline, HubError, TrustList};

#[tokio::test]
async fn the_lookup_example_verifies_a_red_code_through_the_gateway_and_names_a_refusal() {
    let f = huren_tests::start().await;
    let subject = demo_subjects().into_iter().find(|s| s.subject_ref == "sd-traveller-0002").expect("demo subject");
    let issued = seed(&f, &subject, 600).await.expect("seeded");
    f.register_hub("client-example", &["transit.rail"]).await.expect("hub registered");
    let hub = f.pki.issue("hub", "client-example", Validity::days(1)).expect("hub certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("trust-list.bin");
    let path = |p: &std::path::Path| p.display().to_string();
    let args = |input: String| {
        let gateway = f.gateway_addr().to_string();
        let (cert, key, ca) = (path(&hub.cert), path(&hub.key), path(&f.pki.root_cert_path()));
        ["--gateway", &gateway, "--cert", &cert, "--key", &key, "--ca", &ca, "--purpose", "transit.rail"]
            .into_iter()
            .map(str::to_owned)
            .chain(["--trust-list-cache".to_owned(), path(&cache), input])
            .collect::<Vec<_>>()
    };

    // The traveller's token: RED, citing the registered rule, verified by the client.
    let token = format!("{}:{}", subject.province, token_to_text(&issued.token));
    let options = Options::from_args(args(token)).expect("options");
    let status = lookup(&options).await.expect("verified status");
    assert_eq!((status.status.as_str(), status.rule_id.as_deref()), ("RED", Some(RED_RULE)));
    assert_eq!((status.province.as_str(), status.purpose.as_str()), ("370000", "transit.rail"));
    assert!(status.rule_title.is_some() && status.trust_list_sequence > 0, "{status:?}");
    assert!(status.line().starts_with("RED — issued by 370000 Shandong for transit.rail"), "{}", status.line());

    // The list it verified with was kept, and verifies the traveller's QR offline.
    let root = huren_pki::ca::pem_to_der(&std::fs::read_to_string(f.pki.root_cert_path()).expect("root")).expect("der");
    let cached = TrustList::load(&cache, &root).expect("the cache holds a verified list");
    assert_eq!(cached.sequence(), status.trust_list_sequence);
    let offline = verify_offline(&cached, &issued.qr, unix_now()).expect("offline");
    assert_eq!((offline.status, offline.rule_id), (status.status, status.rule_id));

    // A token Shandong never issued: refused, with the gRPC code (and the gateway's
    // machine-readable reason when it attaches one).
    let unknown = format!("370000:{}", token_to_text(&huren_pki::qr::new_token().expect("token")));
    let err = lookup(&Options::from_args(args(unknown)).expect("options")).await.expect_err("refused");
    let refusal = err.downcast_ref::<HubError>().unwrap_or_else(|| panic!("not a HubError: {err}"));
    assert_eq!(refusal.code(), Some(tonic::Code::NotFound), "{refusal}");
    assert!(matches!(refusal, HubError::Refused { message, .. } if !message.is_empty()), "{refusal:?}");
    if let Some(reason) = refusal.reason() {
        assert!(!reason.is_empty() && refusal.to_string().contains(reason), "{refusal}");
    }

    // Bad invocations are refused before anything connects.
    assert!(Options::from_args(["340000:x".to_owned(), "--cert".to_owned()]).is_err());
    assert!(Options::from_args(args("a".into()).into_iter().chain(["b".to_owned()])).is_err());
}
