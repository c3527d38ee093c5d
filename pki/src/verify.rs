//! The one attestation verifier. The gateway, `huren hub verify`, the client library and the
//! fuzz targets all call [`verify_attestation`]; nothing else decides whether a signed
//! attestation is believed.
//!
//! It assumes the signing node may be compromised (it holds the province's real key and
//! certificate) and checks, in order:
//! 1. the key id's length;
//! 2. every field number on the wire (prost would skip unknown ones): known, once each,
//!    of the right wire type, the payload at most [`policy::MAX_PAYLOAD_BYTES`];
//! 3. canonical encoding: the bytes are exactly what re-encoding the decoded payload gives
//!    (ascending field numbers, minimal varints, tags and lengths, no default value
//!    written), so one statement has exactly one signed byte form;
//! 4. the field policy of the payload's purpose, and the payload's structure;
//! 5. the signing key: scoped by the payload's province, not revoked, valid now;
//! 6. the Ed25519 signature (`verify_strict`) over the domain-separated exact bytes;
//! 7. the time window: not future-dated (beyond [`MAX_CLOCK_SKEW_SECS`]), not expired;
//! 8. the validity bounds: `expires_at - issued_at` at most the trust list's
//!    [`TrustList::attestation_bounds`], and `[issued_at, expires_at]` inside the signing
//!    key's `[not_before, not_after]`;
//! 9. for a non-green status, the rule: registered, allowed to assign that status
//!    (`may_assign`), and naming at least one authority of the signing province;
//! 10. what the caller expected: the province asked, the token it holds, the purpose asked.

use ed25519_dalek::Signature;
use huren_proto::pb;
use prost::Message as _;

use crate::attest::{signing_input, token_digest, Attestation, Kid, Status};
use crate::identity::{AuthorityRef, ProvinceCode};
use crate::policy;
use crate::trust::{AttestationError, TrustList, MAX_CLOCK_SKEW_SECS};

/// What the verifying party knows independently of the attestation, and so binds it to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    /// The province the lookup was routed to, or that the QR names.
    pub province: Option<&'a ProvinceCode>,
    /// The opaque token the hub holds (the attestation carries only its digest).
    pub token: Option<&'a [u8]>,
    /// The purpose the hub asked for.
    pub purpose: Option<&'a str>,
}

impl<'a> Expected<'a> {
    /// An online lookup: province, token and purpose are all known.
    pub fn lookup(province: &'a ProvinceCode, token: &'a [u8], purpose: &'a str) -> Self {
        Self { province: Some(province), token: Some(token), purpose: Some(purpose) }
    }

    /// A scanned QR or `province:token`: the province and token it carries.
    pub fn scanned(province: &'a ProvinceCode, token: &'a [u8]) -> Self {
        Self { province: Some(province), token: Some(token), purpose: None }
    }

    /// Also require this purpose.
    pub fn with_purpose(self, purpose: &'a str) -> Self {
        Self { purpose: Some(purpose), ..self }
    }
}

/// Why an attestation was refused by [`verify_attestation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The attestation itself fails against the trust list.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    /// The attestation is valid but for another province than the one asked or scanned.
    #[error("attestation claims province {got}, not {expected}")]
    Province {
        /// The province the caller asked or scanned.
        expected: ProvinceCode,
        /// The province the attestation claims.
        got: ProvinceCode,
    },
    /// The attestation's token digest is not the SHA-256 of the caller's token.
    #[error("attestation is bound to a different token")]
    TokenBinding,
    /// The attestation was issued for another purpose than the one asked.
    #[error("attestation is for purpose {got:?}, not the one asked ({expected:?})")]
    Purpose {
        /// The purpose the caller asked for.
        expected: String,
        /// The purpose the attestation carries.
        got: String,
    },
}

impl VerifyError {
    /// Short, data-free label for metrics, logs and `ErrorInfo` metadata.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Attestation(e) => e.reason(),
            VerifyError::Province { .. } => "province_mismatch",
            VerifyError::TokenBinding => "token_binding",
            VerifyError::Purpose { .. } => "purpose_mismatch",
        }
    }
}

/// Verifies `signed` against `trust` at `now`, bound to what the caller `expected`.
pub fn verify_attestation(
    trust: &TrustList,
    signed: &pb::SignedAttestation,
    expected: &Expected<'_>,
    now: i64,
) -> Result<Attestation, VerifyError> {
    let attestation = verify_signed(trust, signed, now)?;
    if let Some(province) = expected.province {
        if &attestation.province != province {
            return Err(VerifyError::Province { expected: province.clone(), got: attestation.province });
        }
    }
    if let Some(token) = expected.token {
        if attestation.token_digest != token_digest(token) {
            return Err(VerifyError::TokenBinding);
        }
    }
    if let Some(purpose) = expected.purpose {
        if attestation.purpose != purpose {
            return Err(VerifyError::Purpose { expected: purpose.to_owned(), got: attestation.purpose });
        }
    }
    Ok(attestation)
}

/// Everything that depends only on the attestation and the trust list.
fn verify_signed(trust: &TrustList, signed: &pb::SignedAttestation, now: i64) -> Result<Attestation, AttestationError> {
    let kid = Kid::from_slice(&signed.kid).ok_or(AttestationError::KidLength)?;
    // Strict first: size, then every field number on the wire (prost would skip unknown ones).
    policy::wire_fields(&signed.payload)?;
    let payload = pb::AttestationPayload::decode(signed.payload.as_slice()).map_err(|_| AttestationError::Malformed)?;
    // prost writes canonical proto3; anything else is a second byte form of the same statement.
    if payload.encode_to_vec() != signed.payload {
        return Err(AttestationError::NonCanonical);
    }
    trust.field_policy().check(&payload)?;
    let attestation = Attestation::try_from(payload)?;
    let province = &attestation.province;
    let entry = trust.province(province).ok_or_else(|| AttestationError::UnknownProvince(province.clone()))?;
    let key = entry.keys.get(&kid).ok_or_else(|| AttestationError::UnknownKey { province: province.clone(), kid })?;
    if key.status == pb::KeyStatus::Revoked {
        return Err(AttestationError::KeyRevoked { province: province.clone(), kid });
    }
    if now < key.not_before || now >= key.not_after {
        return Err(AttestationError::KeyNotValid { province: province.clone(), kid });
    }
    let signature = Signature::from_slice(&signed.signature)
        .map_err(|_| AttestationError::BadSignature { province: province.clone(), kid })?;
    key.public_key
        .verify_strict(&signing_input(&signed.payload), &signature)
        .map_err(|_| AttestationError::BadSignature { province: province.clone(), kid })?;
    if attestation.issued_at > now + MAX_CLOCK_SKEW_SECS {
        return Err(AttestationError::FutureDated(attestation.issued_at));
    }
    if attestation.expires_at <= now {
        return Err(AttestationError::Expired(attestation.expires_at));
    }
    let lifetime = attestation.expires_at - attestation.issued_at;
    let max = trust.attestation_bounds().max_lifetime;
    if lifetime > max {
        return Err(AttestationError::LifetimeTooLong { lifetime, max });
    }
    if attestation.issued_at < key.not_before || attestation.expires_at > key.not_after {
        return Err(AttestationError::OutsideKeyValidity {
            issued_at: attestation.issued_at,
            expires_at: attestation.expires_at,
            province: province.clone(),
            kid,
            not_before: key.not_before,
            not_after: key.not_after,
        });
    }
    if attestation.status != Status::Green {
        check_rule(trust, &attestation)?;
    }
    Ok(attestation)
}

/// A non-green status: its rule is registered, may assign that status, and names an
/// authority of the signing province (only a province's own authorities act at its node).
fn check_rule(trust: &TrustList, attestation: &Attestation) -> Result<(), AttestationError> {
    let id = attestation.rule_id.as_deref().unwrap_or_default();
    let rule = trust.rule(id).ok_or_else(|| AttestationError::UnregisteredRule(id.to_owned()))?;
    if !rule.may_assign.contains(&(attestation.status.to_pb() as i32)) {
        return Err(AttestationError::RuleCannotAssign { rule: id.to_owned(), status: attestation.status });
    }
    let own = |a: &String| a.parse::<AuthorityRef>().is_ok_and(|a| a.province == attestation.province);
    if !rule.authorities.iter().any(own) {
        return Err(AttestationError::RuleNotForProvince {
            rule: id.to_owned(),
            province: attestation.province.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::AttestationKey;
    use crate::ca::{self, Validity};
    use crate::trust;

    const NOW: i64 = 1_750_000_000;
    const KEY_NOT_BEFORE: i64 = NOW - 86_400;
    const KEY_NOT_AFTER: i64 = NOW + 7_200;

    struct Fixture {
        trust: TrustList,
        key: AttestationKey,
    }

    /// Anhui (340000) with one key valid from a day ago to two hours on; rules: RED for
    /// Anhui's authority, YELLOW-only for Anhui's, RED for Shandong's authority only.
    fn fixture(max_lifetime_seconds: Option<i64>) -> Fixture {
        let root = ca::new_root("huren.gov", Validity::days(1)).unwrap();
        let key = AttestationKey::generate().unwrap();
        let rule = |id: &str, status: pb::HealthStatus, authority: &str| pb::Rule {
            id: id.into(),
            may_assign: vec![status as i32],
            authorities: vec![authority.into()],
            ..Default::default()
        };
        let list = pb::TrustList {
            version: trust::TRUST_LIST_VERSION,
            sequence: 1,
            trust_domain: "huren.gov".into(),
            provinces: vec![pb::Province {
                code: "340000".into(),
                attestation_keys: vec![pb::AttestationKey {
                    kid: key.kid().0.to_vec(),
                    public_key: key.public_key().to_vec(),
                    not_before: KEY_NOT_BEFORE,
                    not_after: KEY_NOT_AFTER,
                    status: pb::KeyStatus::Active as i32,
                }],
                ..Default::default()
            }],
            rules: vec![
                rule("AH-RED", pb::HealthStatus::Red, "340000/hefei-cdc"),
                rule("AH-YELLOW", pb::HealthStatus::Yellow, "340000/hefei-cdc"),
                rule("SD-RED", pb::HealthStatus::Red, "370000/jinan-cdc"),
            ],
            attestation_bounds: max_lifetime_seconds.map(|s| pb::AttestationBounds { max_lifetime_seconds: s }),
            ..Default::default()
        };
        let root_der = ca::pem_to_der(&root.cert_pem).unwrap();
        let trust = TrustList::verify(trust::sign(&list, &root).unwrap(), &root_der).unwrap();
        Fixture { trust, key }
    }

    fn payload(status: pb::HealthStatus, rule: &str) -> pb::AttestationPayload {
        pb::AttestationPayload {
            version: 1,
            province: "340000".into(),
            status: status as i32,
            issued_at: NOW - 10,
            expires_at: NOW + 290,
            token_digest: vec![9; 32],
            rule_id: rule.into(),
            test_recency: 0,
            purpose: "transit.rail".into(),
        }
    }

    fn verify(f: &Fixture, signed: &pb::SignedAttestation) -> Result<Attestation, &'static str> {
        verify_attestation(&f.trust, signed, &Expected::default(), NOW).map_err(|e| e.reason())
    }

    #[test]
    fn non_green_needs_a_rule_that_may_assign_it_and_names_the_signing_province() {
        let f = fixture(None);
        let sign = |status, rule| f.key.sign(&payload(status, rule));
        assert!(verify(&f, &sign(pb::HealthStatus::Red, "AH-RED")).is_ok());
        assert!(verify(&f, &sign(pb::HealthStatus::Yellow, "AH-YELLOW")).is_ok());
        assert_eq!(verify(&f, &sign(pb::HealthStatus::Red, "AH-YELLOW")), Err("rule_cannot_assign"));
        assert_eq!(verify(&f, &sign(pb::HealthStatus::Yellow, "AH-RED")), Err("rule_cannot_assign"));
        assert_eq!(verify(&f, &sign(pb::HealthStatus::Red, "SD-RED")), Err("rule_not_for_province"));
        assert_eq!(verify(&f, &sign(pb::HealthStatus::Red, "MADE-UP")), Err("unregistered_rule"));
        let err = verify_attestation(&f.trust, &sign(pb::HealthStatus::Red, "SD-RED"), &Expected::default(), NOW);
        assert_eq!(err.unwrap_err().to_string(), "rule \"SD-RED\" names no authority of province 340000");
    }

    #[test]
    fn lifetime_is_bounded_by_the_trust_list() {
        let f = fixture(None);
        assert_eq!(f.trust.attestation_bounds().max_lifetime, trust::DEFAULT_MAX_ATTESTATION_LIFETIME_SECS);
        let mut p = payload(pb::HealthStatus::Green, "");
        p.expires_at = p.issued_at + trust::DEFAULT_MAX_ATTESTATION_LIFETIME_SECS;
        assert!(verify(&f, &f.key.sign(&p)).is_ok(), "exactly the bound");
        p.expires_at += 1;
        assert_eq!(verify(&f, &f.key.sign(&p)), Err("lifetime_too_long"));
        let tight = fixture(Some(60));
        let key = &tight.key;
        assert_eq!(verify(&tight, &key.sign(&payload(pb::HealthStatus::Green, ""))), Err("lifetime_too_long"));
        let mut p = payload(pb::HealthStatus::Green, "");
        p.expires_at = p.issued_at + 60;
        assert!(verify(&tight, &key.sign(&p)).is_ok());
        assert_eq!(trust::diff(&f.trust, &tight.trust).last().unwrap(), "~ attestation lifetime bound 3600 s -> 60 s");
    }

    #[test]
    fn validity_lies_within_the_signing_keys_window() {
        let f = fixture(None);
        let mut early = payload(pb::HealthStatus::Green, "");
        early.issued_at = KEY_NOT_BEFORE - 1;
        early.expires_at = NOW + 10;
        // Also too long; the key window is checked after the lifetime, so bound it first.
        let f_long = fixture(Some(200_000));
        assert_eq!(verify(&f_long, &f_long.key.sign(&early)), Err("outside_key_validity"));
        let mut late = payload(pb::HealthStatus::Green, "");
        late.expires_at = KEY_NOT_AFTER + 1;
        assert_eq!(verify(&f_long, &f_long.key.sign(&late)), Err("outside_key_validity"));
        late.expires_at = KEY_NOT_AFTER;
        assert!(verify(&f_long, &f_long.key.sign(&late)).is_ok(), "up to the key's not_after");
        assert_eq!(verify(&f, &f.key.sign(&late)), Err("lifetime_too_long"), "the default bound still holds");
    }

    #[test]
    fn only_the_canonical_encoding_verifies() {
        let f = fixture(None);
        let canonical = payload(pb::HealthStatus::Green, "").encode_to_vec();
        assert!(verify(&f, &f.key.sign_bytes(canonical.clone())).is_ok());
        // Status (field 3) as a two-byte varint: 0x81 0x00 is 1.
        let status = canonical.iter().position(|b| *b == 3 << 3).unwrap();
        let mut varint = canonical.clone();
        varint.splice(status + 1..status + 2, [0x81, 0x00]);
        assert_eq!(verify(&f, &f.key.sign_bytes(varint)), Err("non_canonical"));
        // The province's tag (field 2) in two bytes.
        let mut tag = canonical.clone();
        tag.splice(2..3, [0x92, 0x00]);
        assert_eq!(tag[5..11], *b"340000");
        assert_eq!(verify(&f, &f.key.sign_bytes(tag)), Err("non_canonical"));
        // The province's length prefix in two bytes.
        let mut len = canonical.clone();
        len.splice(3..4, [0x86, 0x00]);
        assert_eq!(verify(&f, &f.key.sign_bytes(len)), Err("non_canonical"));
        // A default value written out (test_recency = 0), and fields out of order.
        let mut default = canonical.clone();
        default.extend_from_slice(&[8 << 3, 0]);
        assert_eq!(verify(&f, &f.key.sign_bytes(default)), Err("non_canonical"));
        let swapped = [&canonical[2..10], &canonical[..2], &canonical[10..]].concat();
        assert_eq!(verify(&f, &f.key.sign_bytes(swapped)), Err("non_canonical"));
    }
}
