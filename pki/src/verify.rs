//! The one attestation verifier. The gateway, `huren hub verify`, the client library and the
//! fuzz targets all call [`verify_attestation`]; nothing else decides whether a signed
//! attestation is believed.
//!
//! It assumes the signing node may be compromised and checks, in order: the key id's length,
//! every field number on the wire against the field policy (prost would skip unknown ones),
//! the payload's structure, the signing key (scoped by the payload's province, not revoked,
//! within its window), the Ed25519 signature (`verify_strict`) over the domain-separated
//! exact payload bytes, the time window (with [`MAX_CLOCK_SKEW_SECS`]), the rule registry
//! for a non-green status, and then what the caller expected: the province asked, the token
//! it holds, the purpose asked.

use ed25519_dalek::Signature;
use huren_proto::pb;
use prost::Message as _;

use crate::attest::{signing_input, token_digest, Attestation, Kid, Status};
use crate::identity::ProvinceCode;
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
    if attestation.status != Status::Green {
        let rule = attestation.rule_id.as_deref().unwrap_or_default();
        if trust.rule(rule).is_none() {
            return Err(AttestationError::UnregisteredRule(rule.to_owned()));
        }
    }
    Ok(attestation)
}
