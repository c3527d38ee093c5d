//! The coordinator's PKI directory and the registry the trust list is signed from.
//!
//! ```text
//! <dir>/root/ca.pem, ca.key                 national root (keep the key offline)
//! <dir>/registry.toml                       provinces, keys, rules, revocations, last sequence
//! <dir>/provinces/<code>/ca.pem, ca.key     province CA
//! <dir>/provinces/<code>/attestation-<kid>.key   province attestation key (PKCS#8)
//! <dir>/issued/<kind>-<name>/cert.pem, key.pem   leaf certificates (cert.pem holds the chain)
//! <dir>/trust-list.bin                      the last signed trust list
//! <dir>/history/trust-list-<sequence>.bin   every trust list signed here, kept for diffs
//! ```
//!
//! Layout: here the registry's data ([`Registry`] and its parts, as `registry.toml` holds
//! them) and errors; `dir` the directory itself ([`PkiDir`]: paths, init, issuing leaves,
//! signing the trust list); `edit` the coordinator's changes to the registry (provinces,
//! keys, rules, purposes, hubs, retention, sunset, revocations).

mod dir;
mod edit;

pub use dir::PkiDir;

use std::path::{Path, PathBuf};

use huren_proto::pb;
use serde::{Deserialize, Serialize};

use crate::attest::{AttestationKey, KeyError};
use crate::ca::{self, CaError, CaMaterial, Validity};
use crate::endpoint::HostName;
use crate::identity::{Identity, InvalidIdentity, ProvinceCode, Role};
use crate::policy::FieldPolicy;
use crate::trust::{self, TrustList, TrustListError, TRUST_LIST_VERSION};
use crate::unix_now;

/// Why an operation on the PKI directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Reading or writing a file of the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `init` on a directory that already has a root certificate.
    #[error("{0} already holds a national root; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// `open` on a directory without a root certificate or `registry.toml`.
    #[error("{0} is not a Huren PKI directory (run `huren pki init` first)")]
    NotInitialised(PathBuf),
    /// `registry.toml` could not be parsed (or serialised).
    #[error("{path}: invalid registry: {message}")]
    Parse {
        /// Path of `registry.toml`.
        path: PathBuf,
        /// What the TOML parser or serialiser said.
        message: String,
    },
    /// Adding a province whose code is already registered.
    #[error("province {0} is already registered")]
    ProvinceExists(ProvinceCode),
    /// The province has no entry (or no CA) in the directory.
    #[error("province {0} is not registered (run `huren pki province add` first)")]
    UnknownProvince(ProvinceCode),
    /// A trust domain, role kind, name or province code is invalid.
    #[error(transparent)]
    Identity(#[from] InvalidIdentity),
    /// Generating, signing or reading a certificate failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Generating or encoding an attestation key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signing, verifying or saving the trust list failed.
    #[error(transparent)]
    TrustList(#[from] TrustListError),
    /// A node endpoint is not `https://host:port` or `host:port`.
    #[error("invalid endpoint: {0}")]
    Endpoint(String),
    /// A rule is incomplete, or a registry entry (status name, key status, hex value) is
    /// malformed, or a province has no active attestation key.
    #[error("invalid rule: {0}")]
    Rule(String),
    /// The province has no key with that id.
    #[error("province {province} has no attestation key {kid}")]
    UnknownKey {
        /// The province asked.
        province: ProvinceCode,
        /// The key id asked, lowercase hex.
        kid: String,
    },
    /// A key status change that is not allowed (a revoked key cannot come back).
    #[error("{0}")]
    KeyState(String),
    /// A serial to revoke that is not a serial in any printed form.
    #[error(transparent)]
    Serial(#[from] crate::serial::InvalidSerial),
    /// The field policy, a hub registration, retention windows or a sunset order is
    /// invalid, or the hub named is not registered.
    #[error("field policy: {0}")]
    Policy(String),
    /// DNS or IP names asked for a certificate that cannot carry them (a role that serves nothing).
    #[error("{0}")]
    HostNames(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_owned(), source }
}

/// `registry.toml`: what the coordinator admits to the federation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// SPIFFE trust domain of every identity.
    pub trust_domain: String,
    /// Sequence number of the last signed trust list.
    #[serde(default)]
    pub sequence: u64,
    /// How long a signed list is current before a new one is expected (seconds).
    #[serde(default = "default_next_update")]
    pub next_update_seconds: i64,
    /// Admitted provinces (`[[province]]` tables).
    #[serde(default, rename = "province")]
    pub provinces: Vec<RegistryProvince>,
    /// The rule registry: rules under which a non-green status may be assigned (`[[rule]]`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RegistryRule>,
    /// Revoked certificate serials (canonical hex, [`crate::serial`]; older files may hold
    /// `00`-padded ones, read as the same integers).
    #[serde(default)]
    pub revoked_serials: Vec<String>,
    /// Provinces that have left the federation (kept for the record).
    #[serde(default)]
    pub retired_provinces: Vec<String>,
    /// Field policy: allowed attestation fields per purpose (empty = the default policy).
    #[serde(default, rename = "purpose")]
    pub purposes: Vec<RegistryPurpose>,
    /// Registered transport hubs and the purposes each may declare.
    #[serde(default, rename = "hub")]
    pub hubs: Vec<RegistryHub>,
    /// Retention windows (unset = built-in defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RegistryRetention>,
    /// Bounds on every attestation's validity (unset = built-in default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_bounds: Option<RegistryAttestationBounds>,
    /// How long nodes keep disclosure-log records, seconds (unset or 0 = built-in default,
    /// [`trust::DEFAULT_DISCLOSURE_MAX_AGE_SECS`]); signed into `RetentionPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure_max_age_seconds: Option<i64>,
    /// The order to end the federation, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<RegistrySunset>,
}

/// Attestation validity bounds; 0 means the built-in default
/// ([`trust::DEFAULT_MAX_ATTESTATION_LIFETIME_SECS`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAttestationBounds {
    /// Longest `expires_at - issued_at` any verifier accepts, seconds.
    #[serde(default)]
    pub max_lifetime_seconds: i64,
}

/// Retention windows in seconds; 0 means the built-in default ([`trust::DEFAULT_RETENTION`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRetention {
    /// How long a status record is kept after its last change.
    #[serde(default)]
    pub status_max_age_seconds: i64,
    /// How long transparency-log entries are kept.
    #[serde(default)]
    pub audit_max_age_seconds: i64,
    /// How long a gateway may cache an attestation (never beyond its own expiry).
    #[serde(default)]
    pub cache_max_seconds: i64,
}

/// The order to end the federation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySunset {
    /// When the federation ends, Unix seconds.
    pub effective_at: i64,
    /// Why, as given by the coordinator; never empty.
    pub reason: String,
}

/// One purpose of the field policy (`[[purpose]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryPurpose {
    /// The purpose, dotted lowercase words, e.g. `transit.highway`.
    pub name: String,
    /// `AttestationPayload` field names that may be sent for it; must include the required ones.
    pub fields: Vec<String>,
}

/// A registered transport hub (`[[hub]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryHub {
    /// The `<id>` of the hub's identity `spiffe://<td>/hub/<id>`.
    pub id: String,
    /// Purposes the hub may declare in a lookup; each must be in the field policy.
    pub purposes: Vec<String>,
    /// Where the hub checks travellers (for lookup counts by province pair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    /// The hub's name as travellers read it in their disclosure log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn default_next_update() -> i64 {
    7 * 24 * 3600
}

/// An admitted province (`[[province]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryProvince {
    /// GB/T 2260 code, e.g. `340000`.
    pub code: String,
    /// Human-readable name, e.g. `Anhui`.
    pub name: String,
    /// The province node's endpoints (`https://host:port`), where gateways route lookups.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Its attestation keys, oldest first (`[[province.key]]`).
    #[serde(default, rename = "key")]
    pub keys: Vec<RegistryKey>,
}

/// A province attestation key as the registry records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryKey {
    /// Hex key id.
    pub kid: String,
    /// Hex raw Ed25519 public key.
    pub public_key: String,
    /// Start of the key's validity, Unix seconds.
    pub not_before: i64,
    /// End of the key's validity, Unix seconds: nothing it signed dated later is believed.
    pub not_after: i64,
    /// published, active, retired or revoked.
    pub status: String,
}

/// A rule under which an authority may assign a non-green status (`[[rule]]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRule {
    /// The id attestations cite in `rule_id`.
    pub id: String,
    /// Short human-readable title; required.
    pub title: String,
    /// The law or order the rule rests on (free text).
    #[serde(default)]
    pub legal_basis: String,
    /// Statuses the rule may assign: YELLOW, RED.
    #[serde(default)]
    pub may_assign: Vec<String>,
    /// Longest a status assigned under the rule may last, seconds; must be positive.
    #[serde(default)]
    pub max_duration_seconds: i64,
    /// What ends the status, in words (free text).
    #[serde(default)]
    pub exit_condition: String,
    /// Authorities allowed to apply the rule, `<province code>/<name>`; at least one.
    #[serde(default)]
    pub authorities: Vec<String>,
    /// What the status becomes when it lapses: GREEN, YELLOW (or none: no current status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lapses_to: Option<String>,
    /// Authorities allowed to lift a status held under the rule before it lapses,
    /// `<province code>/<name>`; empty: those allowed to apply it (`authorities`). Who may
    /// end a restriction early is as explicit as who may impose it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub may_lift: Vec<String>,
}

/// Paths of an issued leaf.
#[derive(Debug, Clone)]
pub struct IssuedPaths {
    /// The identity the certificate carries.
    pub identity: Identity,
    /// `cert.pem`: the leaf, followed by its province CA for province roles.
    pub cert: PathBuf,
    /// `key.pem`: the leaf's private key (mode 0600 on Unix).
    pub key: PathBuf,
    /// The leaf's serial, canonical hex: what `revoke_serial` takes.
    pub serial_hex: String,
    /// The DNS and IP names the certificate carries besides its identity (servers only).
    pub names: Vec<HostName>,
}

fn key_status(s: &str) -> Result<pb::KeyStatus, RegistryError> {
    Ok(match s {
        "published" => pb::KeyStatus::Published,
        "active" => pb::KeyStatus::Active,
        "retired" => pb::KeyStatus::Retired,
        "revoked" => pb::KeyStatus::Revoked,
        other => return Err(RegistryError::Rule(format!("unknown key status {other:?}"))),
    })
}

fn status_from_name(s: &str) -> Result<pb::HealthStatus, RegistryError> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "GREEN" => pb::HealthStatus::Green,
        "YELLOW" => pb::HealthStatus::Yellow,
        "RED" => pb::HealthStatus::Red,
        other => return Err(RegistryError::Rule(format!("unknown status {other:?}"))),
    })
}

fn hex_decode(s: &str) -> Result<Vec<u8>, RegistryError> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.as_bytes())
        .map_err(|_| RegistryError::Rule(format!("{s:?} is not hex")))
}

fn read(path: &Path) -> Result<String, RegistryError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    crate::fsio::write_atomic(path, bytes).map_err(io(path))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_add_issue_sign_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = PkiDir::init(tmp.path(), "huren.gov", Validity::days(30)).unwrap();
        assert!(matches!(
            PkiDir::init(tmp.path(), "huren.gov", Validity::days(30)),
            Err(RegistryError::AlreadyInitialised(_))
        ));
        let code: ProvinceCode = "340000".parse().unwrap();
        let key = pki.add_province(&code, "Anhui", &["https://127.0.0.1:7001".into()], Validity::days(30)).unwrap();
        let issued = pki.issue("node", "340000", Validity::days(30)).unwrap();
        assert_eq!(issued.identity.to_string(), "spiffe://huren.gov/province/340000/node");
        let hub = pki.issue("hub", "jinan-highway", Validity::days(30)).unwrap();
        // A hub is vouched for by the root directly; a node's chain carries its province CA.
        let chain_len = |path: &Path| {
            use rustls_pki_types::pem::PemObject as _;
            rustls_pki_types::CertificateDer::pem_slice_iter(&std::fs::read(path).unwrap()).count()
        };
        assert_eq!(chain_len(&hub.cert), 1);
        assert_eq!(chain_len(&issued.cert), 2);
        let l1 = pki.sign_trust_list().unwrap();
        let l2 = pki.sign_trust_list().unwrap();
        assert_eq!((l1.sequence(), l2.sequence()), (1, 2));
        // Signing keeps every list: the previous one is there to compare with.
        assert_eq!(pki.history().unwrap(), [1, 2]);
        assert_eq!(pki.previous_trust_list_path(2).unwrap(), Some(pki.history_path(1)));
        assert_eq!(pki.previous_trust_list_path(1).unwrap(), None);
        assert_eq!(std::fs::read(pki.history_path(2)).unwrap(), std::fs::read(pki.trust_list_path()).unwrap());
        let loaded = TrustList::load(&pki.trust_list_path(), &pki.root_cert_der().unwrap()).unwrap();
        assert_eq!(loaded.province(&code).unwrap().keys.len(), 1);
        assert!(loaded.province(&code).unwrap().keys.contains_key(&key.kid()));
    }

    #[test]
    fn a_rule_names_who_may_lift_it_or_its_authorities_do() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = PkiDir::init(tmp.path(), "huren.gov", Validity::days(30)).unwrap();
        let rule = |id: &str, may_lift: &[&str]| RegistryRule {
            id: id.into(),
            title: "Close contact".into(),
            may_assign: vec!["RED".into()],
            max_duration_seconds: 86_400,
            authorities: vec!["340000/hefei-cdc".into(), "340000/bengbu-cdc".into()],
            may_lift: may_lift.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        };
        let err = pki.put_rule(rule("BAD", &["hefei-cdc"])).unwrap_err().to_string();
        assert!(err.contains("rule \"BAD\"") && err.contains("must be written <province code>/<name>"), "{err}");
        let err = pki.put_rule(rule("BAD", &["34/hefei-cdc"])).unwrap_err().to_string();
        assert!(err.contains("rule \"BAD\""), "{err}");
        pki.put_rule(rule("NARROW", &[" 340000/hefei-cdc "])).unwrap();
        pki.put_rule(rule("DEFAULT", &[])).unwrap();
        let list = pki.sign_trust_list().unwrap();
        let narrow = list.rule("NARROW").unwrap();
        assert_eq!(narrow.may_lift, vec!["340000/hefei-cdc".to_owned()]);
        assert_eq!(TrustList::lifters(narrow), ["340000/hefei-cdc".to_owned()]);
        let default = list.rule("DEFAULT").unwrap();
        assert!(default.may_lift.is_empty());
        assert_eq!(TrustList::lifters(default), default.authorities.as_slice());
    }
}
