//! Retention, sunset and proven deletion.

use std::sync::Arc;
use std::time::Duration;

use huren_cli::audit::{scan_node_data, scan_node_data_raw, verify_receipt};
use huren_cli::demo::{demo_subjects, seed, RED_RULE};
use huren_cli::federation::{Federation, FederationOptions, NodeRedis, DEMO_PROVINCES};
use huren_pki::qr::Scanned;
use huren_pki::registry::RegistryRetention;
use huren_pki::trust::TrustList;
use huren_pki::{unix_now, ProvinceCode};
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_tests::{
    audit_client, change, code, http_get, registry_client, serve_admin, start_with, token_request, Deadline,
    RedisPrefix,
};
use prost::Message;
use tonic::Code;

/// A manual purge of everything in `province`'s (stopped) node store, with its signed
/// receipt, as `huren node purge` makes it; `progress` hears how many records are gone.
fn purge_everything(
    f: &Federation,
    province: &ProvinceCode,
    trust: &TrustList,
    progress: &mut dyn FnMut(u64),
) -> pb::SignedDeletionReceipt {
    let store = huren_node::Store::open(&f.node_store_path(province)).unwrap();
    let keys = huren_node::KeyRing::load(&f.pki.province_dir(province)).unwrap();
    let plan = huren_node::store::PurgePlan { everything: true, ..Default::default() };
    let signed = huren_node::retention::purge_with_receipt(
        &store,
        &keys,
        trust,
        province,
        &plan,
        "manual",
        unix_now(),
        progress,
    )
    .unwrap();
    drop(store);
    signed
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
    admin.issue_token(token_request("ah-0", 300)).await.unwrap();
    let mut audit = audit_client(&f, &anhui, "a");
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
    let err = admin.issue_token(token_request("ah-1", 60)).await.unwrap_err();
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
        let mut audit = audit_client(&f, &shandong, "a");
        audit.tree_head().await.unwrap().0
    };
    f.stop_node(&shandong).deadline("Shandong's node to stop (graceful drain)").await.unwrap();

    let mut progress = Vec::new();
    let signed = purge_everything(&f, &shandong, &trust, &mut |n| progress.push(n));
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
        // Travellers' apps rotate tokens: many records name each subject.
        let mut admin = f.admin_client(&code(s.province)).unwrap();
        for _ in 0..40 {
            admin.issue_token(token_request(s.subject_ref, 600)).await.unwrap();
        }
    }
    let mut hub = f.hub("last-checkpoint").deadline("hub last-checkpoint registered on every server").await.unwrap();
    let scanned = Scanned::parse(&issued[0].qr).unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    // An auditor saved every province's tree head before the end.
    let mut saved = std::collections::BTreeMap::new();
    for (p, _) in DEMO_PROVINCES {
        let p = code(p);
        let mut audit = audit_client(&f, &p, "a");
        saved.insert(p.to_string(), audit.tree_head().await.unwrap().0);
    }

    let mut receipts = f.gateway_receipts().unwrap();
    f.pki.set_sunset(unix_now(), "the epidemic-control mandate has ended").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold the sunset trust list {seq}")).await.unwrap();

    let err = hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert!(err.to_string().contains("federation sunset"), "{err}");
    receipts.wait_for(|n| *n == 3).deadline("the gateway to hold all three sunset deletion receipts").await.unwrap();

    // Coordinators collect the receipts; each verifies against the trust list.
    let list =
        registry_client(&f, "coordinator", "nhc").list_receipts(pb::ListReceiptsRequest {}).await.unwrap().into_inner();
    let trust = f.gateway_trust().unwrap().current();
    let mut provinces: Vec<String> = Vec::new();
    for signed in &list.receipts {
        let checked = verify_receipt(&trust, signed, None).unwrap();
        assert_eq!(checked.reason, "sunset");
        assert!(checked.remaining.is_empty(), "{checked:?}");
        assert_eq!(checked.deleted.get("status"), Some(&1));
        // The final log extends what the auditor saw before (the leaf hashes are gone now).
        let head = &saved[&checked.province];
        let consistent = verify_receipt(&trust, signed, Some(head)).unwrap();
        assert_eq!(consistent.consistent_with_saved_head, Some(1), "{consistent:?}");
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
        // Not even in the raw bytes: redb does not wipe freed pages, the sunset rewrote the file.
        let raw = std::fs::read(f.node_store_path(&p)).unwrap();
        for s in demo_subjects() {
            let needle = s.subject_ref.as_bytes();
            assert!(!raw.windows(needle.len()).any(|w| w == needle), "{p}: {} remains in status.redb", s.subject_ref);
        }
        let refs: Vec<Vec<u8>> = demo_subjects().iter().map(|s| s.subject_ref.as_bytes().to_vec()).collect();
        let found = scan_node_data_raw(&f.node_data_dir(&p), &refs).unwrap();
        assert!(found.is_empty(), "{p}: {found:?}");
    }
    // Hubs may not read receipts; a node cannot hand one in for another province.
    let err =
        registry_client(&f, "hub", "last-checkpoint").list_receipts(pb::ListReceiptsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = registry_client(&f, "node", "440000")
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

#[tokio::test]
async fn a_receipt_proves_consistency_with_tree_heads_saved_before_the_purge() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let shandong = code("370000");
    let trust = f.gateway_trust().unwrap().current();
    let mut admin = f.admin_client(&shandong).unwrap();
    let mut audit = audit_client(&f, &shandong, "a");
    // Heads saved at sizes 2, 5 and 9; the log ends at 10.
    let mut saved = Vec::new();
    for round in 0..3 {
        for i in 0..round + 2 {
            admin.upsert_status(change(&format!("sd-{round}-{i}"), pb::HealthStatus::Green, "", "")).await.unwrap();
        }
        saved.push(audit.tree_head().await.unwrap().0);
    }
    admin.upsert_status(change("sd-last", pb::HealthStatus::Green, "", "")).await.unwrap();
    f.stop_node(&shandong).deadline("Shandong's node to stop (graceful drain)").await.unwrap();

    let signed = purge_everything(&f, &shandong, &trust, &mut |_| {});
    // The leaf hashes are gone: only the receipt can still answer for the log.
    assert_eq!(scan_node_data(&f.node_data_dir(&shandong)).unwrap().get("log_hash"), Some(&0));
    for (head, size) in saved.iter().zip([2, 5, 9]) {
        let checked = verify_receipt(&trust, &signed, Some(head)).unwrap();
        assert_eq!((checked.final_tree_size, checked.consistent_with_saved_head), (10, Some(size)));
        assert_eq!(checked.consistency_from, [2, 5, 9]);
    }

    // A head of a size the node never signed has no proof in the receipt.
    let key = f.attestation_key(&shandong).unwrap();
    let head = |size: u64, root: u8| {
        key.sign_tree_head(&pb::TreeHead {
            province: "370000".into(),
            tree_size: size,
            root_hash: vec![root; 32],
            timestamp: unix_now(),
        })
    };
    let err = verify_receipt(&trust, &signed, Some(&head(7, 1))).unwrap_err();
    assert!(format!("{err:#}").contains("carries no consistency proof from tree size 7"), "{err:#}");
    // A forked history at a proven size does not verify.
    let err = verify_receipt(&trust, &signed, Some(&head(5, 2))).unwrap_err();
    assert!(format!("{err:#}").contains("is not an append-only extension of the saved head (5)"), "{err:#}");
    // Nor does an altered proof, even re-signed with the province's own key.
    let mut receipt = pb::DeletionReceipt::decode(signed.receipt.as_slice()).unwrap();
    receipt.consistency[1].hashes[0][0] ^= 1;
    let err = verify_receipt(&trust, &key.sign_receipt(&receipt), Some(&saved[1])).unwrap_err();
    assert!(format!("{err:#}").contains("is not an append-only extension"), "{err:#}");
    // And a final log behind the saved head is refused.
    let err = verify_receipt(&trust, &signed, Some(&head(11, 1))).unwrap_err();
    assert!(format!("{err:#}").contains("is behind a head seen earlier"), "{err:#}");
}

#[tokio::test]
async fn verify_receipt_refuses_leftovers_after_a_sunset_and_keys_outside_their_window() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let trust = f.gateway_trust().unwrap().current();
    let key = f.attestation_key(&anhui).unwrap();
    let window = trust.province(&anhui).unwrap().keys.get(&key.kid()).unwrap().clone();
    let now = unix_now();
    let head = |timestamp: i64| {
        key.sign_tree_head(&pb::TreeHead { province: "340000".into(), tree_size: 0, root_hash: vec![0; 32], timestamp })
    };
    let base = pb::DeletionReceipt {
        province: "340000".into(),
        time: now,
        reason: "sunset".into(),
        deleted_root: vec![7; 32],
        final_tree_head: Some(head(now)),
        ..Default::default()
    };
    verify_receipt(&trust, &key.sign_receipt(&base), None).unwrap();

    // A sunset receipt that admits to records left is no proof of deletion.
    let mut left = base.clone();
    left.remaining = vec![pb::DeletedCount { kind: "status".into(), count: 2 }];
    let err = verify_receipt(&trust, &key.sign_receipt(&left), None).unwrap_err();
    assert!(format!("{err:#}").contains("sunset receipt of province 340000 says records remain: 2 status"), "{err:#}");
    left.reason = "manual".into();
    let checked = verify_receipt(&trust, &key.sign_receipt(&left), None).unwrap();
    assert_eq!(checked.remaining.get("status"), Some(&2), "a manual purge may leave records, and says so");

    // Dated outside the signing key's validity window: refused.
    for time in [window.not_before - 1, window.not_after] {
        let mut dated = base.clone();
        dated.time = time;
        let err = verify_receipt(&trust, &key.sign_receipt(&dated), None).unwrap_err();
        assert!(format!("{err:#}").contains("deletion receipt dated"), "{err:#}");
        assert!(format!("{err:#}").contains("valid only from"), "{err:#}");
        let mut dated = base.clone();
        dated.final_tree_head = Some(head(time));
        let err = verify_receipt(&trust, &key.sign_receipt(&dated), None).unwrap_err();
        assert!(format!("{err:#}").contains("final tree head dated"), "{err:#}");
    }
}

#[tokio::test]
async fn node_metrics_count_purges_and_readyz_says_when_the_trust_list_is_stale() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let mut cdc = f.authority_client("340000/hefei-cdc").unwrap();
    for i in 0..3 {
        cdc.upsert_status(change(&format!("ah-{i}"), pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    }
    f.stop_node(&anhui).deadline("Anhui's node to stop (graceful drain)").await.unwrap();

    // The same node again, on simulated time, its metrics in a registry of our own.
    let t0 = unix_now();
    let (clock, hand) = Clock::manual(t0);
    let metrics = huren_cli::telemetry::PrometheusMetrics::new().unwrap();
    let tls = f.identity("node", "340000").unwrap();
    let trust = huren_runtime::live::LiveTrust::new(
        f.gateway_trust().unwrap().current().as_ref().clone(),
        tls.root.to_vec(),
        None,
    )
    .unwrap();
    let next_update = trust.current().raw().next_update;
    let node = huren_node::Node::new(
        tls,
        huren_node::KeyRing::load(&f.pki.province_dir(&anhui)).unwrap(),
        trust,
        huren_node::Store::open(&f.node_store_path(&anhui)).unwrap(),
        huren_node::NodeSettings { clock, retention_interval: Duration::from_millis(20), ..Default::default() },
    )
    .unwrap()
    .with_meter(metrics.meter("huren-node"));
    let mut purges = node.purge_reports();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(node.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    let ready = node.clone();
    let readiness: huren_cli::admin::Readiness = Arc::new(move || ready.readiness());
    let (admin_addr, stop_admin) = serve_admin(&metrics, readiness).await;

    purges.wait_for(|r| r.time >= t0).deadline("Anhui's first retention run").await.unwrap();
    let ready = http_get(admin_addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200") && !ready.contains("DEGRADED"), "{ready}");

    // 31 days on: past the 30-day status window, and past the trust list's next_update.
    let later = t0 + 31 * 86_400;
    assert!(later > next_update);
    hand.set(later);
    let report =
        purges.wait_for(|r| r.time >= later).deadline("Anhui's retention purge 31 days on").await.unwrap().clone();
    assert_eq!(report.deleted.get("status"), Some(&3));

    let body = http_get(admin_addr, "/metrics").await;
    for series in [
        "huren_node_purged_records_total",
        "huren_node_purge_runs_total",
        "huren_node_purge_last_run_timestamp_seconds",
        "huren_node_purge_progress_records",
        "huren_expiry_seconds",
        "huren_trust_list_sequence",
    ] {
        assert!(body.contains(series), "{series} missing from /metrics:\n{body}");
    }
    for i in 0..3 {
        assert!(!body.contains(&format!("ah-{i}")), "a subject reference reached the metrics");
    }
    let value = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels);
    let retention = [("province", "340000"), ("reason", "retention")];
    let kind = |k: &'static str| [retention[0], retention[1], ("kind", k)];
    assert_eq!(value("huren_node_purged_records_total", &kind("status")), 3.0);
    assert_eq!(value("huren_node_purged_records_total", &kind("token")), 0.0);
    assert_eq!(value("huren_node_purged_records_total", &kind("log_entry")), 0.0);
    assert!(body.contains("huren_node_purged_records_total{kind=\"log_entry\""), "zero series exist too:\n{body}");
    assert!(value("huren_node_purge_runs_total", &[retention[0], retention[1], ("outcome", "ok")]) >= 2.0);
    assert_eq!(value("huren_node_purge_runs_total", &[("outcome", "failed")]), 0.0);
    assert_eq!(value("huren_node_purge_last_run_timestamp_seconds", &retention), later as f64);
    assert_eq!(value("huren_node_purge_progress_records", &[]), 0.0, "no purge under way");
    assert!(value("huren_trust_list_sequence", &[]) >= 1.0);

    // A stale trust list degrades the node but it keeps serving.
    let ready = http_get(admin_addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("DEGRADED: trust list stale"), "{ready}");

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let _ = stop_admin.send(());
}

/// A federation whose nodes keep their stores in Redis: statuses survive a node restart,
/// the log verifies, and after the sunset `huren audit scan --redis` finds no subject key.
#[tokio::test]
async fn nodes_on_redis_keep_statuses_across_a_restart_and_leave_no_subject_key_after_a_sunset() {
    use clap::Parser as _;
    let redis = RedisPrefix::new("node-store");
    let (mut f, _dir) = start_with(FederationOptions {
        node: huren_node::NodeSettings { retention_interval: Duration::from_millis(20), ..Default::default() },
        node_redis: Some(NodeRedis { url: redis.url.clone(), prefix: redis.prefix.clone() }),
        ..Default::default()
    })
    .await;
    let anhui = code("340000");
    let prefix = f.node_redis_prefix(&anhui).unwrap();
    let mut cdc = f.authority_client("340000/hefei-cdc").unwrap();
    for i in 0..3 {
        cdc.upsert_status(change(&format!("ah-{i}"), pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    }
    let mut admin = f.admin_client(&anhui).unwrap();
    admin.upsert_status(change("ah-3", pb::HealthStatus::Green, "", "")).await.unwrap();
    assert!(!f.node_store_path(&anhui).exists(), "the node keeps no redb file when its store is in Redis");
    let (before_signed, before) = audit_client(&f, &anhui, "a").tree_head().await.unwrap();
    assert_eq!(before.tree_size, 4);

    // A restart: the statuses and the log are still there (read back from Redis).
    let addr = f.stop_node(&anhui).deadline("Anhui's node to stop (graceful drain)").await.unwrap();
    f.restart_node(&anhui, addr).await.unwrap();
    let mut admin = f.admin_client(&anhui).unwrap();
    for i in 0..4 {
        let token = token_request(&format!("ah-{i}"), 600);
        admin.issue_token(token).await.unwrap_or_else(|e| panic!("ah-{i} lost across the restart: {e}"));
    }
    admin.upsert_status(change("ah-4", pb::HealthStatus::Green, "", "")).await.unwrap();
    let mut audit = audit_client(&f, &anhui, "a");
    let (after_signed, after) = audit.tree_head().await.unwrap();
    assert_eq!(after.tree_size, 5);
    audit.verify_consistency(&before_signed, &after_signed).await.unwrap();
    let entries = audit.fetch_verified(&after).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries.iter().filter(|e| e.status == pb::HealthStatus::Red as i32).count(), 3);
    assert!(huren_cli::audit::scan_redis(&redis.url, &prefix).await.unwrap() > 0, "the store is in Redis");

    // The sunset: every node purges, Anhui's Redis keys included.
    let mut receipts = f.gateway_receipts().unwrap();
    f.pki.set_sunset(unix_now(), "the epidemic-control mandate has ended").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold the sunset trust list {seq}")).await.unwrap();
    receipts.wait_for(|n| *n == 3).deadline("the gateway to hold all three sunset deletion receipts").await.unwrap();
    let trust = f.gateway_trust().unwrap().current();
    let list =
        registry_client(&f, "coordinator", "nhc").list_receipts(pb::ListReceiptsRequest {}).await.unwrap().into_inner();
    let anhui_receipt =
        list.receipts.iter().find(|r| verify_receipt(&trust, r, None).unwrap().province == "340000").unwrap();
    let checked = verify_receipt(&trust, anhui_receipt, Some(&before_signed)).unwrap();
    assert_eq!((checked.deleted.get("status"), checked.deleted.get("log_entry")), (Some(&5), Some(&5)));
    assert!(checked.remaining.is_empty(), "{checked:?}");
    assert_eq!(checked.consistent_with_saved_head, Some(4));

    let scan = ["huren", "audit", "scan", "--redis", &redis.url, "--redis-prefix", &prefix];
    huren_cli::run(huren_cli::Cli::try_parse_from(scan).unwrap()).await.unwrap();
    assert_eq!(huren_cli::audit::scan_redis(&redis.url, &prefix).await.unwrap(), 0);
    // The receipt survives a restart (it is kept in Redis), so the node stays sunset.
    let addr = f.stop_node(&anhui).deadline("Anhui's node to stop after the sunset").await.unwrap();
    f.restart_node(&anhui, addr).await.unwrap();
    let err = f.admin_client(&anhui).unwrap().upsert_status(change("ah-new", pb::HealthStatus::Green, "", "")).await;
    assert_eq!(err.unwrap_err().code(), Code::Unavailable);
}
