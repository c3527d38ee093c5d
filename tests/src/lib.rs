//! Test utilities for Huren's end-to-end tests.
//!
//! [`start`] brings up the demo's three-province federation (real mTLS servers on
//! `127.0.0.1:0`, generated PKI in a temp dir; [`start_with`] with server settings); [`client_channel`] connects as any
//! identity; [`serve_fake_node`] replaces a province node with a scripted, possibly
//! malicious one so the gateway's checks can be exercised; [`Deadline`] bounds every
//! wait for an event, so a regression fails the test instead of hanging CI.

#![forbid(unsafe_code)]

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use huren_cli::federation::{Federation, DEMO_PROVINCES};
use huren_pki::ca::{self, Validity};
use huren_pki::{Identity, ProvinceCode, Role};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use huren_cli::demo::{demo_rules, RED_RULE, YELLOW_RULE};

mod setup;
pub use setup::*;

/// A running test federation and the temp dir it lives in.
pub struct TestFederation {
    pub federation: Federation,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestFederation {
    type Target = Federation;
    fn deref(&self) -> &Federation {
        &self.federation
    }
}

impl std::ops::DerefMut for TestFederation {
    fn deref_mut(&mut self) -> &mut Federation {
        &mut self.federation
    }
}

/// How long a test waits for an event (a watch channel, every server taking a trust
/// list, a server draining) before failing. Generous on purpose: this is a deadline
/// against hangs, not a performance assertion.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Awaiting with a [`DEADLINE`]: `rx.wait_for(..).deadline("what is awaited").await`.
pub trait Deadline: IntoFuture + Sized {
    /// Awaits `self`, panicking with `what` if it has not completed within [`DEADLINE`].
    fn deadline(self, what: &str) -> impl Future<Output = Self::Output>;
}

impl<F: IntoFuture> Deadline for F {
    async fn deadline(self, what: &str) -> F::Output {
        match tokio::time::timeout(DEADLINE, self).await {
            Ok(output) => output,
            Err(_) => panic!("gave up after {DEADLINE:?} waiting for {what}"),
        }
    }
}

/// Starts Anhui, Shandong and Guangdong nodes and a gateway with the demo rules.
pub async fn start() -> TestFederation {
    let dir = tempfile::tempdir().expect("temp dir");
    let federation = Federation::start(dir.path(), &DEMO_PROVINCES, demo_rules()).await.expect("federation starts");
    TestFederation { federation, _dir: dir }
}

/// As [`start`], with the temp dir under `parent`: for a federation a whole test binary
/// shares (under `CARGO_TARGET_TMPDIR`, so one a run leaves behind goes with `cargo clean`).
pub async fn start_in(parent: &std::path::Path) -> TestFederation {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let federation = Federation::start(dir.path(), &DEMO_PROVINCES, demo_rules()).await.expect("federation starts");
    TestFederation { federation, _dir: dir }
}

pub fn code(s: &str) -> ProvinceCode {
    s.parse().expect("province code")
}

/// A channel to `addr` presenting `identity` and expecting the server to be `expected`.
pub fn client_channel(identity: &TlsIdentity, expected: ExpectedPeer, addr: SocketAddr) -> Channel {
    let config = tls::client_config(identity, expected, Revocations::default()).expect("client config");
    tls::channel(&addr.to_string(), config, Duration::from_secs(3)).expect("channel")
}

/// Expectation for a province's node.
pub fn node_peer(federation: &Federation, province: &ProvinceCode) -> ExpectedPeer {
    ExpectedPeer::Exactly(Identity::new(&federation.trust_domain, Role::Node(province.clone())))
}

/// Issues a leaf for `identity` signed by `province`'s CA (whatever the identity says),
/// with the province CA in the chain: what a rogue or mistaken province CA would produce.
pub fn identity_from_province_ca(federation: &Federation, province: &ProvinceCode, identity: &str) -> TlsIdentity {
    let ca = federation.pki.province_ca(province).expect("province CA");
    let leaf = ca::issue_leaf(&ca, &identity.parse().expect("identity"), Validity::days(1)).expect("leaf");
    let root = std::fs::read_to_string(federation.pki.root_cert_path()).expect("root");
    let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
    // Authentication of the odd chain is the server's job, so it is not checked here.
    TlsIdentity::from_pem_unchecked(&chain, &leaf.key_pem, &root, identity.parse().expect("identity"))
        .expect("identity")
}

/// What a scripted node answers for an attest request.
pub type Script = Arc<dyn Fn(&pb::AttestRequest) -> Result<pb::AttestResponse, tonic::Status> + Send + Sync>;

/// A scripted node serving on `listener` with `identity`; dropping the sender stops it.
pub fn serve_fake_node(identity: TlsIdentity, listener: TcpListener, script: Script) -> oneshot::Sender<()> {
    serve_async_fake_node(identity, listener, asynchronous(script))
}

/// Stops `province`'s real node and serves `script` in its place, on the same address
/// and with the real node certificate (so the gateway connects): a compromised or
/// misconfigured node. The fake stops when the returned sender is dropped.
pub async fn replace_node_with_fake(
    federation: &mut Federation,
    province: &ProvinceCode,
    script: Script,
) -> oneshot::Sender<()> {
    replace_node_with_async_fake(federation, province, asynchronous(script)).await
}

/// A script that answers at once, as an [`AsyncScript`].
fn asynchronous(script: Script) -> AsyncScript {
    Arc::new(move |request| {
        let answer = script(&request);
        Box::pin(async move { answer })
    })
}

/// A scripted node that signs whatever `sign` returns.
pub fn signing_script(sign: impl Fn(&pb::AttestRequest) -> pb::SignedAttestation + Send + Sync + 'static) -> Script {
    Arc::new(move |req| Ok(pb::AttestResponse { attestation: Some(sign(req)) }))
}

/// A status change request (no validity: the node's default applies).
pub fn change(subject: &str, status: pb::HealthStatus, rule: &str, authority: &str) -> pb::UpsertStatusRequest {
    pb::UpsertStatusRequest {
        subject_ref: subject.into(),
        status: status as i32,
        rule_id: rule.into(),
        authority: authority.into(),
        valid_until: 0,
        test_recency: 0,
    }
}

/// A well-formed GREEN payload answering `req` for `province`, valid for five minutes.
pub fn green_payload(req: &pb::AttestRequest, province: &str) -> pb::AttestationPayload {
    let now = huren_pki::unix_now();
    pb::AttestationPayload {
        version: huren_pki::attest::PAYLOAD_VERSION,
        province: province.into(),
        status: pb::HealthStatus::Green as i32,
        issued_at: now,
        expires_at: now + 300,
        token_digest: huren_pki::attest::token_digest(&req.token).to_vec(),
        rule_id: String::new(),
        test_recency: 0,
        purpose: req.purpose.clone(),
    }
}

/// A boxed, sendable future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// What a scripted node answers, asynchronously: it may wait (on a channel, forever) first.
pub type AsyncScript =
    Arc<dyn Fn(pb::AttestRequest) -> BoxFuture<Result<pb::AttestResponse, tonic::Status>> + Send + Sync>;

struct AsyncFakeNode(AsyncScript);

#[tonic::async_trait]
impl pb::attestation_server::Attestation for AsyncFakeNode {
    async fn attest(
        &self,
        request: tonic::Request<pb::AttestRequest>,
    ) -> Result<tonic::Response<pb::AttestResponse>, tonic::Status> {
        (self.0)(request.into_inner()).await.map(tonic::Response::new)
    }

    /// The script, token by token (a refusal is sent as the google.rpc.Status bytes a
    /// failed call carries).
    async fn attest_batch(
        &self,
        request: tonic::Request<pb::AttestBatchRequest>,
    ) -> Result<tonic::Response<pb::AttestBatchResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut answers = Vec::with_capacity(req.tokens.len());
        for token in req.tokens {
            let single = pb::AttestRequest {
                token,
                purpose: req.purpose.clone(),
                hub_id: req.hub_id.clone(),
                hub_province: req.hub_province.clone(),
            };
            let answer = match (self.0)(single).await {
                Ok(response) => response.attestation.map(pb::token_answer::Answer::Attestation),
                Err(status) => Some(pb::token_answer::Answer::Refusal(status_bytes(&status))),
            };
            answers.push(pb::TokenAnswer { answer });
        }
        Ok(tonic::Response::new(pb::AttestBatchResponse { answers }))
    }

    /// A scripted node keeps no disclosure log: it cannot take the checks a gateway answered
    /// from its cache, now (UNAVAILABLE: the gateway keeps them and tries again later).
    async fn record_disclosures(
        &self,
        _: tonic::Request<pb::RecordDisclosuresRequest>,
    ) -> Result<tonic::Response<pb::RecordDisclosuresResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("a scripted node keeps no disclosure log"))
    }
}

/// A status as the `google.rpc.Status` bytes a failed call carries (its details if it has
/// any, else code and message).
fn status_bytes(status: &tonic::Status) -> Vec<u8> {
    if !status.details().is_empty() {
        return status.details().to_vec();
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    prost::Message::encode_to_vec(&RpcStatus { code: status.code() as i32, message: status.message().to_owned() })
}

/// As [`serve_fake_node`], with an asynchronous script (a node that hangs or is slow).
pub fn serve_async_fake_node(identity: TlsIdentity, listener: TcpListener, script: AsyncScript) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tls_incoming(&identity, listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(pb::attestation_server::AttestationServer::new(AsyncFakeNode(script)))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

/// Stops `province`'s node (graceful drain) and hands back its identity and its address,
/// bound again, so a stand-in can serve in its place.
async fn take_node_place(federation: &mut Federation, province: &ProvinceCode) -> (TlsIdentity, TcpListener) {
    let addr = federation
        .stop_node(province)
        .deadline(&format!("province {province}'s node to stop (graceful drain)"))
        .await
        .expect("stop node");
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let identity = federation.identity("node", province.as_str()).expect("node identity");
    (identity, listener)
}

/// As [`replace_node_with_fake`], with an asynchronous script.
pub async fn replace_node_with_async_fake(
    federation: &mut Federation,
    province: &ProvinceCode,
    script: AsyncScript,
) -> oneshot::Sender<()> {
    let (identity, listener) = take_node_place(federation, province).await;
    serve_async_fake_node(identity, listener, script)
}

/// What a raw scripted node answers: every message of its `Attest` response, in order
/// (tonic's server sends exactly one; a hostile node may send none or several).
pub type RawScript = Arc<dyn Fn(&pb::AttestRequest) -> Vec<pb::AttestResponse> + Send + Sync>;

/// A node that speaks gRPC by hand: it reads the one length-prefixed `AttestRequest`
/// and answers with each message of its script as a length-prefixed frame, then
/// `grpc-status: 0`.
#[derive(Clone)]
struct RawNode(RawScript);

impl tonic::server::NamedService for RawNode {
    const NAME: &'static str = "huren.v1.Attestation";
}

/// A response body: the given frames, in order.
struct Frames(std::collections::VecDeque<http_body::Frame<tonic::codegen::Bytes>>);

impl http_body::Body for Frames {
    type Data = tonic::codegen::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for RawNode {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        use http_body::Body as _;
        use prost::Message as _;
        let script = self.0.clone();
        Box::pin(async move {
            let mut body = request.into_body();
            let mut bytes = Vec::new();
            while let Some(Ok(frame)) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            let request = bytes.get(5..).and_then(|m| pb::AttestRequest::decode(m).ok()).unwrap_or_default();
            let mut data = Vec::new();
            for message in script(&request) {
                let encoded = message.encode_to_vec();
                data.push(0);
                data.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
                data.extend_from_slice(&encoded);
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = Frames([http_body::Frame::data(data.into()), http_body::Frame::trailers(trailers)].into());
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(frames))
                .expect("response");
            Ok(response)
        })
    }
}

/// As [`replace_node_with_fake`], with a node that answers each `Attest` with every
/// message its script returns (a hostile node answering two messages to one call).
pub async fn replace_node_with_raw_fake(
    federation: &mut Federation,
    province: &ProvinceCode,
    script: RawScript,
) -> oneshot::Sender<()> {
    let (identity, listener) = take_node_place(federation, province).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tls_incoming(&identity, listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RawNode(script))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

/// A script that never answers: a node that hangs (the caller's deadline ends the call).
pub fn hanging_script() -> AsyncScript {
    Arc::new(|_| Box::pin(std::future::pending()))
}

/// The test's handle on a [`held_script`]: every call reports its arrival on `arrivals`
/// and is held until `release` turns true.
pub struct Hold {
    pub arrivals: tokio::sync::mpsc::UnboundedReceiver<()>,
    pub release: tokio::sync::watch::Sender<bool>,
    /// Calls that reached the node.
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hold {
    /// Waits (with the [`DEADLINE`]) until `n` more calls have arrived at the node.
    pub async fn arrived(&mut self, n: usize) {
        for _ in 0..n {
            self.arrivals.recv().deadline("a call to arrive at the held node").await.expect("script alive");
        }
    }
}

/// A node that holds every call until released, then answers with `then`.
pub fn held_script(then: Script) -> (AsyncScript, Hold) {
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let release = tokio::sync::watch::channel(false).0;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (released, counted) = (release.clone(), calls.clone());
    let script: AsyncScript = Arc::new(move |req| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = arrived.send(());
        let (mut released, then) = (released.subscribe(), then.clone());
        Box::pin(async move {
            let _ = released.wait_for(|r| *r).await;
            then(&req)
        })
    });
    (script, Hold { arrivals, release, calls })
}

/// `GET path` on a server's plain-HTTP admin endpoint; the whole response, headers included.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .deadline(&format!("the admin endpoint to answer GET {path} and close"))
        .await
        .unwrap();
    out
}

/// The shared Redis of the tests (`HUREN_TEST_REDIS`, else the local default).
pub fn redis_url() -> String {
    std::env::var("HUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix on the test Redis unique to one test; every key under it is deleted on drop.
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(label: &str) -> Self {
        let mut random = [0u8; 8];
        getrandom_bytes(&mut random);
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Self { url: redis_url(), prefix: format!("huren-test:{label}:{suffix}:") }
    }
}

fn getrandom_bytes(out: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        let bytes = h.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut conn).unwrap_or_default();
        for key in keys {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut conn);
        }
    }
}
