//! Attestation keys and the minimal status attestation.
//!
//! A signature is Ed25519 over [`ATTESTATION_CONTEXT`] followed by the exact encoded
//! [`pb::AttestationPayload`] bytes; the payload is never re-encoded before verifying.
//! Verification against the trust list lives in [`crate::verify`].

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use huren_proto::pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::identity::ProvinceCode;

/// Domain-separation prefix of every attestation signature.
pub const ATTESTATION_CONTEXT: &[u8] = b"huren/attestation/v1\0";
/// Payload format version written by this implementation.
pub const PAYLOAD_VERSION: u32 = 1;

/// Key id: the first 8 bytes of SHA-256 over the raw 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid(pub [u8; 8]);

impl Kid {
    /// The key id of a raw 32-byte Ed25519 public key.
    pub fn of(public_key: &[u8]) -> Self {
        let digest = Sha256::digest(public_key);
        let mut kid = [0u8; 8];
        kid.copy_from_slice(&digest[..8]);
        Self(kid)
    }

    /// Reads a key id off the wire; `None` unless it is exactly 8 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 8]>::try_from(bytes).ok().map(Self)
    }

    /// Lowercase hex, as the registry, key file names and logs write it.
    pub fn hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({})", self.hex())
    }
}

/// Why an attestation key could not be generated, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's random source failed while generating a key.
    #[error("randomness unavailable: {0}")]
    Random(String),
    /// The PEM is not a PKCS#8 Ed25519 private key, or the key could not be encoded as one.
    #[error("attestation key is not a PKCS#8 Ed25519 PEM: {0}")]
    Pem(String),
}

/// A province's Ed25519 attestation signing key.
pub struct AttestationKey {
    signing: SigningKey,
    kid: Kid,
}

impl fmt::Debug for AttestationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl AttestationKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_signing_key(SigningKey::from_bytes(&seed)))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let kid = Kid::of(signing.verifying_key().as_bytes());
        Self { signing, kid }
    }

    /// Reads a key from PKCS#8 PEM (the registry's `attestation-<kid>.key` files).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(Self::from_signing_key(signing))
    }

    /// The private key as PKCS#8 PEM, for writing a key file (keep it owner-readable only).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        self.signing.to_pkcs8_pem(Default::default()).map(|p| p.to_string()).map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// This key's id, carried in every signature it makes.
    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// The raw 32-byte Ed25519 public key, as the trust list publishes it.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Encodes and signs a payload.
    pub fn sign(&self, payload: &pb::AttestationPayload) -> pb::SignedAttestation {
        self.sign_bytes(payload.encode_to_vec())
    }

    /// Signs already-encoded payload bytes (used as-is on the wire).
    pub fn sign_bytes(&self, payload: Vec<u8>) -> pb::SignedAttestation {
        let signature = self.signing.sign(&signing_input(&payload));
        pb::SignedAttestation { payload, signature: signature.to_bytes().to_vec(), kid: self.kid.0.to_vec() }
    }
}

/// Domain-separation prefix of a transparency-log tree head signature.
pub const TREE_HEAD_CONTEXT: &[u8] = b"huren/tree-head/v1\0";

impl AttestationKey {
    /// Signs a transparency-log tree head.
    pub fn sign_tree_head(&self, head: &pb::TreeHead) -> pb::SignedTreeHead {
        let bytes = head.encode_to_vec();
        let mut input = TREE_HEAD_CONTEXT.to_vec();
        input.extend_from_slice(&bytes);
        pb::SignedTreeHead {
            tree_head: bytes,
            signature: self.signing.sign(&input).to_bytes().to_vec(),
            kid: self.kid.0.to_vec(),
        }
    }
}

/// Domain-separation prefix of a deletion receipt signature.
pub const RECEIPT_CONTEXT: &[u8] = b"huren/deletion-receipt/v1\0";

impl AttestationKey {
    /// Signs a deletion receipt.
    pub fn sign_receipt(&self, receipt: &pb::DeletionReceipt) -> pb::SignedDeletionReceipt {
        let bytes = receipt.encode_to_vec();
        let mut input = RECEIPT_CONTEXT.to_vec();
        input.extend_from_slice(&bytes);
        pb::SignedDeletionReceipt {
            receipt: bytes,
            signature: self.signing.sign(&input).to_bytes().to_vec(),
            kid: self.kid.0.to_vec(),
        }
    }
}

/// The bytes an attestation signature covers.
pub fn signing_input(payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(ATTESTATION_CONTEXT.len() + payload.len());
    input.extend_from_slice(ATTESTATION_CONTEXT);
    input.extend_from_slice(payload);
    input
}

/// SHA-256 of an opaque token: what binds an attestation to the token it answers for.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Health status colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No restriction; cites no rule.
    Green,
    /// A restricted status; must cite a registered rule.
    Yellow,
    /// The most restricted status; must cite a registered rule.
    Red,
}

impl Status {
    /// Upper-case name (`GREEN`, `YELLOW`, `RED`), as the registry and logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "GREEN",
            Status::Yellow => "YELLOW",
            Status::Red => "RED",
        }
    }

    /// The wire value.
    pub fn to_pb(self) -> pb::HealthStatus {
        match self {
            Status::Green => pb::HealthStatus::Green,
            Status::Yellow => pb::HealthStatus::Yellow,
            Status::Red => pb::HealthStatus::Red,
        }
    }

    /// Decodes a wire value; `UNSPECIFIED` and unknown values are `None`.
    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::HealthStatus::try_from(value).ok()? {
            pb::HealthStatus::Green => Some(Status::Green),
            pb::HealthStatus::Yellow => Some(Status::Yellow),
            pb::HealthStatus::Red => Some(Status::Red),
            pb::HealthStatus::Unspecified => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded, structurally valid attestation payload (signature not implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The issuing (home) province; its keys are the only ones that may sign this.
    pub province: ProvinceCode,
    /// The health status attested.
    pub status: Status,
    /// When the node signed it, Unix seconds.
    pub issued_at: i64,
    /// When it stops being believed, Unix seconds; always after `issued_at`.
    pub expires_at: i64,
    /// SHA-256 of the opaque token it answers for (see [`token_digest`]).
    pub token_digest: [u8; 32],
    /// Rule that assigned a non-green status; `None` for green.
    pub rule_id: Option<String>,
    /// Coarse test-recency bucket: the only test information that may cross a border.
    pub test_recency: pb::TestRecency,
    /// Why the hub asked (dotted lowercase words, e.g. `transit.highway`); selects the field policy.
    pub purpose: String,
}

/// Why a decoded payload is not a structurally valid [`Attestation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAttestation {
    /// The payload version is not [`PAYLOAD_VERSION`].
    #[error("unsupported attestation payload version {0}")]
    Version(u32),
    /// The province field is not a valid province code.
    #[error("attestation names an invalid province: {0}")]
    Province(#[from] crate::identity::InvalidProvinceCode),
    /// The status is `UNSPECIFIED` or a value this version does not know.
    #[error("attestation status is unspecified or unknown")]
    Status,
    /// `expires_at` is not after `issued_at`.
    #[error("attestation expires_at is not after issued_at")]
    Window,
    /// The token digest is not 32 bytes.
    #[error("attestation token digest must be 32 bytes")]
    TokenDigest,
    /// A yellow or red status with an empty `rule_id`.
    #[error("non-green attestation cites no rule")]
    MissingRule,
    /// A green status with a `rule_id`.
    #[error("green attestation must not cite a rule")]
    UnexpectedRule,
    /// The test-recency value is not one this version knows.
    #[error("attestation test recency is unknown")]
    TestRecency,
    /// The purpose fails [`valid_purpose`].
    #[error("attestation purpose is empty or malformed")]
    Purpose,
}

/// Checks a purpose string: dotted lowercase words, e.g. `transit.highway`.
pub fn valid_purpose(purpose: &str) -> bool {
    (1..=64).contains(&purpose.len())
        && purpose.split('.').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

impl TryFrom<pb::AttestationPayload> for Attestation {
    type Error = InvalidAttestation;

    fn try_from(p: pb::AttestationPayload) -> Result<Self, Self::Error> {
        if p.version != PAYLOAD_VERSION {
            return Err(InvalidAttestation::Version(p.version));
        }
        let province = p.province.parse()?;
        let status = Status::from_pb(p.status).ok_or(InvalidAttestation::Status)?;
        if p.expires_at <= p.issued_at {
            return Err(InvalidAttestation::Window);
        }
        let token_digest =
            <[u8; 32]>::try_from(p.token_digest.as_slice()).map_err(|_| InvalidAttestation::TokenDigest)?;
        let rule_id = match (status, p.rule_id.is_empty()) {
            (Status::Green, true) => None,
            (Status::Green, false) => return Err(InvalidAttestation::UnexpectedRule),
            (_, true) => return Err(InvalidAttestation::MissingRule),
            (_, false) => Some(p.rule_id),
        };
        let test_recency = pb::TestRecency::try_from(p.test_recency).map_err(|_| InvalidAttestation::TestRecency)?;
        if !valid_purpose(&p.purpose) {
            return Err(InvalidAttestation::Purpose);
        }
        Ok(Self {
            province,
            status,
            issued_at: p.issued_at,
            expires_at: p.expires_at,
            token_digest,
            rule_id,
            test_recency,
            purpose: p.purpose,
        })
    }
}

impl From<&Attestation> for pb::AttestationPayload {
    fn from(a: &Attestation) -> Self {
        pb::AttestationPayload {
            version: PAYLOAD_VERSION,
            province: a.province.to_string(),
            status: a.status.to_pb() as i32,
            issued_at: a.issued_at,
            expires_at: a.expires_at,
            token_digest: a.token_digest.to_vec(),
            rule_id: a.rule_id.clone().unwrap_or_default(),
            test_recency: a.test_recency as i32,
            purpose: a.purpose.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_kid() {
        let key = AttestationKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let back = AttestationKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.kid(), back.kid());
        assert_eq!(key.kid(), Kid::of(&key.public_key()));
    }

    #[test]
    fn purposes() {
        assert!(valid_purpose("transit.highway"));
        assert!(valid_purpose("venue.entry"));
        assert!(!valid_purpose("transit..x"));
        assert!(!valid_purpose("Transit"));
        assert!(!valid_purpose(""));
    }
}
