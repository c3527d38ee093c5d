//! Setup the test files share: a federation with server settings, a demo subject, channels
//! and audit clients for one province's node, trust-registry clients of the gateway, token
//! requests, the admin endpoint, and the TLS listener of a scripted server.

use std::net::SocketAddr;

use huren_cli::admin::Readiness;
use huren_cli::audit::AuditClient;
use huren_cli::demo::{demo_rules, demo_subjects, Subject};
use huren_cli::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_cli::telemetry::PrometheusMetrics;
use huren_pki::ProvinceCode;
use huren_proto::pb;
use huren_runtime::tls::{self, AuthenticatedStream, ExpectedPeer, Revocations, TlsIdentity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::{client_channel, node_peer};

/// Starts the demo federation with `options`, in a temp dir that lives as long as the
/// returned handle.
pub async fn start_with(options: FederationOptions) -> (Federation, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start_with(dir.path(), &DEMO_PROVINCES, demo_rules(), options).await.unwrap();
    (f, dir)
}

/// The demo subject of `province`.
pub fn demo_subject(province: &str) -> Subject {
    demo_subjects().into_iter().find(|s| s.province == province).expect("a demo subject of the province")
}

/// A channel to `province`'s node presenting `who`, expecting that node's identity.
pub fn node_channel(federation: &Federation, who: &TlsIdentity, province: &ProvinceCode) -> Channel {
    client_channel(who, node_peer(federation, province), federation.node_addr(province).expect("node address"))
}

/// A trust-registry client of the gateway presenting a fresh `kind`/`name` identity.
pub fn registry_client(
    federation: &Federation,
    kind: &str,
    name: &str,
) -> pb::trust_registry_client::TrustRegistryClient<Channel> {
    let who = federation.identity(kind, name).expect("identity");
    pb::trust_registry_client::TrustRegistryClient::new(client_channel(
        &who,
        ExpectedPeer::AnyGateway,
        federation.gateway_addr(),
    ))
}

/// An audit client of `province`'s node as auditor `name`, verifying against the trust
/// list the gateway holds now.
pub fn audit_client(federation: &Federation, province: &ProvinceCode, name: &str) -> AuditClient {
    AuditClient::connect(
        Some(&federation.node_addr(province).expect("node address").to_string()),
        province,
        &federation.identity("auditor", name).expect("auditor identity"),
        federation.gateway_trust().expect("gateway").current().as_ref().clone(),
    )
    .expect("audit client")
}

/// Serves the plain-HTTP admin endpoint (`/metrics`, `/healthz`, `/readyz`) of `metrics`
/// and `readiness` on a free loopback port, until the sender is used or dropped.
pub async fn serve_admin(metrics: &PrometheusMetrics, readiness: Readiness) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(huren_cli::admin::serve(listener, metrics.clone(), readiness, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A request for a token of `subject`, valid `lifetime_seconds`, for no particular purpose.
pub fn token_request(subject: &str, lifetime_seconds: u32) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest { subject_ref: subject.into(), lifetime_seconds, purpose: String::new() }
}

/// The authenticated TLS connections of a scripted server on `listener`, presenting
/// `identity` and authenticating clients against its root (nothing revoked).
pub fn tls_incoming(
    identity: &TlsIdentity,
    listener: TcpListener,
) -> ReceiverStream<Result<AuthenticatedStream, std::io::Error>> {
    let config = tls::server_config(identity, Revocations::default()).expect("server config");
    tls::incoming(
        listener,
        config,
        identity.root.clone(),
        identity.identity.trust_domain.clone(),
        Revocations::default(),
    )
}

/// Serves `gateway` on a free loopback port until the returned sender is dropped or sent.
pub async fn serve_gateway(
    gateway: &huren_gateway::Gateway,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = gateway.clone();
    tokio::spawn(async move {
        let _ = serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop)
}
