//! Connection failures in words.
//!
//! When a client command's call fails before any server answered (the TCP connection or the
//! mutual-TLS handshake failed), the transport's own text — `NotValidForName`,
//! `InvalidContentType`, "error trying to connect" — says little to an operator. Here
//! [`explained`] looks again, with a handshake of its own that records what the server
//! presented instead of refusing it, and says what is wrong: nothing listening, a port that
//! does not speak TLS, a certificate from another root, the wrong server identity ("the
//! server at 127.0.0.1:7443 presented spiffe://huren.gov/province/340000/node, not a
//! gateway"), or the server refusing this client's certificate.
//!
//! Pointing a client at the wrong place (a port that does not speak TLS, a server of the
//! wrong role or another federation) is a usage error (exit 64); a server that is down or
//! refuses the client's certificate is a runtime failure (exit 1).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use huren_runtime::tls::{self, ExpectedPeer, TlsIdentity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::usage;

/// How long each step of the second look may take.
const STEP: Duration = Duration::from_secs(3);

/// `result`, or when it failed because no server answered (see [`is_connection_failure`]),
/// the reason in words found by looking at `addr` again as `identity`, expecting `expected`.
pub(crate) async fn explained<T>(
    addr: &str,
    identity: &TlsIdentity,
    expected: &ExpectedPeer,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    match result {
        Err(e) if is_connection_failure(&e) => match explain(addr, identity, expected).await {
            Some(words) => Err(words),
            None => Err(e),
        },
        other => other,
    }
}

/// Where a client connects, as whom, expecting which server: what turns a failed
/// connection into words.
pub(crate) struct Peer {
    /// The server's address, `host:port` or `https://host:port`.
    pub(crate) addr: String,
    /// The client's identity.
    pub(crate) identity: TlsIdentity,
    /// The server identities the client accepts.
    pub(crate) expected: ExpectedPeer,
}

impl Peer {
    /// [`explained`] for this peer.
    pub(crate) async fn explained<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        explained(&self.addr, &self.identity, &self.expected, result).await
    }
}

/// A call that failed with a gRPC status, said once: `<who> refused: <code>: <message>`
/// (the status is kept, not chained, so [`is_connection_failure`] can look at it).
#[derive(Debug, thiserror::Error)]
#[error("{who} refused: {:?}: {}", .status.code(), .status.message())]
pub(crate) struct CallFailed {
    who: &'static str,
    status: tonic::Status,
}

/// `status` as a failed call to `who` ("node", "gateway").
pub(crate) fn refused(who: &'static str, status: tonic::Status) -> anyhow::Error {
    CallFailed { who, status }.into()
}

/// Whether `e` says no server answered: a transport error, not a refusal that a Huren
/// server made (those carry a reason) nor a check of what it answered.
pub(crate) fn is_connection_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(h) = c.downcast_ref::<huren_client::HubError>() {
            return h.is_transport();
        }
        if let Some(huren_client::AuditError::Rpc(s)) = c.downcast_ref::<huren_client::AuditError>() {
            return transport_status(s);
        }
        if let Some(call) = c.downcast_ref::<CallFailed>() {
            return transport_status(&call.status);
        }
        c.downcast_ref::<tonic::Status>().is_some_and(transport_status)
    })
}

/// A status that the transport made up: no Huren reason, and a transport error behind it
/// (or the codes a failed connection gives).
fn transport_status(s: &tonic::Status) -> bool {
    if huren_runtime::error::details(s).is_some() {
        return false;
    }
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::transport::Error>().is_some() || e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = e.source();
    }
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
}

/// What the server presented during the second look.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
}

/// Accepts any server certificate and records it: the second look wants to see what the
/// server presents, then judges it itself.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Who `expected` is, for "…, not <who>".
fn expected_words(expected: &ExpectedPeer) -> String {
    match expected {
        ExpectedPeer::AnyGateway => "a gateway".to_owned(),
        ExpectedPeer::Exactly(id) => id.to_string(),
    }
}

/// The rustls error inside an I/O error, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Looks at `addr` again as `identity` and says what stops a call there; `None` when the
/// handshake succeeds and the server keeps the connection open (the failure was elsewhere).
pub(crate) async fn explain(addr: &str, identity: &TlsIdentity, expected: &ExpectedPeer) -> Option<anyhow::Error> {
    let authority = tls::endpoint_authority(addr).ok()?;
    let tcp = match tokio::time::timeout(STEP, TcpStream::connect(authority.as_str())).await {
        Err(_) => {
            return Some(anyhow!(
                "no answer from {authority} within {} s (wrong address, or a firewall?)",
                STEP.as_secs()
            ))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Some(anyhow!(
            "nothing is listening at {authority} (connection refused): is the server running, and is this its port?"
        ))
        }
        Ok(Err(e)) => return Some(anyhow!("cannot connect to {authority}: {e}")),
        Ok(Ok(tcp)) => tcp,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder { seen: seen.clone(), provider: provider.clone() }))
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .ok()?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("huren.invalid").ok()?;
    let mut stream = match tokio::time::timeout(STEP, connector.connect(name, tcp)).await {
        Err(_) => {
            return Some(usage(format!(
            "{authority} accepted the connection but completed no TLS handshake within {} s: does that port speak TLS?",
            STEP.as_secs()
        )))
        }
        Ok(Err(e)) => return Some(handshake_failure(&authority, &e)),
        Ok(Ok(stream)) => stream,
    };
    let chain = std::mem::take(&mut seen.lock().unwrap_or_else(|e| e.into_inner()).chain);
    if let Some(problem) = judge(&authority, identity, expected, &chain, &provider) {
        return Some(problem);
    }
    let presented = tls::authenticate_chain(&chain, &identity.root, &identity.identity.trust_domain).ok()?;
    // The server checks this client's certificate after the handshake (TLS 1.3): speak
    // first, and an alert or a closed connection is its answer.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut buf = [0u8; 64];
    let answer = async {
        stream.write_all(PREFACE).await?;
        stream.flush().await?;
        stream.read(&mut buf).await
    };
    let refused = |why: &str| {
        anyhow!(
            "the server at {authority} ({presented}) refused this client's certificate ({}){why}",
            identity.identity
        )
    };
    match tokio::time::timeout(STEP, answer).await {
        Ok(Ok(0)) => Some(refused(": it closed the connection")),
        Ok(Ok(_)) | Err(_) => None,
        Ok(Err(e)) => match rustls_error(&e) {
            Some(rustls::Error::AlertReceived(alert)) => Some(refused(&format!(": {}", alert_words(*alert)))),
            _ => Some(refused(&format!(": {e}"))),
        },
    }
}

/// A handshake that failed: the port does not speak TLS, or the server refused the hello.
fn handshake_failure(authority: &str, e: &std::io::Error) -> anyhow::Error {
    match rustls_error(e) {
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
            usage(format!("{authority} does not speak TLS (is it the admin port, or another service?)"))
        }
        Some(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)) => {
            usage(format!("the server at {authority} does not speak TLS 1.3, which Huren requires"))
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            anyhow!("the server at {authority} refused the TLS handshake: {}", alert_words(*alert))
        }
        Some(other) => anyhow!("the TLS handshake with {authority} failed: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof || e.kind() == std::io::ErrorKind::ConnectionReset => {
            usage(format!("{authority} closed the connection during the TLS handshake: does that port speak TLS?"))
        }
        None => anyhow!("the TLS handshake with {authority} failed: {e}"),
    }
}

/// What is wrong with the chain a server presented, judged as the real client would.
fn judge(
    authority: &str,
    identity: &TlsIdentity,
    expected: &ExpectedPeer,
    chain: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Option<anyhow::Error> {
    let (leaf, intermediates) = chain.split_first()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.root.clone()).ok()?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok()?;
    // The name is not what Huren checks (the URI SAN is): a name mismatch is no problem here.
    let name = ServerName::try_from("huren.invalid").ok()?;
    match verifier.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()) {
        Ok(_)
        | Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {}
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature)) => {
            return Some(usage(format!(
                "the server at {authority} presented a certificate that this federation's national root did not issue \
                 (another federation's server, or the wrong --ca?)"
            )))
        }
        Err(rustls::Error::InvalidCertificate(e)) => {
            return Some(anyhow!("the server at {authority} presented an unusable certificate: {}", cert_words(&e)))
        }
        Err(e) => return Some(anyhow!("the server at {authority} presented an unusable certificate: {e}")),
    }
    match tls::authenticate_chain(chain, &identity.root, &identity.identity.trust_domain) {
        Err(e) => Some(usage(format!("the server at {authority} presented no Huren server identity: {e}"))),
        Ok(presented) => {
            let accepted = match expected {
                ExpectedPeer::AnyGateway => matches!(presented.role, huren_pki::Role::Gateway(_)),
                ExpectedPeer::Exactly(want) => *want == presented,
            };
            (!accepted).then(|| {
                usage(format!("the server at {authority} presented {presented}, not {}", expected_words(expected)))
            })
        }
    }
}

/// A certificate problem in words.
fn cert_words(e: &CertificateError) -> String {
    match e {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "it has expired".to_owned(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (check the clocks)".to_owned()
        }
        CertificateError::Revoked => "it is revoked".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A TLS alert a server sent, in words.
fn alert_words(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRevoked => "it is revoked (by the trust list the server holds)".to_owned(),
        AlertDescription::CertificateExpired => "it has expired".to_owned(),
        AlertDescription::UnknownCA => "it was not issued by the national root the server trusts".to_owned(),
        AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => {
            "the server does not accept it as a Huren identity".to_owned()
        }
        AlertDescription::CertificateRequired => "the server requires a client certificate".to_owned(),
        AlertDescription::AccessDenied => "access denied".to_owned(),
        other => format!("TLS alert {other:?}"),
    }
}

/// Loads a party's TLS material and checks that the private key belongs to the
/// certificate: a mismatch is an unusable pair of files (exit 64), said before anything
/// connects or listens.
pub(crate) fn load_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
    trust_domain: &str,
) -> anyhow::Result<TlsIdentity> {
    let identity = TlsIdentity::load(cert, key, ca, trust_domain).map_err(usage)?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(identity.chain.clone(), identity.key.clone_key(), &provider) {
        Ok(_) => Ok(identity),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(usage(format!("{} is not the private key of the certificate in {}", key.display(), cert.display())))
        }
        Err(e) => Err(usage(format!("{}: unusable private key: {e}", key.display()))),
    }
}
