//! The signed trust list: who is in the federation, with which keys and rules.
//!
//! The list is a [`pb::TrustList`] encoded once and signed by the national root CA key
//! (ECDSA P-256 / SHA-256 over [`TRUST_LIST_CONTEXT`] + payload). [`TrustList::verify`]
//! checks the signature against the root certificate and indexes the content; every
//! consumer (gateway, node, hub, auditor) only ever holds a verified list.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use huren_proto::pb;
use prost::Message;

use crate::attest::{InvalidAttestation, Kid};
use crate::ca::{sign_with_ca_key, CaError, CaMaterial};
use crate::identity::ProvinceCode;
use crate::policy::{FieldPolicy, Violation};

/// Domain-separation prefix of the trust-list signature.
pub const TRUST_LIST_CONTEXT: &[u8] = b"huren/trust-list/v1\0";
/// Trust list format version written by this implementation.
pub const TRUST_LIST_VERSION: u32 = 1;
/// Clock skew tolerated for attestations issued "in the future".
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// Why a trust list could not be signed, read, verified or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustListError {
    /// The root signature does not verify: the list is forged, damaged or for another root.
    #[error("trust list signature does not verify against the national root certificate")]
    BadSignature,
    /// The root certificate given to verify against cannot be parsed.
    #[error("national root certificate is unusable: {0}")]
    Root(String),
    /// The file or the signed payload is not valid protobuf.
    #[error("trust list payload is not a valid TrustList message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The signature verifies but the content breaks an invariant (version, duplicate
    /// province, key or rule, malformed key, invalid field policy or hub registration).
    #[error("trust list content is invalid: {0}")]
    Content(String),
    /// Reading or writing a trust list file failed.
    #[error("trust list file {path}: {source}")]
    Io {
        /// The file concerned, for the message.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Signing with the root key failed.
    #[error("cannot sign trust list: {0}")]
    Sign(#[from] CaError),
}

/// Why an attestation was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The payload (or receipt, tree head) does not decode, or a decoded receipt or tree
    /// head is inconsistent (hash length, province mismatch).
    #[error("attestation payload is not a valid AttestationPayload message")]
    Malformed,
    /// The signature's key id is not 8 bytes.
    #[error("attestation kid must be 8 bytes")]
    KidLength,
    /// The payload decodes but is not a valid attestation.
    #[error("attestation is structurally invalid: {0}")]
    Invalid(#[from] InvalidAttestation),
    /// The province named is not in the trust list (never admitted, or retired).
    #[error("province {0} is not in the trust list")]
    UnknownProvince(ProvinceCode),
    /// The key id is not one of the province's keys.
    #[error("key {kid} is not an attestation key of province {province} in the trust list")]
    UnknownKey {
        /// The province the document names.
        province: ProvinceCode,
        /// The key id it was signed with.
        kid: Kid,
    },
    /// The key is listed but revoked: nothing it signed is believed.
    #[error("key {kid} of province {province} is revoked")]
    KeyRevoked {
        /// The province the document names.
        province: ProvinceCode,
        /// The revoked key.
        kid: Kid,
    },
    /// The verifier's clock is outside the key's validity window.
    #[error("key {kid} of province {province} is not valid at this time")]
    KeyNotValid {
        /// The province the attestation names.
        province: ProvinceCode,
        /// The key it was signed with.
        kid: Kid,
    },
    /// The Ed25519 signature is malformed or does not verify with the key.
    #[error("attestation signature does not verify with key {kid} of province {province}")]
    BadSignature {
        /// The province the document names.
        province: ProvinceCode,
        /// The key it claims to be signed with.
        kid: Kid,
    },
    /// The attestation's `expires_at` (Unix seconds) has passed.
    #[error("attestation expired at {0}")]
    Expired(i64),
    /// `issued_at` (Unix seconds) is later than now plus [`MAX_CLOCK_SKEW_SECS`].
    #[error("attestation is dated in the future ({0})")]
    FutureDated(i64),
    /// A non-green status cites a rule id the trust list does not carry.
    #[error("attestation cites rule {0:?}, which is not in the rule registry")]
    UnregisteredRule(String),
    /// A non-green status cites a registered rule that may not assign that status.
    #[error("rule {rule:?} may not assign {status}")]
    RuleCannotAssign {
        /// The rule cited.
        rule: String,
        /// The status attested.
        status: crate::attest::Status,
    },
    /// A non-green status cites a registered rule that names no authority of the signing
    /// province: only another province's authorities may apply it.
    #[error("rule {rule:?} names no authority of province {province}")]
    RuleNotForProvince {
        /// The rule cited.
        rule: String,
        /// The province that signed the attestation.
        province: ProvinceCode,
    },
    /// `expires_at - issued_at` exceeds the trust list's attestation lifetime bound.
    #[error("attestation is valid for {lifetime} s, beyond the trust list's maximum of {max} s")]
    LifetimeTooLong {
        /// `expires_at - issued_at`, seconds.
        lifetime: i64,
        /// The bound in force ([`TrustList::attestation_bounds`]).
        max: i64,
    },
    /// The attestation's validity does not lie within its signing key's window: issued
    /// before the key's `not_before`, or expiring after its `not_after`.
    #[error("attestation valid from {issued_at} until {expires_at} lies outside key {province}/{kid}'s window ({not_before} until {not_after})")]
    OutsideKeyValidity {
        /// The attestation's `issued_at`, Unix seconds.
        issued_at: i64,
        /// The attestation's `expires_at`, Unix seconds.
        expires_at: i64,
        /// The province it names.
        province: ProvinceCode,
        /// The key that signed it.
        kid: Kid,
        /// Start of the key's window, Unix seconds.
        not_before: i64,
        /// End of the key's window (exclusive), Unix seconds.
        not_after: i64,
    },
    /// The payload decodes, but its bytes are not the canonical encoding of what they
    /// decode to (an over-long varint, tag or length, fields out of order, a default
    /// value written): one signed statement must have exactly one byte form.
    #[error("attestation payload is not canonically encoded")]
    NonCanonical,
    /// The payload breaks the minimum-fields policy.
    #[error("attestation breaks the field policy: {0}")]
    Policy(#[from] Violation),
    /// A receipt or tree head is dated outside the validity window of the key that signed it.
    #[error("{what} dated {time} was signed by key {province}/{kid}, valid only from {not_before} until {not_after}")]
    OutsideKeyWindow {
        /// What was signed (`tree head`, `deletion receipt`, …), for the message.
        what: &'static str,
        /// The document's own time, Unix seconds.
        time: i64,
        /// The province it names.
        province: ProvinceCode,
        /// The key that signed it.
        kid: Kid,
        /// Start of the key's window, Unix seconds.
        not_before: i64,
        /// End of the key's window (exclusive), Unix seconds.
        not_after: i64,
    },
    /// A sunset deletion receipt that still counts remaining records.
    #[error("sunset receipt of province {province} says records remain: {left}")]
    SunsetLeftovers {
        /// The province whose receipt it is.
        province: String,
        /// What remains, as `<count> <kind>` items separated by commas.
        left: String,
    },
}

impl AttestationError {
    /// Short, data-free label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AttestationError::Malformed => "malformed",
            AttestationError::KidLength => "kid_length",
            AttestationError::Invalid(InvalidAttestation::MissingRule) => "missing_rule",
            AttestationError::Invalid(_) => "invalid_payload",
            AttestationError::UnknownProvince(_) => "unknown_province",
            AttestationError::UnknownKey { .. } => "unknown_key",
            AttestationError::KeyRevoked { .. } => "key_revoked",
            AttestationError::KeyNotValid { .. } => "key_not_valid",
            AttestationError::BadSignature { .. } => "bad_signature",
            AttestationError::Expired(_) => "expired",
            AttestationError::OutsideKeyWindow { .. } => "outside_key_window",
            AttestationError::SunsetLeftovers { .. } => "sunset_leftovers",
            AttestationError::FutureDated(_) => "future_dated",
            AttestationError::UnregisteredRule(_) => "unregistered_rule",
            AttestationError::RuleCannotAssign { .. } => "rule_cannot_assign",
            AttestationError::RuleNotForProvince { .. } => "rule_not_for_province",
            AttestationError::LifetimeTooLong { .. } => "lifetime_too_long",
            AttestationError::OutsideKeyValidity { .. } => "outside_key_validity",
            AttestationError::NonCanonical => "non_canonical",
            AttestationError::Policy(v) => v.reason(),
        }
    }
}

/// A verified province entry.
#[derive(Debug, Clone)]
pub struct ProvinceEntry {
    /// The province's code.
    pub code: ProvinceCode,
    /// Human-readable name.
    pub name: String,
    /// Node endpoints (`https://host:port`) gateways route lookups to.
    pub endpoints: Vec<String>,
    /// The province CA certificate, DER.
    pub ca_cert_der: Vec<u8>,
    /// Attestation keys by id; each id checked against its key.
    pub keys: HashMap<Kid, KeyEntry>,
}

/// A verified attestation key entry.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The Ed25519 public key (a valid curve point).
    pub public_key: VerifyingKey,
    /// Start of the key's validity, Unix seconds.
    pub not_before: i64,
    /// End of the key's validity (exclusive), Unix seconds.
    pub not_after: i64,
    /// Where the key is in its rotation; never `Unspecified`.
    pub status: pb::KeyStatus,
}

/// A signature-checked, indexed trust list.
#[derive(Debug, Clone)]
pub struct TrustList {
    signed: pb::SignedTrustList,
    list: pb::TrustList,
    provinces: HashMap<ProvinceCode, ProvinceEntry>,
    rules: HashMap<String, pb::Rule>,
    revoked: HashSet<String>,
    policy: FieldPolicy,
    hubs: HashMap<String, Vec<String>>,
    hub_provinces: HashMap<String, ProvinceCode>,
}

/// Encodes and signs a trust list with the root CA key.
pub fn sign(list: &pb::TrustList, root: &CaMaterial) -> Result<pb::SignedTrustList, TrustListError> {
    let payload = list.encode_to_vec();
    let signature = sign_with_ca_key(root, &context_input(&payload))?;
    Ok(pb::SignedTrustList { payload, signature })
}

fn context_input(payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(TRUST_LIST_CONTEXT.len() + payload.len());
    input.extend_from_slice(TRUST_LIST_CONTEXT);
    input.extend_from_slice(payload);
    input
}

fn root_public_key(root_cert_der: &[u8]) -> Result<Vec<u8>, TrustListError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(root_cert_der).map_err(|e| TrustListError::Root(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.subject_public_key.data.to_vec())
}

fn content(msg: impl Into<String>) -> TrustListError {
    TrustListError::Content(msg.into())
}

impl TrustList {
    /// Verifies the root signature and the content, and indexes the list.
    pub fn verify(signed: pb::SignedTrustList, root_cert_der: &[u8]) -> Result<Self, TrustListError> {
        let public = root_public_key(root_cert_der)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public)
            .verify(&context_input(&signed.payload), &signed.signature)
            .map_err(|_| TrustListError::BadSignature)?;
        let list = pb::TrustList::decode(signed.payload.as_slice())?;
        Self::index(signed, list)
    }

    fn index(signed: pb::SignedTrustList, list: pb::TrustList) -> Result<Self, TrustListError> {
        if list.version != TRUST_LIST_VERSION {
            return Err(content(format!("unsupported trust list version {}", list.version)));
        }
        if list.trust_domain.is_empty() {
            return Err(content("trust domain is empty"));
        }
        let mut provinces = HashMap::new();
        for p in &list.provinces {
            let code: ProvinceCode = p.code.parse().map_err(|e| content(format!("{e}")))?;
            let mut keys = HashMap::new();
            for k in &p.attestation_keys {
                let raw = <[u8; 32]>::try_from(k.public_key.as_slice())
                    .map_err(|_| content(format!("province {code}: attestation key is not 32 bytes")))?;
                let public_key = VerifyingKey::from_bytes(&raw)
                    .map_err(|_| content(format!("province {code}: attestation key is not a valid Ed25519 point")))?;
                let kid = Kid::of(&raw);
                if k.kid != kid.0 {
                    return Err(content(format!("province {code}: kid does not match its key ({kid})")));
                }
                let status = pb::KeyStatus::try_from(k.status)
                    .ok()
                    .filter(|s| *s != pb::KeyStatus::Unspecified)
                    .ok_or_else(|| content(format!("province {code}: key {kid} has no status")))?;
                let entry = KeyEntry { public_key, not_before: k.not_before, not_after: k.not_after, status };
                if keys.insert(kid, entry).is_some() {
                    return Err(content(format!("province {code}: duplicate key {kid}")));
                }
            }
            let entry = ProvinceEntry {
                code: code.clone(),
                name: p.name.clone(),
                endpoints: p.endpoints.clone(),
                ca_cert_der: p.ca_cert.clone(),
                keys,
            };
            if provinces.insert(code.clone(), entry).is_some() {
                return Err(content(format!("duplicate province {code}")));
            }
        }
        let mut rules = HashMap::new();
        for r in &list.rules {
            if r.id.is_empty() {
                return Err(content("a rule has an empty id"));
            }
            if rules.insert(r.id.clone(), r.clone()).is_some() {
                return Err(content(format!("duplicate rule {}", r.id)));
            }
        }
        if list.retention.is_some_and(|r| r.disclosure_max_age_seconds < 0) {
            return Err(content("disclosure retention window is negative"));
        }
        if list.attestation_bounds.is_some_and(|b| b.max_lifetime_seconds < 0) {
            return Err(content("attestation lifetime bound is negative"));
        }
        // Canonical forms, so a list written with `00`-padded serials still matches.
        let revoked = list.revoked_serials.iter().map(|s| crate::serial::canonical(s)).collect();
        let policy = FieldPolicy::from_pb(list.field_policy.as_ref()).map_err(content)?;
        let mut hubs = HashMap::new();
        let mut hub_provinces = HashMap::new();
        for h in &list.hubs {
            if !crate::identity::valid_name(&h.id) {
                return Err(content(format!("hub registration {:?} is not a valid hub id", h.id)));
            }
            if let Some(p) = h.purposes.iter().find(|p| policy.allowed(p).is_none()) {
                return Err(content(format!(
                    "hub {} is registered for purpose {p:?}, which the field policy lacks",
                    h.id
                )));
            }
            if hubs.insert(h.id.clone(), h.purposes.clone()).is_some() {
                return Err(content(format!("hub {} is registered twice", h.id)));
            }
            if !h.province.is_empty() {
                let code = h.province.parse().map_err(|e| content(format!("hub {}: {e}", h.id)))?;
                hub_provinces.insert(h.id.clone(), code);
            }
        }
        Ok(Self { signed, list, provinces, rules, revoked, policy, hubs, hub_provinces })
    }

    /// Reads and verifies a trust list file (encoded [`pb::SignedTrustList`]).
    pub fn load(path: &Path, root_cert_der: &[u8]) -> Result<Self, TrustListError> {
        let bytes =
            std::fs::read(path).map_err(|source| TrustListError::Io { path: path.display().to_string(), source })?;
        let signed = pb::SignedTrustList::decode(bytes.as_slice())?;
        Self::verify(signed, root_cert_der)
    }

    /// Writes the signed form atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), TrustListError> {
        crate::fsio::write_atomic(path, &self.signed.encode_to_vec())
            .map_err(|source| TrustListError::Io { path: path.display().to_string(), source })
    }

    /// The signed form, exactly as received: what is persisted and passed on.
    pub fn signed(&self) -> &pb::SignedTrustList {
        &self.signed
    }
    /// The decoded content.
    pub fn raw(&self) -> &pb::TrustList {
        &self.list
    }
    /// Sequence number; a newer list always has a greater one (rollback protection).
    pub fn sequence(&self) -> u64 {
        self.list.sequence
    }
    /// The SPIFFE trust domain of every identity in the federation.
    pub fn trust_domain(&self) -> &str {
        &self.list.trust_domain
    }
    /// A member province, if listed.
    pub fn province(&self, code: &ProvinceCode) -> Option<&ProvinceEntry> {
        self.provinces.get(code)
    }
    /// All member provinces, in no particular order.
    pub fn provinces(&self) -> impl Iterator<Item = &ProvinceEntry> {
        self.provinces.values()
    }
    /// A registered rule by id.
    pub fn rule(&self, id: &str) -> Option<&pb::Rule> {
        self.rules.get(id)
    }
    /// The authorities (`<province>/<name>`) that may lift a status held under `rule`
    /// before it lapses: its `may_lift`, or when that is empty the authorities that may
    /// apply it.
    pub fn lifters(rule: &pb::Rule) -> &[String] {
        if rule.may_lift.is_empty() {
            &rule.authorities
        } else {
            &rule.may_lift
        }
    }
    /// Whether a certificate serial is revoked: compared as an integer, so any form
    /// [`crate::serial::parse`] reads (`008F1A…`, `8f:1a:…`) names the same serial.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.revoked.contains(serial_hex) || self.revoked.contains(&crate::serial::canonical(serial_hex))
    }
    /// All revoked certificate serials, in canonical form ([`crate::serial`]).
    pub fn revoked_serials(&self) -> &HashSet<String> {
        &self.revoked
    }
    /// The minimum-fields policy in force.
    pub fn field_policy(&self) -> &FieldPolicy {
        &self.policy
    }
    /// Purposes a registered hub may declare; `None` for an unregistered hub.
    pub fn hub_purposes(&self, hub_id: &str) -> Option<&[String]> {
        self.hubs.get(hub_id).map(Vec::as_slice)
    }
    /// The province a registered hub checks travellers in, if its registration names one.
    pub fn hub_province(&self, hub_id: &str) -> Option<&ProvinceCode> {
        self.hub_provinces.get(hub_id)
    }
    /// The registered name of a hub ("Jinan West railway station"), if its registration
    /// gives one: what a traveller reads in their disclosure log.
    pub fn hub_name(&self, hub_id: &str) -> Option<&str> {
        self.list.hubs.iter().find(|h| h.id == hub_id).map(|h| h.name.as_str()).filter(|n| !n.is_empty())
    }
    /// How long a node keeps disclosure-log records, seconds (the built-in
    /// [`DEFAULT_DISCLOSURE_MAX_AGE_SECS`] when the list sets none).
    pub fn disclosure_max_age(&self) -> i64 {
        let v = self.list.retention.unwrap_or_default().disclosure_max_age_seconds;
        if v > 0 {
            v
        } else {
            DEFAULT_DISCLOSURE_MAX_AGE_SECS
        }
    }
}

/// Built-in retention of disclosure-log records when the trust list sets none: 30 days.
pub const DEFAULT_DISCLOSURE_MAX_AGE_SECS: i64 = 30 * 86_400;

/// Built-in retention when the trust list sets none: statuses 30 days after their last
/// change, audit entries 180 days, gateway cache entries 30 seconds (the staleness a cached status may have).
pub const DEFAULT_RETENTION: (i64, i64, i64) = (30 * 86_400, 180 * 86_400, 30);

/// Effective retention windows, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a status record is kept after its last change.
    pub status_max_age: i64,
    /// How long transparency-log entries are kept.
    pub audit_max_age: i64,
    /// How long a gateway may cache an attestation (never beyond its own expiry).
    pub cache_max: i64,
}

/// Built-in bound on an attestation's lifetime (`expires_at - issued_at`) when the trust
/// list sets none: an hour. A node signs for 300 s by default (`attestation_ttl_seconds`,
/// QR attestations included), so honest nodes stay well inside it with room to raise
/// their TTL, while a compromised one cannot mint a status that outlives a key
/// revocation by more than that. Nodes clamp to the bound in force, so a longer
/// configured TTL never produces a refused attestation.
pub const DEFAULT_MAX_ATTESTATION_LIFETIME_SECS: i64 = 3600;

/// Effective bounds on an attestation's validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestationBounds {
    /// Longest `expires_at - issued_at`, seconds.
    pub max_lifetime: i64,
}

impl TrustList {
    /// Attestation validity bounds in force (the default for an unset value).
    pub fn attestation_bounds(&self) -> AttestationBounds {
        let max = self.list.attestation_bounds.unwrap_or_default().max_lifetime_seconds;
        AttestationBounds { max_lifetime: if max > 0 { max } else { DEFAULT_MAX_ATTESTATION_LIFETIME_SECS } }
    }

    /// Retention windows in force (defaults for unset values).
    pub fn retention(&self) -> Retention {
        let r = self.list.retention.unwrap_or_default();
        let or = |v: i64, d: i64| if v > 0 { v } else { d };
        Retention {
            status_max_age: or(r.status_max_age_seconds, DEFAULT_RETENTION.0),
            audit_max_age: or(r.audit_max_age_seconds, DEFAULT_RETENTION.1),
            cache_max: or(r.cache_max_seconds, DEFAULT_RETENTION.2),
        }
    }

    /// The sunset order, if the list carries one.
    pub fn sunset(&self) -> Option<&pb::SunsetOrder> {
        self.list.sunset.as_ref()
    }

    /// Whether the federation has been sunset at `now`.
    pub fn sunset_in_force(&self, now: i64) -> Option<&pb::SunsetOrder> {
        self.sunset().filter(|s| now >= s.effective_at)
    }

    /// Verifies a deletion receipt signed by a (non-revoked) key of its province, and
    /// the final tree head inside it.
    pub fn verify_receipt(&self, signed: &pb::SignedDeletionReceipt) -> Result<pb::DeletionReceipt, AttestationError> {
        let receipt =
            pb::DeletionReceipt::decode(signed.receipt.as_slice()).map_err(|_| AttestationError::Malformed)?;
        self.verify_signed(
            ("deletion receipt", receipt.time),
            &receipt.province,
            &signed.kid,
            crate::attest::RECEIPT_CONTEXT,
            &signed.receipt,
            &signed.signature,
        )?;
        if let Some(head) = &receipt.final_tree_head {
            let head = self.verify_tree_head_as(head, "final tree head")?;
            if head.province != receipt.province {
                return Err(AttestationError::Malformed);
            }
        }
        if receipt.deleted_root.len() != 32 {
            return Err(AttestationError::Malformed);
        }
        // A sunset deletes everything: a receipt that says otherwise proves no deletion.
        let left: Vec<String> =
            receipt.remaining.iter().filter(|c| c.count > 0).map(|c| format!("{} {}", c.count, c.kind)).collect();
        if receipt.reason == "sunset" && !left.is_empty() {
            return Err(AttestationError::SunsetLeftovers { province: receipt.province, left: left.join(", ") });
        }
        Ok(receipt)
    }

    /// Verifies `signature` over `context || bytes` with key `kid` of `province`: listed,
    /// not revoked, and valid at `dated` (the document's own time: what is signed outside
    /// its key's window is refused even though the signature verifies).
    fn verify_signed(
        &self,
        (what, dated): (&'static str, i64),
        province: &str,
        kid: &[u8],
        context: &[u8],
        bytes: &[u8],
        signature: &[u8],
    ) -> Result<(), AttestationError> {
        let kid = Kid::from_slice(kid).ok_or(AttestationError::KidLength)?;
        let province: ProvinceCode =
            province.parse().map_err(|e| AttestationError::Invalid(InvalidAttestation::Province(e)))?;
        let entry = self.province(&province).ok_or_else(|| AttestationError::UnknownProvince(province.clone()))?;
        let key =
            entry.keys.get(&kid).ok_or_else(|| AttestationError::UnknownKey { province: province.clone(), kid })?;
        if key.status == pb::KeyStatus::Revoked {
            return Err(AttestationError::KeyRevoked { province, kid });
        }
        if dated < key.not_before || dated >= key.not_after {
            let (not_before, not_after) = (key.not_before, key.not_after);
            return Err(AttestationError::OutsideKeyWindow { what, time: dated, province, kid, not_before, not_after });
        }
        let mut input = context.to_vec();
        input.extend_from_slice(bytes);
        let signature = Signature::from_slice(signature)
            .map_err(|_| AttestationError::BadSignature { province: province.clone(), kid })?;
        key.public_key
            .verify_strict(&input, &signature)
            .map_err(|_| AttestationError::BadSignature { province: province.clone(), kid })
    }

    /// Verifies a tree head signed by a (non-revoked) attestation key of its province.
    pub fn verify_tree_head(&self, signed: &pb::SignedTreeHead) -> Result<pb::TreeHead, AttestationError> {
        self.verify_tree_head_as(signed, "tree head")
    }

    fn verify_tree_head_as(
        &self,
        signed: &pb::SignedTreeHead,
        what: &'static str,
    ) -> Result<pb::TreeHead, AttestationError> {
        let head = pb::TreeHead::decode(signed.tree_head.as_slice()).map_err(|_| AttestationError::Malformed)?;
        self.verify_signed(
            (what, head.timestamp),
            &head.province,
            &signed.kid,
            crate::attest::TREE_HEAD_CONTEXT,
            &signed.tree_head,
            &signed.signature,
        )?;
        if head.root_hash.len() != 32 {
            return Err(AttestationError::Malformed);
        }
        Ok(head)
    }
}

/// What changed from `old` to `new`, one human-readable line per change.
pub fn diff(old: &TrustList, new: &TrustList) -> Vec<String> {
    let mut out = vec![format!("sequence {} -> {}", old.sequence(), new.sequence())];
    let (o, n) = (old.raw(), new.raw());
    let mut codes: Vec<&ProvinceCode> = old.provinces.keys().chain(new.provinces.keys()).collect();
    codes.sort();
    codes.dedup();
    let status = |k: &KeyEntry| k.status.as_str_name().trim_start_matches("KEY_STATUS_").to_ascii_lowercase();
    for code in codes {
        match (old.province(code), new.province(code)) {
            (None, Some(p)) => out.push(format!("+ province {code} {} (endpoints {:?})", p.name, p.endpoints)),
            (Some(p), None) => out.push(format!("- province {code} {}", p.name)),
            (Some(a), Some(b)) => {
                if a.endpoints != b.endpoints {
                    out.push(format!("~ province {code} endpoints {:?} -> {:?}", a.endpoints, b.endpoints));
                }
                if a.ca_cert_der != b.ca_cert_der {
                    out.push(format!("~ province {code} CA certificate replaced"));
                }
                let mut kids: Vec<&Kid> = a.keys.keys().chain(b.keys.keys()).collect();
                kids.sort();
                kids.dedup();
                for kid in kids {
                    match (a.keys.get(kid), b.keys.get(kid)) {
                        (None, Some(k)) => out.push(format!("+ key {code}/{kid} ({})", status(k))),
                        (Some(_), None) => out.push(format!("- key {code}/{kid}")),
                        (Some(x), Some(y)) if x.status != y.status => {
                            out.push(format!("~ key {code}/{kid} {} -> {}", status(x), status(y)))
                        }
                        _ => {}
                    }
                }
            }
            (None, None) => {}
        }
    }
    let mut rules: Vec<&String> = old.rules.keys().chain(new.rules.keys()).collect();
    rules.sort();
    rules.dedup();
    for id in rules {
        match (old.rule(id), new.rule(id)) {
            (None, Some(r)) => out.push(format!("+ rule {id}: {}", r.title)),
            (Some(_), None) => out.push(format!("- rule {id}")),
            (Some(a), Some(b)) if a != b => out.push(format!("~ rule {id} changed")),
            _ => {}
        }
    }
    let mut added: Vec<&String> = new.revoked.difference(&old.revoked).collect();
    added.sort();
    for serial in added {
        out.push(format!("+ revoked certificate {serial}"));
    }
    let mut removed: Vec<&String> = old.revoked.difference(&new.revoked).collect();
    removed.sort();
    for serial in removed {
        out.push(format!("- revoked certificate {serial} (un-revoked!)"));
    }
    if o.field_policy != n.field_policy {
        out.push("~ field policy changed".into());
    }
    if o.hubs != n.hubs {
        out.push("~ hub registrations changed".into());
    }
    if o.sunset != n.sunset {
        out.push(format!("~ sunset {:?} -> {:?}", o.sunset, n.sunset));
    }
    let (a, b) = (old.attestation_bounds().max_lifetime, new.attestation_bounds().max_lifetime);
    if a != b {
        out.push(format!("~ attestation lifetime bound {a} s -> {b} s"));
    }
    out
}
