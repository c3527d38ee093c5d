//! Stock TLS clients connect: a plain rustls + tonic client, with the standard webpki
//! verifier (no custom verifier, no name override), checks the gateway's and a node's
//! certificates by an ordinary hostname check against a DNS name and an IP address, with
//! SNI carrying the DNS name and with no SNI at all — as grpcio, grpc-java and
//! @grpc/grpc-js do. It then calls the server and reads both reflection versions.

use std::net::SocketAddr;
use std::sync::Arc;

use huren_pki::endpoint::HostName;
use huren_proto::pb;
use huren_proto::pb::status_admin_client::StatusAdminClient;
use huren_proto::pb::trust_registry_client::TrustRegistryClient;
use huren_tests::{code, start, Deadline};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint};

/// A client certificate as `huren pki issue` wrote it, and the national root.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    root: CertificateDer<'static>,
}

fn material(f: &huren_cli::federation::Federation, kind: &str, name: &str) -> Material {
    let issued = f.pki.issue(kind, name, huren_pki::ca::Validity::days(1)).expect("issue");
    let chain = CertificateDer::pem_file_iter(&issued.cert).expect("cert").collect::<Result<_, _>>().expect("chain");
    let key = PrivateKeyDer::from_pem_file(&issued.key).expect("key");
    let root = CertificateDer::from_pem_file(f.pki.root_cert_path()).expect("root");
    Material { chain, key, root }
}

/// An ordinary rustls client configuration: the platform-independent webpki verifier
/// against the national root, which checks the chain *and* that the certificate names the
/// host dialled (DNS or IP SAN).
fn stock_config(m: &Material, sni: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(m.root.clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
        .expect("client certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.enable_sni = sni;
    Arc::new(config)
}

/// Dials `addr`, verifying the server as `name` (the host a client was given).
async fn connect(addr: SocketAddr, name: &str, config: Arc<rustls::ClientConfig>) -> Result<Channel, String> {
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    // Handshake first, so a refused certificate is reported as such.
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(server_name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connector = tower::service_fn(move |_: http::Uri| {
        let (config, server_name) = (config.clone(), server_name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("http://{name}:{}", addr.port()))
        .expect("endpoint")
        .connect_with_connector(connector)
        .await
        .map_err(|e| e.to_string())
}

/// Every way a stock client reaches a server: by DNS name with SNI, by DNS name without
/// SNI, by IP address (never sent as SNI).
const DIALS: [(&str, bool); 3] = [("localhost", true), ("localhost", false), ("127.0.0.1", true)];

/// The services listed by reflection, v1 and v1alpha (stock clients speak either).
async fn reflected(channel: Channel) -> (Vec<String>, Vec<String>) {
    use tonic_reflection::pb::{v1, v1alpha};
    let list = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .expect("reflection v1")
        .into_inner();
    let v1_names = match answers.message().await.expect("v1 answer").and_then(|a| a.message_response) {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("v1: not a service list: {other:?}"),
    };
    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let alpha_names = match answers.message().await.expect("v1alpha answer").and_then(|a| a.message_response) {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("v1alpha: not a service list: {other:?}"),
    };
    (v1_names, alpha_names)
}

#[tokio::test]
async fn a_stock_client_checks_the_gateway_by_dns_name_and_ip_with_and_without_sni() {
    let f = start().await;
    f.register_hub("stock-hub", &["transit.rail"]).deadline("hub registered everywhere").await.unwrap();
    let hub = material(&f, "hub", "stock-hub");
    for (name, sni) in DIALS {
        let channel = connect(f.gateway_addr(), name, stock_config(&hub, sni))
            .await
            .unwrap_or_else(|e| panic!("{name} (SNI {sni}): {e}"));
        let signed = TrustRegistryClient::new(channel.clone())
            .get_trust_list(pb::GetTrustListRequest {})
            .await
            .unwrap_or_else(|e| panic!("{name} (SNI {sni}): {e}"))
            .into_inner();
        assert_eq!(signed, *f.trust_list().unwrap().signed(), "{name} (SNI {sni})");
        let (v1, v1alpha) = reflected(channel).await;
        for names in [&v1, &v1alpha] {
            assert!(names.iter().any(|n| n == "huren.v1.Lookup"), "{name} (SNI {sni}): {names:?}");
            assert!(names.iter().any(|n| n == "grpc.reflection.v1alpha.ServerReflection"), "{names:?}");
        }
        assert_eq!(v1, v1alpha);
    }
}

#[tokio::test]
async fn a_stock_client_checks_a_node_by_dns_name_and_ip_with_and_without_sni() {
    let f = start().await;
    let anhui = code("340000");
    let admin = material(&f, "admin", "340000");
    for (i, (name, sni)) in DIALS.into_iter().enumerate() {
        let channel = connect(f.node_addr(&anhui).unwrap(), name, stock_config(&admin, sni))
            .await
            .unwrap_or_else(|e| panic!("{name} (SNI {sni}): {e}"));
        let upsert = pb::UpsertStatusRequest {
            subject_ref: format!("stock-{i}"),
            status: pb::HealthStatus::Green as i32,
            ..Default::default()
        };
        StatusAdminClient::new(channel.clone())
            .upsert_status(upsert)
            .await
            .unwrap_or_else(|e| panic!("{name} (SNI {sni}): {e}"));
        let (v1, v1alpha) = reflected(channel).await;
        assert!(v1.iter().any(|n| n == "huren.v1.StatusAdmin"), "{name} (SNI {sni}): {v1:?}");
        assert_eq!(v1, v1alpha);
    }
}

#[tokio::test]
async fn the_hostname_check_is_real_a_name_the_certificate_does_not_carry_is_refused() {
    let f = start().await;
    let hub = material(&f, "hub", "stock-hub");
    // The gateway's certificate names localhost and 127.0.0.1 (besides its identity), so
    // the stock verifier accepts those and nothing else.
    let der = std::fs::read(f.pki.issued_dir("gateway", huren_cli::federation::GATEWAY_NAME).join("cert.pem")).unwrap();
    let names =
        huren_pki::ca::host_names(&huren_pki::ca::pem_to_der(&String::from_utf8(der).unwrap()).unwrap()).unwrap();
    assert_eq!(names, [HostName::dns("localhost").unwrap(), HostName::Ip("127.0.0.1".parse().unwrap())]);
    for name in ["gateway.huren.example", "127.0.0.2"] {
        let error = connect(f.gateway_addr(), name, stock_config(&hub, true)).await.expect_err(name);
        assert!(error.contains("handshake") && error.contains("not valid for name"), "{name}: {error}");
    }
}
