//! End-to-end: a three-province federation over real mutual TLS on loopback.

use std::sync::Arc;

use huren_cli::demo::{demo_subjects, seed};
use huren_pki::attest::{token_digest, AttestationKey};
use huren_pki::qr::{self, Scanned};
use huren_pki::unix_now;
use huren_proto::pb;
use huren_runtime::tls::ExpectedPeer;
use huren_tests::{
    client_channel, code, demo_subject, identity_from_province_ca, node_channel, replace_node_with_fake,
    signing_script, start, start_with, Deadline, RED_RULE,
};
use tonic::Code;

async fn seeded() -> (huren_tests::TestFederation, Vec<(String, pb::IssueTokenResponse)>) {
    let federation = start().await;
    let mut issued = Vec::new();
    for s in demo_subjects() {
        let t = seed(&federation, &s, 300).await.expect("seed");
        issued.push((s.subject_ref.to_owned(), t));
    }
    (federation, issued)
}

fn qr_of<'a>(issued: &'a [(String, pb::IssueTokenResponse)], subject: &str) -> &'a pb::IssueTokenResponse {
    &issued.iter().find(|(s, _)| s == subject).expect("subject seeded").1
}

#[tokio::test]
async fn cross_province_lookup_succeeds_and_verifies() {
    let (f, issued) = seeded().await;
    let mut hub = f.hub("sd-jinan-highway").deadline("hub sd-jinan-highway registered on every server").await.unwrap();

    // Every QR fits comfortably in a standard QR code (alphanumeric mode).
    for (_, t) in &issued {
        assert!(t.qr.len() <= 362, "QR of {} characters exceeds a version-11-M QR code", t.qr.len());
        assert!(t.qr.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b':'));
    }
    let anhui = Scanned::parse(&qr_of(&issued, "ah-driver-0001").qr).unwrap();
    assert_eq!(anhui.province(), &code("340000"));
    let green = hub.lookup(anhui.province(), anhui.token(), "transit.highway").await.unwrap();
    assert_eq!((green.status.as_str(), green.province_name.as_str()), ("GREEN", "Anhui"));
    assert_eq!(green.purpose, "transit.highway");
    assert!(green.rule_id.is_none());
    assert!(green.expires_at > unix_now() && green.expires_at <= unix_now() + 300);

    let shandong = Scanned::parse(&qr_of(&issued, "sd-traveller-0002").qr).unwrap();
    let red = hub.lookup(shandong.province(), shandong.token(), "transit.rail").await.unwrap();
    assert_eq!(red.status, "RED");
    assert_eq!(red.rule_id.as_deref(), Some(RED_RULE));
    assert_eq!(red.rule_title.as_deref(), Some("Close contact of a confirmed case"));

    // The raw answer verifies against the trust list independently of the hub client,
    // and is bound to the token that was asked about.
    let token = anhui.token().to_vec();
    let raw = hub
        .lookup_raw(pb::LookupRequest {
            province: "340000".into(),
            token: token.clone(),
            purpose: "venue.entry".into(),
        })
        .await
        .unwrap();
    let trust = f.trust_list().unwrap();
    let attestation = huren_pki::verify_attestation(
        &trust,
        raw.attestation.as_ref().unwrap(),
        &huren_pki::Expected::default(),
        unix_now(),
    )
    .unwrap();
    assert_eq!(attestation.token_digest, token_digest(&token));
    assert_eq!(attestation.purpose, "venue.entry");
}

#[tokio::test]
async fn status_change_is_seen_by_the_next_lookup() {
    let (f, issued) = seeded().await;
    let mut hub = f.hub("gd-rail").deadline("hub gd-rail registered on every server").await.unwrap();
    let t = Scanned::parse(&qr_of(&issued, "ah-driver-0001").qr).unwrap();
    assert_eq!(hub.lookup(t.province(), t.token(), "transit.rail").await.unwrap().status, "GREEN");
    f.authority_client("340000/hefei-cdc")
        .unwrap()
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: "ah-driver-0001".into(),
            status: pb::HealthStatus::Red as i32,
            rule_id: RED_RULE.into(),
            authority: String::new(),
            valid_until: 0,
            test_recency: 0,
        })
        .await
        .unwrap();
    let now = hub.lookup(t.province(), t.token(), "transit.rail").await.unwrap();
    assert_eq!((now.status.as_str(), now.rule_id.as_deref()), ("RED", Some(RED_RULE)));
}

#[tokio::test]
async fn hub_calling_a_node_directly_is_refused() {
    let (f, issued) = seeded().await;
    let anhui = code("340000");
    let hub = f.identity("hub", "sneaky").unwrap();
    let channel = node_channel(&f, &hub, &anhui);

    let token = Scanned::parse(&qr_of(&issued, "ah-driver-0001").qr).unwrap().token().to_vec();
    let err = pb::attestation_client::AttestationClient::new(channel.clone())
        .attest(pb::AttestRequest {
            token,
            purpose: "transit.rail".into(),
            hub_id: "sneaky".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("is for gateway identities"), "{}", err.message());

    let err = pb::status_admin_client::StatusAdminClient::new(channel)
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: "ah-driver-0001".into(),
            status: pb::HealthStatus::Green as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn only_the_own_province_admin_may_change_statuses() {
    let f = start().await;
    let anhui = code("340000");
    let request = || pb::UpsertStatusRequest {
        subject_ref: "ah-x-1".into(),
        status: pb::HealthStatus::Green as i32,
        ..Default::default()
    };
    for (kind, arg) in [("admin", "440000"), ("gateway", "national-2"), ("node", "340000"), ("coordinator", "nhc")] {
        let who = f.identity(kind, arg).unwrap();
        let err = f.admin_client_as(&anhui, &who).unwrap().upsert_status(request()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind} {arg}: {}", err.message());
    }
    f.admin_client(&anhui).unwrap().upsert_status(request()).await.unwrap();
}

#[tokio::test]
async fn node_certificate_presented_as_a_hub_is_refused() {
    let (f, issued) = seeded().await;
    let token = Scanned::parse(&qr_of(&issued, "ah-driver-0001").qr).unwrap().token().to_vec();
    for (kind, arg) in [("node", "340000"), ("admin", "370000"), ("gateway", "national-2"), ("auditor", "a")] {
        let who = f.identity(kind, arg).unwrap();
        let channel = client_channel(&who, ExpectedPeer::AnyGateway, f.gateway_addr());
        let err = pb::lookup_client::LookupClient::new(channel)
            .lookup(pb::LookupRequest {
                province: "340000".into(),
                token: token.clone(),
                purpose: "transit.rail".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind}: {}", err.message());
        assert!(err.message().contains("is for transport hub identities"), "{}", err.message());
    }
}

#[tokio::test]
async fn a_province_ca_cannot_vouch_outside_its_province() {
    let (f, _) = seeded().await;
    let anhui = code("340000");
    // Anhui's CA minting a hub identity: refused by the gateway.
    let rogue_hub = identity_from_province_ca(&f, &anhui, "spiffe://huren.gov/hub/rogue");
    let channel = client_channel(&rogue_hub, ExpectedPeer::AnyGateway, f.gateway_addr());
    let err = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .get_trust_list(pb::GetTrustListRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("must be issued directly by the national root"), "{}", err.message());

    // Anhui's CA minting Shandong's admin identity: refused by the Shandong node.
    let shandong = code("370000");
    let rogue_admin = identity_from_province_ca(&f, &anhui, "spiffe://huren.gov/province/370000/admin");
    let err = f
        .admin_client_as(&shandong, &rogue_admin)
        .unwrap()
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: "sd-x".into(),
            status: pb::HealthStatus::Green as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("must be issued by its own province CA"), "{}", err.message());
}

#[tokio::test]
async fn unknown_province_unknown_token_and_malformed_requests_get_precise_statuses() {
    let (f, issued) = seeded().await;
    let mut hub = f.hub("checker").deadline("hub checker registered on every server").await.unwrap();
    let good = Scanned::parse(&qr_of(&issued, "ah-driver-0001").qr).unwrap().token().to_vec();
    let unknown = qr::new_token().unwrap().to_vec();
    let cases: Vec<(&str, pb::LookupRequest, Code, &str)> = vec![
        (
            "unknown province",
            pb::LookupRequest { province: "810000".into(), token: good.clone(), purpose: "transit.rail".into() },
            Code::NotFound,
            "province 810000 is not in the trust list",
        ),
        (
            "unknown token",
            pb::LookupRequest { province: "340000".into(), token: unknown, purpose: "transit.rail".into() },
            Code::NotFound,
            "token is not known to province 340000",
        ),
        (
            "token of another province",
            pb::LookupRequest { province: "440000".into(), token: good.clone(), purpose: "transit.rail".into() },
            Code::NotFound,
            "token is not known to province 440000",
        ),
        (
            "malformed province",
            pb::LookupRequest { province: "34-000".into(), token: good.clone(), purpose: "transit.rail".into() },
            Code::InvalidArgument,
            "invalid province code",
        ),
        (
            "short token",
            pb::LookupRequest { province: "340000".into(), token: vec![1, 2, 3], purpose: "transit.rail".into() },
            Code::InvalidArgument,
            "token must be 16 bytes, got 3",
        ),
        (
            "missing purpose",
            pb::LookupRequest { province: "340000".into(), token: good.clone(), purpose: String::new() },
            Code::InvalidArgument,
            "purpose must be dotted lowercase words",
        ),
    ];
    for (name, request, want, text) in cases {
        let err = hub.lookup_raw(request).await.unwrap_err();
        assert_eq!(err.code(), want, "{name}: {}", err.message());
        assert!(err.message().contains(text), "{name}: {:?} lacks {text:?}", err.message());
    }
    // The good token still works afterwards.
    hub.lookup(&code("340000"), &good, "transit.rail").await.unwrap();
}

#[tokio::test]
async fn plaintext_client_is_refused() {
    let (f, _) = seeded().await;
    for addr in [f.gateway_addr(), f.node_addr(&code("340000")).unwrap()] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let err = pb::trust_registry_client::TrustRegistryClient::new(channel.clone())
            .get_trust_list(pb::GetTrustListRequest {})
            .await
            .unwrap_err();
        assert!(matches!(err.code(), Code::Unavailable | Code::Unknown | Code::Internal), "{addr}: {err:?}");
        let err = pb::lookup_client::LookupClient::new(channel).lookup(pb::LookupRequest::default()).await.unwrap_err();
        assert!(matches!(err.code(), Code::Unavailable | Code::Unknown | Code::Internal), "{addr}: {err:?}");
    }
    // The servers are still healthy for real clients.
    f.hub("after-plaintext")
        .deadline("hub after-plaintext registered on every server")
        .await
        .unwrap()
        .refresh_trust_list()
        .await
        .unwrap();
}

#[tokio::test]
async fn node_restart_keeps_its_statuses() {
    let (mut f, issued) = seeded().await;
    let shandong = code("370000");
    let t = Scanned::parse(&qr_of(&issued, "sd-traveller-0002").qr).unwrap();
    let addr = f.stop_node(&shandong).deadline("Shandong's node to stop (graceful drain)").await.unwrap();
    let mut hub = f.hub("after-restart").deadline("hub after-restart registered on every server").await.unwrap();
    let err = hub.lookup(t.province(), t.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");

    f.restart_node(&shandong, addr).await.unwrap();
    let red = hub.lookup(t.province(), t.token(), "transit.rail").await.unwrap();
    assert_eq!((red.status.as_str(), red.rule_id.as_deref()), ("RED", Some(RED_RULE)));
    // And the per-subject version carries on from before the restart (a current RED is
    // lifted by an authority its rule names, not by the admin).
    let v = f
        .authority_client("370000/jinan-cdc")
        .unwrap()
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: "sd-traveller-0002".into(),
            status: pb::HealthStatus::Green as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, 2);
}

/// Replaces Shandong's node with a scripted one (holding Shandong's real node
/// certificate, so the gateway connects) and returns the hub's view of one lookup.
async fn lookup_through_fake_shandong(
    script: impl Fn(&pb::AttestRequest, &AttestationKey, &AttestationKey) -> pb::SignedAttestation + Send + Sync + 'static,
) -> (huren_tests::TestFederation, Result<pb::LookupResponse, tonic::Status>) {
    let mut f = start().await;
    let shandong = code("370000");
    let anhui_key = f.attestation_key(&code("340000")).unwrap();
    let shandong_key = f.attestation_key(&shandong).unwrap();
    let keys = Arc::new((anhui_key, shandong_key));
    let stop =
        replace_node_with_fake(&mut f, &shandong, signing_script(move |req| script(req, &keys.0, &keys.1))).await;
    let token = qr::new_token().unwrap().to_vec();
    let result = f
        .hub("victim")
        .deadline("hub victim registered on every server")
        .await
        .unwrap()
        .lookup_raw(pb::LookupRequest { province: "370000".into(), token, purpose: "transit.rail".into() })
        .await;
    drop(stop);
    (f, result)
}

fn payload(req: &pb::AttestRequest, province: &str) -> pb::AttestationPayload {
    huren_tests::green_payload(req, province)
}

#[tokio::test]
async fn attestation_signed_with_another_provinces_key_is_refused() {
    // Signed with Anhui's key while claiming Shandong.
    let (_f, result) = lookup_through_fake_shandong(|req, anhui, _| anhui.sign(&payload(req, "370000"))).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("is not an attestation key of province 370000"), "{}", err.message());
}

#[tokio::test]
async fn forged_or_misbound_attestations_from_a_node_are_refused() {
    type Forge = fn(&pb::AttestRequest, &AttestationKey, &AttestationKey) -> pb::SignedAttestation;
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "claims another province",
            |r, _, sd| sd.sign(&payload(r, "340000")),
            "is not an attestation key of province 340000",
        ),
        (
            "signature altered",
            |r, _, sd| {
                let mut s = sd.sign(&payload(r, "370000"));
                s.signature[0] ^= 1;
                s
            },
            "signature does not verify",
        ),
        (
            "payload altered after signing",
            |r, _, sd| {
                let mut s = sd.sign(&payload(r, "370000"));
                let last = s.payload.len() - 1;
                s.payload[last] ^= 1;
                s
            },
            "refused",
        ),
        (
            "bound to another token",
            |r, _, sd| {
                let mut p = payload(r, "370000");
                p.token_digest = token_digest(b"someone else's token").to_vec();
                sd.sign(&p)
            },
            "bound to a different token",
        ),
        (
            "expired",
            |r, _, sd| {
                let mut p = payload(r, "370000");
                p.issued_at -= 1000;
                p.expires_at = p.issued_at + 10;
                sd.sign(&p)
            },
            "expired",
        ),
        (
            "red without a registered rule",
            |r, _, sd| {
                let mut p = payload(r, "370000");
                p.status = pb::HealthStatus::Red as i32;
                p.rule_id = "MADE-UP-RULE".into();
                sd.sign(&p)
            },
            "not in the rule registry",
        ),
        (
            "red citing no rule",
            |r, _, sd| {
                let mut p = payload(r, "370000");
                p.status = pb::HealthStatus::Red as i32;
                sd.sign(&p)
            },
            "cites no rule",
        ),
        (
            "wrong kid length",
            |r, _, sd| {
                let mut s = sd.sign(&payload(r, "370000"));
                s.kid.push(0);
                s
            },
            "kid must be 8 bytes",
        ),
        (
            "different purpose",
            |r, _, sd| {
                let mut p = payload(r, "370000");
                p.purpose = "venue.entry".into();
                sd.sign(&p)
            },
            "not the one asked",
        ),
    ];
    for (name, forge, text) in cases {
        let (_f, result) = lookup_through_fake_shandong(forge).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}: {}", err.message());
        assert!(err.message().contains(text), "{name}: {:?} lacks {text:?}", err.message());
        assert!(err.message().starts_with("attestation from province 370000 refused"), "{name}: {}", err.message());
    }
}

#[tokio::test]
async fn offline_verification_checks_signature_and_token_binding() {
    let (f, issued) = seeded().await;
    let trust = f.trust_list().unwrap();
    let yellow = huren_cli::hub::verify_offline(&trust, &qr_of(&issued, "gd-resident-0003").qr, unix_now()).unwrap();
    assert_eq!(yellow.status, "YELLOW");

    // Swap in another traveller's token: the binding no longer holds.
    let mut qr = qr::decode_qr(&qr_of(&issued, "gd-resident-0003").qr).unwrap();
    qr.token = qr_of(&issued, "ah-driver-0001").token.clone();
    let err = huren_cli::hub::verify_offline(&trust, &qr::encode_qr(&qr), unix_now()).unwrap_err();
    assert!(err.to_string().contains("different token"), "{err}");

    // Past its expiry the QR no longer verifies offline.
    let err =
        huren_cli::hub::verify_offline(&trust, &qr_of(&issued, "gd-resident-0003").qr, unix_now() + 301).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn status_admin_refuses_invalid_changes_precisely() {
    let f = start().await;
    let mut admin = f.authority_client("370000/jinan-cdc").unwrap();
    let base = pb::UpsertStatusRequest {
        subject_ref: "sd-subj-9".into(),
        status: pb::HealthStatus::Red as i32,
        rule_id: RED_RULE.into(),
        authority: String::new(),
        valid_until: 0,
        test_recency: 0,
    };
    let cases: Vec<(&str, pb::UpsertStatusRequest, Code, &str)> = vec![
        (
            "no rule",
            pb::UpsertStatusRequest { rule_id: String::new(), ..base.clone() },
            Code::FailedPrecondition,
            "must cite a registered rule",
        ),
        (
            "unregistered rule",
            pb::UpsertStatusRequest { rule_id: "NOPE".into(), ..base.clone() },
            Code::FailedPrecondition,
            "not in the rule registry",
        ),
        (
            "rule cannot assign",
            pb::UpsertStatusRequest { status: pb::HealthStatus::Yellow as i32, ..base.clone() },
            Code::FailedPrecondition,
            "may not assign YELLOW",
        ),
        (
            "authority field naming someone else",
            pb::UpsertStatusRequest { authority: "370000/bank-regulator".into(), ..base.clone() },
            Code::PermissionDenied,
            "is not the caller",
        ),
        (
            "too long",
            pb::UpsertStatusRequest { valid_until: unix_now() + 30 * 86_400, ..base.clone() },
            Code::FailedPrecondition,
            "allows at most",
        ),
        (
            "resident ID as subject",
            pb::UpsertStatusRequest { subject_ref: "37010219900101123X".into(), ..base.clone() },
            Code::InvalidArgument,
            "looks like a resident ID",
        ),
        (
            "unspecified status",
            pb::UpsertStatusRequest { status: 0, ..base.clone() },
            Code::InvalidArgument,
            "status must be",
        ),
    ];
    for (name, request, want, text) in cases {
        let err = admin.upsert_status(request).await.unwrap_err();
        assert_eq!(err.code(), want, "{name}: {}", err.message());
        assert!(err.message().contains(text), "{name}: {:?} lacks {text:?}", err.message());
    }
    // None of the refusals created the subject.
    let err = f
        .admin_client(&code("370000"))
        .unwrap()
        .issue_token(pb::IssueTokenRequest { subject_ref: "sd-subj-9".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    admin.upsert_status(base).await.unwrap();
}

#[tokio::test]
async fn tokens_live_five_minutes_unless_asked_otherwise() {
    // The default is the same whether a node is configured from a file or embedded.
    assert_eq!(huren_node::NodeConfig::default().token_lifetime_seconds, 300);
    assert_eq!(huren_node::NodeSettings::default().token_lifetime_seconds, 300);

    let (clock, hand) = huren_runtime::clock::Clock::manual(unix_now());
    let mut options = huren_cli::federation::FederationOptions::default();
    options.node.clock = clock;
    let (f, _dir) = start_with(options).await;
    let issued = seed(&f, &demo_subject("340000"), 0).await.unwrap();
    assert_eq!(issued.expires_at, hand.now() + 300, "lifetime 0 asks for the node default");
    let mut hub = f.hub("clocked").deadline("hub registered on every server").await.unwrap();
    hub.lookup(&code("340000"), &issued.token, "transit.rail").await.unwrap();
    hand.advance(301);
    let err = hub.lookup(&code("340000"), &issued.token, "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
}

/// `expires_at - issued_at` of the attestation in `qr`, checked by the one verifier at `now`.
fn verified_lifetime(trust: &huren_pki::TrustList, qr: &str, now: i64) -> (i64, i64) {
    let status = huren_client::verify_offline(trust, qr, now).expect("the honest QR verifies offline");
    let signed = qr::decode_qr(qr).unwrap().attestation.unwrap();
    let payload = <pb::AttestationPayload as prost::Message>::decode(signed.payload.as_slice()).unwrap();
    assert_eq!(status.expires_at, payload.expires_at);
    (payload.expires_at - payload.issued_at, payload.expires_at)
}

#[tokio::test]
async fn an_honest_node_with_a_long_ttl_signs_within_the_lifetime_bound_and_its_keys_window() {
    let (clock, hand) = huren_runtime::clock::Clock::manual(unix_now());
    let mut options = huren_cli::federation::FederationOptions::default();
    options.node.attestation_ttl_seconds = 86_400;
    options.node.clock = clock;
    let (f, _dir) = start_with(options).await;
    let anhui = code("340000");

    // A day's TTL, a day's token: the node clamps to the trust list's bound (built-in 3600 s).
    let issued = seed(&f, &demo_subject("340000"), 86_400).await.unwrap();
    let trust = f.trust_list().unwrap();
    assert_eq!(verified_lifetime(&trust, &issued.qr, hand.now()).0, 3600);

    // A tighter bound from the coordinators reaches the node and binds it at once.
    f.pki.set_attestation_bounds(huren_pki::registry::RegistryAttestationBounds { max_lifetime_seconds: 600 }).unwrap();
    let sequence = f.publish().await.unwrap();
    f.until_everyone_has(sequence).deadline("every server holds the new bound").await.unwrap();
    let trust = f.trust_list().unwrap();
    let issued = seed(&f, &demo_subject("340000"), 86_400).await.unwrap();
    assert_eq!(verified_lifetime(&trust, &issued.qr, hand.now()).0, 600);

    // Near the end of its key's window, the node signs no further than the key's not_after.
    let key_not_after =
        trust.province(&anhui).unwrap().keys.values().find(|k| k.status == pb::KeyStatus::Active).unwrap().not_after;
    hand.advance(key_not_after - 100 - hand.now());
    let issued = seed(&f, &demo_subject("340000"), 86_400).await.unwrap();
    assert_eq!(verified_lifetime(&trust, &issued.qr, hand.now()), (100, key_not_after));
}
