//! Transport attacks, refused at the TLS handshake or before: certificates from outside
//! the federation or out of their validity, TLS 1.2 and weak cipher suites, plaintext
//! HTTP/2 and gRPC, servers posing as other servers; and, beyond the table, a node
//! presenting another province's identity and idle (slowloris) connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huren_cli::demo::seed;
use huren_cli::hub::HubClient;
use huren_pki::ca::{self, Validity};
use huren_pki::Identity;
use huren_proto::pb;
use huren_runtime::tls::{ExpectedPeer, TlsIdentity, HANDSHAKE_TIMEOUT};
use huren_tests::{
    client_channel, code, demo_subject, green_payload, node_channel, node_peer, serve_fake_node, signing_script, start,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use crate::common::Expect::{Error, StatusIn};
use crate::common::{
    case, error, huren_tls_probe, identity, lookup, lookup_request, outside_minted_hub, reason, rows, tls_probe,
    validity, Ctx, Outcome,
};

rows![
    // --- certificates refused at the handshake
    case(foreign_ca_hub_to_gateway, "foreign CA hub -> gateway", Error("received fatal alert: UnknownCA"), |c| {
        Box::pin(async move {
            let who = foreign(&c, identity("spiffe://huren.gov/hub/adv-probe"), "foreign.example");
            huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
        })
    }),
    case(foreign_ca_admin_to_node, "foreign CA admin -> node", Error("received fatal alert: UnknownCA"), |c| {
        Box::pin(async move {
            let who = foreign(&c, identity("spiffe://huren.gov/province/340000/admin"), "foreign.example");
            huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
        })
    }),
    // A foreign root carrying the real root's name: the chain is built, the signature fails.
    case(
        impostor_roots_coordinator_to_gateway,
        "impostor root's coordinator -> gateway",
        Error("received fatal alert: DecryptError"),
        |c| {
            Box::pin(async move {
                let who = foreign(&c, identity("spiffe://huren.gov/coordinator/adv-nhc"), "huren.gov");
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }
    ),
    case(
        expired_hub_certificate_to_gateway,
        "expired hub certificate -> gateway",
        Error("received fatal alert: CertificateExpired"),
        |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/hub/adv-probe"), validity(-7200, -3600));
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }
    ),
    case(
        not_yet_valid_hub_certificate_to_gateway,
        "not-yet-valid hub certificate -> gateway",
        Error("received fatal alert: CertificateExpired"),
        |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/hub/adv-probe"), validity(3600, 7200));
                huren_tls_probe(&who, ExpectedPeer::AnyGateway, c.f.gateway_addr()).await
            })
        }
    ),
    case(
        expired_admin_certificate_to_node,
        "expired admin certificate -> node",
        Error("received fatal alert: CertificateExpired"),
        |c| {
            Box::pin(async move {
                let who = c.province_issued(
                    "340000",
                    identity("spiffe://huren.gov/province/340000/admin"),
                    validity(-7200, -3600),
                );
                huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
            })
        }
    ),
    case(
        not_yet_valid_gateway_certificate_to_node,
        "not-yet-valid gateway certificate -> node",
        Error("received fatal alert: CertificateExpired"),
        |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/gateway/national-1"), validity(600, 7200));
                huren_tls_probe(&who, node_peer(&c.f, &code("340000")), c.node_addr("340000")).await
            })
        }
    ),
    case(
        tls12_only_client_with_a_valid_hub_certificate_to_gateway,
        "TLS 1.2-only client with a valid hub certificate -> gateway",
        Error("ProtocolVersion"),
        |c| Box::pin(async move { tls_probe(tls12_only(&c.id("hub", "adv-probe")), c.f.gateway_addr()).await })
    ),
    case(
        tls12_only_client_with_a_valid_gateway_certificate_to_node,
        "TLS 1.2-only client with a valid gateway certificate -> node",
        Error("ProtocolVersion"),
        |c| {
            Box::pin(async move { tls_probe(tls12_only(&c.id("gateway", "national-1")), c.node_addr("340000")).await })
        }
    ),
    // 2/70: fatal protocol_version
    case(
        tls12_hello_with_weak_suites_only_to_gateway,
        "TLS 1.2 hello with weak suites only -> gateway",
        Error("TLS alert 2/70"),
        |c| Box::pin(async move { raw_exchange(c.f.gateway_addr(), &client_hello(&WEAK_SUITES, false)).await })
    ),
    // 2/40: fatal handshake_failure (no cipher suite in common)
    case(
        tls13_hello_with_weak_suites_only_to_gateway,
        "TLS 1.3 hello with weak suites only -> gateway",
        Error("TLS alert 2/40"),
        |c| Box::pin(async move { raw_exchange(c.f.gateway_addr(), &client_hello(&WEAK_SUITES, true)).await })
    ),
    case(
        tls13_hello_with_weak_suites_only_to_node,
        "TLS 1.3 hello with weak suites only -> node",
        Error("TLS alert 2/40"),
        |c| Box::pin(async move { raw_exchange(c.node_addr("370000"), &client_hello(&WEAK_SUITES, true)).await })
    ),
    // Plaintext HTTP/2 is not TLS: the server answers with a fatal decode_error alert (2/50),
    // never an HTTP/2 frame.
    case(plaintext_http2_to_gateway, "plaintext HTTP/2 -> gateway", Error("TLS alert 2/50"), |c| {
        Box::pin(async move { raw_exchange(c.f.gateway_addr(), H2C_PREFACE).await })
    }),
    case(plaintext_http2_to_node, "plaintext HTTP/2 -> node", Error("TLS alert 2/50"), |c| {
        Box::pin(async move { raw_exchange(c.node_addr("340000"), H2C_PREFACE).await })
    }),
    case(
        plaintext_grpc_lookup_to_gateway,
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
    case(
        a_node_posing_as_the_gateway_is_refused_by_a_hub,
        "a node posing as the gateway is refused by a hub",
        Error("invalid peer certificate"),
        |c| {
            Box::pin(async move {
                huren_tls_probe(&c.id("hub", "adv-probe"), ExpectedPeer::AnyGateway, c.node_addr("340000")).await
            })
        }
    ),
    case(
        anhuis_node_posing_as_shandongs_is_refused_by_a_gateway,
        "Anhui's node posing as Shandong's is refused by a gateway",
        Error("invalid peer certificate"),
        |c| {
            Box::pin(async move {
                let who = c.id("gateway", "national-1");
                huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("340000")).await
            })
        }
    ),
];

/// A leaf issued by a CA outside the federation, presented by a client that trusts the
/// real root. `root_domain` names the foreign root: the federation's own trust domain
/// gives it exactly the real root's name (an impostor root).
fn foreign(c: &Ctx, identity: Identity, root_domain: &str) -> TlsIdentity {
    let foreign_root = ca::new_root(root_domain, Validity::days(1)).expect("foreign root");
    let leaf = ca::issue_leaf(&foreign_root, &identity, Validity::days(1)).expect("leaf");
    TlsIdentity::from_pem_unchecked(&leaf.cert_pem, &leaf.key_pem, &c.root_pem, identity).expect("identity")
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

/// A ClientHello offering `suites`, TLS 1.3 or 1.2 only (the flood tool's builder).
fn client_hello(suites: &[u16], tls13: bool) -> Vec<u8> {
    huren_bench::flood::client_hello_for(suites, tls13)
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

// ------------------------------------------------------------------ beyond the table

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
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
}

#[tokio::test]
async fn idle_connections_are_dropped_within_the_handshake_timeout_while_lookups_go_on() {
    let f = start().await;
    let anhui = code("340000");
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
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

// ------------------------------------------------------------------ revoked certificates

/// Signs the registry into the next list, uploads it and waits until the gateway and
/// every node hold it.
async fn publish_everywhere(f: &huren_tests::TestFederation) -> u64 {
    let sequence = f.publish().await.expect("publish");
    f.until_everyone_has(sequence).await.expect("everyone has the list");
    sequence
}

#[tokio::test]
async fn a_hub_revoked_by_the_serial_openssl_prints_is_refused_at_the_handshake_by_gateway_and_node() {
    let f = start().await;
    let anhui = code("340000");
    let root_pem = std::fs::read_to_string(f.pki.root_cert_path()).unwrap();
    // A certificate the coordinators' CLI never saw, with a high-bit serial (DER `00 8f …`),
    // known only by what `openssl x509 -serial` prints: `serial=8F…`.
    let (who, printed) = outside_minted_hub(&f, &root_pem, "adv-outside-scanner");
    huren_tls_probe(&who, ExpectedPeer::AnyGateway, f.gateway_addr()).await.expect("accepted before");
    huren_tls_probe(&who, node_peer(&f, &anhui), f.node_addr(&anhui).unwrap()).await.expect("accepted before");

    let canonical = f.pki.revoke_serial(&printed).unwrap();
    assert_eq!(canonical, ca::serial_hex(&who.chain[0]).unwrap());
    let sequence = publish_everywhere(&f).await;
    assert!(f.gateway_trust().unwrap().current().is_revoked(&canonical));
    assert!(f.node_trust(&anhui).unwrap().current().is_revoked(&printed["serial=".len()..]));

    for (server, expected, addr) in [
        ("gateway", ExpectedPeer::AnyGateway, f.gateway_addr()),
        ("node 340000", node_peer(&f, &anhui), f.node_addr(&anhui).unwrap()),
    ] {
        let refused = huren_tls_probe(&who, expected, addr).await.expect_err("a revoked certificate was accepted");
        assert!(
            refused.message.contains("CertificateRevoked"),
            "{server}: refused, but not as revoked: {}",
            refused.message
        );
    }
    assert_eq!(f.gateway_trust().unwrap().current().sequence(), sequence);
}

#[tokio::test]
async fn a_connection_opened_before_the_revocation_is_refused_on_its_next_call() {
    let f = start().await;
    let anhui = code("340000");
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    f.register_hub("adv-early-hub", &["transit.rail"]).await.unwrap();
    let hub = f.identity("hub", "adv-early-hub").unwrap();
    let auditor = f.identity("auditor", "adv-early-auditor").unwrap();
    // Connections made, and used, before the revocation: one to the gateway, one to a node.
    let mut lookups =
        pb::lookup_client::LookupClient::new(client_channel(&hub, ExpectedPeer::AnyGateway, f.gateway_addr()));
    let request = pb::LookupRequest { province: "340000".into(), token: token.clone(), purpose: "transit.rail".into() };
    lookups.lookup(request.clone()).await.expect("served before the revocation");
    let mut log = pb::transparency_client::TransparencyClient::new(node_channel(&f, &auditor, &anhui));
    log.get_tree_head(pb::GetTreeHeadRequest {}).await.expect("served before the revocation");

    f.pki.revoke_issued("hub", "adv-early-hub").unwrap();
    f.pki.revoke_issued("auditor", "adv-early-auditor").unwrap();
    publish_everywhere(&f).await;

    // The same connections (a new one would fail at the handshake, not with a status).
    let refused = lookups.lookup(request).await.expect_err("the open connection still worked");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unauthenticated, "CERTIFICATE_REFUSED"));
    assert!(refused.message().contains("revoked"), "{}", refused.message());
    let refused = log.get_tree_head(pb::GetTreeHeadRequest {}).await.expect_err("the open connection still worked");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unauthenticated, "CERTIFICATE_REFUSED"));
    // Everyone else carries on.
    let mut other = f.hub("adv-late-hub").await.unwrap();
    assert_eq!(other.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
}
