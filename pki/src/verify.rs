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
use crate::trust::{AttestationError, KeyEntry, TrustList, MAX_CLOCK_SKEW_SECS};

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
    Ok(verify_once(trust, signed, expected, now)?.attestation)
}

/// [`verify_attestation`] for many attestations at once, with the same verdicts (and the
/// same refusals) one by one: the contract is checked per attestation exactly as there,
/// and the Ed25519 signatures of those that reach step 6 are checked together
/// ([`crate::batch::verify_strict_batch`]).
pub fn verify_attestations(
    trust: &TrustList,
    items: &[(&pb::SignedAttestation, Expected<'_>)],
    now: i64,
) -> Vec<Result<Verified, VerifyError>> {
    let prepared: Vec<_> = items.iter().map(|(signed, _)| prepare(trust, signed, now)).collect();
    let checks: Vec<_> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|p| crate::batch::SignatureItem { key: &p.key.public_key, message: &p.message, signature: &p.signature })
        .collect();
    let mut verdicts = crate::batch::verify_strict_batch(&checks).into_iter();
    prepared
        .into_iter()
        .zip(items)
        .map(|(p, (_, expected))| {
            let p = p?;
            let signature_ok = verdicts.next().unwrap_or(false);
            p.finish(trust, signature_ok, expected, now)
        })
        .collect()
}

/// [`verify_attestation`], keeping what a cache needs to skip the signature next time.
pub fn verify_once(
    trust: &TrustList,
    signed: &pb::SignedAttestation,
    expected: &Expected<'_>,
    now: i64,
) -> Result<Verified, VerifyError> {
    let pending = prepare(trust, signed, now)?;
    let signature_ok = pending.key.public_key.verify_strict(&pending.message, &pending.signature).is_ok();
    pending.finish(trust, signature_ok, expected, now)
}

/// An attestation that passed [`verify_attestation`]: what a cache keeps so that a hit
/// does not check the (unchanged) signature again — [`Verified::recheck`] re-checks the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The verified attestation.
    pub attestation: Attestation,
    kid: Kid,
    /// The exact key the signature was checked against.
    public_key: [u8; 32],
}

impl Verified {
    /// Re-checks, without the signature, everything that can change between uses of an
    /// attestation verified once: under the trust list in force (the field policy, the
    /// key — still listed with the same public key, not revoked, valid now — the lifetime
    /// bound and the key window, the rule of a non-green status), the time window at
    /// `now`, and the binding to what the caller `expected`. (Wire form, canonical
    /// encoding and the signature are properties of the unchanged bytes.)
    pub fn recheck(&self, trust: &TrustList, expected: &Expected<'_>, now: i64) -> Result<&Attestation, VerifyError> {
        let attestation = &self.attestation;
        trust.field_policy().check(&pb::AttestationPayload::from(attestation)).map_err(AttestationError::from)?;
        let key = signing_key(trust, &attestation.province, self.kid, now)?;
        if key.public_key.as_bytes() != &self.public_key {
            return Err(AttestationError::UnknownKey { province: attestation.province.clone(), kid: self.kid }.into());
        }
        after_signature(trust, attestation, self.kid, key, now)?;
        bound(attestation, expected)?;
        Ok(attestation)
    }
}

/// An attestation checked up to its signature (steps 1–5, the signature parsed).
struct Pending<'t> {
    attestation: Attestation,
    kid: Kid,
    key: &'t KeyEntry,
    message: Vec<u8>,
    signature: Signature,
}

impl Pending<'_> {
    /// Steps 6 (given the signature's verdict) to 10.
    fn finish(
        self,
        trust: &TrustList,
        signature_ok: bool,
        expected: &Expected<'_>,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let attestation = self.attestation;
        if !signature_ok {
            return Err(AttestationError::BadSignature { province: attestation.province.clone(), kid: self.kid }.into());
        }
        after_signature(trust, &attestation, self.kid, self.key, now)?;
        bound(&attestation, expected)?;
        Ok(Verified { attestation, kid: self.kid, public_key: self.key.public_key.to_bytes() })
    }
}

/// Step 10: what the caller expected — the province asked, the token it holds, the purpose.
fn bound(attestation: &Attestation, expected: &Expected<'_>) -> Result<(), VerifyError> {
    if let Some(province) = expected.province {
        if &attestation.province != province {
            return Err(VerifyError::Province { expected: province.clone(), got: attestation.province.clone() });
        }
    }
    if let Some(token) = expected.token {
        if attestation.token_digest != token_digest(token) {
            return Err(VerifyError::TokenBinding);
        }
    }
    if let Some(purpose) = expected.purpose {
        if attestation.purpose != purpose {
            return Err(VerifyError::Purpose { expected: purpose.to_owned(), got: attestation.purpose.clone() });
        }
    }
    Ok(())
}

/// Steps 1–5 and the signature's form: everything before the Ed25519 check.
fn prepare<'t>(
    trust: &'t TrustList,
    signed: &pb::SignedAttestation,
    now: i64,
) -> Result<Pending<'t>, AttestationError> {
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
    let key = signing_key(trust, &attestation.province, kid, now)?;
    let signature = Signature::from_slice(&signed.signature)
        .map_err(|_| AttestationError::BadSignature { province: attestation.province.clone(), kid })?;
    Ok(Pending { attestation, kid, key, message: signing_input(&signed.payload), signature })
}

/// Step 5: the signing key, scoped by the province, not revoked, valid now.
fn signing_key<'t>(
    trust: &'t TrustList,
    province: &ProvinceCode,
    kid: Kid,
    now: i64,
) -> Result<&'t KeyEntry, AttestationError> {
    let entry = trust.province(province).ok_or_else(|| AttestationError::UnknownProvince(province.clone()))?;
    let key = entry.keys.get(&kid).ok_or_else(|| AttestationError::UnknownKey { province: province.clone(), kid })?;
    if key.status == pb::KeyStatus::Revoked {
        return Err(AttestationError::KeyRevoked { province: province.clone(), kid });
    }
    if now < key.not_before || now >= key.not_after {
        return Err(AttestationError::KeyNotValid { province: province.clone(), kid });
    }
    Ok(key)
}

/// Steps 7–9: the time window, the validity bounds, the rule of a non-green status.
fn after_signature(
    trust: &TrustList,
    attestation: &Attestation,
    kid: Kid,
    key: &KeyEntry,
    now: i64,
) -> Result<(), AttestationError> {
    let province = &attestation.province;
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
        check_rule(trust, attestation)?;
    }
    Ok(())
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
        fixture_with(AttestationKey::generate().unwrap(), pb::KeyStatus::Active, max_lifetime_seconds)
    }

    fn fixture_with(key: AttestationKey, status: pb::KeyStatus, max_lifetime_seconds: Option<i64>) -> Fixture {
        let root = ca::new_root("huren.gov", Validity::days(1)).unwrap();
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
                    status: status as i32,
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
    #[test]
    fn many_at_once_give_the_same_verdicts_and_refusals_as_one_by_one() {
        let f = fixture(None);
        let good = f.key.sign(&payload(pb::HealthStatus::Green, ""));
        let mut bad_signature = good.clone();
        bad_signature.signature[3] ^= 1;
        let mut expired = payload(pb::HealthStatus::Green, "");
        expired.expires_at = NOW;
        let expired = f.key.sign(&expired);
        let mut bad_and_expired = expired.clone();
        bad_and_expired.signature[50] ^= 1;
        let red = f.key.sign(&payload(pb::HealthStatus::Red, "AH-RED"));
        let wrong_rule = f.key.sign(&payload(pb::HealthStatus::Red, "SD-RED"));
        let mut short_kid = good.clone();
        short_kid.kid.pop();
        let province: ProvinceCode = "340000".parse().unwrap();
        let other_token = [1u8; 16];
        let signed = [&good, &bad_signature, &expired, &bad_and_expired, &red, &wrong_rule, &short_kid, &good, &red];
        let items: Vec<_> = signed
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let expected = if i == 7 { Expected::scanned(&province, &other_token) } else { Expected::default() };
                (*s, expected)
            })
            .collect();
        let batch: Vec<_> = verify_attestations(&f.trust, &items, NOW)
            .into_iter()
            .map(|r| r.map(|v| v.attestation).map_err(|e| e.reason()))
            .collect();
        let single: Vec<_> =
            items.iter().map(|(s, e)| verify_attestation(&f.trust, s, e, NOW).map_err(|e| e.reason())).collect();
        assert_eq!(batch, single);
        let reasons: Vec<_> = batch.iter().map(|r| r.as_ref().err().copied().unwrap_or("ok")).collect();
        assert_eq!(
            reasons,
            [
                "ok",
                "bad_signature",
                "expired",
                "bad_signature",
                "ok",
                "rule_not_for_province",
                "kid_length",
                "token_binding",
                "ok"
            ]
        );
    }

    #[test]
    fn a_verified_attestation_is_rechecked_against_the_list_in_force_and_the_clock() {
        let key_pem = AttestationKey::generate().unwrap().to_pkcs8_pem().unwrap();
        let key = || AttestationKey::from_pkcs8_pem(&key_pem).unwrap();
        let f = fixture_with(key(), pb::KeyStatus::Active, None);
        let signed = f.key.sign(&payload(pb::HealthStatus::Green, ""));
        let verified = verify_once(&f.trust, &signed, &Expected::default().with_purpose("transit.rail"), NOW).unwrap();
        let recheck = |trust: &TrustList, expected: &Expected<'_>, now| {
            verified.recheck(trust, expected, now).map(|_| ()).map_err(|e| e.reason())
        };
        assert_eq!(recheck(&f.trust, &Expected::default(), NOW), Ok(()));
        // The clock moves on: expired.
        assert_eq!(recheck(&f.trust, &Expected::default(), NOW + 290), Err("expired"));
        // The binding: another purpose, another token.
        assert_eq!(recheck(&f.trust, &Expected::default().with_purpose("venue.entry"), NOW), Err("purpose_mismatch"));
        let province: ProvinceCode = "340000".parse().unwrap();
        assert_eq!(recheck(&f.trust, &Expected::scanned(&province, b"another"), NOW), Err("token_binding"));
        // A newer list revokes the key, or lists another key: refused without the signature.
        let revoked = fixture_with(key(), pb::KeyStatus::Revoked, None);
        assert_eq!(recheck(&revoked.trust, &Expected::default(), NOW), Err("key_revoked"));
        let other = fixture(None);
        assert_eq!(recheck(&other.trust, &Expected::default(), NOW), Err("unknown_key"));
        // A tighter lifetime bound applies to what was verified under the old one.
        let tight = fixture_with(key(), pb::KeyStatus::Active, Some(60));
        assert_eq!(recheck(&tight.trust, &Expected::default(), NOW), Err("lifetime_too_long"));
    }
}
