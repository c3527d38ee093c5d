//! Accountable status assignment: the transparency log, its proofs, and the statistics.

use huren_cli::audit::{stats, verify_subject_entries};
use huren_cli::demo::{RED_RULE, YELLOW_RULE};
use huren_cli::federation::FederationOptions;
use huren_pki::qr::Scanned;
use huren_pki::unix_now;
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_tests::{audit_client, change, code, start, start_with, token_request};
use prost::Message;
use redb::ReadableTable as _;
use tonic::Code;

const JINAN_CDC: &str = "spiffe://huren.gov/province/370000/authority/jinan-cdc";

#[tokio::test]
async fn every_acknowledged_change_is_logged_and_proofs_verify() {
    let f = start().await;
    let shandong = code("370000");
    let mut admin = f.admin_client(&shandong).unwrap();
    let mut cdc = f.authority_client("370000/jinan-cdc").unwrap();
    let mut audit = audit_client(&f, &code("370000"), "third-party");
    let (_, empty) = audit.tree_head().await.unwrap();
    assert_eq!(empty.tree_size, 0);

    admin.upsert_status(change("sd-a", pb::HealthStatus::Green, "", "")).await.unwrap();
    cdc.upsert_status(change("sd-b", pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    cdc.upsert_status(change("sd-c", pb::HealthStatus::Yellow, YELLOW_RULE, "")).await.unwrap();
    let (first_signed, first) = audit.tree_head().await.unwrap();
    assert_eq!(first.tree_size, 3);
    // Refused changes leave no trace.
    let err = cdc.upsert_status(change("sd-d", pb::HealthStatus::Red, "NO-SUCH-RULE", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // The admin may not lift the CDC's current RED; the CDC, which the rule names, may.
    let err = admin.upsert_status(change("sd-b", pb::HealthStatus::Green, "", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    cdc.upsert_status(change("sd-b", pb::HealthStatus::Green, "", "")).await.unwrap();
    let (second_signed, second) = audit.tree_head().await.unwrap();
    assert_eq!(second.tree_size, 4);

    audit.verify_consistency(&first_signed, &second_signed).await.unwrap();
    let entries = audit.fetch_verified(&second).await.unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        (entries[1].status, entries[1].rule_id.as_str(), entries[1].authority.as_str()),
        (pb::HealthStatus::Red as i32, RED_RULE, JINAN_CDC)
    );
    assert_eq!(entries[0].authority, "spiffe://huren.gov/province/370000/admin", "who set the GREEN");
    assert_eq!(entries[1].subject_commitment, entries[3].subject_commitment, "one subject, one commitment");
    assert_eq!(
        (entries[3].status, entries[3].authority.as_str(), entries[3].lifted_rule_id.as_str()),
        (pb::HealthStatus::Green as i32, JINAN_CDC, RED_RULE),
        "the lift names its lifter and the rule lifted"
    );
    assert!(entries[..3].iter().all(|e| e.lifted_rule_id.is_empty()));
    for e in &entries {
        assert_eq!(e.subject_commitment.len(), 32);
        assert!(!e.encode_to_vec().windows(4).any(|w| w == b"sd-b"), "subject reference leaked into the log");
    }
    // A consistency proof against a fabricated old head fails.
    let mut forged = first.clone();
    forged.root_hash[0] ^= 1;
    let key = f.attestation_key(&shandong).unwrap();
    let forged_signed = key.sign_tree_head(&forged);
    assert!(audit.verify_consistency(&forged_signed, &second_signed).await.is_err());
}

#[tokio::test]
async fn a_subject_sees_their_own_entries_with_inclusion_proofs() {
    let f = start().await;
    let anhui = code("340000");
    let mut admin = f.admin_client(&anhui).unwrap();
    let mut cdc = f.authority_client("340000/hefei-cdc").unwrap();
    cdc.upsert_status(change("ah-subject", pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    admin.upsert_status(change("ah-other", pb::HealthStatus::Green, "", "")).await.unwrap();
    cdc.upsert_status(change("ah-subject", pb::HealthStatus::Green, "", "")).await.unwrap();
    let token = admin.issue_token(token_request("ah-subject", 60)).await.unwrap().into_inner().token;
    let channel = huren_tests::node_channel(&f, &f.identity("admin", "340000").unwrap(), &anhui);
    let mut transparency = pb::transparency_client::TransparencyClient::new(channel);
    let response = transparency.get_subject_entries(pb::SubjectEntriesRequest { token }).await.unwrap().into_inner();
    let trust = f.gateway_trust().unwrap().current();
    let mine = verify_subject_entries(&trust, &response).unwrap();
    assert_eq!(mine.iter().map(|e| (e.index, e.status)).collect::<Vec<_>>(), vec![(0, 3), (2, 1)]);
    // A tampered entry no longer proves inclusion.
    let mut tampered = response.clone();
    let mut entry = pb::LogEntry::decode(tampered.entries[0].entry.as_slice()).unwrap();
    entry.authority = "someone-else".into();
    tampered.entries[0].entry = entry.encode_to_vec();
    assert!(verify_subject_entries(&trust, &tampered).unwrap_err().to_string().contains("not in the signed log"));
    // Hubs may not read logs.
    let hub_channel = huren_tests::node_channel(&f, &f.identity("hub", "nosy").unwrap(), &anhui);
    let err = pb::transparency_client::TransparencyClient::new(hub_channel)
        .get_entries(pb::GetEntriesRequest { start: 0, end: 3 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_tampered_log_is_detected_and_the_log_survives_restart() {
    let mut f = start().await;
    let guangdong = code("440000");
    let mut cdc = f.authority_client("440000/guangzhou-cdc").unwrap();
    for i in 0..5 {
        cdc.upsert_status(change(&format!("gd-{i}"), pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    }
    let mut audit = audit_client(&f, &code("440000"), "third-party");
    let (before_signed, before) = audit.tree_head().await.unwrap();

    // Restart: the log is still there, identical.
    let addr = f.stop_node(&guangdong).await.unwrap();
    f.restart_node(&guangdong, addr).await.unwrap();
    let mut audit = audit_client(&f, &code("440000"), "third-party");
    let (after_signed, after) = audit.tree_head().await.unwrap();
    assert_eq!((after.tree_size, &after.root_hash), (before.tree_size, &before.root_hash));
    audit.verify_consistency(&before_signed, &after_signed).await.unwrap();
    audit.fetch_verified(&after).await.unwrap();

    // Someone with disk access rewrites who applied entry 2.
    let addr = f.stop_node(&guangdong).await.unwrap();
    {
        let db = redb::Database::create(f.node_store_path(&guangdong)).unwrap();
        let table_def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("log_entries");
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(table_def).unwrap();
            let bytes = table.get(2).unwrap().unwrap().value().to_vec();
            let mut entry = pb::LogEntry::decode(bytes.as_slice()).unwrap();
            entry.authority = "spiffe://huren.gov/province/440000/authority/someone-else".into();
            table.insert(2, entry.encode_to_vec().as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    f.restart_node(&guangdong, addr).await.unwrap();
    let mut audit = audit_client(&f, &code("440000"), "third-party");
    let err = audit.fetch_verified(&before).await.unwrap_err();
    assert!(err.to_string().contains("tampered"), "{err}");
}

#[tokio::test]
async fn stats_reveal_a_mass_red_coding_by_one_authority() {
    let f = start().await;
    let henan_like = code("370000");
    let mut admin = f.admin_client(&henan_like).unwrap();
    let mut jinan = f.authority_client("370000/jinan-cdc").unwrap();
    let mut qingdao = f.authority_client("370000/qingdao-cdc").unwrap();
    let t0 = unix_now();
    for i in 0..25 {
        jinan.upsert_status(change(&format!("depositor-{i}"), pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    }
    for i in 0..3 {
        qingdao
            .upsert_status(change(&format!("contact-{i}"), pb::HealthStatus::Yellow, YELLOW_RULE, ""))
            .await
            .unwrap();
    }
    jinan.upsert_status(change("depositor-0", pb::HealthStatus::Red, RED_RULE, "")).await.unwrap();
    admin.upsert_status(change("someone", pb::HealthStatus::Green, "", "")).await.unwrap();
    let mut audit = audit_client(&f, &code("370000"), "third-party");
    let (_, head) = audit.tree_head().await.unwrap();
    let entries = audit.fetch_verified(&head).await.unwrap();
    let s = stats(&entries, t0 - 1, unix_now() + 1);
    assert_eq!(s.entries, 30);
    assert_eq!(s.non_green.len(), 2);
    assert_eq!(
        (
            s.non_green[0].status.as_str(),
            s.non_green[0].rule_id.as_str(),
            s.non_green[0].authority.as_str(),
            s.non_green[0].count,
            s.non_green[0].distinct_subjects
        ),
        ("RED", RED_RULE, JINAN_CDC, 26, 25)
    );
    assert_eq!(
        (s.non_green[1].authority.as_str(), s.non_green[1].count),
        ("spiffe://huren.gov/province/370000/authority/qingdao-cdc", 3)
    );
    // An empty window counts nothing.
    assert_eq!(stats(&entries, t0 - 100, t0 - 50).entries, 0);
}

#[tokio::test]
async fn a_lapsed_status_falls_back_as_its_rule_says() {
    let now = unix_now();
    let (clock, hand) = Clock::manual(now - 1000);
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    let (f, _dir) = start_with(options).await;
    let anhui = code("340000");
    let mut admin = f.admin_client(&anhui).unwrap();
    let mut red = change("ah-quarantined", pb::HealthStatus::Red, RED_RULE, "");
    red.valid_until = now - 900; // in the node's (past) present, 100 s from now
    f.authority_client("340000/hefei-cdc").unwrap().upsert_status(red).await.unwrap();
    hand.set(now); // the quarantine period is over
    let issued = admin.issue_token(token_request("ah-quarantined", 60)).await.unwrap().into_inner();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let status =
        f.hub("checker").await.unwrap().lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert_eq!((status.status.as_str(), status.rule_id), ("GREEN", None));
}

#[tokio::test]
async fn who_applied_a_status_is_an_identity_not_a_claim() {
    let f = start().await;
    let refused = |r: Result<tonic::Response<pb::UpsertStatusResponse>, tonic::Status>, code: Code, text: &str| {
        let err = r.expect_err("change was accepted");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(text), "{:?} does not say {text:?}", err.message());
    };
    let mut admin = f.admin_client(&code("370000")).unwrap();
    let mut jinan = f.authority_client("370000/jinan-cdc").unwrap();
    let red = || change("sd-depositor", pb::HealthStatus::Red, RED_RULE, "");

    // The province backend cannot turn a code red, whatever authority it names.
    refused(admin.upsert_status(red()).await, Code::PermissionDenied, "must be applied by an authority identity");
    let claimed = pb::UpsertStatusRequest { authority: "370000/jinan-cdc".into(), ..red() };
    refused(admin.upsert_status(claimed).await, Code::PermissionDenied, "is not the caller");
    // Another province's authority cannot act at this node at all.
    let mut hefei_at_shandong =
        f.admin_client_as(&code("370000"), &f.identity("authority", "340000/hefei-cdc").unwrap()).unwrap();
    refused(
        hefei_at_shandong.upsert_status(red()).await,
        Code::PermissionDenied,
        "admin and authority identities of province 370000",
    );
    // An authority of this province that the rule does not name is refused.
    let mut bank = f.authority_client("370000/bank-regulator").unwrap();
    refused(
        bank.upsert_status(red()).await,
        Code::PermissionDenied,
        "authority 370000/bank-regulator is not allowed to apply rule",
    );
    // An authority cannot file under another's name.
    let other = pb::UpsertStatusRequest { authority: "370000/qingdao-cdc".into(), ..red() };
    refused(jinan.upsert_status(other).await, Code::PermissionDenied, "is not the caller");
    // Authorities may not issue tokens (that is the backend's job).
    let token = jinan.issue_token(token_request("sd-depositor", 60)).await;
    assert_eq!(token.unwrap_err().code(), Code::PermissionDenied);

    // The named authority can, and the log says who it was.
    let mut audit = audit_client(&f, &code("370000"), "third-party");
    let (_, before) = audit.tree_head().await.unwrap();
    assert_eq!(before.tree_size, 0, "refused changes left no trace");
    jinan.upsert_status(pb::UpsertStatusRequest { authority: "370000/jinan-cdc".into(), ..red() }).await.unwrap();
    let (_, head) = audit.tree_head().await.unwrap();
    let entries = audit.fetch_verified(&head).await.unwrap();
    assert_eq!((entries.len(), entries[0].authority.as_str()), (1, JINAN_CDC));

    // Coordinators cannot register a rule that does not say who may apply it.
    let rule = |authorities: Vec<String>| huren_pki::registry::RegistryRule {
        id: "INCOMPLETE".into(),
        title: "A rule".into(),
        may_assign: vec!["RED".into()],
        max_duration_seconds: 86_400,
        authorities,
        ..Default::default()
    };
    let err = f.pki.put_rule(rule(vec![])).unwrap_err().to_string();
    assert!(err.contains("must name the authorities"), "{err}");
    let err = f.pki.put_rule(rule(vec!["jinan-cdc".into()])).unwrap_err().to_string();
    assert!(err.contains("must be written <province code>/<name>"), "{err}");
    let err = f
        .pki
        .put_rule(huren_pki::registry::RegistryRule {
            max_duration_seconds: 0,
            ..rule(vec!["370000/jinan-cdc".into()])
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("maximum duration"), "{err}");
}
