//! The coordinator's PKI directory and the registry the trust list is signed from.
//!
//! ```text
//! <dir>/root/ca.pem, ca.key                 national root (keep the key offline)
//! <dir>/registry.toml                       provinces, keys, rules, revocations, last sequence
//! <dir>/provinces/<code>/ca.pem, ca.key     province CA
//! <dir>/provinces/<code>/attestation-<kid>.key   province attestation key (PKCS#8)
//! <dir>/issued/<kind>-<name>/cert.pem, key.pem   leaf certificates (cert.pem holds the chain)
//! <dir>/trust-list.bin                      the last signed trust list
//! ```

use std::path::{Path, PathBuf};

use huren_proto::pb;
use serde::{Deserialize, Serialize};

use crate::attest::{AttestationKey, KeyError};
use crate::ca::{self, CaError, CaMaterial, Validity};
use crate::identity::{Identity, InvalidIdentity, ProvinceCode};
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
    /// A serial to revoke that is empty or not hex.
    #[error("invalid serial {0:?}: expected lowercase hex")]
    Serial(String),
    /// The field policy, a hub registration, retention windows or a sunset order is
    /// invalid, or the hub named is not registered.
    #[error("field policy: {0}")]
    Policy(String),
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
    /// Revoked certificate serials (lowercase hex).
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
    /// The order to end the federation, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<RegistrySunset>,
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
    /// The leaf's serial, lowercase hex: what `revoke_serial` takes.
    pub serial_hex: String,
}

/// A coordinator's PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir {
    dir: PathBuf,
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

impl PkiDir {
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// `root/ca.pem`: the national root certificate every party trusts.
    pub fn root_cert_path(&self) -> PathBuf {
        self.dir.join("root/ca.pem")
    }
    fn root_key_path(&self) -> PathBuf {
        self.dir.join("root/ca.key")
    }
    fn registry_path(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }
    /// `trust-list.bin`: the last signed trust list.
    pub fn trust_list_path(&self) -> PathBuf {
        self.dir.join("trust-list.bin")
    }
    /// `provinces/<code>`: a province's CA and attestation keys.
    pub fn province_dir(&self, code: &ProvinceCode) -> PathBuf {
        self.dir.join("provinces").join(code.as_str())
    }
    /// `provinces/<code>/attestation-<kid>.key`: one attestation key (PKCS#8 PEM).
    pub fn attestation_key_path(&self, code: &ProvinceCode, kid_hex: &str) -> PathBuf {
        self.province_dir(code).join(format!("attestation-{kid_hex}.key"))
    }

    /// Creates the directory with a fresh national root.
    pub fn init(dir: &Path, trust_domain: &str, validity: Validity) -> Result<Self, RegistryError> {
        let pki = Self { dir: dir.to_owned() };
        if pki.root_cert_path().exists() {
            return Err(RegistryError::AlreadyInitialised(dir.to_owned()));
        }
        if Identity::from_kind(trust_domain, "hub", "probe").is_err() || trust_domain.is_empty() {
            return Err(RegistryError::Identity(InvalidIdentity::TrustDomain));
        }
        let root = ca::new_root(trust_domain, validity)?;
        write_private(&pki.root_key_path(), root.key_pem.as_bytes())?;
        write(&pki.root_cert_path(), root.cert_pem.as_bytes())?;
        pki.save_registry(&Registry {
            trust_domain: trust_domain.to_owned(),
            sequence: 0,
            next_update_seconds: default_next_update(),
            provinces: vec![],
            rules: vec![],
            revoked_serials: vec![],
            retired_provinces: vec![],
            purposes: FieldPolicy::default()
                .to_pb()
                .purposes
                .into_iter()
                .map(|p| RegistryPurpose { name: p.purpose, fields: p.fields })
                .collect(),
            hubs: vec![],
            retention: None,
            sunset: None,
        })?;
        Ok(pki)
    }

    /// Opens an initialised directory (root certificate and `registry.toml` present).
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let pki = Self { dir: dir.to_owned() };
        if !pki.root_cert_path().exists() || !pki.registry_path().exists() {
            return Err(RegistryError::NotInitialised(dir.to_owned()));
        }
        Ok(pki)
    }

    /// Reads `registry.toml`.
    pub fn registry(&self) -> Result<Registry, RegistryError> {
        let path = self.registry_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        toml::from_str(&text).map_err(|e| RegistryError::Parse { path, message: e.to_string() })
    }

    /// Writes `registry.toml` atomically, without validating its content.
    pub fn save_registry(&self, registry: &Registry) -> Result<(), RegistryError> {
        let path = self.registry_path();
        let text = toml::to_string_pretty(registry)
            .map_err(|e| RegistryError::Parse { path: path.clone(), message: e.to_string() })?;
        crate::fsio::write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    /// The national root certificate and private key.
    pub fn root(&self) -> Result<CaMaterial, RegistryError> {
        Ok(CaMaterial { cert_pem: read(&self.root_cert_path())?, key_pem: read(&self.root_key_path())? })
    }

    /// The national root certificate, DER: what trust lists are verified against.
    pub fn root_cert_der(&self) -> Result<Vec<u8>, RegistryError> {
        Ok(ca::pem_to_der(&read(&self.root_cert_path())?)?)
    }

    /// A province's CA certificate and private key.
    pub fn province_ca(&self, code: &ProvinceCode) -> Result<CaMaterial, RegistryError> {
        let dir = self.province_dir(code);
        if !dir.join("ca.pem").exists() {
            return Err(RegistryError::UnknownProvince(code.clone()));
        }
        Ok(CaMaterial { cert_pem: read(&dir.join("ca.pem"))?, key_pem: read(&dir.join("ca.key"))? })
    }

    /// Admits a province: creates its CA and a first (active) attestation key.
    pub fn add_province(
        &self,
        code: &ProvinceCode,
        name: &str,
        endpoints: &[String],
        validity: Validity,
    ) -> Result<AttestationKey, RegistryError> {
        let mut registry = self.registry()?;
        if registry.provinces.iter().any(|p| p.code == code.as_str()) {
            return Err(RegistryError::ProvinceExists(code.clone()));
        }
        for e in endpoints {
            crate::endpoint::endpoint_authority(e).map_err(|e| RegistryError::Endpoint(e.to_string()))?;
        }
        let province_ca = ca::new_province_ca(&self.root()?, &registry.trust_domain, code, name, validity)?;
        let dir = self.province_dir(code);
        write_private(&dir.join("ca.key"), province_ca.key_pem.as_bytes())?;
        write(&dir.join("ca.pem"), province_ca.cert_pem.as_bytes())?;
        let key = AttestationKey::generate()?;
        write_private(&self.attestation_key_path(code, &key.kid().hex()), key.to_pkcs8_pem()?.as_bytes())?;
        registry.provinces.push(RegistryProvince {
            code: code.to_string(),
            name: name.to_owned(),
            endpoints: endpoints.to_vec(),
            keys: vec![RegistryKey {
                kid: key.kid().hex(),
                public_key: data_encoding::HEXLOWER.encode(&key.public_key()),
                not_before: validity.not_before.unix_timestamp(),
                not_after: validity.not_after.unix_timestamp(),
                status: "active".into(),
            }],
        });
        self.save_registry(&registry)?;
        Ok(key)
    }

    /// Replaces a province's node endpoints.
    pub fn set_endpoints(&self, code: &ProvinceCode, endpoints: &[String]) -> Result<(), RegistryError> {
        for e in endpoints {
            crate::endpoint::endpoint_authority(e).map_err(|e| RegistryError::Endpoint(e.to_string()))?;
        }
        let mut registry = self.registry()?;
        let p = registry
            .provinces
            .iter_mut()
            .find(|p| p.code == code.as_str())
            .ok_or_else(|| RegistryError::UnknownProvince(code.clone()))?;
        p.endpoints = endpoints.to_vec();
        self.save_registry(&registry)
    }

    /// Adds or replaces a rule in the rule registry. A rule must say everything a node
    /// checks: the non-green statuses it may assign, its maximum duration and the
    /// authorities (`<province code>/<name>`) allowed to apply it.
    pub fn put_rule(&self, mut rule: RegistryRule) -> Result<(), RegistryError> {
        let id = rule.id.clone();
        let bad = |m: String| Err(RegistryError::Rule(format!("rule {id:?}: {m}")));
        if rule.id.trim().is_empty() {
            return Err(RegistryError::Rule("rule id is empty".into()));
        }
        if rule.title.trim().is_empty() {
            return bad("needs a title".into());
        }
        if rule.may_assign.is_empty() {
            return bad("must say which statuses it may assign (YELLOW, RED)".into());
        }
        for s in &rule.may_assign {
            if status_from_name(s)? == pb::HealthStatus::Green {
                return bad("GREEN needs no rule; may_assign takes YELLOW or RED".into());
            }
        }
        if rule.max_duration_seconds <= 0 {
            return bad("needs a maximum duration in seconds (> 0)".into());
        }
        if rule.authorities.is_empty() {
            return bad("must name the authorities allowed to apply it (<province code>/<name>)".into());
        }
        for a in rule.authorities.iter_mut() {
            let parsed: crate::identity::AuthorityRef = a
                .trim()
                .parse()
                .map_err(|e: crate::identity::InvalidIdentity| RegistryError::Rule(format!("rule {id:?}: {e}")))?;
            *a = parsed.to_string();
        }
        let mut registry = self.registry()?;
        registry.rules.retain(|r| r.id != rule.id);
        registry.rules.push(rule);
        self.save_registry(&registry)
    }

    fn province_mut<'a>(
        registry: &'a mut Registry,
        code: &ProvinceCode,
    ) -> Result<&'a mut RegistryProvince, RegistryError> {
        registry
            .provinces
            .iter_mut()
            .find(|p| p.code == code.as_str())
            .ok_or_else(|| RegistryError::UnknownProvince(code.clone()))
    }

    /// Removes a province from the federation: it leaves the next trust list and its CA
    /// certificate is revoked, so its node and admin certificates stop working.
    pub fn retire_province(&self, code: &ProvinceCode) -> Result<(), RegistryError> {
        let mut registry = self.registry()?;
        Self::province_mut(&mut registry, code)?;
        let serial = ca::serial_hex(&ca::pem_to_der(&self.province_ca(code)?.cert_pem)?)?;
        registry.provinces.retain(|p| p.code != code.as_str());
        registry.retired_provinces.push(code.to_string());
        if !registry.revoked_serials.contains(&serial) {
            registry.revoked_serials.push(serial);
        }
        self.save_registry(&registry)
    }

    /// Prepares a key rotation: a new attestation key, published (verifies, does not sign yet).
    pub fn add_key(&self, code: &ProvinceCode, validity: Validity) -> Result<AttestationKey, RegistryError> {
        let mut registry = self.registry()?;
        let key = AttestationKey::generate()?;
        let province = Self::province_mut(&mut registry, code)?;
        write_private(&self.attestation_key_path(code, &key.kid().hex()), key.to_pkcs8_pem()?.as_bytes())?;
        province.keys.push(RegistryKey {
            kid: key.kid().hex(),
            public_key: data_encoding::HEXLOWER.encode(&key.public_key()),
            not_before: validity.not_before.unix_timestamp(),
            not_after: validity.not_after.unix_timestamp(),
            status: "published".into(),
        });
        self.save_registry(&registry)?;
        Ok(key)
    }

    /// Moves a key to `published`, `active`, `retired` or `revoked`. Activating a key
    /// retires the province's previously active keys (they keep verifying until their
    /// not_after, so attestations they signed stay valid). Revocation is final.
    pub fn set_key_status(&self, code: &ProvinceCode, kid: &str, status: &str) -> Result<(), RegistryError> {
        key_status(status)?;
        let kid = kid.to_ascii_lowercase();
        let mut registry = self.registry()?;
        let province = Self::province_mut(&mut registry, code)?;
        let index = province
            .keys
            .iter()
            .position(|k| k.kid == kid)
            .ok_or_else(|| RegistryError::UnknownKey { province: code.clone(), kid: kid.clone() })?;
        let current = province.keys[index].status.clone();
        if current == "revoked" && status != "revoked" {
            return Err(RegistryError::KeyState(format!(
                "key {kid} of province {code} is revoked; revocation is final"
            )));
        }
        if status == "active" {
            for (i, k) in province.keys.iter_mut().enumerate() {
                if i != index && k.status == "active" {
                    k.status = "retired".into();
                }
            }
        }
        province.keys[index].status = status.to_owned();
        self.save_registry(&registry)
    }

    /// The field policy the registry would sign.
    fn field_policy(registry: &Registry) -> Result<FieldPolicy, RegistryError> {
        let pb = huren_proto::pb::FieldPolicy {
            purposes: registry
                .purposes
                .iter()
                .map(|p| pb::PurposePolicy { purpose: p.name.clone(), fields: p.fields.clone() })
                .collect(),
        };
        FieldPolicy::from_pb(Some(&pb)).map_err(RegistryError::Policy)
    }

    /// Sets the fields allowed for a purpose (adding the purpose if new).
    pub fn set_purpose(&self, name: &str, fields: &[String]) -> Result<(), RegistryError> {
        let mut registry = self.registry()?;
        registry.purposes.retain(|p| p.name != name);
        registry.purposes.push(RegistryPurpose { name: name.to_owned(), fields: fields.to_vec() });
        Self::field_policy(&registry)?;
        self.save_registry(&registry)
    }

    /// Registers (or re-registers) a hub with the purposes it may declare.
    pub fn register_hub(&self, id: &str, purposes: &[String]) -> Result<(), RegistryError> {
        if !crate::identity::valid_name(id) {
            return Err(RegistryError::Identity(InvalidIdentity::Name(id.to_owned())));
        }
        let mut registry = self.registry()?;
        let policy = Self::field_policy(&registry)?;
        if let Some(p) = purposes.iter().find(|p| policy.allowed(p).is_none()) {
            return Err(RegistryError::Policy(format!("purpose {p:?} is not in the field policy")));
        }
        let province = registry.hubs.iter().find(|h| h.id == id).and_then(|h| h.province.clone());
        registry.hubs.retain(|h| h.id != id);
        registry.hubs.push(RegistryHub { id: id.to_owned(), purposes: purposes.to_vec(), province });
        self.save_registry(&registry)
    }

    /// Records (or, with `None`, forgets) the province a registered hub checks travellers in.
    pub fn set_hub_province(&self, id: &str, province: Option<&ProvinceCode>) -> Result<(), RegistryError> {
        let mut registry = self.registry()?;
        let hub = registry
            .hubs
            .iter_mut()
            .find(|h| h.id == id)
            .ok_or_else(|| RegistryError::Policy(format!("hub {id} is not registered; register it first")))?;
        hub.province = province.map(ToString::to_string);
        self.save_registry(&registry)
    }

    /// Sets the retention windows (0 = built-in default).
    pub fn set_retention(&self, retention: RegistryRetention) -> Result<(), RegistryError> {
        if retention.status_max_age_seconds < 0
            || retention.audit_max_age_seconds < 0
            || retention.cache_max_seconds < 0
        {
            return Err(RegistryError::Policy("retention windows cannot be negative".into()));
        }
        let mut registry = self.registry()?;
        registry.retention = Some(retention);
        self.save_registry(&registry)
    }

    /// Orders the federation to end at `effective_at`: gateways stop routing, nodes purge
    /// everything and hand in signed deletion receipts.
    pub fn set_sunset(&self, effective_at: i64, reason: &str) -> Result<(), RegistryError> {
        if reason.trim().is_empty() {
            return Err(RegistryError::Policy("a sunset order needs a reason".into()));
        }
        let mut registry = self.registry()?;
        registry.sunset = Some(RegistrySunset { effective_at, reason: reason.to_owned() });
        self.save_registry(&registry)
    }

    /// Revokes a certificate by serial (lowercase hex).
    pub fn revoke_serial(&self, serial: &str) -> Result<(), RegistryError> {
        let serial = serial.trim().to_ascii_lowercase();
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RegistryError::Serial(serial));
        }
        let mut registry = self.registry()?;
        if !registry.revoked_serials.contains(&serial) {
            registry.revoked_serials.push(serial);
        }
        self.save_registry(&registry)
    }

    /// Where the leaf last issued for `kind`/`arg` is kept: `issued/<kind>-<arg>`, with an
    /// authority's `/` written `-` (`issued/authority-340000-hefei-cdc`).
    pub fn issued_dir(&self, kind: &str, arg: &str) -> PathBuf {
        self.dir.join("issued").join(format!("{kind}-{}", arg.replace('/', "-")))
    }

    /// Revokes the certificate last issued for `kind`/`name`; returns its serial.
    pub fn revoke_issued(&self, kind: &str, name: &str) -> Result<String, RegistryError> {
        let path = self.issued_dir(kind, name).join("cert.pem");
        let serial = ca::serial_hex(&ca::pem_to_der(&read(&path)?)?)?;
        self.revoke_serial(&serial)?;
        Ok(serial)
    }

    /// The attestation key a province node signs with (the newest active one).
    pub fn active_attestation_key(&self, code: &ProvinceCode) -> Result<PathBuf, RegistryError> {
        let registry = self.registry()?;
        let p = registry
            .provinces
            .iter()
            .find(|p| p.code == code.as_str())
            .ok_or_else(|| RegistryError::UnknownProvince(code.clone()))?;
        let k = p
            .keys
            .iter()
            .rev()
            .find(|k| k.status == "active")
            .ok_or_else(|| RegistryError::Rule(format!("province {code} has no active attestation key")))?;
        Ok(self.attestation_key_path(code, &k.kid))
    }

    /// Issues a leaf for `kind`/`arg` (province code for node/admin, a name otherwise),
    /// signed by the province CA for province roles and by the root otherwise.
    pub fn issue(&self, kind: &str, arg: &str, validity: Validity) -> Result<IssuedPaths, RegistryError> {
        let registry = self.registry()?;
        let identity = Identity::from_kind(&registry.trust_domain, kind, arg)?;
        let (issuer, chain_tail) = match identity.role.province() {
            Some(code) => {
                let ca = self.province_ca(code)?;
                let tail = ca.cert_pem.clone();
                (ca, Some(tail))
            }
            None => (self.root()?, None),
        };
        let leaf = ca::issue_leaf(&issuer, &identity, validity)?;
        let dir = self.issued_dir(kind, arg);
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let mut chain = leaf.cert_pem.clone();
        if let Some(tail) = chain_tail {
            chain.push_str(&tail);
        }
        write_private(&key, leaf.key_pem.as_bytes())?;
        write(&cert, chain.as_bytes())?;
        Ok(IssuedPaths { identity, cert, key, serial_hex: leaf.serial_hex })
    }

    /// Builds the next trust list from the registry, signs it with the root key and
    /// writes it to `trust-list.bin`.
    pub fn sign_trust_list(&self) -> Result<TrustList, RegistryError> {
        let mut registry = self.registry()?;
        let root = self.root()?;
        let now = unix_now();
        let next = registry.sequence + 1;
        let mut provinces = Vec::new();
        for p in &registry.provinces {
            let code: ProvinceCode = p.code.parse().map_err(InvalidIdentity::from)?;
            let ca_cert = ca::pem_to_der(&self.province_ca(&code)?.cert_pem)?;
            let mut keys = Vec::new();
            for k in &p.keys {
                keys.push(pb::AttestationKey {
                    kid: hex_decode(&k.kid)?,
                    public_key: hex_decode(&k.public_key)?,
                    not_before: k.not_before,
                    not_after: k.not_after,
                    status: key_status(&k.status)? as i32,
                });
            }
            provinces.push(pb::Province {
                code: p.code.clone(),
                name: p.name.clone(),
                endpoints: p.endpoints.clone(),
                ca_cert,
                attestation_keys: keys,
            });
        }
        let mut rules = Vec::new();
        for r in &registry.rules {
            rules.push(pb::Rule {
                id: r.id.clone(),
                title: r.title.clone(),
                legal_basis: r.legal_basis.clone(),
                may_assign: r
                    .may_assign
                    .iter()
                    .map(|s| status_from_name(s).map(|s| s as i32))
                    .collect::<Result<_, _>>()?,
                max_duration_seconds: r.max_duration_seconds,
                exit_condition: r.exit_condition.clone(),
                authorities: r.authorities.clone(),
                lapses_to: match r.lapses_to.as_deref() {
                    None | Some("") => 0,
                    Some(s) => status_from_name(s)? as i32,
                },
            });
        }
        let list = pb::TrustList {
            version: TRUST_LIST_VERSION,
            sequence: next,
            issued_at: now,
            next_update: now + registry.next_update_seconds,
            trust_domain: registry.trust_domain.clone(),
            provinces,
            rules,
            revoked_serials: registry.revoked_serials.clone(),
            sunset: registry
                .sunset
                .as_ref()
                .map(|s| pb::SunsetOrder { effective_at: s.effective_at, reason: s.reason.clone() }),
            retention: registry.retention.as_ref().map(|r| pb::RetentionPolicy {
                status_max_age_seconds: r.status_max_age_seconds,
                audit_max_age_seconds: r.audit_max_age_seconds,
                cache_max_seconds: r.cache_max_seconds,
            }),
            field_policy: Some(Self::field_policy(&registry)?.to_pb()),
            hubs: registry
                .hubs
                .iter()
                .map(|h| pb::HubRegistration {
                    id: h.id.clone(),
                    purposes: h.purposes.clone(),
                    province: h.province.clone().unwrap_or_default(),
                })
                .collect(),
        };
        let signed = trust::sign(&list, &root)?;
        let verified = TrustList::verify(signed, &ca::pem_to_der(&root.cert_pem)?)?;
        verified.save(&self.trust_list_path())?;
        registry.sequence = next;
        self.save_registry(&registry)?;
        Ok(verified)
    }
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
        let loaded = TrustList::load(&pki.trust_list_path(), &pki.root_cert_der().unwrap()).unwrap();
        assert_eq!(loaded.province(&code).unwrap().keys.len(), 1);
        assert!(loaded.province(&code).unwrap().keys.contains_key(&key.kid()));
    }
}
