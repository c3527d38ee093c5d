//! Mutual TLS for every Huren connection, built in this one place.
//!
//! - [`TlsIdentity`]: a party's certificate chain, private key and the national root.
//! - [`server_config`]: TLS 1.3 only, client certificate required (chain to the root), any
//!   SNI that is a DNS name or none at all (stock clients check the DNS and IP SANs),
//!   revoked serials refused during the handshake ([`Revocations`] is live: swap in a new
//!   set and the next handshake uses it).
//! - [`client_config`]: verifies the server chain to the root and that its URI SAN is the
//!   identity the caller expects (a gateway expects `province/<code>/node`, never a DNS name).
//! - [`authenticate_chain`]: turns a verified chain into an [`Identity`], enforcing that a
//!   province CA only vouches for its own province and the root for the national roles.
//! - [`incoming`]: accept loop that handshakes off the accept path (admitted under
//!   [`HandshakeLimits`]: per-source cap, eviction of the oldest, shrinking deadline) and
//!   authenticates each connection once; servers read the result with [`peer`], which
//!   also re-checks the connection's chain serials against the live [`Revocations`] on every
//!   request (a connection opened before a revocation is refused at its next call);
//!   long-lived calls ask [`PeerInfo::revoked`] before each message.
//! - [`channel`]: a lazily connecting tonic channel over mTLS; [`observed_channel`] also
//!   reports the server chain's serials ([`ServerSerials`]), so what a server answered can
//!   be dropped when its certificate is revoked.
//!
//! Serials are compared in one canonical form ([`huren_pki::serial`]): the integer in
//! lowercase hex, without the DER sign octet or leading zeros.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use x509_parser::extensions::GeneralName;

use huren_pki::identity::{Identity, InvalidIdentity, Role};

pub use crate::handshake::HandshakeLimits;
use crate::handshake::{Admission, Pending};

/// Time allowed for a whole TLS handshake before the connection is dropped, while at most
/// half the handshake slots are taken (the default [`HandshakeLimits::timeout`]).
pub const HANDSHAKE_TIMEOUT: Duration = crate::handshake::DEFAULT_TIMEOUT;
/// HTTP/2 streams (calls) a server runs at once per connection; a client with more in
/// flight waits for capacity (back-pressure), it is not refused.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Handshakes in progress at once per server (the default [`HandshakeLimits::max_pending`]);
/// when all are taken, a new connection evicts the oldest.
pub const MAX_CONCURRENT_HANDSHAKES: usize = crate::handshake::DEFAULT_MAX_PENDING;

/// Why TLS material could not be loaded or a TLS configuration or channel built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or root file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The certificate or root file holds no PEM certificate.
    #[error("{path}: no PEM certificate found")]
    NoCertificate {
        /// The file (or `root` for in-memory PEM).
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{path}: no PEM private key found")]
    NoKey {
        /// The file (or `key` for in-memory PEM).
        path: PathBuf,
    },
    /// PEM that does not parse.
    #[error("{what}: invalid PEM: {source}")]
    Pem {
        /// Which input: a file path, or `certificate`, `key`, `root`.
        what: String,
        /// The parser's error.
        source: rustls_pki_types::pem::Error,
    },
    /// The party's own chain does not authenticate as a Huren identity of the trust domain.
    #[error("own certificate is unusable: {0}")]
    OwnCertificate(#[from] AuthError),
    /// rustls refused the material, e.g. a key that does not match the certificate.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the root.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// An endpoint that is not `https://host:port` or `host:port`.
    #[error("invalid endpoint {0:?}: expected https://host:port or host:port")]
    Endpoint(String),
}

/// Why a presented certificate chain does not yield an acceptable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The chain is empty: the peer presented no certificate.
    #[error("no client certificate presented")]
    NoCertificate,
    /// A certificate of the chain, or the root, is not valid X.509.
    #[error("certificate is not valid X.509")]
    Parse,
    /// The leaf carries no URI SAN or several (the number found).
    #[error("certificate must carry exactly one URI SAN (found {0})")]
    UriSanCount(usize),
    /// The leaf's URI SAN does not parse as an identity.
    #[error("certificate URI SAN is not a Huren identity: {0}")]
    Identity(#[from] InvalidIdentity),
    /// The identity belongs to another trust domain.
    #[error("identity {identity} is outside trust domain {expected}")]
    TrustDomain {
        /// The identity presented.
        identity: String,
        /// The trust domain required.
        expected: String,
    },
    /// A province identity whose chain is not leaf + the CA of that same province.
    #[error("identity {0} must be issued by its own province CA (chain: leaf + province CA)")]
    ProvinceIssuer(String),
    /// A national identity (gateway, hub, …) not issued directly by the root.
    #[error("identity {0} must be issued directly by the national root")]
    RootIssuer(String),
}

/// Live set of revoked certificate serials, held in their canonical form
/// ([`huren_pki::serial`]: the integer in lowercase hex, no sign octet, no leading zeros),
/// which is what [`huren_pki::ca::serial_hex`] yields for a presented certificate.
#[derive(Debug, Clone, Default)]
pub struct Revocations(Arc<RwLock<Arc<HashSet<String>>>>);

fn canonical_set(serials: HashSet<String>) -> HashSet<String> {
    serials.iter().map(|s| huren_pki::serial::canonical(s)).collect()
}

impl Revocations {
    /// A live set starting with `serials` (any form [`huren_pki::serial::parse`] reads).
    pub fn new(serials: HashSet<String>) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(canonical_set(serials)))))
    }

    /// Replaces the set; the next handshake, and the next request on every open
    /// connection ([`peer`]), use it.
    pub fn replace(&self, serials: HashSet<String>) {
        let serials = canonical_set(serials);
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(serials);
    }

    fn current(&self) -> Arc<HashSet<String>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any of `serials` (canonical, as [`huren_pki::ca::serial_hex`] gives them)
    /// is revoked now.
    pub fn any_serial_revoked<'a>(&self, serials: impl IntoIterator<Item = &'a str>) -> bool {
        let set = self.current();
        serials.into_iter().any(|s| set.contains(s))
    }

    /// Whether any certificate of the chain is revoked. Unparseable certificates count as revoked.
    pub fn any_revoked<'a>(&self, chain: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> bool {
        let set = self.current();
        chain.into_iter().any(|c| match huren_pki::ca::serial_hex(c.as_ref()) {
            Ok(serial) => set.contains(&serial),
            Err(_) => true,
        })
    }
}

/// A party's TLS material.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Own certificate chain, leaf first (then the province CA for province roles).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The national root certificate: the only trust anchor for peers.
    pub root: CertificateDer<'static>,
    /// Who this party is, as authenticated from `chain` (taken on trust by
    /// [`TlsIdentity::from_pem_unchecked`]).
    pub identity: Identity,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            root: self.root.clone(),
            identity: self.identity.clone(),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what: what.to_owned(), source })
}

/// The first private key in `pem` (PKCS#8, SEC1 or PKCS#1).
fn parse_key(pem: &[u8], what: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey { path: what.to_owned() }),
        Err(source) => Err(TlsError::Pem { what: what.display().to_string(), source }),
    }
}

/// The first certificate in `pem`, the national root.
fn parse_root(pem: &[u8], what: &Path) -> Result<CertificateDer<'static>, TlsError> {
    parse_certs(pem, &what.display().to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoCertificate { path: what.to_owned() })
}

impl TlsIdentity {
    /// Loads `cert` (leaf first, then intermediates), `key` and the root `ca`.
    pub fn load(cert: &Path, key: &Path, ca: &Path, trust_domain: &str) -> Result<Self, TlsError> {
        let chain = parse_certs(&read(cert)?, &cert.display().to_string())?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { path: cert.to_owned() });
        }
        let key_der = parse_key(&read(key)?, key)?;
        let root = parse_root(&read(ca)?, ca)?;
        Self::new(chain, key_der, root, trust_domain)
    }

    /// Builds from PEM strings (tests and the demo keep material in memory).
    pub fn from_pem(cert_pem: &str, key_pem: &str, root_pem: &str, trust_domain: &str) -> Result<Self, TlsError> {
        let chain = parse_certs(cert_pem.as_bytes(), "certificate")?;
        let key = parse_key(key_pem.as_bytes(), Path::new("key"))?;
        let root = parse_root(root_pem.as_bytes(), Path::new("root"))?;
        Self::new(chain, key, root, trust_domain)
    }

    /// Builds material without checking that the chain authenticates as `identity`.
    /// For tests and tools that must present deliberately wrong certificates; every
    /// server still authenticates its peers.
    pub fn from_pem_unchecked(
        cert_pem: &str,
        key_pem: &str,
        root_pem: &str,
        identity: Identity,
    ) -> Result<Self, TlsError> {
        let chain = parse_certs(cert_pem.as_bytes(), "certificate")?;
        let key = parse_key(key_pem.as_bytes(), Path::new("key"))?;
        let root = parse_root(root_pem.as_bytes(), Path::new("root"))?;
        Ok(Self { chain, key, root, identity })
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        root: CertificateDer<'static>,
        trust_domain: &str,
    ) -> Result<Self, TlsError> {
        let identity = authenticate_chain(&chain, &root, trust_domain)?;
        Ok(Self { chain, key, root, identity })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone())?;
        Ok(roots)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn uri_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Vec<String>, AuthError> {
    let san = cert.subject_alternative_name().map_err(|_| AuthError::Parse)?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Derives the identity of an already path-validated chain (leaf first).
///
/// Province identities (`node`, `admin`) must come as leaf + the CA of the same province
/// (its URI SAN `spiffe://<td>/province/<code>`); national identities must be issued by
/// the root itself. This is the "a province CA can only issue identities under its own
/// province path" rule of the architecture.
pub fn authenticate_chain(
    chain: &[CertificateDer<'_>],
    root: &CertificateDer<'_>,
    trust_domain: &str,
) -> Result<Identity, AuthError> {
    let leaf_der = chain.first().ok_or(AuthError::NoCertificate)?;
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der).map_err(|_| AuthError::Parse)?;
    let uris = uri_sans(&leaf)?;
    if uris.len() != 1 {
        return Err(AuthError::UriSanCount(uris.len()));
    }
    let identity: Identity = uris[0].parse()?;
    if identity.trust_domain != trust_domain {
        return Err(AuthError::TrustDomain { identity: identity.to_string(), expected: trust_domain.to_owned() });
    }
    // A peer may append the root itself; it adds nothing.
    let intermediates: Vec<_> = chain[1..].iter().filter(|c| c.as_ref() != root.as_ref()).collect();
    let (_, root_cert) = x509_parser::parse_x509_certificate(root).map_err(|_| AuthError::Parse)?;
    match identity.role.province() {
        Some(code) => {
            let [ca_der] = intermediates.as_slice() else {
                return Err(AuthError::ProvinceIssuer(identity.to_string()));
            };
            let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|_| AuthError::Parse)?;
            let ca_uris = uri_sans(&ca)?;
            let expected = Identity::province_ca_uri(trust_domain, code);
            let is_ca = ca.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
            if !is_ca || ca_uris != [expected] || leaf.issuer() != ca.subject() || ca.issuer() != root_cert.subject() {
                return Err(AuthError::ProvinceIssuer(identity.to_string()));
            }
        }
        None => {
            if !intermediates.is_empty() || leaf.issuer() != root_cert.subject() {
                return Err(AuthError::RootIssuer(identity.to_string()));
            }
        }
    }
    Ok(identity)
}

// ------------------------------------------------------------------ server side

#[derive(Debug)]
struct RevocationCheckingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl ClientCertVerifier for RevocationCheckingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if self.revocations.any_revoked(std::iter::once(end_entity).chain(intermediates)) {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Server configuration: TLS 1.3, client certificate required and checked against revocations.
///
/// One certificate whatever the client asks for: a ClientHello with a DNS name as SNI, or
/// with no SNI (what clients send when they connect to an IP address), gets the server's
/// certificate, whose DNS and IP SANs stock clients check and whose URI SAN Huren's own
/// clients check. An SNI that is no host name at all (a `spiffe://` URI, as
/// `ssl_target_name_override` would send) is refused by rustls with `illegal_parameter`:
/// stock clients need no override, since the certificate names the host they dial.
pub fn server_config(id: &TlsIdentity, revocations: Revocations) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(id.roots()?), provider.clone()).build()?;
    let verifier = Arc::new(RevocationCheckingClientVerifier { inner, revocations });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What a server learnt about its peer, once per connection; tonic puts it in every
/// request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's TCP address, if known.
    pub remote_addr: Option<SocketAddr>,
    /// The peer's identity, or why its chain yields none; [`peer`] turns an error into
    /// UNAUTHENTICATED.
    pub identity: Result<Identity, AuthError>,
    /// Serials of the presented chain, checked against `revocations` on every request so
    /// a certificate revoked while its connection is open stops working at once.
    serials: Arc<Vec<String>>,
    revocations: Revocations,
}

impl PeerInfo {
    /// Whether a certificate of the peer's chain is revoked by the revocations in force
    /// now (not when the connection was made): long-lived calls (watch streams) ask this
    /// before each message they send.
    pub fn revoked(&self) -> bool {
        self.revocations.any_serial_revoked(self.serials.iter().map(String::as_str))
    }

    /// Serials of the peer's presented chain, leaf first, canonical.
    pub fn serials(&self) -> &[String] {
        &self.serials
    }
}

/// What the server learnt about `request`'s peer at the handshake, if it came over [`incoming`].
pub fn peer_info<T>(request: &tonic::Request<T>) -> Option<PeerInfo> {
    request.extensions().get::<PeerInfo>().cloned()
}

/// An accepted, handshaken TLS connection with its authenticated peer.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl tonic::transport::server::Connected for AuthenticatedStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections, handshakes each in its own task under the default
/// [`HandshakeLimits`] and yields authenticated streams; see [`incoming_with`].
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    root: CertificateDer<'static>,
    trust_domain: String,
    revocations: Revocations,
) -> ReceiverStream<Result<AuthenticatedStream, io::Error>> {
    incoming_with(listener, config, root, trust_domain, revocations, HandshakeLimits::default())
}

/// Accepts TCP connections, handshakes each in its own task and yields authenticated
/// streams. Every connection is accepted at once and admitted under `limits`
/// ([`crate::handshake`]): closed if its source already holds its share of handshakes in
/// progress, otherwise given a slot (evicting the oldest handshake in progress when all
/// are taken) and a deadline for its whole handshake that shrinks as the slots run out.
/// The accept loop stops, and the listener closes, when the stream is dropped.
pub fn incoming_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    root: CertificateDer<'static>,
    trust_domain: String,
    revocations: Revocations,
    limits: HandshakeLimits,
) -> ReceiverStream<Result<AuthenticatedStream, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let pending = Pending::new(limits);
    let root = Arc::new(root);
    let trust_domain: Arc<str> = trust_domain.into();
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = tx.closed() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (mut slot, deadline) = match pending.admit(remote.ip()) {
                Admission::Admitted { slot, deadline, evicted_oldest } => {
                    if evicted_oldest {
                        tracing::debug!(%remote, "all handshake slots taken: the oldest handshake was closed");
                    }
                    (slot, deadline)
                }
                Admission::SourceFull => {
                    tracing::debug!(%remote, "too many handshakes in progress from this source: closed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, root, td) = (acceptor.clone(), tx.clone(), root.clone(), trust_domain.clone());
            let revocations = revocations.clone();
            tokio::spawn(async move {
                let handshake = tokio::select! {
                    r = tokio::time::timeout(deadline, acceptor.accept(tcp)) => r,
                    _ = slot.evicted() => {
                        tracing::debug!(%remote, "TLS handshake evicted for a newer connection");
                        return;
                    }
                };
                drop(slot);
                match handshake {
                    Ok(Ok(tls)) => {
                        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
                        let identity = authenticate_chain(chain, &root, &td);
                        let serials = chain.iter().filter_map(|c| huren_pki::ca::serial_hex(c.as_ref()).ok()).collect();
                        let peer =
                            PeerInfo { remote_addr: Some(remote), identity, serials: Arc::new(serials), revocations };
                        let _ = tx.send(Ok(AuthenticatedStream { inner: tls, peer })).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%remote, ?deadline, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The authenticated identity of a request's peer, or UNAUTHENTICATED with the reason.
pub fn peer<T>(request: &tonic::Request<T>) -> Result<Identity, tonic::Status> {
    let info = request
        .extensions()
        .get::<PeerInfo>()
        .ok_or_else(|| tonic::Status::unauthenticated("no mutual-TLS peer on this connection"))?;
    if info.revoked() {
        return Err(tonic::Status::unauthenticated("client certificate refused: it has been revoked"));
    }
    match &info.identity {
        Ok(id) => Ok(id.clone()),
        Err(e) => Err(tonic::Status::unauthenticated(format!("client certificate refused: {e}"))),
    }
}

// ------------------------------------------------------------------ client side

/// Which server identities a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Exactly this identity (e.g. the node of one province).
    Exactly(Identity),
    /// Any gateway of the trust domain.
    AnyGateway,
}

impl ExpectedPeer {
    fn accepts(&self, id: &Identity) -> bool {
        match self {
            ExpectedPeer::Exactly(want) => want == id,
            ExpectedPeer::AnyGateway => matches!(id.role, Role::Gateway(_)),
        }
    }
}

#[derive(Debug)]
struct IdentityServerVerifier {
    root: CertificateDer<'static>,
    trust_domain: String,
    expected: ExpectedPeer,
    revocations: Revocations,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for IdentityServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |e: rustls::CertificateError| rustls::Error::InvalidCertificate(e);
        let anchor =
            webpki::anchor_from_trusted_cert(&self.root).map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        let cert =
            webpki::EndEntityCert::try_from(end_entity).map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &[anchor],
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| bad(rustls::CertificateError::Other(rustls::OtherError(Arc::new(WebPkiError(e.to_string()))))))?;
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        let identity = authenticate_chain(&chain, &self.root, &self.trust_domain)
            .map_err(|_| bad(rustls::CertificateError::ApplicationVerificationFailure))?;
        if !self.expected.accepts(&identity) {
            return Err(bad(rustls::CertificateError::NotValidForName));
        }
        if self.revocations.any_revoked(chain.iter()) {
            return Err(bad(rustls::CertificateError::Revoked));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct WebPkiError(String);
impl std::fmt::Display for WebPkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for WebPkiError {}

/// Client configuration presenting `id` and accepting only `expected` servers.
pub fn client_config(
    id: &TlsIdentity,
    expected: ExpectedPeer,
    revocations: Revocations,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(IdentityServerVerifier {
        root: id.root.clone(),
        trust_domain: id.identity.trust_domain.clone(),
        expected,
        revocations,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// `host:port` of an endpoint written as `https://host:port` or `host:port`.
pub fn endpoint_authority(endpoint: &str) -> Result<String, TlsError> {
    huren_pki::endpoint::endpoint_authority(endpoint).map_err(|_| TlsError::Endpoint(endpoint.to_owned()))
}

/// A lazily connecting gRPC channel to `endpoint` over mTLS. The channel reconnects
/// on its own; RPCs on an unreachable endpoint fail with UNAVAILABLE.
pub fn channel(
    endpoint: &str,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, TlsError> {
    connect_lazy(endpoint, config, connect_timeout, None)
}

/// Serials (canonical, leaf first) of the certificate chain the server presented on a
/// channel's newest connection; empty until it has connected. A gateway remembers them
/// with what the server answered, so the answer can be dropped when one is revoked.
#[derive(Debug, Clone, Default)]
pub struct ServerSerials(Arc<RwLock<Arc<Vec<String>>>>);

impl ServerSerials {
    /// The serials of the newest connection's server chain.
    pub fn current(&self) -> Arc<Vec<String>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, serials: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(serials);
    }
}

/// [`channel`], also reporting the server chain each new connection presents.
pub fn observed_channel(
    endpoint: &str,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<(tonic::transport::Channel, ServerSerials), TlsError> {
    let serials = ServerSerials::default();
    Ok((connect_lazy(endpoint, config, connect_timeout, Some(serials.clone()))?, serials))
}

fn connect_lazy(
    endpoint: &str,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
    observed: Option<ServerSerials>,
) -> Result<tonic::transport::Channel, TlsError> {
    let authority = endpoint_authority(endpoint)?;
    // The scheme only labels HTTP/2 requests; TLS is done by the connector below.
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| TlsError::Endpoint(endpoint.to_owned()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let svc = tower::service_fn(move |uri: http::Uri| {
        let connector = connector.clone();
        let observed = observed.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // The server's identity is checked by its URI SAN, not by this name. A DNS host
            // goes out as SNI (for balancers that route on it); for an IP address rustls
            // sends no SNI, which every Huren server accepts.
            let name = ServerName::try_from(host.clone())
                .or_else(|_| ServerName::try_from("huren.invalid"))
                .map_err(io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            if let Some(observed) = observed {
                let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
                observed.set(chain.iter().filter_map(|c| huren_pki::ca::serial_hex(c.as_ref()).ok()).collect());
            }
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(ep.connect_with_connector_lazy(svc))
}
