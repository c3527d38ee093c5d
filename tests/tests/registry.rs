//! The trust registry end to end: rotation, revocation, uploads, propagation, restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use huren_cli::demo::{demo_subjects, seed};
use huren_pki::attest::Kid;
use huren_pki::ca::Validity;
use huren_pki::qr::Scanned;
use huren_pki::tls::ExpectedPeer;
use huren_pki::trust::{self, TrustList};
use huren_pki::unix_now;
use huren_proto::pb;
use huren_tests::{client_channel, code, replace_node_with_fake, signing_script, start};
use prost::Message;
use tonic::Code;

fn anhui_subject() -> huren_cli::demo::Subject {
    demo_subjects().into_iter().find(|s| s.province == "340000").expect("anhui subject")
}

fn kid_of(response: &pb::LookupResponse) -> Kid {
    Kid::from_slice(&response.attestation.as_ref().unwrap().kid).unwrap()
}

#[tokio::test]
async fn key_rotation_under_continuous_lookups_fails_no_valid_lookup() {
    let f = start().await;
    let anhui = code("340000");
    let issued = seed(&f, &anhui_subject(), 3600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let old_kid = f.attestation_key(&anhui).unwrap().kid();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    // Verified GREEN lookups so far, observable without polling.
    let (ok_tx, mut ok) = tokio::sync::watch::channel(0u64);
    let ok_tx = Arc::new(ok_tx);
    let mut workers = Vec::new();
    for i in 0..4 {
        let mut hub = f.hub(&format!("rotation-{i}")).await.unwrap();
        let (stop, ok_tx, failed, token) = (stop.clone(), ok_tx.clone(), failed.clone(), scanned.token().to_vec());
        workers.push(tokio::spawn(async move {
            // Bounded: at most 20 000 lookups per worker.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match hub.lookup(&code("340000"), &token, "transit.rail").await {
                    Ok(s) if s.status == "GREEN" => ok_tx.send_modify(|n| *n += 1),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                };
            }
        }));
    }
    let progress = |ok: &mut tokio::sync::watch::Receiver<u64>, beyond: u64, what: &'static str| {
        let mut ok = ok.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(60), ok.wait_for(|n| *n > beyond))
                .await
                .unwrap_or_else(|_| panic!("no valid lookup completed {what}"))
                .unwrap();
        }
    };
    // Lookups are under way before the rotation starts.
    progress(&mut ok, 0, "before the rotation").await;

    // Prepare: publish the new key; nothing signs with it yet.
    let new_key = f.pki.add_key(&anhui, Validity::days(30)).unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();
    // Activate: the node switches to it; the old one is retired but still verifies.
    f.pki.set_key_status(&anhui, &new_key.kid().hex(), "active").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();
    // ... and lookups go on under the new key (the gateway cache is off in this federation,
    // so each one is signed afresh by the node).
    let at_activation = *ok.borrow();
    progress(&mut ok, at_activation + 20, "after the activation").await;

    let mut probe = f.hub("probe").await.unwrap();
    let request = || pb::LookupRequest {
        province: "340000".into(),
        token: scanned.token().to_vec(),
        purpose: "transit.rail".into(),
    };
    assert_eq!(kid_of(&probe.lookup_raw(request()).await.unwrap()), new_key.kid());
    // The QR signed under the old (now retired) key still verifies offline.
    let trust = f.gateway_trust().unwrap().current();
    assert!(huren_cli::hub::verify_offline(&trust, &issued.qr, unix_now()).is_ok());
    assert_eq!(Kid::from_slice(&huren_pki::qr::decode_qr(&issued.qr).unwrap().attestation.unwrap().kid), Some(old_kid));

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "valid lookups failed during rotation");
    eprintln!("{} valid lookups during the rotation, none failed", *ok.borrow());
}

#[tokio::test]
async fn revoked_hub_certificate_is_refused_and_other_hubs_are_unaffected() {
    let f = start().await;
    let issued = seed(&f, &anhui_subject(), 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let revoked_identity = f.identity("hub", "lost-scanner").unwrap();
    f.register_hub("lost-scanner", &["transit.rail"]).await.unwrap();
    let gateway = f.gateway_addr().to_string();
    let mut revoked = huren_cli::hub::HubClient::connect(&gateway, &revoked_identity).unwrap();
    let mut other = f.hub("other-scanner").await.unwrap();
    revoked.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    other.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();

    let serial = f.pki.revoke_issued("hub", "lost-scanner").unwrap();
    let started = std::time::Instant::now();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();
    eprintln!("revocation of {serial} in force everywhere {:?} after upload", started.elapsed());

    // Its open connection stops working at once.
    let err = revoked.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
    // A new connection is refused at the handshake.
    let mut fresh = huren_cli::hub::HubClient::connect(&gateway, &revoked_identity).unwrap();
    let err = fresh.refresh_trust_list().await.unwrap_err();
    assert!(err.is_transport(), "{err}");
    // Nodes refuse it too.
    let anhui = code("340000");
    let node_channel =
        client_channel(&revoked_identity, huren_tests::node_peer(&f, &anhui), f.node_addr(&anhui).unwrap());
    let err = pb::attestation_client::AttestationClient::new(node_channel)
        .attest(pb::AttestRequest { token: scanned.token().to_vec(), purpose: "transit.rail".into() })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_ne!(err.code(), Code::PermissionDenied, "refused before authorization: {err:?}");
    // Everyone else carries on.
    other.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
}

#[tokio::test]
async fn revoked_province_key_is_refused_online_and_offline() {
    let mut f = start().await;
    let anhui = code("340000");
    let issued = seed(&f, &anhui_subject(), 600).await.unwrap();
    let compromised = f.attestation_key(&anhui).unwrap();
    let trust_before = f.gateway_trust().unwrap().current();
    assert!(huren_cli::hub::verify_offline(&trust_before, &issued.qr, unix_now()).is_ok());

    // Compromise: rotate to a new key, then revoke the old one.
    let new_key = f.pki.add_key(&anhui, Validity::days(30)).unwrap();
    f.pki.set_key_status(&anhui, &new_key.kid().hex(), "active").unwrap();
    f.pki.set_key_status(&anhui, &compromised.kid().hex(), "revoked").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();

    // Offline: a hub with the new list refuses the QR signed under the revoked key.
    let trust = f.gateway_trust().unwrap().current();
    let err = huren_cli::hub::verify_offline(&trust, &issued.qr, unix_now()).unwrap_err();
    assert!(err.to_string().contains("is revoked"), "{err}");

    // Online: the real node now signs with the new key...
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("checker").await.unwrap();
    let fine = hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert_eq!(fine.status, "GREEN");
    // ...and a node still signing with the compromised key is refused by the gateway.
    let key = Arc::new(compromised);
    let _fake = replace_node_with_fake(
        &mut f,
        &anhui,
        signing_script(move |req| {
            let now = unix_now();
            key.sign(&pb::AttestationPayload {
                version: 1,
                province: "340000".into(),
                status: pb::HealthStatus::Green as i32,
                issued_at: now,
                expires_at: now + 60,
                token_digest: huren_pki::attest::token_digest(&req.token).to_vec(),
                rule_id: String::new(),
                test_recency: 0,
                purpose: req.purpose.clone(),
            })
        }),
    )
    .await;
    let err = hub
        .lookup_raw(pb::LookupRequest {
            province: "340000".into(),
            token: scanned.token().to_vec(),
            purpose: "transit.rail".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("is revoked"), "{}", err.message());
}

async fn upload_as(
    f: &huren_tests::TestFederation,
    kind: &str,
    name: &str,
    list: pb::SignedTrustList,
) -> Result<u64, tonic::Status> {
    let who = f.identity(kind, name).unwrap();
    let channel = client_channel(&who, ExpectedPeer::AnyGateway, f.gateway_addr());
    pb::trust_registry_client::TrustRegistryClient::new(channel).upload(list).await.map(|r| r.into_inner().sequence)
}

#[tokio::test]
async fn bad_uploads_are_refused_with_clear_statuses_and_change_nothing() {
    let f = start().await;
    let first = f.trust_list().unwrap();
    let seq2 = f.publish().await.unwrap();
    assert_eq!(seq2, 2);
    let current = f.trust_list().unwrap();

    // An older and an equal sequence.
    for old in [first.signed().clone(), current.signed().clone()] {
        let err = upload_as(&f, "coordinator", "nhc", old).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("is not newer than the held sequence 2"), "{}", err.message());
    }
    // A newer list signed by a key other than the national root (a province CA key).
    let mut forged = current.raw().clone();
    forged.sequence = 99;
    forged.revoked_serials.clear();
    let not_root = trust::sign(&forged, &f.pki.province_ca(&code("340000")).unwrap()).unwrap();
    let err = upload_as(&f, "coordinator", "nhc", not_root).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("does not verify against the national root"), "{}", err.message());
    // A correctly signed list whose payload was altered afterwards.
    let mut altered = current.signed().clone();
    let mut payload = pb::TrustList::decode(altered.payload.as_slice()).unwrap();
    payload.sequence = 100;
    altered.payload = payload.encode_to_vec();
    let err = upload_as(&f, "coordinator", "nhc", altered).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A good, newer list from identities that are not coordinators.
    f.pki.sign_trust_list().unwrap();
    let newer = f.trust_list().unwrap().signed().clone();
    for (kind, name) in [("hub", "h"), ("gateway", "national-2"), ("node", "340000"), ("auditor", "a")] {
        let err = upload_as(&f, kind, name, newer.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind}: {}", err.message());
        assert!(err.message().contains("is for coordinator identities"), "{}", err.message());
    }
    assert_eq!(f.gateway_trust().unwrap().current().sequence(), 2, "a refused upload changed the gateway");
    // The coordinator's upload of that same list is taken.
    assert_eq!(upload_as(&f, "coordinator", "nhc", newer).await.unwrap(), 3);
}

#[tokio::test]
async fn gateway_restarts_from_its_persisted_list_without_a_coordinator() {
    let mut f = start().await;
    let stale = std::fs::read(f.pki.trust_list_path()).unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();
    let addr = f.stop_gateway().await.unwrap();

    // The coordinator's file is stale, then gone: the gateway still starts on sequence 2.
    std::fs::write(f.pki.trust_list_path(), &stale).unwrap();
    f.restart_gateway(addr).await.unwrap();
    assert_eq!(f.gateway_trust().unwrap().current().sequence(), seq);
    let addr = f.stop_gateway().await.unwrap();
    std::fs::remove_file(f.pki.trust_list_path()).unwrap();
    f.restart_gateway(addr).await.unwrap();
    assert_eq!(f.gateway_trust().unwrap().current().sequence(), seq);

    // And it serves: hubs get the persisted list, lookups work, nodes follow it again.
    let issued = seed(&f, &anhui_subject(), 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("after-restart").await.unwrap();
    assert_eq!(hub.refresh_trust_list().await.unwrap().sequence(), f.gateway_trust().unwrap().current().sequence());
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    f.pki.sign_trust_list().unwrap();
    let next = f.trust_list().unwrap();
    let coordinator = f.identity("coordinator", "nhc").unwrap();
    let channel = client_channel(&coordinator, ExpectedPeer::AnyGateway, f.gateway_addr());
    pb::trust_registry_client::TrustRegistryClient::new(channel).upload(next.signed().clone()).await.unwrap();
    f.until_everyone_has(next.sequence()).await.unwrap();
}

#[tokio::test]
async fn watch_streams_every_newer_list_and_hubs_refuse_rollback() {
    let f = start().await;
    let hub = f.identity("hub", "watcher").unwrap();
    let channel = client_channel(&hub, ExpectedPeer::AnyGateway, f.gateway_addr());
    let mut client = pb::trust_registry_client::TrustRegistryClient::new(channel);
    let mut stream = client.watch(pb::WatchTrustListRequest { known_sequence: 0 }).await.unwrap().into_inner();
    let root = f.pki.root_cert_der().unwrap();
    let first = TrustList::verify(stream.message().await.unwrap().unwrap(), &root).unwrap();
    assert_eq!(first.sequence(), 1);
    f.pki
        .put_rule(huren_pki::registry::RegistryRule {
            id: "NEW-RULE".into(),
            title: "A rule added later".into(),
            legal_basis: String::new(),
            may_assign: vec!["YELLOW".into()],
            max_duration_seconds: 86_400,
            exit_condition: String::new(),
            authorities: vec!["340000/hefei-cdc".into()],
            lapses_to: None,
        })
        .unwrap();
    f.publish().await.unwrap();
    let second = TrustList::verify(stream.message().await.unwrap().unwrap(), &root).unwrap();
    assert_eq!(second.sequence(), 2);
    assert!(second.rule("NEW-RULE").is_some());
    assert_eq!(
        trust::diff(&first, &second),
        vec!["sequence 1 -> 2".to_owned(), "+ rule NEW-RULE: A rule added later".into()]
    );

    // A hub's cache never goes back to an older list: the hub holds sequence 3 (signed,
    // not yet uploaded) while the gateway still serves 2.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.bin");
    let third = f.pki.sign_trust_list().unwrap();
    assert_eq!(third.sequence(), 3);
    third.save(&cache).unwrap();
    let mut client =
        huren_cli::hub::HubClient::connect(&f.gateway_addr().to_string(), &hub).unwrap().with_cache(&cache).unwrap();
    assert_eq!(client.trust_list().unwrap().sequence(), 3);
    match client.refresh_trust_list().await {
        Err(huren_cli::hub::HubError::Rollback { got: 2, held: 3 }) => {}
        other => panic!("an older list from the gateway was not refused: {other:?}"),
    }
    assert_eq!(client.trust_list().unwrap().sequence(), 3);
    assert_eq!(TrustList::load(&cache, &root).unwrap().sequence(), 3);
    // Equal sequences are kept as they are, and the hub keeps working on its copy.
    second.save(&cache).unwrap();
    let mut client =
        huren_cli::hub::HubClient::connect(&f.gateway_addr().to_string(), &hub).unwrap().with_cache(&cache).unwrap();
    assert_eq!(client.refresh_trust_list().await.unwrap().sequence(), 2);
}

#[tokio::test]
async fn a_hub_refuses_a_gateway_whose_certificate_the_trust_list_revokes() {
    let f = start().await;
    let issued = seed(&f, &anhui_subject(), 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("careful-scanner").await.unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();

    // The gateway's certificate is revoked (stolen key, say) in the newest list, which
    // the hub holds; the gateway itself goes on presenting it.
    f.pki.revoke_issued("gateway", huren_cli::federation::GATEWAY_NAME).unwrap();
    let newest = f.pki.sign_trust_list().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.bin");
    newest.save(&cache).unwrap();
    let identity = f.identity("hub", "careful-scanner").unwrap();
    let mut careful = huren_cli::hub::HubClient::connect(&f.gateway_addr().to_string(), &identity)
        .unwrap()
        .with_cache(&cache)
        .unwrap();
    let err = careful.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert!(
        matches!(err, huren_cli::hub::HubError::Connection(_)),
        "the hub talked to a gateway with a revoked certificate: {err:?}"
    );
    // A hub whose list does not revoke it still gets through (the refusal is the hub's own).
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
}

#[tokio::test]
async fn retired_province_leaves_the_federation() {
    let f = start().await;
    let issued = seed(&f, &anhui_subject(), 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("checker").await.unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    let anhui = code("340000");
    let admin = f.identity("admin", "340000").unwrap();
    f.pki.retire_province(&anhui).unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).await.unwrap();
    let err = hub
        .lookup_raw(pb::LookupRequest {
            province: "340000".into(),
            token: scanned.token().to_vec(),
            purpose: "transit.rail".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("not in the trust list"));
    // Its admin certificate (issued by the now-revoked province CA) no longer works anywhere.
    let err = f
        .admin_client_as(&anhui, &admin)
        .unwrap()
        .upsert_status(pb::UpsertStatusRequest { subject_ref: "x".into(), status: 1, ..Default::default() })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_ne!(err.code(), Code::PermissionDenied, "{err:?}");
}
