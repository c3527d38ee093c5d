//! The gateway's requests as domain types: a hub's `LookupRequest` is checked once, on the
//! way in (`TryFrom<pb::LookupRequest>`), and the lookup works with a [`Lookup`] that is
//! well-formed by construction.

use huren_pki::attest::valid_purpose;
use huren_pki::identity::InvalidProvinceCode;
use huren_pki::qr::TOKEN_LEN;
use huren_pki::ProvinceCode;
use huren_proto::pb;

/// A hub's lookup: which province, which token, for what purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) province: ProvinceCode,
    pub(crate) token: [u8; TOKEN_LEN],
    pub(crate) purpose: String,
}

/// A malformed `LookupRequest` (`INVALID_REQUEST`, metadata `field`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLookup {
    /// The province is not a GB/T 2260 code.
    #[error("{0}")]
    Province(InvalidProvinceCode),
    /// A token of the wrong length.
    #[error("token must be {TOKEN_LEN} bytes, got {0}")]
    TokenLength(usize),
    /// A purpose that is not dotted lowercase words.
    #[error("purpose must be dotted lowercase words, e.g. transit.highway")]
    Purpose,
    /// A `LookupBatch` of more tokens than allowed.
    #[error("at most {max} tokens per LookupBatch, got {0}", max = crate::lookup_batch::MAX_BATCH_TOKENS)]
    TooManyTokens(usize),
}

impl InvalidLookup {
    /// The request field at fault (`ErrorInfo` metadata `field`).
    pub fn field(&self) -> &'static str {
        match self {
            InvalidLookup::Province(_) => "province",
            InvalidLookup::TokenLength(_) => "token",
            InvalidLookup::Purpose => "purpose",
            InvalidLookup::TooManyTokens(_) => "tokens",
        }
    }
}

impl TryFrom<pb::LookupRequest> for Lookup {
    type Error = InvalidLookup;

    fn try_from(req: pb::LookupRequest) -> Result<Self, Self::Error> {
        let province = req.province.parse().map_err(InvalidLookup::Province)?;
        let token = <[u8; TOKEN_LEN]>::try_from(req.token.as_slice())
            .map_err(|_| InvalidLookup::TokenLength(req.token.len()))?;
        if !valid_purpose(&req.purpose) {
            return Err(InvalidLookup::Purpose);
        }
        Ok(Self { province, token, purpose: req.purpose })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(province: &str, token: usize, purpose: &str) -> pb::LookupRequest {
        pb::LookupRequest { province: province.into(), token: vec![9; token], purpose: purpose.into() }
    }

    #[test]
    fn a_lookup_is_checked_field_by_field_in_order() {
        let ok = Lookup::try_from(request("340000", TOKEN_LEN, "transit.rail")).unwrap();
        assert_eq!((ok.province.as_str(), ok.token, ok.purpose.as_str()), ("340000", [9; TOKEN_LEN], "transit.rail"));
        let err = Lookup::try_from(request("34000", 3, "Bad")).unwrap_err();
        assert_eq!(err.field(), "province", "the province is checked first");
        assert!(err.to_string().starts_with("invalid province code \"34000\""), "{err}");
        let err = Lookup::try_from(request("340000", 3, "Bad")).unwrap_err();
        assert_eq!((err.field(), err.to_string().as_str()), ("token", "token must be 16 bytes, got 3"));
        let err = Lookup::try_from(request("340000", TOKEN_LEN, "Bad")).unwrap_err();
        assert_eq!(err, InvalidLookup::Purpose);
    }
}
