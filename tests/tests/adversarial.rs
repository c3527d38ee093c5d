//! Adversarial end-to-end suite: every attack is one row of a table, run against a real
//! federation over mutual TLS on loopback. Each row asserts the precise refusal (gRPC
//! code and message, TLS alert, or parse error) and that nothing changed: the trust list
//! held by the gateway and by every node (and the gateway's persisted copy), every real
//! node's signed transparency-log head (size and root), the gateway's deletion receipts,
//! and a probe lookup that keeps returning the same verified status.
//!
//! Tables: [`identities_roles_transport_and_trust_lists_are_refused_precisely`] (a real
//! federation), [`forged_attestations_from_a_node_are_refused_precisely`] (Shandong's
//! node replaced by a scripted one that forges per row). Further tests cover what does
//! not fit a row: a node impersonating another province, slowloris-style idle
//! connections, and a large burst of concurrent upserts.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::hub::HubClient;
use huren_pki::attest::AttestationKey;
use huren_pki::ca::{self, Validity};
use huren_pki::qr::{self, Scanned};
use huren_pki::trust;
use huren_pki::{unix_now, Identity, ProvinceCode};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity, HANDSHAKE_TIMEOUT};
use huren_tests::{
    change, client_channel, code, green_payload, identity_from_province_ca, node_peer, replace_node_with_fake,
    serve_fake_node, signing_script, start, TestFederation, RED_RULE,
};
use prost::Message;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;
use tonic::Code;

// ------------------------------------------------------------------ outcomes

/// How an attempt was refused: a gRPC status, or (code `None`) a TLS, transport or
/// parse error described by `message`.
#[derive(Debug)]
struct Refusal {
    code: Option<Code>,
    message: String,
}

impl From<tonic::Status> for Refusal {
    fn from(s: tonic::Status) -> Self {
        Self { code: Some(s.code()), message: s.message().to_owned() }
    }
}

fn error(message: impl ToString) -> Refusal {
    Refusal { code: None, message: message.to_string() }
}

type Outcome = Result<(), Refusal>;

fn grpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    result.map(drop).map_err(Refusal::from)
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
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
struct Probe {
    province: ProvinceCode,
    token: Vec<u8>,
}

struct Ctx {
    f: TestFederation,
    root_pem: String,
    /// Transparency clients as an auditor, per real (running) node: their logs are part
    /// of the snapshot.
    logs: Vec<(ProvinceCode, pb::transparency_client::TransparencyClient<Channel>)>,
    /// A genuine QR (Anhui, GREEN) for the QR rows.
    genuine_qr: String,
    probes: Vec<Probe>,
    /// The forging node's behaviour (forgery table only) and how often it was asked.
    forge: Arc<Mutex<Forge>>,
    forge_calls: Arc<AtomicUsize>,
    /// A registered hub's channel to the gateway, used by the forgery rows.
    victim: Option<Channel>,
    /// A genuine attestation signed by Shandong's real node, and its token.
    genuine_shandong: Option<pb::QrCode>,
}

impl Ctx {
    fn new(f: TestFederation, real_nodes: Vec<ProvinceCode>) -> Self {
        let root_pem = std::fs::read_to_string(f.pki.root_cert_path()).expect("root PEM");
        let auditor = f.identity("auditor", "adversarial").expect("auditor");
        let logs = real_nodes
            .iter()
            .map(|p| {
                let channel = client_channel(&auditor, node_peer(&f, p), f.node_addr(p).expect("node"));
                (p.clone(), pb::transparency_client::TransparencyClient::new(channel))
            })
            .collect();
        Self {
            f,
            root_pem,
            logs,
            genuine_qr: String::new(),
            probes: Vec::new(),
            forge: Arc::new(Mutex::new(honest)),
            forge_calls: Arc::new(AtomicUsize::new(0)),
            victim: None,
            genuine_shandong: None,
        }
    }

    async fn snapshot(&self, probe: &mut HubClient) -> Snapshot {
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

    fn id(&self, kind: &str, arg: &str) -> TlsIdentity {
        self.f.identity(kind, arg).expect("identity")
    }

    /// A leaf for `identity` issued by the national root with the given validity.
    fn root_issued(&self, identity: Identity, validity: Validity) -> TlsIdentity {
        let root = self.f.pki.root().expect("root");
        let leaf = ca::issue_leaf(&root, &identity, validity).expect("leaf");
        TlsIdentity::from_pem_unchecked(&leaf.cert_pem, &leaf.key_pem, &self.root_pem, identity).expect("identity")
    }

    /// A leaf for `identity` issued by `province`'s CA with the given validity (chain: leaf + CA).
    fn province_issued(&self, province: &str, identity: Identity, validity: Validity) -> TlsIdentity {
        let ca = self.f.pki.province_ca(&code(province)).expect("province CA");
        let leaf = ca::issue_leaf(&ca, &identity, validity).expect("leaf");
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        TlsIdentity::from_pem_unchecked(&chain, &leaf.key_pem, &self.root_pem, identity).expect("identity")
    }

    /// A leaf issued by a CA outside the federation, presented by a client that trusts the
    /// real root. `root_domain` names the foreign root: the federation's own trust domain
    /// gives it exactly the real root's name (an impostor root).
    fn foreign(&self, identity: Identity, root_domain: &str) -> TlsIdentity {
        let foreign_root = ca::new_root(root_domain, Validity::days(1)).expect("foreign root");
        let leaf = ca::issue_leaf(&foreign_root, &identity, Validity::days(1)).expect("leaf");
        TlsIdentity::from_pem_unchecked(&leaf.cert_pem, &leaf.key_pem, &self.root_pem, identity).expect("identity")
    }

    /// A Shandong admin certificate under a "Shandong CA" that Anhui's CA minted (same
    /// name and URI SAN as the real one), chained with or without Anhui's CA.
    fn rogue_sub_ca_admin(&self, with_issuer: bool) -> TlsIdentity {
        let anhui_ca = self.f.pki.province_ca(&code("340000")).expect("Anhui CA");
        let rogue_ca =
            ca::new_province_ca(&anhui_ca, &self.f.trust_domain, &code("370000"), "Shandong", Validity::days(1))
                .expect("rogue CA");
        let admin = identity("spiffe://huren.gov/province/370000/admin");
        let leaf = ca::issue_leaf(&rogue_ca, &admin, Validity::days(1)).expect("leaf");
        let mut chain = format!("{}{}", leaf.cert_pem, rogue_ca.cert_pem);
        if with_issuer {
            chain.push_str(&anhui_ca.cert_pem);
        }
        TlsIdentity::from_pem_unchecked(&chain, &leaf.key_pem, &self.root_pem, admin).expect("identity")
    }

    fn gateway(&self, who: &TlsIdentity) -> Channel {
        client_channel(who, ExpectedPeer::AnyGateway, self.f.gateway_addr())
    }

    fn node(&self, who: &TlsIdentity, province: &str) -> Channel {
        let p = code(province);
        client_channel(who, node_peer(&self.f, &p), self.f.node_addr(&p).expect("node address"))
    }

    fn node_addr(&self, province: &str) -> SocketAddr {
        self.f.node_addr(&code(province)).expect("node address")
    }
}

fn identity(uri: &str) -> Identity {
    uri.parse().expect("identity")
}

fn validity(from_now: i64, to_now: i64) -> Validity {
    let now = time::OffsetDateTime::now_utc();
    Validity { not_before: now + time::Duration::seconds(from_now), not_after: now + time::Duration::seconds(to_now) }
}

fn random_token() -> Vec<u8> {
    qr::new_token().expect("token").to_vec()
}

fn lookup_request(province: &str) -> pb::LookupRequest {
    pb::LookupRequest { province: province.into(), token: random_token(), purpose: "transit.rail".into() }
}

fn green_upsert(subject: &str) -> pb::UpsertStatusRequest {
    change(subject, pb::HealthStatus::Green, "", "")
}

async fn lookup(channel: Channel, request: pb::LookupRequest) -> Outcome {
    grpc(pb::lookup_client::LookupClient::new(channel).lookup(request).await)
}

async fn upload(channel: Channel, list: pb::SignedTrustList) -> Outcome {
    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).upload(list).await)
}

async fn upsert(channel: Channel, request: pb::UpsertStatusRequest) -> Outcome {
    grpc(pb::status_admin_client::StatusAdminClient::new(channel).upsert_status(request).await)
}

async fn attest(channel: Channel) -> Outcome {
    let request = pb::AttestRequest { token: random_token(), purpose: "transit.rail".into() };
    grpc(pb::attestation_client::AttestationClient::new(channel).attest(request).await)
}

fn transparency(channel: Channel) -> pb::transparency_client::TransparencyClient<Channel> {
    pb::transparency_client::TransparencyClient::new(channel)
}

/// The gateway's current list with `edit` applied, signed by the national root.
fn root_signed(c: &Ctx, edit: impl FnOnce(&mut pb::TrustList)) -> pb::SignedTrustList {
    let mut list = c.f.gateway_trust().expect("gateway").current().raw().clone();
    list.sequence += 10;
    edit(&mut list);
    trust::sign(&list, &c.f.pki.root().expect("root")).expect("sign")
}

async fn upload_as_coordinator(c: &Ctx, list: pb::SignedTrustList) -> Outcome {
    upload(c.gateway(&c.id("coordinator", "adv-nhc")), list).await
}

fn receipt(province: &str) -> pb::DeletionReceipt {
    pb::DeletionReceipt {
        province: province.into(),
        time: unix_now(),
        reason: "manual".into(),
        deleted_root: vec![7; 32],
        ..Default::default()
    }
}

// ------------------------------------------------------------------ raw TLS

/// Handshakes with `config` and reads the server's first bytes: an accepting Huren
/// server speaks HTTP/2 first (its SETTINGS frame), a refusing one sends a TLS alert.
/// (In TLS 1.3 the client finishes before the server has judged its certificate, so
/// the verdict arrives on the first read.)
async fn tls_probe(config: Arc<ClientConfig>, addr: SocketAddr) -> Outcome {
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

async fn huren_tls_probe(who: &TlsIdentity, expected: ExpectedPeer, addr: SocketAddr) -> Outcome {
    tls_probe(tls::client_config(who, expected, Revocations::default()).expect("client config"), addr).await
}

/// Accepts any server certificate: for clients whose handshake must fail for other reasons.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that only speaks TLS 1.2 (with rustls' TLS 1.2 AEAD suites) and presents `who`.
fn tls12_only(who: &TlsIdentity) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(who.chain.clone(), who.key.clone_key())
        .expect("client cert");
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Weak suites rustls does not implement: RC4, DES, 3DES and CBC-mode (non-AEAD) suites.
const WEAK_SUITES: [u16; 8] = [0x0004, 0x0005, 0x0009, 0x000a, 0x002f, 0x0035, 0x003c, 0xc013];

/// A hand-made ClientHello offering only `suites`; with `tls13`, it advertises TLS 1.3
/// (supported_versions, an X25519 key share), otherwise it is a plain TLS 1.2 hello.
fn client_hello(suites: &[u16], tls13: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null only
    let mut ext = Vec::new();
    ext.extend([0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]); // supported_groups: x25519
    ext.extend([0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x07]); // signature_algorithms
    if tls13 {
        ext.extend([0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]); // supported_versions: TLS 1.3
        ext.extend([0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]); // key_share: x25519
        ext.extend([0x11; 32]);
    }
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![0x01];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends `bytes` on a raw TCP connection and describes the server's reply: a TLS alert
/// (`TLS alert <level>/<description>`), silence then close, or anything else.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("server neither answered nor closed within its handshake timeout"),
        }
    }
    match got.as_slice() {
        [0x15, 0x03, _, 0x00, 0x02, level, description, ..] => Err(error(format!("TLS alert {level}/{description}"))),
        [] => Err(error("closed without a reply")),
        other => Err(error(format!("unexpected reply {:02x?}", &other[..other.len().min(16)]))),
    }
}

/// The client preface and an empty SETTINGS frame of plaintext HTTP/2 (h2c).
const H2C_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

// ------------------------------------------------------------------ forging node

/// The keys a forging node may use.
struct Keys {
    shandong: AttestationKey,
    anhui: AttestationKey,
    /// Not in the trust list at all.
    stranger: AttestationKey,
    /// In the trust list for Shandong, revoked.
    revoked: AttestationKey,
    /// In the trust list for Shandong, its validity window over.
    lapsed: AttestationKey,
    /// A genuine attestation Shandong's real node signed for another token.
    genuine: pb::QrCode,
}

/// What the scripted Shandong node answers.
type Forge = fn(&pb::AttestRequest, &Keys) -> Option<pb::SignedAttestation>;

/// Which token a forgery row asks about.
#[derive(Debug, Clone, Copy)]
enum Token {
    Fresh,
    /// The token of the genuine attestation.
    Genuine,
}

fn honest(req: &pb::AttestRequest, k: &Keys) -> Option<pb::SignedAttestation> {
    Some(k.shandong.sign(&green_payload(req, "370000")))
}

/// `green` with `edit` applied, signed by Shandong's real key.
fn shandong_signs(
    req: &pb::AttestRequest,
    k: &Keys,
    edit: impl FnOnce(&mut pb::AttestationPayload),
) -> Option<pb::SignedAttestation> {
    let mut p = green_payload(req, "370000");
    edit(&mut p);
    Some(k.shandong.sign(&p))
}

/// Encoded `green` with `extra` bytes appended, signed by Shandong's real key.
fn shandong_signs_bytes(req: &pb::AttestRequest, k: &Keys, extra: &[u8]) -> Option<pb::SignedAttestation> {
    let mut bytes = green_payload(req, "370000").encode_to_vec();
    bytes.extend_from_slice(extra);
    Some(k.shandong.sign_bytes(bytes))
}

// ------------------------------------------------------------------ the table runner

type Run = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = Outcome>>>;

enum Kind {
    /// Any attempt.
    Run(Run),
    /// A lookup through the gateway to the forging Shandong node, which answers with this.
    Forge(Forge, Token),
}

struct Case {
    name: &'static str,
    kind: Kind,
    expect: Expect,
}

fn case(name: &'static str, expect: Expect, run: Run) -> Case {
    Case { name, kind: Kind::Run(run), expect }
}

fn forged(name: &'static str, text: &'static str, forge: Forge) -> Case {
    Case { name, kind: Kind::Forge(forge, Token::Fresh), expect: Expect::Status(Code::FailedPrecondition, text) }
}

async fn run_forged(c: &Ctx, forge: Forge, token: Token) -> Outcome {
    *c.forge.lock().unwrap() = forge;
    let token = match token {
        Token::Fresh => random_token(),
        Token::Genuine => c.genuine_shandong.as_ref().expect("genuine attestation").token.clone(),
    };
    let request = pb::LookupRequest { province: "370000".into(), token, purpose: "transit.rail".into() };
    let calls = c.forge_calls.load(Ordering::SeqCst);
    let outcome = lookup(c.victim.clone().expect("victim hub"), request).await;
    *c.forge.lock().unwrap() = honest;
    assert_eq!(c.forge_calls.load(Ordering::SeqCst), calls + 1, "the gateway asked the node exactly once");
    if let Err(Refusal { message, .. }) = &outcome {
        assert!(message.starts_with("attestation from province 370000 refused: "), "{message}");
    }
    outcome
}

/// Runs every row, checking its refusal and that the snapshot did not move.
async fn run_table(ctx: Arc<Ctx>, probe: &mut HubClient, cases: Vec<Case>) -> usize {
    let mut before = ctx.snapshot(probe).await;
    assert!(before.probes.iter().all(|p| !p.contains("probe failed")), "probes work before the table: {before:?}");
    let count = cases.len();
    for Case { name, kind, expect } in cases {
        let outcome = match kind {
            Kind::Run(run) => run(ctx.clone()).await,
            Kind::Forge(forge, token) => run_forged(&ctx, forge, token).await,
        };
        expect.check(name, &outcome);
        if let Err(Refusal { code, message }) = &outcome {
            eprintln!("refused: {name}: {code:?} {message}");
        }
        let after = ctx.snapshot(probe).await;
        assert_eq!(before, after, "{name}: the refused attempt changed state");
        before = after;
    }
    count
}

// ------------------------------------------------------------------ table 1

fn identity_role_transport_and_trust_list_cases() -> Vec<Case> {
    use Expect::{Error, Status, StatusIn};
    const ROOT_ONLY: &str = "must be issued directly by the national root";
    const OWN_CA: &str = "must be issued by its own province CA";
    // gRPC convention for a message over a size limit; the servers keep both sizes in the message.
    const TOO_LARGE: Code = Code::ResourceExhausted;
    const TOO_LARGE_TEXT: &str = "request message length too large: found ";
    vec![
        // --- certificates refused at the handshake
        case("foreign CA hub -> gateway", Error("received fatal alert: UnknownCA"), |c| {
            Box::pin(async move {
                let who = c.foreign(identity("spiffe://huren.gov/hub/adv-probe"), "foreign.example");
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }),
        case("foreign CA admin -> node", Error("received fatal alert: UnknownCA"), |c| {
            Box::pin(async move {
                let who = c.foreign(identity("spiffe://huren.gov/province/340000/admin"), "foreign.example");
                huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
            })
        }),
        // A foreign root carrying the real root's name: the chain is built, the signature fails.
        case("impostor root's coordinator -> gateway", Error("received fatal alert: DecryptError"), |c| {
            Box::pin(async move {
                let who = c.foreign(identity("spiffe://huren.gov/coordinator/adv-nhc"), "huren.gov");
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }),
        case("expired hub certificate -> gateway", Error("received fatal alert: CertificateExpired"), |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/hub/adv-probe"), validity(-7200, -3600));
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }),
        case("not-yet-valid hub certificate -> gateway", Error("received fatal alert: CertificateExpired"), |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/hub/adv-probe"), validity(3600, 7200));
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }),
        case("expired admin certificate -> node", Error("received fatal alert: CertificateExpired"), |c| {
            Box::pin(async move {
                let who = c.province_issued(
                    "340000",
                    identity("spiffe://huren.gov/province/340000/admin"),
                    validity(-7200, -3600),
                );
                huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
            })
        }),
        case("not-yet-valid gateway certificate -> node", Error("received fatal alert: CertificateExpired"), |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/gateway/national-1"), validity(600, 7200));
                huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
            })
        }),
        case("TLS 1.2-only client with a valid hub certificate -> gateway", Error("ProtocolVersion"), |c| {
            Box::pin(async move { tls_probe(tls12_only(&c.id("hub", "adv-probe")), c.f.gateway_addr()).await })
        }),
        case("TLS 1.2-only client with a valid gateway certificate -> node", Error("ProtocolVersion"), |c| {
            Box::pin(async move { tls_probe(tls12_only(&c.id("gateway", "national-1")), c.node_addr("340000")).await })
        }),
        // 2/70: fatal protocol_version
        case("TLS 1.2 hello with weak suites only -> gateway", Error("TLS alert 2/70"), |c| {
            Box::pin(async move { raw_exchange(c.f.gateway_addr(), &client_hello(&WEAK_SUITES, false)).await })
        }),
        // 2/40: fatal handshake_failure (no cipher suite in common)
        case("TLS 1.3 hello with weak suites only -> gateway", Error("TLS alert 2/40"), |c| {
            Box::pin(async move { raw_exchange(c.f.gateway_addr(), &client_hello(&WEAK_SUITES, true)).await })
        }),
        case("TLS 1.3 hello with weak suites only -> node", Error("TLS alert 2/40"), |c| {
            Box::pin(async move { raw_exchange(c.node_addr("370000"), &client_hello(&WEAK_SUITES, true)).await })
        }),
        // Plaintext HTTP/2 is not TLS: the server answers with a fatal decode_error alert (2/50),
        // never an HTTP/2 frame.
        case("plaintext HTTP/2 -> gateway", Error("TLS alert 2/50"), |c| {
            Box::pin(async move { raw_exchange(c.f.gateway_addr(), H2C_PREFACE).await })
        }),
        case("plaintext HTTP/2 -> node", Error("TLS alert 2/50"), |c| {
            Box::pin(async move { raw_exchange(c.node_addr("340000"), H2C_PREFACE).await })
        }),
        case(
            "plaintext gRPC Lookup -> gateway",
            StatusIn(&[Code::Unavailable, Code::Unknown, Code::Internal], ""),
            |c| {
                Box::pin(async move {
                    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.f.gateway_addr()))
                        .expect("endpoint")
                        .connect_lazy();
                    lookup(channel, lookup_request("340000")).await
                })
            },
        ),
        // --- clients pin the server's identity
        case("a node posing as the gateway is refused by a hub", Error("invalid peer certificate"), |c| {
            Box::pin(async move {
                huren_tls_probe(&c.id("hub", "adv-probe"), ExpectedPeer::AnyGateway, c.node_addr("340000")).await
            })
        }),
        case("Anhui's node posing as Shandong's is refused by a gateway", Error("invalid peer certificate"), |c| {
            Box::pin(async move {
                let who = c.id("gateway", "national-1");
                huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("340000")).await
            })
        }),
        // --- chains that authenticate as no federation identity
        case("Anhui CA issues a hub identity -> gateway Lookup", Status(Code::Unauthenticated, ROOT_ONLY), |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/hub/adv-probe");
                lookup(c.gateway(&who), lookup_request("340000")).await
            })
        }),
        case("Anhui CA issues a coordinator -> gateway Upload", Status(Code::Unauthenticated, ROOT_ONLY), |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/coordinator/adv-nhc");
                upload(c.gateway(&who), root_signed(&c, |_| {})).await
            })
        }),
        case("Anhui CA issues a gateway identity -> node Attest", Status(Code::Unauthenticated, ROOT_ONLY), |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/gateway/national-1");
                attest(c.node(&who, "340000")).await
            })
        }),
        case("Anhui CA issues Shandong's admin -> Shandong UpsertStatus", Status(Code::Unauthenticated, OWN_CA), |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/province/370000/admin");
                upsert(c.node(&who, "370000"), green_upsert("sd-adv")).await
            })
        }),
        case("Anhui CA issues Shandong's node -> gateway SubmitReceipt", Status(Code::Unauthenticated, OWN_CA), |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/province/370000/node");
                let signed = c.f.attestation_key(&code("370000")).expect("key").sign_receipt(&receipt("370000"));
                grpc(pb::trust_registry_client::TrustRegistryClient::new(c.gateway(&who)).submit_receipt(signed).await)
            })
        }),
        // Anhui's CA (path length 0) mints a "Shandong CA" with the real one's name and URI
        // SAN, and under it a Shandong admin: no path to the root may go through it (the
        // path-length violation is an "other" certificate error: certificate_unknown).
        case(
            "Anhui CA mints a Shandong sub-CA (chain with Anhui's CA)",
            Error("received fatal alert: CertificateUnknown"),
            |c| {
                Box::pin(async move {
                    let who = c.rogue_sub_ca_admin(true);
                    huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("370000")).await
                })
            },
        ),
        case("Anhui CA mints a Shandong sub-CA (chain without it)", Error("received fatal alert: UnknownCA"), |c| {
            Box::pin(async move {
                let who = c.rogue_sub_ca_admin(false);
                huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("370000")).await
            })
        }),
        case(
            "root issues an admin identity directly -> node UpsertStatus",
            Status(Code::Unauthenticated, OWN_CA),
            |c| {
                Box::pin(async move {
                    let who =
                        c.root_issued(identity("spiffe://huren.gov/province/340000/admin"), validity(-3600, 86_400));
                    upsert(c.node(&who, "340000"), green_upsert("ah-adv")).await
                })
            },
        ),
        case(
            "identity outside the trust domain -> gateway GetTrustList",
            Status(Code::Unauthenticated, "is outside trust domain huren.gov"),
            |c| {
                Box::pin(async move {
                    // The client itself expects huren.gov servers; its certificate says evil.gov.
                    let root = c.f.pki.root().expect("root");
                    let leaf = ca::issue_leaf(&root, &identity("spiffe://evil.gov/hub/adv-probe"), Validity::days(1))
                        .expect("leaf");
                    let who = TlsIdentity::from_pem_unchecked(
                        &leaf.cert_pem,
                        &leaf.key_pem,
                        &c.root_pem,
                        identity("spiffe://huren.gov/hub/adv-probe"),
                    )
                    .expect("identity");
                    grpc(
                        pb::trust_registry_client::TrustRegistryClient::new(c.gateway(&who))
                            .get_trust_list(pb::GetTrustListRequest {})
                            .await,
                    )
                })
            },
        ),
        // --- wrong role for each restricted RPC
        case(
            "coordinator calls Lookup",
            Status(Code::PermissionDenied, "Lookup/Lookup is for transport hub identities"),
            |c| {
                Box::pin(
                    async move { lookup(c.gateway(&c.id("coordinator", "adv-nhc")), lookup_request("340000")).await },
                )
            },
        ),
        case(
            "auditor calls Lookup",
            Status(Code::PermissionDenied, "Lookup/Lookup is for transport hub identities"),
            |c| Box::pin(async move { lookup(c.gateway(&c.id("auditor", "adv-a")), lookup_request("340000")).await }),
        ),
        case(
            "unregistered hub calls Lookup",
            Status(Code::PermissionDenied, "hub adv-unregistered is not registered in the trust list"),
            |c| {
                Box::pin(
                    async move { lookup(c.gateway(&c.id("hub", "adv-unregistered")), lookup_request("340000")).await },
                )
            },
        ),
        case(
            "rail-only hub declares air travel",
            Status(Code::PermissionDenied, "hub adv-rail-only is not registered for purpose transit.air"),
            |c| {
                Box::pin(async move {
                    let request = pb::LookupRequest { purpose: "transit.air".into(), ..lookup_request("340000") };
                    lookup(c.gateway(&c.id("hub", "adv-rail-only")), request).await
                })
            },
        ),
        case(
            "hub uploads a root-signed newer trust list",
            Status(Code::PermissionDenied, "TrustRegistry/Upload is for coordinator identities"),
            |c| Box::pin(async move { upload(c.gateway(&c.id("hub", "adv-probe")), root_signed(&c, |_| {})).await }),
        ),
        case(
            "node uploads a root-signed newer trust list",
            Status(Code::PermissionDenied, "TrustRegistry/Upload is for coordinator identities"),
            |c| Box::pin(async move { upload(c.gateway(&c.id("node", "340000")), root_signed(&c, |_| {})).await }),
        ),
        case(
            "hub hands in a deletion receipt",
            Status(Code::PermissionDenied, "TrustRegistry/SubmitReceipt is for province node identities"),
            |c| {
                Box::pin(async move {
                    let signed = c.f.attestation_key(&code("340000")).expect("key").sign_receipt(&receipt("340000"));
                    let channel = c.gateway(&c.id("hub", "adv-probe"));
                    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).submit_receipt(signed).await)
                })
            },
        ),
        case(
            "Anhui's node hands in Shandong's receipt",
            Status(Code::PermissionDenied, "node of province 340000 cannot hand in a receipt for province 370000"),
            |c| {
                Box::pin(async move {
                    let signed = c.f.attestation_key(&code("370000")).expect("key").sign_receipt(&receipt("370000"));
                    let channel = c.gateway(&c.id("node", "340000"));
                    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).submit_receipt(signed).await)
                })
            },
        ),
        case(
            "Anhui's node forges a receipt for Shandong with its own key",
            Status(Code::InvalidArgument, "is not an attestation key of province 370000"),
            |c| {
                Box::pin(async move {
                    let signed = c.f.attestation_key(&code("340000")).expect("key").sign_receipt(&receipt("370000"));
                    let channel = c.gateway(&c.id("node", "340000"));
                    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).submit_receipt(signed).await)
                })
            },
        ),
        case(
            "Anhui's node hands in a sunset receipt that says records remain",
            Status(Code::InvalidArgument, "sunset receipt of province 340000 says records remain: 3 status"),
            |c| {
                Box::pin(async move {
                    let claim = pb::DeletionReceipt {
                        reason: "sunset".into(),
                        remaining: vec![pb::DeletedCount { kind: "status".into(), count: 3 }],
                        ..receipt("340000")
                    };
                    let signed = c.f.attestation_key(&code("340000")).expect("key").sign_receipt(&claim);
                    let channel = c.gateway(&c.id("node", "340000"));
                    grpc(pb::trust_registry_client::TrustRegistryClient::new(channel).submit_receipt(signed).await)
                })
            },
        ),
        case(
            "hub lists deletion receipts",
            Status(Code::PermissionDenied, "TrustRegistry/ListReceipts is for coordinators and auditors"),
            |c| {
                Box::pin(async move {
                    let channel = c.gateway(&c.id("hub", "adv-probe"));
                    grpc(
                        pb::trust_registry_client::TrustRegistryClient::new(channel)
                            .list_receipts(pb::ListReceiptsRequest {})
                            .await,
                    )
                })
            },
        ),
        case(
            "hub calls a node's Attest directly",
            Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
            |c| Box::pin(async move { attest(c.node(&c.id("hub", "adv-probe"), "340000")).await }),
        ),
        case(
            "the province's own admin calls Attest",
            Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
            |c| Box::pin(async move { attest(c.node(&c.id("admin", "340000"), "340000")).await }),
        ),
        case(
            "Anhui's node calls Shandong's Attest",
            Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
            |c| Box::pin(async move { attest(c.node(&c.id("node", "340000"), "370000")).await }),
        ),
        case(
            "gateway calls UpsertStatus",
            Status(
                Code::PermissionDenied,
                "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
            ),
            |c| {
                Box::pin(async move {
                    upsert(c.node(&c.id("gateway", "national-1"), "340000"), green_upsert("ah-adv")).await
                })
            },
        ),
        case(
            "Shandong's admin acts for Anhui (UpsertStatus)",
            Status(
                Code::PermissionDenied,
                "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
            ),
            |c| {
                Box::pin(
                    async move { upsert(c.node(&c.id("admin", "370000"), "340000"), green_upsert("ah-adv")).await },
                )
            },
        ),
        case(
            "Anhui's node identity calls its own UpsertStatus",
            Status(
                Code::PermissionDenied,
                "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
            ),
            |c| {
                Box::pin(async move { upsert(c.node(&c.id("node", "340000"), "340000"), green_upsert("ah-adv")).await })
            },
        ),
        case(
            "Shandong's node acts for Anhui (UpsertStatus)",
            Status(
                Code::PermissionDenied,
                "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
            ),
            |c| {
                Box::pin(async move { upsert(c.node(&c.id("node", "370000"), "340000"), green_upsert("ah-adv")).await })
            },
        ),
        // --- who applies a status: an authority identity the rule names, never a claim
        case(
            "Shandong's authority acts at Anhui's node",
            Status(Code::PermissionDenied, "is for the admin and authority identities of province 340000"),
            |c| {
                Box::pin(async move {
                    let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                    upsert(c.node(&c.id("authority", "370000/jinan-cdc"), "340000"), red).await
                })
            },
        ),
        case(
            "Anhui's admin turns a code red naming Hefei CDC",
            Status(Code::PermissionDenied, "is not the caller"),
            |c| {
                Box::pin(async move {
                    let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "340000/hefei-cdc");
                    upsert(c.node(&c.id("admin", "340000"), "340000"), red).await
                })
            },
        ),
        case(
            "Anhui's admin turns a code red",
            Status(Code::PermissionDenied, "must be applied by an authority identity"),
            |c| {
                Box::pin(async move {
                    let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                    upsert(c.node(&c.id("admin", "340000"), "340000"), red).await
                })
            },
        ),
        case(
            "an Anhui authority no rule names turns a code red",
            Status(Code::PermissionDenied, "authority 340000/county-bank is not allowed to apply rule"),
            |c| {
                Box::pin(async move {
                    let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                    upsert(c.node(&c.id("authority", "340000/county-bank"), "340000"), red).await
                })
            },
        ),
        case("Shandong's CA issues an Anhui authority", Status(Code::Unauthenticated, OWN_CA), |c| {
            Box::pin(async move {
                let identity = identity("spiffe://huren.gov/province/340000/authority/hefei-cdc");
                let who = c.province_issued("370000", identity, Validity::days(1));
                upsert(c.node(&who, "340000"), change("ah-adv", pb::HealthStatus::Red, RED_RULE, "")).await
            })
        }),
        case(
            "auditor calls IssueToken",
            Status(Code::PermissionDenied, "StatusAdmin/IssueToken is for the admin identity of province 340000"),
            |c| {
                Box::pin(async move {
                    let request = pb::IssueTokenRequest { subject_ref: "ah-driver-0001".into(), ..Default::default() };
                    let channel = c.node(&c.id("auditor", "adv-a"), "340000");
                    grpc(pb::status_admin_client::StatusAdminClient::new(channel).issue_token(request).await)
                })
            },
        ),
        case(
            "Shandong's admin acts for Anhui (IssueToken)",
            Status(Code::PermissionDenied, "StatusAdmin/IssueToken is for the admin identity of province 340000"),
            |c| {
                Box::pin(async move {
                    let request = pb::IssueTokenRequest { subject_ref: "ah-driver-0001".into(), ..Default::default() };
                    let channel = c.node(&c.id("admin", "370000"), "340000");
                    grpc(pb::status_admin_client::StatusAdminClient::new(channel).issue_token(request).await)
                })
            },
        ),
        case(
            "hub reads a node's tree head",
            Status(Code::PermissionDenied, "Transparency/GetTreeHead is for auditors, coordinators, gateways"),
            |c| {
                Box::pin(async move {
                    let mut client = transparency(c.node(&c.id("hub", "adv-probe"), "340000"));
                    grpc(client.get_tree_head(pb::GetTreeHeadRequest {}).await)
                })
            },
        ),
        case(
            "hub asks for a consistency proof",
            Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
            |c| {
                Box::pin(async move {
                    let mut client = transparency(c.node(&c.id("hub", "adv-probe"), "340000"));
                    grpc(client.get_consistency_proof(pb::ConsistencyProofRequest { old_size: 1, new_size: 1 }).await)
                })
            },
        ),
        case(
            "admin asks for an inclusion proof",
            Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
            |c| {
                Box::pin(async move {
                    let mut client = transparency(c.node(&c.id("admin", "340000"), "340000"));
                    grpc(client.get_inclusion_proof(pb::InclusionProofRequest { index: 0, tree_size: 1 }).await)
                })
            },
        ),
        case(
            "gateway reads log entries",
            Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
            |c| {
                Box::pin(async move {
                    let mut client = transparency(c.node(&c.id("gateway", "national-1"), "340000"));
                    grpc(client.get_entries(pb::GetEntriesRequest { start: 0, end: 1 }).await)
                })
            },
        ),
        case(
            "Shandong's admin reads an Anhui subject's entries",
            Status(
                Code::PermissionDenied,
                "Transparency/GetSubjectEntries is for auditors and the admin of province 340000",
            ),
            |c| {
                Box::pin(async move {
                    let mut client = transparency(c.node(&c.id("admin", "370000"), "340000"));
                    grpc(client.get_subject_entries(pb::SubjectEntriesRequest { token: random_token() }).await)
                })
            },
        ),
        // --- oversized messages (servers decode at most 64 KiB; trust lists 8 MiB)
        case("1 MiB token in a Lookup", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
            Box::pin(async move {
                let request = pb::LookupRequest { token: vec![0x41; 1 << 20], ..lookup_request("340000") };
                lookup(c.gateway(&c.id("hub", "adv-probe")), request).await
            })
        }),
        case("1 MiB subject reference in an UpsertStatus", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
            Box::pin(async move {
                upsert(c.node(&c.id("admin", "340000"), "340000"), green_upsert(&"a".repeat(1 << 20))).await
            })
        }),
        case("1 MiB token in an Attest", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
            Box::pin(async move {
                let request = pb::AttestRequest { token: vec![1; 1 << 20], purpose: "transit.rail".into() };
                let channel = c.node(&c.id("gateway", "national-1"), "340000");
                grpc(pb::attestation_client::AttestationClient::new(channel).attest(request).await)
            })
        }),
        case("9 MiB root-signed trust list upload", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.rules[0].legal_basis = "x".repeat(9 << 20));
                upload_as_coordinator(&c, list).await
            })
        }),
        // --- rolled-back and mis-signed trust lists (uploaded by a real coordinator)
        case(
            "trust list rolled back to an older sequence",
            Status(Code::FailedPrecondition, "is not newer than the held sequence"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| l.sequence -= 11);
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "the current trust list replayed",
            Status(Code::FailedPrecondition, "is not newer than the held sequence"),
            |c| {
                Box::pin(async move {
                    let current = c.f.gateway_trust().expect("gateway").current().signed().clone();
                    upload_as_coordinator(&c, current).await
                })
            },
        ),
        case(
            "trust list signed by a province CA key",
            Status(Code::InvalidArgument, "does not verify against the national root"),
            |c| {
                Box::pin(async move {
                    let mut list = c.f.gateway_trust().expect("gateway").current().raw().clone();
                    list.sequence += 10;
                    let signed = trust::sign(&list, &c.f.pki.province_ca(&code("340000")).expect("CA")).expect("sign");
                    upload_as_coordinator(&c, signed).await
                })
            },
        ),
        case(
            "trust list signed by a foreign root",
            Status(Code::InvalidArgument, "does not verify against the national root"),
            |c| {
                Box::pin(async move {
                    let mut list = c.f.gateway_trust().expect("gateway").current().raw().clone();
                    list.sequence += 10;
                    let foreign = ca::new_root("huren.gov", Validity::days(1)).expect("foreign root");
                    upload_as_coordinator(&c, trust::sign(&list, &foreign).expect("sign")).await
                })
            },
        ),
        case(
            "trust list payload altered after signing",
            Status(Code::InvalidArgument, "does not verify against the national root"),
            |c| {
                Box::pin(async move {
                    let mut signed = root_signed(&c, |_| {});
                    let mut list = pb::TrustList::decode(signed.payload.as_slice()).expect("decode");
                    list.revoked_serials.clear();
                    list.sequence += 1;
                    signed.payload = list.encode_to_vec();
                    upload_as_coordinator(&c, signed).await
                })
            },
        ),
        case(
            "trust list with a truncated signature",
            Status(Code::InvalidArgument, "does not verify against the national root"),
            |c| {
                Box::pin(async move {
                    let mut signed = root_signed(&c, |_| {});
                    signed.signature.truncate(signed.signature.len() / 2);
                    upload_as_coordinator(&c, signed).await
                })
            },
        ),
        case(
            "trust list without a signature",
            Status(Code::InvalidArgument, "does not verify against the national root"),
            |c| {
                Box::pin(async move {
                    let mut signed = root_signed(&c, |_| {});
                    signed.signature.clear();
                    upload_as_coordinator(&c, signed).await
                })
            },
        ),
        case(
            "root-signed bytes that are no TrustList",
            Status(Code::InvalidArgument, "not a valid TrustList message"),
            |c| {
                Box::pin(async move {
                    let payload = vec![0xff; 40];
                    let signature = ca::sign_with_ca_key(
                        &c.f.pki.root().expect("root"),
                        &[trust::TRUST_LIST_CONTEXT, payload.as_slice()].concat(),
                    )
                    .expect("sign");
                    upload_as_coordinator(&c, pb::SignedTrustList { payload, signature }).await
                })
            },
        ),
        case(
            "root-signed trust list of an unknown format version",
            Status(Code::InvalidArgument, "unsupported trust list version 2"),
            |c| Box::pin(async move { upload_as_coordinator(&c, root_signed(&c, |l| l.version = 2)).await }),
        ),
        case(
            "root-signed trust list for another trust domain",
            Status(Code::FailedPrecondition, "is for trust domain \"evil.gov\", not \"huren.gov\""),
            |c| {
                Box::pin(async move {
                    upload_as_coordinator(&c, root_signed(&c, |l| l.trust_domain = "evil.gov".into())).await
                })
            },
        ),
        case(
            "root-signed trust list listing a province twice",
            Status(Code::InvalidArgument, "duplicate province 340000"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| {
                        let anhui = l.provinces.iter().find(|p| p.code == "340000").expect("anhui").clone();
                        l.provinces.push(anhui);
                    });
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "root-signed trust list whose kid does not match its key",
            Status(Code::InvalidArgument, "kid does not match its key"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| l.provinces[0].attestation_keys[0].kid[0] ^= 1);
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "root-signed trust list with a 31-byte attestation key",
            Status(Code::InvalidArgument, "attestation key is not 32 bytes"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| {
                        l.provinces[0].attestation_keys[0].public_key.pop();
                    });
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "root-signed trust list registering a hub for an unknown purpose",
            Status(Code::InvalidArgument, "which the field policy lacks"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| {
                        l.hubs.push(pb::HubRegistration {
                            id: "adv-space".into(),
                            purposes: vec!["transit.space".into()],
                            province: String::new(),
                        })
                    });
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "root-signed trust list placing a hub in no valid province",
            Status(Code::InvalidArgument, "hub adv-nowhere: invalid province code \"99\""),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| {
                        l.hubs.push(pb::HubRegistration {
                            id: "adv-nowhere".into(),
                            purposes: vec!["transit.rail".into()],
                            province: "99".into(),
                        })
                    });
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        case(
            "root-signed trust list whose field policy drops a required field",
            Status(Code::InvalidArgument, "must allow token_digest"),
            |c| {
                Box::pin(async move {
                    let list = root_signed(&c, |l| {
                        let mut policy = huren_pki::policy::FieldPolicy::default().to_pb();
                        policy.purposes[0].fields.retain(|f| f != "token_digest");
                        l.field_policy = Some(policy);
                    });
                    upload_as_coordinator(&c, list).await
                })
            },
        ),
        // --- malformed QR strings (parsed by every hub before anything else)
        case("QR with a wrong prefix", Error("does not start with HRN1:"), |c| {
            Box::pin(async move { qr::decode_qr(&c.genuine_qr.replacen("HRN1:", "HRN2:", 1)).map(drop).map_err(error) })
        }),
        case("QR in lower case with a character outside base32", Error("QR body is not base32"), |c| {
            Box::pin(async move {
                // Lower case is read as the same QR (scanners report it so); a damaged body is not.
                let lower = c.genuine_qr.to_lowercase();
                let bad = format!("{}8{}", &lower[..40], &lower[41..]);
                Scanned::parse(&bad).map(drop).map_err(error)
            })
        }),
        case("QR body with a character outside base32", Error("QR body is not base32"), |c| {
            Box::pin(async move {
                let bad = format!("{}1{}", &c.genuine_qr[..40], &c.genuine_qr[41..]);
                qr::decode_qr(&bad).map(drop).map_err(error)
            })
        }),
        case("QR truncated mid-message", Error("QR body is not a valid QrCode message"), |c| {
            Box::pin(async move {
                // Cut to a whole number of base32 blocks so only the protobuf is broken.
                let body = &c.genuine_qr["HRN1:".len()..];
                let cut = format!("HRN1:{}", &body[..(body.len() / 2) / 8 * 8]);
                qr::decode_qr(&cut).map(drop).map_err(error)
            })
        }),
        case("QR truncated by one character", Error("QR body is not base32"), |c| {
            Box::pin(async move {
                let body = &c.genuine_qr["HRN1:".len()..];
                // Base32 without padding has no valid length of 8k+1, 8k+3 or 8k+6 characters.
                let keep = (0..body.len()).rev().find(|n| matches!(n % 8, 1 | 3 | 6)).expect("invalid length");
                qr::decode_qr(&format!("HRN1:{}", &body[..keep])).map(drop).map_err(error)
            })
        }),
        case("QR longer than any QR code holds", Error("longer than 1024 characters"), |c| {
            Box::pin(
                async move { qr::decode_qr(&format!("{}{}", c.genuine_qr, "A".repeat(1024))).map(drop).map_err(error) },
            )
        }),
        case("QR without an attestation", Error("QR carries no attestation"), |_| {
            Box::pin(async move {
                let text = qr::encode_qr(&pb::QrCode { attestation: None, token: random_token() });
                qr::decode_qr(&text).map(drop).map_err(error)
            })
        }),
        case("QR with a 15-byte token", Error("token must be 16 bytes"), |c| {
            Box::pin(async move {
                let mut code = qr::decode_qr(&c.genuine_qr).expect("genuine QR");
                code.token.pop();
                qr::decode_qr(&qr::encode_qr(&code)).map(drop).map_err(error)
            })
        }),
        case("QR whose payload names no valid province", Error("invalid province code"), |c| {
            Box::pin(async move {
                let mut code = qr::decode_qr(&c.genuine_qr).expect("genuine QR");
                let signed = code.attestation.as_mut().expect("attestation");
                let mut payload = pb::AttestationPayload::decode(signed.payload.as_slice()).expect("payload");
                payload.province = "34000".into();
                signed.payload = payload.encode_to_vec();
                Scanned::parse(&qr::encode_qr(&code)).map(drop).map_err(error)
            })
        }),
        case("QR carrying another traveller's token", Error("bound to a different token"), |c| {
            Box::pin(async move {
                let mut code = qr::decode_qr(&c.genuine_qr).expect("genuine QR");
                code.token = random_token();
                let trust = c.f.gateway_trust().expect("gateway").current();
                huren_cli::hub::verify_offline(&trust, &qr::encode_qr(&code), unix_now()).map(drop).map_err(error)
            })
        }),
        case("QR whose expiry was extended after signing", Error("signature does not verify"), |c| {
            Box::pin(async move {
                let mut code = qr::decode_qr(&c.genuine_qr).expect("genuine QR");
                let signed = code.attestation.as_mut().expect("attestation");
                let mut payload = pb::AttestationPayload::decode(signed.payload.as_slice()).expect("payload");
                payload.expires_at += 86_400;
                signed.payload = payload.encode_to_vec();
                let trust = c.f.gateway_trust().expect("gateway").current();
                huren_cli::hub::verify_offline(&trust, &qr::encode_qr(&code), unix_now()).map(drop).map_err(error)
            })
        }),
        case(
            "typed pair with a malformed token",
            Error("token must be 16 bytes written as 26 base32 characters"),
            |_| Box::pin(async move { Scanned::parse("340000:NOT-A-TOKEN").map(drop).map_err(error) }),
        ),
    ]
}

#[tokio::test]
async fn identities_roles_transport_and_trust_lists_are_refused_precisely() {
    let f = start().await;
    let anhui = code("340000");
    // Setup (before the first snapshot): a probe hub, a rail-only hub, a seeded subject.
    f.hub_for("adv-rail-only", &["transit.rail"]).await.unwrap();
    let mut probe = f.hub("adv-probe").await.unwrap();
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").unwrap();
    let issued = seed(&f, &subject, 3600).await.unwrap();
    let mut ctx = Ctx::new(f, vec![anhui.clone(), code("370000"), code("440000")]);
    ctx.genuine_qr = issued.qr.clone();
    ctx.probes = vec![Probe { province: anhui, token: issued.token.clone() }];
    let rows = run_table(Arc::new(ctx), &mut probe, identity_role_transport_and_trust_list_cases()).await;
    assert!(rows >= 40, "{rows} rows");
    eprintln!("{rows} identity, role, transport and trust-list attacks refused with nothing changed");
}

// ------------------------------------------------------------------ table 2

fn forgery_cases() -> Vec<Case> {
    vec![
        forged("forged signature (random bytes)", "signature does not verify with key", |r, k| {
            let mut s = honest(r, k)?;
            s.signature = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
            Some(s)
        }),
        forged("signed by a stranger under Shandong's kid", "signature does not verify with key", |r, k| {
            let mut s = k.stranger.sign(&green_payload(r, "370000"));
            s.kid = k.shandong.kid().0.to_vec();
            Some(s)
        }),
        forged("signed by a key outside the trust list", "is not an attestation key of province 370000", |r, k| {
            Some(k.stranger.sign(&green_payload(r, "370000")))
        }),
        forged("payload truncated before signing", "payload is not well-formed protobuf", |r, k| {
            let mut bytes = green_payload(r, "370000").encode_to_vec();
            bytes.truncate(bytes.len() - 3);
            Some(k.shandong.sign_bytes(bytes))
        }),
        forged("payload truncated after signing", "payload is not well-formed protobuf", |r, k| {
            let mut s = honest(r, k)?;
            s.payload.truncate(s.payload.len() - 3);
            Some(s)
        }),
        forged("payload re-encoded with a later expiry after signing", "signature does not verify with key", |r, k| {
            let mut s = honest(r, k)?;
            let mut p = pb::AttestationPayload::decode(s.payload.as_slice()).ok()?;
            p.expires_at += 86_400;
            s.payload = p.encode_to_vec();
            Some(s)
        }),
        forged("truncated signature", "signature does not verify with key", |r, k| {
            let mut s = honest(r, k)?;
            s.signature.truncate(32);
            Some(s)
        }),
        forged("missing signature", "signature does not verify with key", |r, k| {
            let mut s = honest(r, k)?;
            s.signature.clear();
            Some(s)
        }),
        forged("truncated kid", "kid must be 8 bytes", |r, k| {
            let mut s = honest(r, k)?;
            s.kid.truncate(4);
            Some(s)
        }),
        forged("expired", "attestation expired at", |r, k| {
            shandong_signs(r, k, |p| {
                p.issued_at -= 900;
                p.expires_at = p.issued_at + 300;
            })
        }),
        forged("future-dated", "attestation is dated in the future", |r, k| {
            shandong_signs(r, k, |p| {
                p.issued_at += 3600;
                p.expires_at += 3600;
            })
        }),
        forged("expires before it is issued", "expires_at is not after issued_at", |r, k| {
            shandong_signs(r, k, |p| p.expires_at = p.issued_at)
        }),
        forged("wrong kid (Anhui's key id)", "is not an attestation key of province 370000", |r, k| {
            let mut s = honest(r, k)?;
            s.kid = k.anhui.kid().0.to_vec();
            Some(s)
        }),
        forged("revoked kid", "of province 370000 is revoked", |r, k| {
            Some(k.revoked.sign(&green_payload(r, "370000")))
        }),
        forged("key past its validity window", "of province 370000 is not valid at this time", |r, k| {
            Some(k.lapsed.sign(&green_payload(r, "370000")))
        }),
        forged(
            "genuine attestation replayed for another token",
            "attestation is bound to a different token",
            |_, k| k.genuine.attestation.clone(),
        ),
        Case {
            name: "genuine attestation replayed for another purpose",
            kind: Kind::Forge(|_, k| k.genuine.attestation.clone(), Token::Genuine),
            expect: Expect::Status(Code::FailedPrecondition, "is for purpose \"transit.general\", not the one asked"),
        },
        forged("unknown varint field", "payload carries unknown protobuf field number 15", |r, k| {
            shandong_signs_bytes(r, k, &[15 << 3, 1])
        }),
        forged(
            "personal data smuggled in an unknown field",
            "payload carries unknown protobuf field number 20",
            |r, k| {
                let name = "王建国".as_bytes();
                let mut extra = vec![(20 << 3) | 2, 0x01, name.len() as u8];
                extra.extend_from_slice(name);
                shandong_signs_bytes(r, k, &extra)
            },
        ),
        forged("repeated status field", "payload repeats protobuf field number 3", |r, k| {
            shandong_signs_bytes(r, k, &[3 << 3, 3])
        }),
        forged("rule id sent as a varint", "payload is not well-formed protobuf", |r, k| {
            shandong_signs_bytes(r, k, &[7 << 3, 1])
        }),
        forged("oversized payload", "exceeds the 256-byte limit", |r, k| {
            let mut extra = vec![(21 << 3) | 2, 0x01, 0xc8, 0x01];
            extra.extend([0u8; 200]);
            shandong_signs_bytes(r, k, &extra)
        }),
        forged("empty payload", "purpose \"\" is not in the field policy", |_, k| {
            Some(k.shandong.sign_bytes(Vec::new()))
        }),
        forged("claims Anhui under Shandong's key", "is not an attestation key of province 340000", |r, k| {
            Some(k.shandong.sign(&green_payload(r, "340000")))
        }),
        forged("valid Anhui attestation answered for Shandong", "attestation claims province 340000", |r, k| {
            Some(k.anhui.sign(&green_payload(r, "340000")))
        }),
        forged("payload format version 2", "unsupported attestation payload version 2", |r, k| {
            shandong_signs(r, k, |p| p.version = 2)
        }),
        forged("unspecified status", "attestation status is unspecified or unknown", |r, k| {
            shandong_signs(r, k, |p| p.status = 0)
        }),
        forged("status outside the enum", "attestation status is unspecified or unknown", |r, k| {
            shandong_signs(r, k, |p| p.status = 9)
        }),
        forged("green citing a rule", "green attestation must not cite a rule", |r, k| {
            shandong_signs(r, k, |p| p.rule_id = RED_RULE.into())
        }),
        forged("red citing no rule", "non-green attestation cites no rule", |r, k| {
            shandong_signs(r, k, |p| p.status = pb::HealthStatus::Red as i32)
        }),
        forged(
            "red citing an unregistered rule",
            "cites rule \"MADE-UP-9\", which is not in the rule registry",
            |r, k| {
                shandong_signs(r, k, |p| {
                    p.status = pb::HealthStatus::Red as i32;
                    p.rule_id = "MADE-UP-9".into();
                })
            },
        ),
        forged("31-byte token digest", "attestation token digest must be 32 bytes", |r, k| {
            shandong_signs(r, k, |p| {
                p.token_digest.pop();
            })
        }),
        forged("unknown test-recency bucket", "attestation test recency is unknown", |r, k| {
            shandong_signs(r, k, |p| p.test_recency = 42)
        }),
        forged("purpose outside the field policy", "purpose \"transit.space\" is not in the field policy", |r, k| {
            shandong_signs(r, k, |p| p.purpose = "transit.space".into())
        }),
        forged(
            "field outside the purpose's policy",
            "field test_recency is not allowed for purpose \"venue.entry\"",
            |r, k| {
                shandong_signs(r, k, |p| {
                    p.purpose = "venue.entry".into();
                    p.test_recency = pb::TestRecency::Within24h as i32;
                })
            },
        ),
        forged("node answers without an attestation", "node answered without an attestation", |_, _| None),
    ]
}

#[tokio::test]
async fn forged_attestations_from_a_node_are_refused_precisely() {
    let mut f = start().await;
    let (anhui, shandong) = (code("340000"), code("370000"));
    // Setup, all before the first snapshot: a genuine Shandong QR from the real node, a
    // revoked and a lapsed Shandong key in the trust list, a registered victim hub, and a
    // seeded Anhui subject for the probe.
    let sd_subject = demo_subjects().into_iter().find(|s| s.province == "370000").unwrap();
    let genuine = qr::decode_qr(&seed(&f, &sd_subject, 3600).await.unwrap().qr).unwrap();
    let revoked = f.pki.add_key(&shandong, Validity::days(30)).unwrap();
    f.pki.set_key_status(&shandong, &revoked.kid().hex(), "revoked").unwrap();
    let lapsed = f.pki.add_key(&shandong, validity(-86_400 * 2, -86_400)).unwrap();
    f.hub("adv-victim").await.unwrap();
    let mut probe = f.hub("adv-probe").await.unwrap();
    let ah_subject = demo_subjects().into_iter().find(|s| s.province == "340000").unwrap();
    let ah_token = seed(&f, &ah_subject, 3600).await.unwrap().token;

    let keys = Arc::new(Keys {
        shandong: f.attestation_key(&shandong).unwrap(),
        anhui: f.attestation_key(&anhui).unwrap(),
        stranger: AttestationKey::generate().unwrap(),
        revoked,
        lapsed,
        genuine: genuine.clone(),
    });
    let forge: Arc<Mutex<Forge>> = Arc::new(Mutex::new(honest));
    let calls = Arc::new(AtomicUsize::new(0));
    let script = {
        let (forge, calls, keys) = (forge.clone(), calls.clone(), keys.clone());
        Arc::new(move |req: &pb::AttestRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            let forge = *forge.lock().unwrap();
            Ok(pb::AttestResponse { attestation: forge(req, &keys) })
        })
    };
    let _fake = replace_node_with_fake(&mut f, &shandong, script).await;
    let victim = f.identity("hub", "adv-victim").unwrap();
    let victim = client_channel(&victim, ExpectedPeer::AnyGateway, f.gateway_addr());

    let mut ctx = Ctx::new(f, vec![anhui.clone(), code("440000")]);
    // Probes: Anhui's real node, and Shandong's scripted node in its honest mode (so
    // the gateway is shown to keep serving that province between forgeries).
    let sd_probe_token = random_token();
    ctx.probes = vec![Probe { province: anhui, token: ah_token }, Probe { province: shandong, token: sd_probe_token }];
    ctx.forge = forge;
    ctx.forge_calls = calls;
    ctx.victim = Some(victim);
    ctx.genuine_shandong = Some(genuine);
    let rows = run_table(Arc::new(ctx), &mut probe, forgery_cases()).await;
    assert!(rows >= 30, "{rows} rows");
    eprintln!("{rows} forged attestations refused with nothing changed");
}

// ------------------------------------------------------------------ beyond the tables

#[tokio::test]
async fn a_node_presenting_another_provinces_identity_gets_no_traffic() {
    let mut f = start().await;
    let (anhui, shandong) = (code("340000"), code("370000"));
    let mut hub = f.hub("adv-impostor-victim").await.unwrap();
    let sequence = f.gateway_trust().unwrap().current().sequence();
    // Shandong's address now answers with Anhui's genuine node certificate and key.
    let addr = f.stop_node(&shandong).await.unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let key = Arc::new(f.attestation_key(&anhui).unwrap());
    let script = {
        let asked = asked.clone();
        signing_script(move |req| {
            asked.fetch_add(1, Ordering::SeqCst);
            key.sign(&green_payload(req, "370000"))
        })
    };
    let _impostor = serve_fake_node(f.identity("node", "340000").unwrap(), listener, script);
    let err = hub.lookup_raw(lookup_request("370000")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("province 370000 node unreachable: "), "{}", err.message());
    assert!(err.message().contains("NotValidForName"), "the cause is the gateway's own: {}", err.message());
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the gateway sent a request to an impostor");
    assert_eq!(f.gateway_trust().unwrap().current().sequence(), sequence);
    // The rest of the federation is unaffected.
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").unwrap();
    let token = seed(&f, &subject, 600).await.unwrap().token;
    assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
}

#[tokio::test]
async fn idle_connections_are_dropped_within_the_handshake_timeout_while_lookups_go_on() {
    let f = start().await;
    let anhui = code("340000");
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").unwrap();
    let token = seed(&f, &subject, 600).await.unwrap().token;
    let mut hub = f.hub("adv-slowloris-probe").await.unwrap();
    hub.lookup(&anhui, &token, "transit.rail").await.unwrap();

    let opened = Instant::now();
    let mut idle = Vec::new();
    for addr in [f.gateway_addr(), f.node_addr(&anhui).unwrap()] {
        for _ in 0..24 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // A client that starts a handshake and then stalls mid-record.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&client_hello(&[0x1301], true)[..20]).await.unwrap();
        idle.push(stalled);
    }
    // While they hang, lookups (on an open connection and on fresh ones) keep working.
    let identity = f.identity("hub", "adv-slowloris-probe").unwrap();
    for _ in 0..10 {
        assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
        let mut fresh = HubClient::connect(&f.gateway_addr().to_string(), &identity).unwrap();
        assert_eq!(fresh.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
    }
    // Each silent connection is closed by the server: bounded by its handshake timeout.
    let bound = HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    for (i, mut conn) in idle.into_iter().enumerate() {
        let left = bound.saturating_sub(opened.elapsed());
        let mut buf = [0u8; 64];
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => panic!("connection {i} still open {:?} after it was opened", opened.elapsed()),
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("connection {i}: the server sent {n} bytes to a client that never finished a hello"),
        }
    }
    eprintln!("50 idle connections dropped, the last {:?} after they were opened", opened.elapsed());
    assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_upserts_loses_nothing_acknowledged() {
    const UPSERTS: usize = 2000;
    let f = start().await;
    let anhui = code("340000");
    let auditor = f.identity("auditor", "adv-burst").unwrap();
    let mut log = transparency(client_channel(&auditor, node_peer(&f, &anhui), f.node_addr(&anhui).unwrap()));
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
    let mut audit = huren_cli::audit::AuditClient::connect(
        Some(&f.node_addr(&anhui).unwrap().to_string()),
        &anhui,
        &auditor,
        list.as_ref().clone(),
    )
    .unwrap();
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
