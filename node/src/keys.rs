//! The node's attestation keys and the choice of which one signs.
//!
//! A node may hold several keys (a rotation in progress). It signs with the newest key
//! that the trust list in force lists as ACTIVE for its province and that is valid now;
//! so a coordinator rotates keys by publishing a new key, activating it and retiring the
//! old one, and the node follows the trust list without a restart. Until the node holds
//! the newly activated key (its file is copied by province IT, maybe after the list
//! arrives), it keeps signing with the newest RETIRED key it holds that is still valid:
//! a retired key verifies everywhere until its `not_after`, so no lookup fails during the
//! hand-over. It never signs with a PUBLISHED (not yet activated) or REVOKED key. Keys
//! are read from one PKCS#8 file or from a folder of `attestation-*.key` files, which is
//! rescanned when the trust list activates a key the node does not hold yet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use huren_pki::attest::{AttestationKey, Kid};
use huren_pki::{ProvinceCode, TrustList};
use huren_proto::pb;

/// Why attestation keys could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be read or is no PKCS#8 Ed25519 key.
    #[error("attestation key {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A key folder holds no `attestation-*.key` file.
    #[error("no attestation key found in {0} (expected attestation-*.key files)")]
    Empty(String),
}

/// The keys a node holds.
pub struct KeyRing {
    source: Option<PathBuf>,
    keys: RwLock<Vec<Arc<AttestationKey>>>,
    /// The key ids held, published on every change (for health, logs and tests).
    held: tokio::sync::watch::Sender<Vec<Kid>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("kids", &self.kids()).finish_non_exhaustive()
    }
}

fn read_key(path: &Path) -> Result<AttestationKey, KeyError> {
    let err = |m: String| KeyError::Read { path: path.display().to_string(), message: m };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    AttestationKey::from_pkcs8_pem(&pem).map_err(|e| err(e.to_string()))
}

fn scan(path: &Path) -> Result<Vec<Arc<AttestationKey>>, KeyError> {
    if !path.is_dir() {
        return Ok(vec![Arc::new(read_key(path)?)]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| KeyError::Read { path: path.display().to_string(), message: e.to_string() })?;
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("attestation-") && name.ends_with(".key") {
            keys.push(Arc::new(read_key(&p)?));
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Empty(path.display().to_string()));
    }
    Ok(keys)
}

impl KeyRing {
    /// A ring of fixed keys (tests, embedding).
    pub fn new(keys: Vec<AttestationKey>) -> Self {
        Self::holding(None, keys.into_iter().map(Arc::new).collect())
    }

    /// Reads a key file, or every `attestation-*.key` in a folder.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Ok(Self::holding(Some(path.to_owned()), scan(path)?))
    }

    fn holding(source: Option<PathBuf>, keys: Vec<Arc<AttestationKey>>) -> Self {
        let (held, _) = tokio::sync::watch::channel(keys.iter().map(|k| k.kid()).collect());
        Self { source, keys: RwLock::new(keys), held }
    }

    /// Rereads the source folder (no-op for fixed rings). Returns whether the set of
    /// keys held changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.source else { return Ok(false) };
        let keys = scan(path)?;
        let mut kids: Vec<Kid> = keys.iter().map(|k| k.kid()).collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        kids.sort();
        Ok(self.held.send_if_modified(|held| {
            held.sort();
            let changed = *held != kids;
            *held = kids;
            changed
        }))
    }

    /// The key ids held, now and on every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Vec<Kid>> {
        self.held.subscribe()
    }

    /// The key ids held now.
    pub fn kids(&self) -> Vec<Kid> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).iter().map(|k| k.kid()).collect()
    }

    /// Whether the trust list activates a key of `province` that this ring lacks.
    pub fn lacks_active(&self, trust: &TrustList, province: &ProvinceCode) -> bool {
        let held = self.kids();
        trust
            .province(province)
            .is_some_and(|p| p.keys.iter().any(|(kid, k)| k.status == pb::KeyStatus::Active && !held.contains(kid)))
    }

    /// The key to sign with now, if any: the newest held ACTIVE key valid now, else (an
    /// activation whose key file has not reached this node yet) the newest held RETIRED
    /// key valid now.
    pub fn signing_key(&self, trust: &TrustList, province: &ProvinceCode, now: i64) -> Option<Arc<AttestationKey>> {
        let entry = trust.province(province)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| {
                let listed = entry.keys.get(&k.kid())?;
                let rank = match listed.status {
                    pb::KeyStatus::Active => 1,
                    pb::KeyStatus::Retired => 0,
                    _ => return None,
                };
                (listed.not_before <= now && now < listed.not_after).then_some(((rank, listed.not_before), k))
            })
            .max_by_key(|(order, _)| *order)
            .map(|(_, k)| k.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_pki::ca::Validity;
    use huren_pki::registry::PkiDir as Pki;

    fn key_of(pki: &Pki, code: &ProvinceCode, kid: &Kid) -> AttestationKey {
        let pem = std::fs::read_to_string(pki.attestation_key_path(code, &kid.hex())).unwrap();
        AttestationKey::from_pkcs8_pem(&pem).unwrap()
    }

    #[test]
    fn signs_with_the_active_key_and_bridges_an_activation_with_the_retired_one() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "huren.gov", Validity::days(2)).unwrap();
        let code: ProvinceCode = "340000".parse().unwrap();
        pki.add_province(&code, "Anhui", &[], Validity::days(2)).unwrap();
        let trust = pki.sign_trust_list().unwrap();
        let old_kid = *trust.province(&code).unwrap().keys.keys().next().unwrap();
        let now = huren_pki::unix_now();
        let old = key_of(&pki, &code, &old_kid);

        // Prepare: a published key is never used to sign, even when held.
        let new = pki.add_key(&code, Validity::days(2)).unwrap();
        let published = pki.sign_trust_list().unwrap();
        let ring = KeyRing::new(vec![key_of(&pki, &code, &old_kid), key_of(&pki, &code, &new.kid())]);
        assert_eq!(ring.signing_key(&published, &code, now).unwrap().kid(), old_kid);

        // Activate: a node holding the new key signs with it ...
        pki.set_key_status(&code, &new.kid().hex(), "active").unwrap();
        let activated = pki.sign_trust_list().unwrap();
        assert_eq!(ring.signing_key(&activated, &code, now).unwrap().kid(), new.kid());
        // ... and one whose key file has not arrived keeps signing with the retired key.
        let lagging = KeyRing::new(vec![old]);
        assert!(lagging.lacks_active(&activated, &code));
        assert_eq!(lagging.signing_key(&activated, &code, now).unwrap().kid(), old_kid);

        // A revoked key never signs.
        pki.set_key_status(&code, &old_kid.hex(), "revoked").unwrap();
        let revoked = pki.sign_trust_list().unwrap();
        assert!(lagging.signing_key(&revoked, &code, now).is_none());
        assert_eq!(ring.signing_key(&revoked, &code, now).unwrap().kid(), new.kid());
    }
}
