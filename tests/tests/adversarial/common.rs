//! What every family of the suite shares: how an attempt was refused ([`Outcome`]) and
//! what a row expects ([`Expect`]); the [`Snapshot`] of everything an attack must leave
//! unchanged; the context a row runs in ([`Ctx`]: the federation, identities made to
//! order, request helpers); and the plumbing that gives every row its own test while the
//! rows of a table share one federation ([`Shared`], [`rows!`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use huren_cli::demo::seed;
use huren_cli::hub::HubClient;
use huren_pki::ca::{self, Validity};
use huren_pki::qr;
use huren_pki::trust;
use huren_pki::{unix_now, Identity, ProvinceCode};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use huren_tests::{change, client_channel, code, demo_subject, node_channel, start_in, TestFederation};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic::Code;

// ------------------------------------------------------------------ outcomes

/// How an attempt was refused: a gRPC status, or (code `None`) a TLS, transport or
/// parse error described by `message`.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub code: Option<Code>,
    pub message: String,
}

impl From<tonic::Status> for Refusal {
    fn from(s: tonic::Status) -> Self {
        Self { code: Some(s.code()), message: s.message().to_owned() }
    }
}

pub(crate) fn error(message: impl ToString) -> Refusal {
    Refusal { code: None, message: message.to_string() }
}

pub(crate) type Outcome = Result<(), Refusal>;

pub(crate) fn grpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    result.map(drop).map_err(Refusal::from)
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// This gRPC code, with a message containing the text.
    Status(Code, &'static str),
    /// One of these gRPC codes, with a message containing the text.
    StatusIn(&'static [Code], &'static str),
    /// No gRPC answer at all: a TLS, transport or parse error containing the text.
    Error(&'static str),
}

impl Expect {
    fn check(&self, name: &str, outcome: &Outcome) {
        let refusal = match outcome {
            Ok(()) => panic!("{name}: was accepted, expected {self:?}"),
            Err(r) => r,
        };
        let (codes, text): (&[Code], &str) = match self {
            Expect::Status(code, text) => (std::slice::from_ref(code), text),
            Expect::StatusIn(codes, text) => (codes, text),
            Expect::Error(text) => (&[], text),
        };
        match refusal.code {
            Some(got) => assert!(codes.contains(&got), "{name}: got {got:?} ({}), expected {self:?}", refusal.message),
            None => assert!(codes.is_empty(), "{name}: got no gRPC status ({}), expected {self:?}", refusal.message),
        }
        assert!(refusal.message.contains(text), "{name}: {:?} lacks {text:?}", refusal.message);
    }
}

/// The refusal of a province identity that another CA issued.
pub(crate) const OWN_CA: &str = "must be issued by its own province CA";

// ------------------------------------------------------------------ state

/// Everything an attack must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    gateway_sequence: u64,
    /// The gateway's persisted last good trust list (length and a checksum).
    gateway_persisted: (usize, u64),
    receipts: usize,
    /// Per real node: province, trust-list sequence, log size, log root.
    nodes: Vec<(String, u64, u64, Vec<u8>)>,
    /// What each probe lookup returned (verified status, or the error).
    probes: Vec<String>,
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// A seeded token and the province that knows it.
pub(crate) struct Probe {
    pub province: ProvinceCode,
    pub token: Vec<u8>,
}

/// The federation a table runs in, and what its rows need of it.
pub(crate) struct Ctx {
    pub f: TestFederation,
    pub root_pem: String,
    /// Transparency clients as an auditor, per real (running) node: their logs are part
    /// of the snapshot.
    logs: Vec<(ProvinceCode, pb::transparency_client::TransparencyClient<Channel>)>,
    /// The registered hub whose lookups of `probes` are part of the snapshot.
    probe: tokio::sync::Mutex<HubClient>,
    probes: Vec<Probe>,
    /// A genuine QR (Anhui, GREEN) for the QR rows.
    pub genuine_qr: String,
    /// The snapshot after the last row that passed.
    last: std::sync::Mutex<Option<Snapshot>>,
}

impl Ctx {
    /// The context of `f`, whose `real_nodes` keep logs; `probe` looks up `probes`
    /// around every row.
    pub(crate) fn new(f: TestFederation, real_nodes: Vec<ProvinceCode>, probe: HubClient, probes: Vec<Probe>) -> Self {
        let root_pem = std::fs::read_to_string(f.pki.root_cert_path()).expect("root PEM");
        let auditor = f.identity("auditor", "adversarial").expect("auditor");
        let logs = real_nodes
            .iter()
            .map(|p| {
                let channel = node_channel(&f, &auditor, p);
                (p.clone(), pb::transparency_client::TransparencyClient::new(channel))
            })
            .collect();
        let probe = tokio::sync::Mutex::new(probe);
        Self { f, root_pem, logs, probe, probes, genuine_qr: String::new(), last: std::sync::Mutex::new(None) }
    }

    async fn snapshot(&self) -> Snapshot {
        let f = &self.f;
        let gateway = f.gateway_trust().expect("gateway").current();
        let persisted = std::fs::read(f.dir().join("gateway").join("trust-list.bin")).expect("persisted trust list");
        let mut nodes = Vec::new();
        for (p, client) in &self.logs {
            let signed = client.clone().get_tree_head(pb::GetTreeHeadRequest {}).await.expect("tree head").into_inner();
            let head = gateway.verify_tree_head(&signed).expect("tree head verifies");
            let sequence = f.node_trust(p).expect("node").current().sequence();
            nodes.push((p.to_string(), sequence, head.tree_size, head.root_hash));
        }
        let mut probes = Vec::new();
        let mut probe = self.probe.lock().await;
        for Probe { province, token } in &self.probes {
            let seen = match probe.lookup(province, token, "transit.rail").await {
                Ok(s) => format!("{province}: {} {:?}", s.status, s.rule_id),
                Err(e) => format!("{province}: probe failed: {e}"),
            };
            probes.push(seen);
        }
        Snapshot {
            gateway_sequence: gateway.sequence(),
            gateway_persisted: (persisted.len(), checksum(&persisted)),
            receipts: *f.gateway_receipts().expect("gateway").borrow(),
            nodes,
            probes,
        }
    }

    /// One row: `attempt` must be refused as `expect` says, and the snapshot taken before
    /// it (with every probe working) must equal the one taken after it. The snapshot after
    /// a passed row serves as the next row's before (rows never overlap); after a failed
    /// one, the next row takes its own.
    pub(crate) async fn refuses(&self, name: &str, expect: Expect, attempt: impl Future<Output = Outcome>) {
        let cached = self.last.lock().expect("last snapshot").take();
        let before = match cached {
            Some(snapshot) => snapshot,
            None => self.snapshot().await,
        };
        assert!(before.probes.iter().all(|p| !p.contains("probe failed")), "{name}: probes work before: {before:?}");
        let outcome = attempt.await;
        expect.check(name, &outcome);
        if let Err(Refusal { code, message }) = &outcome {
            eprintln!("refused: {name}: {code:?} {message}");
        }
        let after = self.snapshot().await;
        assert_eq!(before, after, "{name}: the refused attempt changed state");
        *self.last.lock().expect("last snapshot") = Some(after);
    }

    pub(crate) fn id(&self, kind: &str, arg: &str) -> TlsIdentity {
        self.f.identity(kind, arg).expect("identity")
    }

    /// A leaf for `identity` issued by the national root with the given validity.
    pub(crate) fn root_issued(&self, identity: Identity, validity: Validity) -> TlsIdentity {
        let root = self.f.pki.root().expect("root");
        let leaf = ca::issue_leaf(&root, &identity, validity).expect("leaf");
        TlsIdentity::from_pem_unchecked(&leaf.cert_pem, &leaf.key_pem, &self.root_pem, identity).expect("identity")
    }

    /// A leaf for `identity` issued by `province`'s CA with the given validity (chain: leaf + CA).
    pub(crate) fn province_issued(&self, province: &str, identity: Identity, validity: Validity) -> TlsIdentity {
        let ca = self.f.pki.province_ca(&code(province)).expect("province CA");
        let leaf = ca::issue_leaf(&ca, &identity, validity).expect("leaf");
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        TlsIdentity::from_pem_unchecked(&chain, &leaf.key_pem, &self.root_pem, identity).expect("identity")
    }

    pub(crate) fn gateway(&self, who: &TlsIdentity) -> Channel {
        client_channel(who, ExpectedPeer::AnyGateway, self.f.gateway_addr())
    }

    pub(crate) fn node(&self, who: &TlsIdentity, province: &str) -> Channel {
        node_channel(&self.f, who, &code(province))
    }

    pub(crate) fn node_addr(&self, province: &str) -> SocketAddr {
        self.f.node_addr(&code(province)).expect("node address")
    }
}

/// A hub certificate minted outside `huren pki issue` — by rcgen directly, signed by the
/// national root — whose serial has its high bit set (`8f…`, which DER pads to `00 8f …`),
/// and that serial as `openssl x509 -serial -noout` prints it (`serial=8F…`: the literal
/// output of `openssl` when it is installed, checked against the expected form).
pub(crate) fn outside_minted_hub(f: &TestFederation, root_pem: &str, name: &str) -> (TlsIdentity, String) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType, SerialNumber};
    let identity = identity(&format!("spiffe://huren.gov/hub/{name}"));
    let root = f.pki.root().expect("root");
    let issuer = Issuer::from_ca_cert_pem(&root.cert_pem, KeyPair::from_pem(&root.key_pem).expect("root key"))
        .expect("root issuer");
    let mut serial = random_token();
    serial[0] = 0x8f;
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("scanner {name} (not issued by huren pki)"));
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into().expect("URI SAN"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from(serial.clone()));
    let (not_before, not_after) = (validity(-3600, 86_400).not_before, validity(-3600, 86_400).not_after);
    (params.not_before, params.not_after) = (not_before, not_after);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let der = cert.der().to_vec();
    assert_eq!(&ca::serial_hex(&der).expect("serial"), &data_encoding::HEXLOWER.encode(&serial));
    let expected = format!("serial={}", data_encoding::HEXUPPER.encode(&serial));
    let form = match openssl_serial(&cert.pem()) {
        Some(printed) => {
            assert_eq!(printed, expected, "openssl prints the serial without the DER sign octet");
            printed
        }
        None => expected,
    };
    let who = TlsIdentity::from_pem(&cert.pem(), &key.serialize_pem(), root_pem, "huren.gov").expect("identity");
    (who, form)
}

/// What `openssl x509 -serial -noout` prints for `pem`, if openssl is installed.
fn openssl_serial(pem: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem).expect("write");
    let out =
        std::process::Command::new("openssl").args(["x509", "-serial", "-noout", "-in"]).arg(&path).output().ok()?;
    assert!(out.status.success(), "openssl x509: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned())
}

/// The `google.rpc.ErrorInfo` reason of a refusal, if it carries one.
pub(crate) fn reason(status: &tonic::Status) -> String {
    huren_runtime::error::details(status).map(|d| d.reason).unwrap_or_default()
}

pub(crate) fn identity(uri: &str) -> Identity {
    uri.parse().expect("identity")
}

pub(crate) fn validity(from_now: i64, to_now: i64) -> Validity {
    let now = time::OffsetDateTime::now_utc();
    Validity { not_before: now + time::Duration::seconds(from_now), not_after: now + time::Duration::seconds(to_now) }
}

pub(crate) fn random_token() -> Vec<u8> {
    qr::new_token().expect("token").to_vec()
}

pub(crate) fn lookup_request(province: &str) -> pb::LookupRequest {
    pb::LookupRequest { province: province.into(), token: random_token(), purpose: "transit.rail".into() }
}

pub(crate) fn green_upsert(subject: &str) -> pb::UpsertStatusRequest {
    change(subject, pb::HealthStatus::Green, "", "")
}

pub(crate) async fn lookup(channel: Channel, request: pb::LookupRequest) -> Outcome {
    grpc(pb::lookup_client::LookupClient::new(channel).lookup(request).await)
}

pub(crate) async fn upload(channel: Channel, list: pb::SignedTrustList) -> Outcome {
    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).upload(list).await)
}

pub(crate) async fn upsert(channel: Channel, request: pb::UpsertStatusRequest) -> Outcome {
    grpc(pb::status_admin_client::StatusAdminClient::new(channel).upsert_status(request).await)
}

pub(crate) async fn attest(channel: Channel) -> Outcome {
    let request = pb::AttestRequest {
        token: random_token(),
        purpose: "transit.rail".into(),
        hub_id: "adv-hub".into(),
        hub_province: String::new(),
    };
    grpc(pb::attestation_client::AttestationClient::new(channel).attest(request).await)
}

pub(crate) fn transparency(channel: Channel) -> pb::transparency_client::TransparencyClient<Channel> {
    pb::transparency_client::TransparencyClient::new(channel)
}

/// The gateway's current list, ten sequence numbers on (unsigned).
pub(crate) fn newer_list(c: &Ctx) -> pb::TrustList {
    let mut list = c.f.gateway_trust().expect("gateway").current().raw().clone();
    list.sequence += 10;
    list
}

/// [`newer_list`] with `edit` applied, signed by the national root.
pub(crate) fn root_signed(c: &Ctx, edit: impl FnOnce(&mut pb::TrustList)) -> pb::SignedTrustList {
    let mut list = newer_list(c);
    edit(&mut list);
    trust::sign(&list, &c.f.pki.root().expect("root")).expect("sign")
}

pub(crate) async fn upload_as_coordinator(c: &Ctx, list: pb::SignedTrustList) -> Outcome {
    upload(c.gateway(&c.id("coordinator", "adv-nhc")), list).await
}

pub(crate) async fn submit_receipt(channel: Channel, signed: pb::SignedDeletionReceipt) -> Outcome {
    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).submit_receipt(signed).await)
}

/// `receipt` signed with `province`'s attestation key.
pub(crate) fn signed_by(c: &Ctx, province: &str, receipt: &pb::DeletionReceipt) -> pb::SignedDeletionReceipt {
    c.f.attestation_key(&code(province)).expect("key").sign_receipt(receipt)
}

pub(crate) fn receipt(province: &str) -> pb::DeletionReceipt {
    pb::DeletionReceipt {
        province: province.into(),
        time: unix_now(),
        reason: "manual".into(),
        deleted_root: vec![7; 32],
        ..Default::default()
    }
}

// ------------------------------------------------------------------ TLS probes

/// Handshakes with `config` and reads the server's first bytes: an accepting Huren
/// server speaks HTTP/2 first (its SETTINGS frame), a refusing one sends a TLS alert.
/// (In TLS 1.3 the client finishes before the server has judged its certificate, so
/// the verdict arrives on the first read.)
pub(crate) async fn tls_probe(config: Arc<ClientConfig>, addr: SocketAddr) -> Outcome {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("huren.invalid").expect("name");
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let mut stream = match tokio::time::timeout(Duration::from_secs(10), connect).await.expect("handshake bounded") {
        Ok(s) => s,
        Err(e) => return Err(error(e)),
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("first read bounded") {
        Ok(0) => Err(error("connection closed without a word")),
        Ok(_) => Ok(()),
        Err(e) => Err(error(e)),
    }
}

pub(crate) async fn huren_tls_probe(who: &TlsIdentity, expected: ExpectedPeer, addr: SocketAddr) -> Outcome {
    tls_probe(tls::client_config(who, expected, Revocations::default()).expect("client config"), addr).await
}

// ------------------------------------------------------------------ one test per row

/// What a row of the real federation's tables attempts.
pub(crate) type Run = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = Outcome>>>;

/// One `#[test]` per row of a table, named by the row's test function, plus `ROWS`, the
/// rows' names in table order. Each row is `run(test_fn, "name", arguments…)`, and its
/// test calls `run("name", arguments…)`: `run` runs the row in its table's federation.
macro_rules! rows {
    ($($run:ident($test:ident, $name:literal, $($arg:expr),+ $(,)?)),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $run($name, $($arg),+);
            }
        )*

        /// The rows' names, in table order.
        pub(crate) const ROWS: &[&str] = &[$($name),*];
    };
}
pub(crate) use rows;

/// What sets up a shared state.
pub(crate) type Setup<T> = fn() -> Pin<Box<dyn Future<Output = T>>>;

/// A state (a federation) shared by the `rows` rows of one or more tables: set up by the
/// first row that runs, lent to one row at a time (rows never overlap, so each snapshot
/// sees only its own row's effect), and dropped with the last row, which removes its temp
/// dir. (A filtered run that never reaches the last row leaves it behind, under
/// `CARGO_TARGET_TMPDIR`.) A row that fails fails alone: the next row takes its turn.
///
/// The state lives on a runtime of its own that outlives each test, so servers started
/// by one row keep serving the next (a `#[tokio::test]` runtime, and the servers spawned
/// on it, end with its test). It is current-thread, as `#[tokio::test]`'s: the thread
/// running a row also runs the servers, with the interleavings the rows were written
/// against (on a multi-thread runtime a plaintext client can see its request cancelled
/// rather than failed); and one per state, so two tables' rows still run side by side.
pub(crate) struct Shared<T> {
    rows: usize,
    setup: Setup<T>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    turn: tokio::sync::Mutex<Turn<T>>,
}

struct Turn<T> {
    state: Option<Arc<T>>,
    begun: usize,
}

impl<T> Shared<T> {
    pub(crate) const fn new(rows: usize, setup: Setup<T>) -> Self {
        let turn = tokio::sync::Mutex::const_new(Turn { state: None, begun: 0 });
        Self { rows, setup, runtime: OnceLock::new(), turn }
    }

    /// Runs `row` with the shared state, once every row that began before it has ended.
    pub(crate) fn row<F: Future<Output = ()>>(&'static self, row: impl FnOnce(Arc<T>) -> F) {
        let runtime = self
            .runtime
            .get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"));
        runtime.block_on(async {
            let mut turn = self.turn.lock().await;
            if turn.state.is_none() {
                turn.state = Some(Arc::new((self.setup)().await));
            }
            turn.begun += 1;
            // The last row holds the only reference: the state goes when it ends, passed or failed.
            let state = if turn.begun >= self.rows { turn.state.take() } else { turn.state.clone() };
            row(state.expect("set up")).await;
        })
    }
}

// ------------------------------------------------------------------ the real federation

/// The real federation shared by every table but the forgery one.
static REAL: Shared<Ctx> = Shared::new(crate::REAL_ROWS, real_federation);

/// The real federation; set up (before the first snapshot): a probe hub, a rail-only
/// hub, a seeded Anhui subject whose QR the QR rows alter, and the lift rows' rule and
/// red subject.
fn real_federation() -> Pin<Box<dyn Future<Output = Ctx>>> {
    Box::pin(async {
        let f = start_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
        let anhui = code("340000");
        crate::authorities::register_lift_rule(&f); // published with the hub registrations
        f.hub_for("adv-rail-only", &["transit.rail"]).await.unwrap();
        let probe = f.hub("adv-probe").await.unwrap();
        let issued = seed(&f, &demo_subject("340000"), 3600).await.unwrap();
        crate::authorities::set_up_lifts(&f).await;
        let probes = vec![Probe { province: anhui.clone(), token: issued.token.clone() }];
        let mut ctx = Ctx::new(f, vec![anhui, code("370000"), code("440000")], probe, probes);
        ctx.genuine_qr = issued.qr.clone();
        ctx
    })
}

/// Runs one row in the real federation: `run` must be refused as `expect` says, with
/// nothing changed.
pub(crate) fn case(name: &'static str, expect: Expect, run: Run) {
    REAL.row(|c| async move { c.refuses(name, expect, run(c.clone())).await });
}
