//! The coordinator's changes to the registry: provinces, attestation keys, rules, purposes,
//! hubs, retention, the sunset and revocations. Each loads `registry.toml`, changes it and
//! saves it; nothing is published until the trust list is signed.

use super::*;

impl PkiDir {
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
    /// authorities (`<province code>/<name>`) allowed to apply it. The authorities that may
    /// lift its status early (`may_lift`) are optional, written the same way.
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
        for a in rule.authorities.iter_mut().chain(rule.may_lift.iter_mut()) {
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

    pub(super) fn province_mut<'a>(
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
        Self::add_revoked(&mut registry, serial);
        self.save_registry(&registry)
    }

    /// Adds a canonical serial to the revoked ones unless it is there in any form.
    fn add_revoked(registry: &mut Registry, serial: String) {
        if !registry.revoked_serials.iter().any(|s| crate::serial::canonical(s) == serial) {
            registry.revoked_serials.push(serial);
        }
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
    pub(super) fn field_policy(registry: &Registry) -> Result<FieldPolicy, RegistryError> {
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
        let held = registry.hubs.iter().find(|h| h.id == id);
        let province = held.and_then(|h| h.province.clone());
        let name = held.and_then(|h| h.name.clone());
        registry.hubs.retain(|h| h.id != id);
        registry.hubs.push(RegistryHub { id: id.to_owned(), purposes: purposes.to_vec(), province, name });
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

    /// Records (or, with `None`, forgets) the name travellers read for a registered hub
    /// in their disclosure log ("Jinan West railway station").
    pub fn set_hub_name(&self, id: &str, name: Option<&str>) -> Result<(), RegistryError> {
        if name.is_some_and(|n| n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control)) {
            return Err(RegistryError::Policy("a hub name is 1-200 printable characters".into()));
        }
        let mut registry = self.registry()?;
        let hub = registry
            .hubs
            .iter_mut()
            .find(|h| h.id == id)
            .ok_or_else(|| RegistryError::Policy(format!("hub {id} is not registered; register it first")))?;
        hub.name = name.map(ToOwned::to_owned);
        self.save_registry(&registry)
    }

    /// Sets how long nodes keep disclosure-log records (0 = built-in default).
    pub fn set_disclosure_retention(&self, max_age_seconds: i64) -> Result<(), RegistryError> {
        if max_age_seconds < 0 {
            return Err(RegistryError::Policy("the disclosure retention window cannot be negative".into()));
        }
        let mut registry = self.registry()?;
        registry.disclosure_max_age_seconds = Some(max_age_seconds);
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

    /// Sets the longest attestation lifetime every verifier accepts (0 = built-in default).
    pub fn set_attestation_bounds(&self, bounds: RegistryAttestationBounds) -> Result<(), RegistryError> {
        if bounds.max_lifetime_seconds < 0 {
            return Err(RegistryError::Policy("the attestation lifetime bound cannot be negative".into()));
        }
        let mut registry = self.registry()?;
        registry.attestation_bounds = Some(bounds);
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

    /// Revokes a certificate by serial, written any way openssl or a browser prints it
    /// ([`crate::serial::parse`]); stores and returns its canonical form.
    pub fn revoke_serial(&self, serial: &str) -> Result<String, RegistryError> {
        let serial = crate::serial::parse(serial)?;
        let mut registry = self.registry()?;
        Self::add_revoked(&mut registry, serial.clone());
        self.save_registry(&registry)?;
        Ok(serial)
    }
}
