//! Crash safety of a real `huren node` process: `kill -9` it in the middle of a stream of
//! upserts, restart it on the same data folder, and check that every acknowledged change
//! survived — in the store, in the signed transparency log, and as served afterwards. On
//! each embedded store backend: redb (the default) and fjall.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_cli::audit::AuditClient;
use huren_node::NodeStore;
use huren_pki::{Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use pb::status_admin_client::StatusAdminClient;
use tonic::transport::Channel;

mod common;
use common::{anhui_with_rule_r1, ok, scratch, signal, spawn_server, write_node_toml, Server};

/// Crash cycles in one test.
const CYCLES: usize = 5;
/// Requests in flight at once while the node is killed.
const IN_FLIGHT: usize = 12;

/// `kill -9`, then reap.
fn kill_9(server: Server) {
    let exit = signal(server, "-9");
    assert!(!exit.success(), "the node exited normally instead of being killed: {exit:?}");
}

/// The embedded store backends a node can run on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Redb,
    Fjall,
}

struct Setup {
    _dir: tempfile::TempDir,
    node_toml: PathBuf,
    backend: Backend,
    /// The store file (redb) or folder (fjall) in the node's data folder.
    store: PathBuf,
    admin: TlsIdentity,
    /// The authority that sends the stream of changes (GREEN and RED).
    authority: TlsIdentity,
    auditor: TlsIdentity,
    trust: TrustList,
}

impl Setup {
    /// The node's store, opened directly (the node must be gone).
    fn open_store(&self) -> Box<dyn NodeStore> {
        match self.backend {
            Backend::Redb => Box::new(huren_node::Store::open(&self.store).unwrap()),
            Backend::Fjall => Box::new(huren_node::FjallStore::open(&self.store).unwrap()),
        }
    }
}

fn setup(backend: Backend) -> Setup {
    let (dir, d) = scratch();
    let pki = d("pki");
    anhui_with_rule_r1(&pki);
    for (kind, name) in
        [("node", "340000"), ("admin", "340000"), ("authority", "340000/hefei-cdc"), ("auditor", "crash-auditor")]
    {
        ok(&["pki", "--dir", &pki, "issue", kind, name]);
    }
    ok(&["pki", "--dir", &pki, "trust-list", "sign"]);
    let root = format!("{pki}/root/ca.pem");
    let node_toml = dir.path().join("node.toml");
    // The two backends' tests run at once: each node's admin endpoint on a port of its own.
    let (store, extra) = match backend {
        Backend::Redb => ("status.redb", "admin_listen = \"127.0.0.1:0\"\n"),
        Backend::Fjall => ("status.fjall", "admin_listen = \"127.0.0.1:0\"\nstore = \"fjall\"\n"),
    };
    write_node_toml(&node_toml, &pki, &d("node-data"), extra);
    let load = |kind: &str, name: &str| {
        let issued = Path::new(&pki).join("issued").join(format!("{kind}-{}", name.replace('/', "-")));
        TlsIdentity::load(&issued.join("cert.pem"), &issued.join("key.pem"), Path::new(&root), "huren.gov").unwrap()
    };
    let root_der = huren_pki::ca::pem_to_der(&std::fs::read_to_string(&root).unwrap()).unwrap();
    Setup {
        node_toml,
        backend,
        store: dir.path().join("node-data").join(store),
        admin: load("admin", "340000"),
        authority: load("authority", "340000/hefei-cdc"),
        auditor: load("auditor", "crash-auditor"),
        trust: TrustList::load(&Path::new(&pki).join("trust-list.bin"), &root_der).unwrap(),
        _dir: dir,
    }
}

fn anhui() -> ProvinceCode {
    "340000".parse().unwrap()
}

fn admin_client(who: &TlsIdentity, addr: &str) -> StatusAdminClient<Channel> {
    let expected = ExpectedPeer::Exactly(Identity::new("huren.gov", Role::Node(anhui())));
    let config = tls::client_config(who, expected, Revocations::default()).unwrap();
    StatusAdminClient::new(tls::channel(addr, config, Duration::from_secs(3)).unwrap())
}

fn request(subject: &str, n: usize) -> pb::UpsertStatusRequest {
    let (status, rule_id, authority) = match n % 3 {
        0 => (pb::HealthStatus::Red, "R1", "340000/hefei-cdc"),
        _ => (pb::HealthStatus::Green, "", ""),
    };
    pb::UpsertStatusRequest {
        subject_ref: subject.into(),
        status: status as i32,
        rule_id: rule_id.into(),
        authority: authority.into(),
        valid_until: 0,
        test_recency: 0,
    }
}

/// Acknowledged changes: subject → (status, version).
type Acked = BTreeMap<String, (i32, u64)>;

/// Streams upserts with `IN_FLIGHT` requests in flight; once `kill_after` are
/// acknowledged, kills the node with SIGKILL while the others are still in flight.
/// Returns what was acknowledged (including answers that raced the kill).
async fn stream_until_killed(setup: &Setup, server: Server, cycle: usize, kill_after: usize) -> Acked {
    let client = admin_client(&setup.authority, &server.addr);
    let acked = Arc::new(Mutex::new(Acked::new()));
    let (reached, mut kill) = tokio::sync::watch::channel(false);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (mut client, acked, reached, next) = (client.clone(), acked.clone(), reached.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            // Bounded: stops at the first refusal (the node is gone) or after 100 000 requests.
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= 100_000 {
                    break;
                }
                let subject = format!("crash-c{cycle}-{n:06}");
                let req = request(&subject, n);
                let status = req.status;
                match client.upsert_status(req).await {
                    Ok(r) => {
                        let mut acked = acked.lock().unwrap();
                        acked.insert(subject, (status, r.into_inner().version));
                        if acked.len() >= kill_after {
                            reached.send_replace(true);
                        }
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    kill.wait_for(|r| *r).await.unwrap();
    kill_9(server);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_upsert_survives_kill_9() {
    survives_kill_9(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_upsert_survives_kill_9_on_fjall() {
    survives_kill_9(Backend::Fjall).await;
}

async fn survives_kill_9(backend: Backend) {
    let setup = setup(backend);
    let mut all = Acked::new();
    let mut log_size = 0u64;
    for cycle in 0..CYCLES {
        let server = spawn_server("node", &setup.node_toml);
        // The restarted node serves every change acknowledged before any earlier kill.
        verify_served(&setup, &server.addr, &all, log_size).await;
        let kill_after = 40 + 35 * cycle;
        let acked = stream_until_killed(&setup, server, cycle, kill_after).await;
        assert!(acked.len() >= kill_after, "cycle {cycle}: {} acknowledged", acked.len());
        // Process gone: open its store directly. Every acknowledged change is there, as
        // acknowledged (a change committed whose answer was lost may be there too).
        let store = setup.open_store();
        for (subject, (status, version)) in &acked {
            let record = store.status(subject).unwrap().unwrap_or_else(|| panic!("cycle {cycle}: {subject} lost"));
            assert_eq!((record.status, record.version), (*status, *version), "cycle {cycle}: {subject}");
        }
        for subject in all.keys() {
            assert!(store.status(subject).unwrap().is_some(), "cycle {cycle}: earlier {subject} lost");
        }
        let (size, _) = store.log_head().unwrap();
        let logged = log_size + acked.len() as u64;
        assert!(size >= logged, "cycle {cycle}: log holds {size} entries, {logged} changes were acknowledged");
        // At most the requests that were in flight at the kill committed unacknowledged.
        assert!(size <= logged + IN_FLIGHT as u64, "cycle {cycle}: log holds {size}, only {logged} acknowledged");
        drop(store);
        eprintln!("{backend:?} cycle {cycle}: {} acknowledged before kill -9, log now {size} entries", acked.len());
        log_size = size;
        all.extend(acked);
    }
    let server = spawn_server("node", &setup.node_toml);
    verify_served(&setup, &server.addr, &all, log_size).await;
}

/// Through the restarted node: the signed log has exactly `log_size` entries and every
/// one verifies against the signed root (RFC 9162), each acknowledged subject has an
/// entry with its acknowledged status, and its status is served (a token can be issued).
async fn verify_served(setup: &Setup, addr: &str, acked: &Acked, log_size: u64) {
    let mut audit = AuditClient::connect(Some(addr), &anhui(), &setup.auditor, setup.trust.clone()).unwrap();
    let (_, head) = audit.tree_head().await.unwrap();
    assert_eq!(head.tree_size, log_size, "the restarted node's log");
    let entries = audit.fetch_verified(&head).await.unwrap();
    assert_eq!(entries.len() as u64, log_size);
    let mut admin = admin_client(&setup.admin, addr);
    let mut reds = 0;
    for (subject, (status, _)) in acked {
        reds += usize::from(*status == pb::HealthStatus::Red as i32);
        // Spot-check the served state (issuing a token writes, so not for every subject).
        if subject.ends_with('7') {
            let issued = admin
                .issue_token(pb::IssueTokenRequest { subject_ref: subject.clone(), ..Default::default() })
                .await
                .unwrap_or_else(|e| panic!("{subject} acknowledged, not served after restart: {e}"));
            let qr = huren_pki::qr::decode_qr(&issued.into_inner().qr).unwrap();
            let signed = qr.attestation.unwrap();
            let attestation = huren_pki::verify_attestation(
                &setup.trust,
                &signed,
                &huren_pki::Expected::default(),
                huren_pki::unix_now(),
            )
            .unwrap();
            assert_eq!(attestation.status.to_pb() as i32, *status, "{subject}");
        }
    }
    let logged_reds = entries.iter().filter(|e| e.status == pb::HealthStatus::Red as i32).count();
    assert!(logged_reds >= reds, "{logged_reds} red entries logged, {reds} acknowledged");
}
