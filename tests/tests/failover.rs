//! Several gateway replicas: hubs fail over when one cannot be reached (never on a
//! refusal), nodes follow every replica's trust-list `Watch` and keep the highest
//! sequence, and re-uploading the list a replica already holds is a no-op.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_cli::demo::seed;
use huren_cli::federation::{Federation, DEMO_PROVINCES};
use huren_client::{HubClient, HubError};
use huren_gateway::{Gateway, GatewaySettings};
use huren_node::{KeyRing, Node, NodeSettings, Store};
use huren_pki::qr::Scanned;
use huren_pki::trust;
use huren_proto::pb;
use huren_runtime::live::LiveTrust;
use huren_runtime::tls::ExpectedPeer;
use huren_tests::{client_channel, code, demo_subject, serve_gateway, start, Deadline};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;

/// The README's bound for a trust list to reach a node that follows a live replica
/// ("within moments"; after a broken stream, within the reconnect backoff of at most 2 s).
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

/// A second gateway replica (`national-2`, no Redis: it learns lists only from uploads),
/// starting from the coordinator's current file.
async fn second_gateway(f: &Federation, dir: &std::path::Path) -> (SocketAddr, oneshot::Sender<()>, LiveTrust) {
    let tls = f.identity("gateway", "national-2").unwrap();
    let live = LiveTrust::open(tls.root.to_vec(), Some(dir.join("gw2-trust-list.bin")), Some(&f.pki.trust_list_path()))
        .unwrap();
    let gateway = Gateway::new(tls, live.clone(), GatewaySettings::default()).unwrap();
    let (addr, stop) = serve_gateway(&gateway).await;
    (addr, stop, live)
}

/// Replaces every node of `f` by one over the same store and address that follows all
/// of `gateways`; returns their live trust lists and stop handles.
async fn nodes_following(f: &mut Federation, gateways: &[String]) -> Vec<(LiveTrust, oneshot::Sender<()>)> {
    let mut running = Vec::new();
    for (province, _) in DEMO_PROVINCES {
        let province = code(province);
        let addr = f.stop_node(&province).await.unwrap();
        let tls = f.identity("node", province.as_str()).unwrap();
        let trust = LiveTrust::open(
            tls.root.to_vec(),
            Some(f.node_data_dir(&province).join("trust-list.bin")),
            Some(&f.pki.trust_list_path()),
        )
        .unwrap();
        let keys = KeyRing::load(&f.pki.province_dir(&province)).unwrap();
        let store: Arc<dyn huren_node::NodeStore> = Arc::new(Store::open(&f.node_store_path(&province)).unwrap());
        let node =
            Node::new(tls, keys, trust.clone(), store, NodeSettings::default()).unwrap().following(gateways.to_vec());
        let listener = TcpListener::bind(addr).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(node.serve(listener, async {
            let _ = stopped.await;
        }));
        running.push((trust, stop));
    }
    running
}

async fn upload(f: &Federation, gateway: SocketAddr, signed: pb::SignedTrustList) -> Result<u64, tonic::Status> {
    let coordinator = f.identity("coordinator", "national").unwrap();
    let mut client = pb::trust_registry_client::TrustRegistryClient::new(client_channel(
        &coordinator,
        ExpectedPeer::AnyGateway,
        gateway,
    ));
    Ok(client.upload(signed).await?.into_inner().sequence)
}

fn reason(status: &tonic::Status) -> String {
    huren_runtime::error::details(status).map(|d| d.reason).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_fails_over_when_a_gateway_dies_under_load_and_nodes_follow_the_survivor() {
    let mut f = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap();
    let scanned = Scanned::parse(&token.qr).unwrap();

    // The second replica starts before the hub is registered, so it refuses the hub for
    // now: a refusal must come back as it is, not be retried on the first replica.
    let (gw2, stop_gw2, gw2_trust) = second_gateway(&f, dir.path()).await;
    f.register_hub("two-gateways", &["transit.highway"]).await.unwrap();
    let gw1 = f.gateway_addr();
    let hub_identity = f.identity("hub", "two-gateways").unwrap();
    let mut refused_first = HubClient::connect_any(&[gw2.to_string(), gw1.to_string()], &hub_identity).unwrap();
    let err = refused_first.lookup(scanned.province(), scanned.token(), "transit.highway").await.unwrap_err();
    assert_eq!(err.reason(), Some("HUB_NOT_REGISTERED"), "{err}");
    assert_eq!(refused_first.gateways().preferred(), gw2.to_string(), "a refusal does not move to the next replica");

    // The coordinator uploads the current list to the second replica too.
    let current = f.trust_list().unwrap();
    assert_eq!(upload(&f, gw2, current.signed().clone()).await.unwrap(), current.sequence());
    assert_eq!(gw2_trust.current().sequence(), current.sequence());

    let gateways = vec![gw1.to_string(), gw2.to_string()];
    let nodes = nodes_following(&mut f, &gateways).await;

    // Load: several hub tasks looking the traveller up without pause, through one client
    // that lists both replicas (the first one answers while it is up).
    let mut hub = HubClient::connect_any(&gateways, &hub_identity).unwrap();
    hub.refresh_trust_list().await.unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_load = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut hub, done, failures, stop_load) = (hub.clone(), done.clone(), failures.clone(), stop_load.clone());
        let (province, token) = (scanned.province().clone(), scanned.token().to_vec());
        tasks.push(tokio::spawn(async move {
            while !stop_load.load(Ordering::Relaxed) {
                match hub.lookup(&province, &token, "transit.highway").await {
                    Ok(status) => {
                        assert_eq!(status.status, "GREEN");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let reach = |n: u64, what: &'static str| {
        let done = done.clone();
        async move {
            async {
                while done.load(Ordering::Relaxed) < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            .deadline(what)
            .await
        }
    };
    reach(100, "100 lookups through the first replica").await;
    assert_eq!(hub.gateways().preferred(), gw1.to_string());

    // The first replica goes away under load.
    f.stop_gateway().await.unwrap();
    let before = done.load(Ordering::Relaxed);
    reach(before + 200, "200 more lookups after the first replica died").await;
    stop_load.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "the hub saw {} failed lookups, e.g. {:?}", failures.len(), failures.first());
    assert_eq!(hub.gateways().preferred(), gw2.to_string(), "the hub moved to the survivor");

    // A list uploaded to the survivor reaches every node within the README's bound.
    let next = f.pki.sign_trust_list().unwrap();
    assert_eq!(upload(&f, gw2, next.signed().clone()).await.unwrap(), next.sequence());
    for (trust, _) in &nodes {
        let mut updates = trust.subscribe();
        tokio::time::timeout(PROPAGATION_BOUND, updates.wait_for(|t| t.sequence() >= next.sequence()))
            .await
            .unwrap_or_else(|_| panic!("a node did not hold sequence {} within {PROPAGATION_BOUND:?}", next.sequence()))
            .unwrap();
    }

    // A lookup of an unreachable set of replicas fails as a connection failure, naming
    // neither a refusal nor a reason.
    drop(stop_gw2);
    let err = async {
        loop {
            match hub.lookup(scanned.province(), scanned.token(), "transit.highway").await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    .deadline("lookups to fail once no replica is up")
    .await;
    assert!(matches!(err, HubError::Connection(_)) || err.code() == Some(Code::Unavailable), "{err}");
    assert_eq!(err.reason(), None, "{err}");
    for (_, stop) in nodes {
        let _ = stop.send(());
    }
}

#[tokio::test]
async fn re_uploading_the_held_list_is_a_no_op_and_another_list_under_its_sequence_is_refused() {
    let f = start().await;
    let gateway = f.gateway_addr();
    let held = f.gateway_trust().unwrap().current();

    // The very list held, again (a coordinator uploading to every replica, or retrying).
    assert_eq!(upload(&f, gateway, held.signed().clone()).await.unwrap(), held.sequence());
    assert_eq!(upload(&f, gateway, held.signed().clone()).await.unwrap(), held.sequence());
    assert_eq!(f.gateway_trust().unwrap().current().signed(), held.signed(), "nothing changed");

    // Another list under the held sequence: refused as a rollback, and nothing changes.
    let mut other = held.raw().clone();
    other.issued_at += 1;
    let other = trust::sign(&other, &f.pki.root().unwrap()).unwrap();
    let refused = upload(&f, gateway, other).await.unwrap_err();
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "TRUST_LIST_ROLLBACK"));
    assert_eq!(f.gateway_trust().unwrap().current().signed(), held.signed());

    // An older list is still refused.
    let mut older = held.raw().clone();
    older.sequence -= 1;
    let older = trust::sign(&older, &f.pki.root().unwrap()).unwrap();
    let refused = upload(&f, gateway, older).await.unwrap_err();
    assert_eq!(reason(&refused), "TRUST_LIST_ROLLBACK");
}
