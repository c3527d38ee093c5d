//! Certificate authorities and role certificates, generated with rcgen.
//!
//! Every certificate is ECDSA P-256. The national root signs province CAs and the
//! root-scoped leaves (gateway, hub, coordinator, auditor); a province CA signs only
//! its own node and admin leaves. Each leaf carries exactly one URI SAN (its
//! [`Identity`]) and both TLS client and server usages; a server's leaf (node, gateway)
//! may also carry DNS and IP SANs ([`HostName`]) for its endpoints, so stock TLS clients
//! verify it with an ordinary hostname check ([`issue_server_leaf`]).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::endpoint::HostName;
use crate::identity::{Identity, ProvinceCode};

/// Why a certificate could not be generated, signed or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// rcgen refused: a key or PEM it was given is unusable, or signing failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The operating system's random source failed while drawing a serial number.
    #[error("randomness unavailable: {0}")]
    Random(String),
    /// A PEM or DER certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    Parse(String),
}

/// A CA certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CaMaterial {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, PEM; never logged (`Debug` hides it).
    pub key_pem: String,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial").finish_non_exhaustive()
    }
}

/// A freshly issued leaf: certificate (PEM), key (PEM) and serial (canonical hex).
#[derive(Clone)]
pub struct IssuedCert {
    /// The leaf certificate alone, PEM (no chain).
    pub cert_pem: String,
    /// The leaf's private key, PEM; never logged (`Debug` hides it).
    pub key_pem: String,
    /// Serial number in its canonical form ([`crate::serial`]): what a revocation names.
    pub serial_hex: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").field("serial_hex", &self.serial_hex).finish_non_exhaustive()
    }
}

/// Validity window of a certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// First instant the certificate or key is valid.
    pub not_before: OffsetDateTime,
    /// Instant it stops being valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (clock skew) for `days` days.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self { not_before: now - Duration::hours(1), not_after: now + Duration::days(days) }
    }
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| CaError::Random(e.to_string()))?;
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero octet, so the hex form is stable
    Ok(SerialNumber::from(bytes.to_vec()))
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Huren federation");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, CaError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

/// Creates the national root CA (self-signed, path length 1).
pub fn new_root(trust_domain: &str, validity: Validity) -> Result<CaMaterial, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("Huren national root ({trust_domain})"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial()?);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let cert = params.self_signed(&key)?;
    Ok(CaMaterial { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Creates a province CA signed by the root. Its URI SAN names the province, which is how
/// peers check that it only vouches for identities of its own province.
pub fn new_province_ca(
    root: &CaMaterial,
    trust_domain: &str,
    code: &ProvinceCode,
    name: &str,
    validity: Validity,
) -> Result<CaMaterial, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("Huren province CA {code} {name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names = vec![SanType::URI(Identity::province_ca_uri(trust_domain, code).try_into()?)];
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let cert = params.signed_by(&key, &issuer(root)?)?;
    Ok(CaMaterial { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a leaf certificate for `identity`, signed by `ca`.
///
/// The caller chooses the CA; whether that CA may vouch for the identity is enforced
/// by every verifier (`huren_runtime::tls::authenticate_chain`), not here, so tests can build
/// deliberately wrong certificates.
pub fn issue_leaf(ca: &CaMaterial, identity: &Identity, validity: Validity) -> Result<IssuedCert, CaError> {
    issue_server_leaf(ca, identity, &[], validity)
}

/// Issues a leaf for `identity` that also names the hosts a server is reached at: its
/// URI SAN first, then one DNS or IP SAN per `names` entry. Stock TLS clients check those
/// names; Huren's own clients check the URI SAN.
pub fn issue_server_leaf(
    ca: &CaMaterial,
    identity: &Identity,
    names: &[HostName],
    validity: Validity,
) -> Result<IssuedCert, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("{} {}", identity.role.kind(), identity));
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    for name in names {
        params.subject_alt_names.push(match name {
            HostName::Dns(dns) => SanType::DnsName(dns.as_str().try_into()?),
            HostName::Ip(ip) => SanType::IpAddress(*ip),
        });
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let serial = random_serial()?;
    let serial_hex = crate::serial::canonical_from_bytes(serial.as_ref());
    params.serial_number = Some(serial);
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial_hex })
}

/// Signs `message` with a CA's private key (ECDSA P-256 / SHA-256, ASN.1 DER signature).
pub fn sign_with_ca_key(ca: &CaMaterial, message: &[u8]) -> Result<Vec<u8>, CaError> {
    use rcgen::SigningKey as _;
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(key.sign(message)?)
}

/// First certificate of a PEM bundle, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, CaError> {
    use rustls_pki_types::pem::PemObject as _;
    match rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        Some(Err(e)) => Err(CaError::Parse(e.to_string())),
        None => Err(CaError::Parse("no CERTIFICATE block in PEM".into())),
    }
}

/// Serial number of a DER certificate in its canonical form ([`crate::serial`]: lowercase
/// hex of the integer, the DER sign octet and leading zeros dropped), as `openssl x509
/// -serial` prints it, lowercased.
pub fn serial_hex(cert_der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| CaError::Parse(e.to_string()))?;
    Ok(crate::serial::canonical_from_bytes(cert.tbs_certificate.raw_serial()))
}

/// The DNS and IP SANs of a DER certificate, in the order it lists them.
pub fn host_names(cert_der: &[u8]) -> Result<Vec<HostName>, CaError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| CaError::Parse(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| CaError::Parse(e.to_string()))?;
    let mut names = Vec::new();
    for name in san.map(|ext| ext.value.general_names.as_slice()).unwrap_or_default() {
        match name {
            GeneralName::DNSName(dns) => names.push(HostName::Dns((*dns).to_owned())),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => {
                        std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).map_err(|e| CaError::Parse(e.to_string()))?)
                    }
                    16 => {
                        std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).map_err(|e| CaError::Parse(e.to_string()))?)
                    }
                    n => return Err(CaError::Parse(format!("IP address SAN of {n} bytes"))),
                };
                names.push(HostName::Ip(ip));
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Not-after time of a DER certificate, Unix seconds.
pub fn not_after(cert_der: &[u8]) -> Result<i64, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| CaError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_leaves_carry_their_host_names_after_the_identity() {
        let root = new_root("huren.gov", Validity::days(1)).unwrap();
        let identity: Identity = "spiffe://huren.gov/gateway/national-1".parse().unwrap();
        let names = [HostName::dns("gw.huren.example").unwrap(), HostName::Ip("10.0.0.7".parse().unwrap())];
        let leaf = issue_server_leaf(&root, &identity, &names, Validity::days(1)).unwrap();
        let der = pem_to_der(&leaf.cert_pem).unwrap();
        assert_eq!(host_names(&der).unwrap(), names);
        let plain = issue_leaf(&root, &identity, Validity::days(1)).unwrap();
        assert!(host_names(&pem_to_der(&plain.cert_pem).unwrap()).unwrap().is_empty());
    }
}
