//! [`PkiDir`]: the coordinator's directory: paths, creating and opening it, issuing leaves,
//! signing the trust list from the registry.

use super::*;

/// A coordinator's PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir {
    dir: PathBuf,
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
    pub(super) fn root_key_path(&self) -> PathBuf {
        self.dir.join("root/ca.key")
    }
    pub(super) fn registry_path(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }
    /// `trust-list.bin`: the last signed trust list.
    pub fn trust_list_path(&self) -> PathBuf {
        self.dir.join("trust-list.bin")
    }
    /// `history/`: every trust list signed here, kept as `trust-list-<sequence>.bin`.
    pub fn history_dir(&self) -> PathBuf {
        self.dir.join("history")
    }
    /// `history/trust-list-<sequence>.bin`: the trust list signed with `sequence`.
    pub fn history_path(&self, sequence: u64) -> PathBuf {
        self.history_dir().join(format!("trust-list-{sequence}.bin"))
    }
    /// The sequences kept in `history/`, ascending.
    pub fn history(&self) -> Result<Vec<u64>, RegistryError> {
        let dir = self.history_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::Io { path: dir, source: e }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.map_err(io(&dir))?.file_name();
            let seq = name
                .to_str()
                .and_then(|n| n.strip_prefix("trust-list-"))
                .and_then(|n| n.strip_suffix(".bin"))
                .and_then(|n| n.parse::<u64>().ok());
            out.extend(seq);
        }
        out.sort_unstable();
        Ok(out)
    }
    /// The newest list kept in `history/` signed before `sequence`, if any.
    pub fn previous_trust_list_path(&self, sequence: u64) -> Result<Option<PathBuf>, RegistryError> {
        Ok(self.history()?.into_iter().rev().find(|s| *s < sequence).map(|s| self.history_path(s)))
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
            attestation_bounds: None,
            disclosure_max_age_seconds: None,
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
}

impl PkiDir {
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
    /// signed by the province CA for province roles and by the root otherwise. A node's
    /// certificate names the hosts of its province's registered endpoints
    /// ([`PkiDir::issue_named`]).
    pub fn issue(&self, kind: &str, arg: &str, validity: Validity) -> Result<IssuedPaths, RegistryError> {
        self.issue_named(kind, arg, None, validity)
    }

    /// As [`PkiDir::issue`], with the DNS and IP names a server certificate (node, gateway)
    /// carries besides its identity, for stock TLS clients' hostname checks. `None`: the
    /// default — for a node, the hosts of its province's registered endpoints; for every
    /// other role, none. Names for a role that serves nothing are refused.
    pub fn issue_named(
        &self,
        kind: &str,
        arg: &str,
        names: Option<&[HostName]>,
        validity: Validity,
    ) -> Result<IssuedPaths, RegistryError> {
        let registry = self.registry()?;
        let identity = Identity::from_kind(&registry.trust_domain, kind, arg)?;
        let serves = matches!(identity.role, Role::Node(_) | Role::Gateway(_));
        let names: Vec<HostName> = match (names, &identity.role) {
            (Some(names), _) if !serves && !names.is_empty() => {
                return Err(RegistryError::HostNames(format!(
                    "only server certificates (node, gateway) carry DNS or IP names, not {kind}"
                )))
            }
            (Some(names), _) => names.to_vec(),
            (None, Role::Node(code)) => {
                let province = registry
                    .provinces
                    .iter()
                    .find(|p| p.code == code.as_str())
                    .ok_or_else(|| RegistryError::UnknownProvince(code.clone()))?;
                let mut names = Vec::new();
                for endpoint in &province.endpoints {
                    let name = HostName::of_endpoint(endpoint).map_err(|_| {
                        RegistryError::HostNames(format!(
                            "the host of endpoint {endpoint:?} is no DNS name or IP address a certificate can \
                             carry; give --dns or --ip"
                        ))
                    })?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                names
            }
            (None, _) => Vec::new(),
        };
        let (issuer, chain_tail) = match identity.role.province() {
            Some(code) => {
                let ca = self.province_ca(code)?;
                let tail = ca.cert_pem.clone();
                (ca, Some(tail))
            }
            None => (self.root()?, None),
        };
        let leaf = ca::issue_server_leaf(&issuer, &identity, &names, validity)?;
        let dir = self.issued_dir(kind, arg);
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let mut chain = leaf.cert_pem.clone();
        if let Some(tail) = chain_tail {
            chain.push_str(&tail);
        }
        write_private(&key, leaf.key_pem.as_bytes())?;
        write(&cert, chain.as_bytes())?;
        Ok(IssuedPaths { identity, cert, key, serial_hex: leaf.serial_hex, names })
    }

    /// Builds the next trust list from the registry, signs it with the root key and
    /// writes it to `trust-list.bin`, and a copy to `history/trust-list-<sequence>.bin`
    /// (so `trust-list diff` always has the previous list to compare with).
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
                may_lift: r.may_lift.clone(),
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
            revoked_serials: registry.revoked_serials.iter().map(|s| crate::serial::canonical(s)).collect(),
            sunset: registry
                .sunset
                .as_ref()
                .map(|s| pb::SunsetOrder { effective_at: s.effective_at, reason: s.reason.clone() }),
            retention: match (&registry.retention, registry.disclosure_max_age_seconds) {
                (None, None) => None,
                (r, disclosure) => {
                    let r = r.clone().unwrap_or_default();
                    Some(pb::RetentionPolicy {
                        status_max_age_seconds: r.status_max_age_seconds,
                        audit_max_age_seconds: r.audit_max_age_seconds,
                        cache_max_seconds: r.cache_max_seconds,
                        disclosure_max_age_seconds: disclosure.unwrap_or(0),
                    })
                }
            },
            attestation_bounds: registry
                .attestation_bounds
                .as_ref()
                .map(|b| pb::AttestationBounds { max_lifetime_seconds: b.max_lifetime_seconds }),
            field_policy: Some(Self::field_policy(&registry)?.to_pb()),
            hubs: registry
                .hubs
                .iter()
                .map(|h| pb::HubRegistration {
                    id: h.id.clone(),
                    purposes: h.purposes.clone(),
                    province: h.province.clone().unwrap_or_default(),
                    name: h.name.clone().unwrap_or_default(),
                })
                .collect(),
        };
        let signed = trust::sign(&list, &root)?;
        let verified = TrustList::verify(signed, &ca::pem_to_der(&root.cert_pem)?)?;
        // History first: a list in `trust-list.bin` is always also in the history.
        verified.save(&self.history_path(next))?;
        verified.save(&self.trust_list_path())?;
        registry.sequence = next;
        self.save_registry(&registry)?;
        Ok(verified)
    }
}
