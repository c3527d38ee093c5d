//! The traveller's QR string and opaque tokens.
//!
//! QR format: `HRN1:` followed by RFC 4648 base32 without padding (upper case, so the
//! whole string fits the QR alphanumeric mode) of an encoded [`pb::QrCode`]: the signed
//! attestation plus the opaque token it is bound to. Tokens are 16 random bytes
//! (128 bits) written as base32 on the command line; they never encode an ID number.

use huren_proto::pb;
use prost::encoding::{decode_key, skip_field, DecodeContext, WireType};
use prost::Message;

use crate::identity::ProvinceCode;

/// Prefix (and version) of every Huren QR string.
pub const QR_PREFIX: &str = "HRN1:";
/// Length of an opaque token, in bytes.
pub const TOKEN_LEN: usize = 16;
/// Longest QR string accepted (a version-25 QR holds about 1,800 alphanumerics).
pub const MAX_QR_CHARS: usize = 1024;

/// Why a scanned or typed string is not a usable QR string, token or `<province>:<token>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The string does not start with [`QR_PREFIX`] (in either case).
    #[error("QR string does not start with {QR_PREFIX}")]
    Prefix,
    /// The string is longer than [`MAX_QR_CHARS`]; refused before decoding.
    #[error("QR string is longer than {MAX_QR_CHARS} characters")]
    TooLong,
    /// The body after the prefix is not unpadded base32.
    #[error("QR body is not base32")]
    Encoding,
    /// The decoded body, or the attestation payload inside it, is not valid protobuf.
    #[error("QR body is not a valid QrCode message")]
    Decode,
    /// The QR message, or the signed attestation inside it, carries a field number its
    /// message does not define (or one field twice): possibly smuggled data.
    #[error("QR message carries unknown or repeated protobuf field number {0}")]
    UnknownField(u32),
    /// The QR message decodes but is not the canonical encoding of what it decodes to
    /// (over-long varints, tags or lengths, fields out of order, defaults written).
    #[error("QR message is not canonically encoded")]
    NonCanonical,
    /// The QR message has no signed attestation.
    #[error("QR carries no attestation")]
    MissingAttestation,
    /// The token is not [`TOKEN_LEN`] bytes (or, typed, not base32).
    #[error("token must be {TOKEN_LEN} bytes written as 26 base32 characters")]
    Token,
    /// Input that is neither a QR string nor contains the `:` of `<province>:<token>`.
    #[error("expected a QR string (HRN1:...) or <province>:<token>")]
    Form,
    /// The province (typed, or read from the QR's payload) is not a valid code.
    #[error(transparent)]
    Province(#[from] crate::identity::InvalidProvinceCode),
}

/// A fresh random token.
pub fn new_token() -> Result<[u8; TOKEN_LEN], getrandom::Error> {
    let mut token = [0u8; TOKEN_LEN];
    getrandom::getrandom(&mut token)?;
    Ok(token)
}

/// Text form of a token (26 base32 characters).
pub fn token_to_text(token: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(token)
}

/// Parses the text form of a token (case-insensitive).
pub fn token_from_text(text: &str) -> Result<Vec<u8>, QrError> {
    let bytes =
        data_encoding::BASE32_NOPAD.decode(text.trim().to_ascii_uppercase().as_bytes()).map_err(|_| QrError::Token)?;
    if bytes.len() != TOKEN_LEN {
        return Err(QrError::Token);
    }
    Ok(bytes)
}

/// The `HRN1:` string of a QR message, ready to render in alphanumeric mode.
pub fn encode_qr(qr: &pb::QrCode) -> String {
    format!("{QR_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&qr.encode_to_vec()))
}

/// Decodes a QR string (prefix in either case, surrounding whitespace ignored) and checks
/// that it is strictly encoded (only the fields `QrCode` and `SignedAttestation` define,
/// each once, in canonical form: the bytes are what re-encoding gives) and carries an
/// attestation and a token of the right length. Nothing is verified.
pub fn decode_qr(text: &str) -> Result<pb::QrCode, QrError> {
    let text = text.trim();
    if text.len() > MAX_QR_CHARS {
        return Err(QrError::TooLong);
    }
    // Some scanners report alphanumeric-mode QR codes in lower case.
    let upper;
    let text = if text.is_char_boundary(QR_PREFIX.len().min(text.len()))
        && text[..QR_PREFIX.len().min(text.len())].eq_ignore_ascii_case(QR_PREFIX)
    {
        upper = text.to_ascii_uppercase();
        upper.as_str()
    } else {
        text
    };
    let body = text.strip_prefix(QR_PREFIX).ok_or(QrError::Prefix)?;
    let bytes = data_encoding::BASE32_NOPAD.decode(body.as_bytes()).map_err(|_| QrError::Encoding)?;
    let qr = pb::QrCode::decode(bytes.as_slice()).map_err(|_| QrError::Decode)?;
    // prost skips unknown fields and keeps the last of repeated ones: read them off the wire.
    let attestation = known_fields(&bytes, &[(1, WireType::LengthDelimited), (2, WireType::LengthDelimited)])?;
    if let Some(inner) = attestation {
        let fields = [(1, WireType::LengthDelimited), (2, WireType::LengthDelimited), (3, WireType::LengthDelimited)];
        known_fields(inner, &fields)?;
    }
    if qr.encode_to_vec() != bytes {
        return Err(QrError::NonCanonical);
    }
    if qr.attestation.is_none() {
        return Err(QrError::MissingAttestation);
    }
    if qr.token.len() != TOKEN_LEN {
        return Err(QrError::Token);
    }
    Ok(qr)
}

/// Checks that `bytes` holds only the `known` fields (number, wire type), each at most
/// once; returns the body of field 1 if it is present (the embedded attestation).
fn known_fields<'a>(bytes: &'a [u8], known: &[(u32, WireType)]) -> Result<Option<&'a [u8]>, QrError> {
    let mut buf = bytes;
    let mut seen = Vec::new();
    let mut first = None;
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf).map_err(|_| QrError::Decode)?;
        if !known.contains(&(number, wire_type)) || seen.contains(&number) {
            return Err(QrError::UnknownField(number));
        }
        seen.push(number);
        let before = buf;
        skip_field(wire_type, number, &mut buf, DecodeContext::default()).map_err(|_| QrError::Decode)?;
        if number == 1 {
            // The field's body: what was skipped, minus its length prefix.
            let field = &before[..before.len() - buf.len()];
            let mut len = field;
            let n = prost::encoding::decode_varint(&mut len).map_err(|_| QrError::Decode)?;
            first = Some(&len[..usize::try_from(n).map_err(|_| QrError::Decode)?]);
        }
    }
    Ok(first)
}

/// What a hub scanned or typed.
#[derive(Debug, Clone)]
pub enum Scanned {
    /// A QR string; the province is read from its (still unverified) payload.
    Qr {
        /// The province the payload claims; unverified until the attestation is.
        province: ProvinceCode,
        /// The opaque token carried next to the attestation.
        token: Vec<u8>,
        /// The whole decoded QR message.
        qr: pb::QrCode,
    },
    /// `<province>:<token>` typed by an operator.
    Pair {
        /// The province typed before the `:`.
        province: ProvinceCode,
        /// The token typed after it, decoded from base32.
        token: Vec<u8>,
    },
}

impl Scanned {
    /// Reads a QR string (`HRN1:…`, either case) or a typed `<province>:<token>`.
    pub fn parse(input: &str) -> Result<Self, QrError> {
        let input = input.trim();
        if input.get(..QR_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(QR_PREFIX)) {
            let qr = decode_qr(input)?;
            let signed = qr.attestation.as_ref().ok_or(QrError::MissingAttestation)?;
            let payload = pb::AttestationPayload::decode(signed.payload.as_slice()).map_err(|_| QrError::Decode)?;
            let province = payload.province.parse()?;
            let token = qr.token.clone();
            return Ok(Scanned::Qr { province, token, qr });
        }
        let (province, token) = input.split_once(':').ok_or(QrError::Form)?;
        Ok(Scanned::Pair { province: province.parse()?, token: token_from_text(token)? })
    }

    /// The province to ask (for a QR, as its unverified payload claims).
    pub fn province(&self) -> &ProvinceCode {
        match self {
            Scanned::Qr { province, .. } | Scanned::Pair { province, .. } => province,
        }
    }

    /// The opaque token to look up or bind the attestation to.
    pub fn token(&self) -> &[u8] {
        match self {
            Scanned::Qr { token, .. } | Scanned::Pair { token, .. } => token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_round_trip() {
        let t = new_token().unwrap();
        let text = token_to_text(&t);
        assert_eq!(text.len(), 26);
        assert_eq!(token_from_text(&text.to_lowercase()).unwrap(), t.to_vec());
        assert_eq!(token_from_text("ABC"), Err(QrError::Token));
    }

    #[test]
    fn malformed_qr_strings_are_refused() {
        assert_eq!(decode_qr("HRN2:AAAA").unwrap_err(), QrError::Prefix);
        assert_eq!(decode_qr("HRN1:!!!!").unwrap_err(), QrError::Encoding);
        assert_eq!(decode_qr(&format!("HRN1:{}", "A".repeat(2000))).unwrap_err(), QrError::TooLong);
        assert!(matches!(Scanned::parse("340000-XYZ"), Err(QrError::Form)));
        assert!(matches!(Scanned::parse("34000:ABC"), Err(QrError::Province(_))));
        assert_eq!(decode_qr("hrn1:!!!!").unwrap_err(), QrError::Encoding, "lower case is read as a QR");
    }

    fn sample() -> Vec<u8> {
        let signed = pb::SignedAttestation { payload: vec![8, 1], signature: vec![1; 64], kid: vec![2; 8] };
        pb::QrCode { attestation: Some(signed), token: vec![3; TOKEN_LEN] }.encode_to_vec()
    }

    fn text(bytes: &[u8]) -> String {
        format!("{QR_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(bytes))
    }

    #[test]
    fn only_canonical_qr_messages_with_known_fields_decode() {
        assert!(decode_qr(&text(&sample())).is_ok());
        let mut unknown = sample();
        unknown.extend_from_slice(&[3 << 3, 1]); // field 3, varint 1
        assert_eq!(decode_qr(&text(&unknown)).unwrap_err(), QrError::UnknownField(3));
        let mut repeated = sample();
        repeated.extend_from_slice(&[(2 << 3) | 2, 1, 0]); // token again
        assert_eq!(decode_qr(&text(&repeated)).unwrap_err(), QrError::UnknownField(2));
        // An unknown field inside the embedded attestation (its length grows by two).
        let mut inner = sample();
        assert_eq!(inner[0], (1 << 3) | 2);
        inner[1] += 2;
        inner.splice(2..2, [4 << 3, 1]);
        assert_eq!(decode_qr(&text(&inner)).unwrap_err(), QrError::UnknownField(4));
        // The same message with a two-byte tag, a two-byte length, fields out of order.
        let mut long_tag = sample();
        long_tag.splice(0..1, [0x8a, 0x00]);
        assert_eq!(decode_qr(&text(&long_tag)).unwrap_err(), QrError::NonCanonical);
        let mut long_len = sample();
        let len = long_len[1];
        long_len.splice(1..2, [len | 0x80, 0x00]);
        assert_eq!(decode_qr(&text(&long_len)).unwrap_err(), QrError::NonCanonical);
        let good = sample();
        let attestation_end = 2 + usize::from(good[1]);
        let swapped = [&good[attestation_end..], &good[..attestation_end]].concat();
        assert_eq!(decode_qr(&text(&swapped)).unwrap_err(), QrError::NonCanonical);
    }
}
