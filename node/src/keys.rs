//! The node's attestation keys and the choice of which one signs.
//!
//! A node may hold several keys (a rotation in progress). It signs with the newest key
//! that the trust list in force lists as ACTIVE for its province and that is valid now;
//! so a coordinator rotates keys by publishing a new key, activating it and retiring the
//! old one, and the node follows the trust list without a restart. Keys are read from
//! one PKCS#8 file or from a folder of `attestation-*.key` files, which is rescanned when
//! the trust list activates a key the node does not hold yet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use huren_pki::attest::{AttestationKey, Kid};
use huren_pki::{ProvinceCode, TrustList};
use huren_proto::pb;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("attestation key {path}: {message}")]
    Read { path: String, message: String },
    #[error("no attestation key found in {0} (expected attestation-*.key files)")]
    Empty(String),
}

/// The keys a node holds.
pub struct KeyRing {
    source: Option<PathBuf>,
    keys: RwLock<Vec<Arc<AttestationKey>>>,
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
        Self { source: None, keys: RwLock::new(keys.into_iter().map(Arc::new).collect()) }
    }

    /// Reads a key file, or every `attestation-*.key` in a folder.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Ok(Self { source: Some(path.to_owned()), keys: RwLock::new(scan(path)?) })
    }

    /// Rereads the source folder (no-op for fixed rings).
    pub fn reload(&self) -> Result<(), KeyError> {
        if let Some(path) = &self.source {
            let keys = scan(path)?;
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
        Ok(())
    }

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

    /// The key to sign with now, if any.
    pub fn signing_key(&self, trust: &TrustList, province: &ProvinceCode, now: i64) -> Option<Arc<AttestationKey>> {
        let entry = trust.province(province)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| {
                let listed = entry.keys.get(&k.kid())?;
                (listed.status == pb::KeyStatus::Active && listed.not_before <= now && now < listed.not_after)
                    .then_some((listed.not_before, k))
            })
            .max_by_key(|(not_before, _)| *not_before)
            .map(|(_, k)| k.clone())
    }
}
