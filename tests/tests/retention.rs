//! Retention, sunset and proven deletion.

use std::time::Duration;

use huren_cli::audit::{scan_node_data, verify_receipt, AuditClient};
use huren_cli::demo::{demo_rules, demo_subjects, seed, RED_RULE};
use huren_cli::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_pki::clock::Clock;
use huren_pki::qr::Scanned;
use huren_pki::registry::RegistryRetention;
use huren_pki::unix_now;
use huren_proto::pb;
use huren_tests::{change, code, Deadline};
use prost::Message;
use tonic::Code;

async fn start_with(options: FederationOptions) -> (Federation, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start_with(dir.path(), &DEMO_PROVINCES, demo_rules(), options).await.unwrap();
    (f, dir)
}

#[tokio::test]
async fn retention_purges_on_simulated_time_and_the_log_still_verifies() {
    let t0 = unix_now();
    let (clock, hand) = Clock::manual(t0);
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    options.node.retention_interval = Duration::from_millis(20);
    let (f, _dir) = start_with(options).await;
    f.pki
        .set_retention(RegistryRetention {
            status_max_age_seconds: 3600,
            audit_max_age_seconds: 7200,
            cache_max_seconds: 60,
        })
        .unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold trust list {seq}")).await.unwrap();
    assert_eq!(f.gateway_trust().unwrap().current().retention().status_max_age, 3600);

    let anhui = code("340000");
    let mut admin = f.admin_client(&anhui).unwrap();
    let mut cdc = f.authority_client("340000/hefei-cdc").unwrap();
    for i in 0..4 {
        cdc.upsert_status(change(&format!("ah-{i}"), pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    }
    admin
        .issue_token(pb::IssueTokenRequest {
            subject_ref: "ah-0".into(),
            lifetime_seconds: 300,
            purpose: String::new(),
        })
        .await
        .unwrap();
    let mut audit = AuditClient::connect(
        Some(&f.node_addr(&anhui).unwrap().to_string()),
        &anhui,
        &f.identity("auditor", "a").unwrap(),
        f.gateway_trust().unwrap().current().as_ref().clone(),
    )
    .unwrap();
    let (before_signed, _) = audit.tree_head().await.unwrap();

    // An hour and a bit later: statuses and the expired token go, the log stays.
    let mut purges = f.node_purges(&anhui).unwrap();
    hand.advance(3601);
    let report = purges
        .wait_for(|r| r.time >= t0 + 3601)
        .deadline("Anhui's retention purge at t0 + 3601 s")
        .await
        .unwrap()
        .clone();
    assert_eq!(report.deleted.get("status"), Some(&4));
    assert_eq!(report.deleted.get("token"), Some(&1));
    assert_eq!(report.deleted.get("log_entry"), None);
    let err = admin
        .issue_token(pb::IssueTokenRequest { subject_ref: "ah-1".into(), lifetime_seconds: 60, purpose: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "status records outlived the policy");

    // Past the audit window: entries go too, but their leaf hashes keep the log verifiable.
    hand.advance(7200);
    purges
        .wait_for(|r| r.time >= t0 + 10_801 && r.deleted.get("log_entry") == Some(&4))
        .deadline("Anhui's retention purge of its 4 log entries at t0 + 10801 s")
        .await
        .unwrap();
    let (after_signed, after) = audit.tree_head().await.unwrap();
    assert_eq!(after.tree_size, 4);
    audit.verify_consistency(&before_signed, &after_signed).await.unwrap();
    assert!(audit.fetch_verified(&after).await.unwrap().is_empty(), "purged entries are no longer served");
}

#[tokio::test]
async fn manual_purge_produces_a_receipt_that_verifies() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let shandong = code("370000");
    let mut admin = f.admin_client(&shandong).unwrap();
    for i in 0..3 {
        admin.upsert_status(change(&format!("sd-{i}"), pb::HealthStatus::Green, "", "")).await.unwrap();
    }
    let trust = f.gateway_trust().unwrap().current();
    let head = {
        let mut audit = AuditClient::connect(
            Some(&f.node_addr(&shandong).unwrap().to_string()),
            &shandong,
            &f.identity("auditor", "a").unwrap(),
            trust.as_ref().clone(),
        )
        .unwrap();
        audit.tree_head().await.unwrap().0
    };
    f.stop_node(&shandong).deadline("Shandong's node to stop (graceful drain)").await.unwrap();

    let store = huren_node::Store::open(&f.node_store_path(&shandong)).unwrap();
    let keys = huren_node::KeyRing::load(&f.pki.province_dir(&shandong)).unwrap();
    let plan = huren_node::store::PurgePlan { everything: true, ..Default::default() };
    let mut progress = Vec::new();
    let signed = huren_node::retention::purge_with_receipt(
        &store,
        &keys,
        &trust,
        &shandong,
        &plan,
        "manual",
        unix_now(),
        &mut |n| progress.push(n),
    )
    .unwrap();
    drop(store);
    assert_eq!(progress.last(), Some(&6), "3 statuses and 3 log entries");
    let checked = verify_receipt(&trust, &signed, Some(&head)).unwrap();
    assert_eq!((checked.province.as_str(), checked.reason.as_str()), ("370000", "manual"));
    assert_eq!(checked.deleted.get("status"), Some(&3));
    assert_eq!(checked.deleted.get("log_entry"), Some(&3));
    assert!(checked.remaining.is_empty());
    assert_eq!(checked.final_tree_size, 3);
    assert!(scan_node_data(&f.node_data_dir(&shandong)).unwrap().values().all(|v| *v == 0));

    // An altered receipt, or one signed by another province's key, is refused.
    let mut altered = signed.clone();
    let mut receipt = pb::DeletionReceipt::decode(altered.receipt.as_slice()).unwrap();
    receipt.counts[0].count += 1;
    altered.receipt = receipt.encode_to_vec();
    assert!(verify_receipt(&trust, &altered, None).is_err());
    let other = f
        .attestation_key(&code("340000"))
        .unwrap()
        .sign_receipt(&pb::DeletionReceipt::decode(signed.receipt.as_slice()).unwrap());
    let err = verify_receipt(&trust, &other, None).unwrap_err();
    assert!(format!("{err:#}").contains("is not an attestation key of province 370000"), "{err:#}");
}

#[tokio::test]
async fn sunset_stops_the_federation_and_every_province_proves_its_deletion() {
    let (mut f, _dir) = start_with(FederationOptions {
        node: huren_node::NodeSettings { retention_interval: Duration::from_millis(20), ..Default::default() },
        ..Default::default()
    })
    .await;
    let mut issued = Vec::new();
    for s in demo_subjects() {
        issued.push(seed(&f, &s, 600).await.unwrap());
    }
    let mut hub = f.hub("last-checkpoint").deadline("hub last-checkpoint registered on every server").await.unwrap();
    let scanned = Scanned::parse(&issued[0].qr).unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();

    let mut receipts = f.gateway_receipts().unwrap();
    f.pki.set_sunset(unix_now(), "the epidemic-control mandate has ended").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold the sunset trust list {seq}")).await.unwrap();

    let err = hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert!(err.to_string().contains("federation sunset"), "{err}");
    receipts.wait_for(|n| *n == 3).deadline("the gateway to hold all three sunset deletion receipts").await.unwrap();

    // Coordinators collect the receipts; each verifies against the trust list.
    let coordinator = f.identity("coordinator", "nhc").unwrap();
    let channel = huren_tests::client_channel(&coordinator, huren_pki::tls::ExpectedPeer::AnyGateway, f.gateway_addr());
    let list = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .list_receipts(pb::ListReceiptsRequest {})
        .await
        .unwrap()
        .into_inner();
    let trust = f.gateway_trust().unwrap().current();
    let mut provinces: Vec<String> = Vec::new();
    for signed in &list.receipts {
        let checked = verify_receipt(&trust, signed, None).unwrap();
        assert_eq!(checked.reason, "sunset");
        assert!(checked.remaining.is_empty(), "{checked:?}");
        assert_eq!(checked.deleted.get("status"), Some(&1));
        provinces.push(checked.province);
    }
    provinces.sort();
    assert_eq!(provinces, ["340000", "370000", "440000"]);

    // Nodes refuse everything now, and their data folders hold nothing of anyone.
    let err = f
        .admin_client(&code("340000"))
        .unwrap()
        .upsert_status(change("ah-new", pb::HealthStatus::Green, "", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    for (p, _) in DEMO_PROVINCES {
        let p = code(p);
        f.stop_node(&p).deadline(&format!("province {p}'s node to stop (graceful drain)")).await.unwrap();
        let counts = scan_node_data(&f.node_data_dir(&p)).unwrap();
        assert!(counts.values().all(|v| *v == 0), "{p}: {counts:?}");
    }
    // Hubs may not read receipts; a node cannot hand one in for another province.
    let hub_id = f.identity("hub", "last-checkpoint").unwrap();
    let channel = huren_tests::client_channel(&hub_id, huren_pki::tls::ExpectedPeer::AnyGateway, f.gateway_addr());
    let err = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .list_receipts(pb::ListReceiptsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let node = f.identity("node", "440000").unwrap();
    let channel = huren_tests::client_channel(&node, huren_pki::tls::ExpectedPeer::AnyGateway, f.gateway_addr());
    let err = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .submit_receipt(
            list.receipts
                .iter()
                .find(|r| verify_receipt(&trust, r, None).unwrap().province == "340000")
                .unwrap()
                .clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn scan_counts_keys_left_under_the_huren_prefix_in_redis() {
    let prefix = format!("huren-test-{}-{}:", std::process::id(), unix_now());
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}att:0123");
    let _: () = redis::AsyncCommands::set(&mut conn, &key, "x").await.unwrap();
    assert_eq!(huren_cli::audit::scan_redis("redis://127.0.0.1:6379", &prefix).await.unwrap(), 1);
    let _: () = redis::AsyncCommands::del(&mut conn, &key).await.unwrap();
    assert_eq!(huren_cli::audit::scan_redis("redis://127.0.0.1:6379", &prefix).await.unwrap(), 0);
}
