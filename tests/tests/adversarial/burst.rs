//! A large burst of concurrent upserts loses nothing acknowledged.

use std::time::Instant;

use huren_pki::qr;
use huren_pki::unix_now;
use huren_proto::pb;
use huren_tests::{audit_client, change, code, node_channel, start, RED_RULE};

use crate::common::{green_upsert, transparency};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_upserts_loses_nothing_acknowledged() {
    const UPSERTS: usize = 2000;
    let f = start().await;
    let anhui = code("340000");
    let auditor = f.identity("auditor", "adv-burst").unwrap();
    let mut log = transparency(node_channel(&f, &auditor, &anhui));
    let list = f.gateway_trust().unwrap().current();
    let size_of = |signed: pb::SignedTreeHead| list.verify_tree_head(&signed).unwrap().tree_size;
    let before = size_of(log.get_tree_head(pb::GetTreeHeadRequest {}).await.unwrap().into_inner());

    // One channel (the authority's: it may set GREEN and RED), every request in flight at
    // once: far more than the node's per-connection stream limit, so most of them wait for
    // capacity (HTTP/2 back-pressure) rather than being refused.
    let authority = f.authority_client("340000/hefei-cdc").unwrap();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(UPSERTS);
    for i in 0..UPSERTS {
        let mut admin = authority.clone();
        tasks.push(tokio::spawn(async move {
            let subject = format!("ah-burst-{i:05}");
            let request =
                if i % 3 == 0 { change(&subject, pb::HealthStatus::Red, RED_RULE, "") } else { green_upsert(&subject) };
            (subject, request.status, admin.upsert_status(request).await)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        let (subject, status, result) = task.await.unwrap();
        match result {
            Ok(r) => {
                assert_eq!(r.into_inner().version, 1, "{subject}");
                acknowledged.push((subject, status));
            }
            // Back-pressure makes callers wait; it refuses nothing.
            Err(s) => panic!("{subject}: refused under load: {s:?}"),
        }
    }
    eprintln!("{} of {UPSERTS} concurrent upserts acknowledged in {:?}", acknowledged.len(), started.elapsed());
    assert_eq!(acknowledged.len(), UPSERTS, "every change sent was acknowledged");
    // Every acknowledged change is in the signed log, and nothing else is.
    let after = size_of(log.get_tree_head(pb::GetTreeHeadRequest {}).await.unwrap().into_inner());
    assert_eq!(after - before, acknowledged.len() as u64);
    // Every logged entry verifies against the signed root, and the log holds exactly as
    // many red changes as were acknowledged.
    let mut audit = audit_client(&f, &anhui, "adv-burst");
    let (_, head) = audit.tree_head().await.unwrap();
    let entries = audit.fetch_verified(&head).await.unwrap();
    let red = pb::HealthStatus::Red as i32;
    let logged_red = entries[before as usize..].iter().filter(|e| e.status == red).count();
    assert_eq!(logged_red, acknowledged.iter().filter(|(_, s)| *s == red).count());
    // And every acknowledged status is served as acknowledged: a token issued for it
    // carries a signed attestation of that status. (Checked through the running node:
    // re-opening its store right after stopping it races the node's background tasks.)
    let admin = f.admin_client(&anhui).unwrap();
    let mut checks = Vec::new();
    for (subject, status) in acknowledged {
        let mut admin = admin.clone();
        let list = list.clone();
        checks.push(tokio::spawn(async move {
            let request = pb::IssueTokenRequest { subject_ref: subject.clone(), ..Default::default() };
            let issued = admin.issue_token(request).await.unwrap_or_else(|e| panic!("{subject} lost: {e}"));
            let code = qr::decode_qr(&issued.into_inner().qr).unwrap();
            let attestation = huren_pki::verify_attestation(
                &list,
                code.attestation.as_ref().unwrap(),
                &huren_pki::Expected::default(),
                unix_now(),
            )
            .unwrap();
            assert_eq!(attestation.status.to_pb() as i32, status, "{subject}");
        }));
    }
    for check in checks {
        check.await.unwrap();
    }
}
