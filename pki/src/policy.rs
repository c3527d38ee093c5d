//! The minimum-fields policy: which attestation fields may cross a border, per purpose.
//!
//! Policy is data (in the signed trust list, [`FieldPolicy`]) checked by pure functions:
//! [`wire_fields`] reads the encoded payload's field numbers straight off the wire (prost
//! would silently skip unknown ones), and [`present_fields`] lists the fields a decoded
//! payload actually carries. [`crate::verify::verify_attestation`] applies
//! both, so gateways and offline verifiers fail closed on anything outside the policy.

use std::collections::{BTreeMap, BTreeSet};

use huren_proto::pb;
use prost::encoding::{decode_key, skip_field, DecodeContext, WireType};

/// Every field of `AttestationPayload`: number and name.
pub const PAYLOAD_FIELDS: [(u32, &str); 9] = [
    (1, "version"),
    (2, "province"),
    (3, "status"),
    (4, "issued_at"),
    (5, "expires_at"),
    (6, "token_digest"),
    (7, "rule_id"),
    (8, "test_recency"),
    (9, "purpose"),
];

/// Fields every purpose must allow: without them an attestation cannot be checked
/// (`rule_id` because a non-green status must always say which rule assigned it).
pub const REQUIRED_FIELDS: [&str; 8] =
    ["version", "province", "status", "issued_at", "expires_at", "token_digest", "rule_id", "purpose"];

/// Largest encoded payload accepted; the minimal dataset needs about 100 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256;

/// The purposes of the default policy.
pub const DEFAULT_PURPOSES: [&str; 5] =
    ["transit.rail", "transit.highway", "transit.air", "transit.general", "venue.entry"];

/// Why a payload breaks the policy. `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The encoded payload is longer than [`MAX_PAYLOAD_BYTES`] (its length in bytes).
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    Oversized(usize),
    /// A field number `AttestationPayload` does not define: possibly smuggled data.
    #[error("payload carries unknown protobuf field number {0}")]
    UnknownField(u32),
    /// A field number that occurs twice (prost would silently keep the last).
    #[error("payload repeats protobuf field number {0}")]
    DuplicateField(u32),
    /// Bad varint, truncated field or a field with the wrong wire type.
    #[error("payload is not well-formed protobuf")]
    Malformed,
    /// The payload's purpose has no entry in the policy.
    #[error("purpose {0:?} is not in the field policy")]
    PurposeNotInPolicy(String),
    /// The payload carries a field its purpose does not allow.
    #[error("field {field} is not allowed for purpose {purpose:?}")]
    FieldNotAllowed {
        /// Name of the offending field.
        field: &'static str,
        /// The payload's purpose.
        purpose: String,
    },
}

impl Violation {
    /// Short, data-free label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::Oversized(_) => "oversized",
            Violation::UnknownField(_) => "unknown_field",
            Violation::DuplicateField(_) => "duplicate_field",
            Violation::Malformed => "malformed",
            Violation::PurposeNotInPolicy(_) => "purpose_not_in_policy",
            Violation::FieldNotAllowed { .. } => "field_not_allowed",
        }
    }
}

fn field_name(number: u32) -> Option<&'static str> {
    PAYLOAD_FIELDS.iter().find(|(n, _)| *n == number).map(|(_, name)| *name)
}

/// The field numbers on the wire, in order; refuses unknown, repeated or malformed fields.
pub fn wire_fields(payload: &[u8]) -> Result<Vec<u32>, Violation> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Violation::Oversized(payload.len()));
    }
    let mut buf = payload;
    let mut seen = Vec::new();
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf).map_err(|_| Violation::Malformed)?;
        if field_name(number).is_none() {
            return Err(Violation::UnknownField(number));
        }
        if seen.contains(&number) {
            return Err(Violation::DuplicateField(number));
        }
        let expected = match number {
            2 | 6 | 7 | 9 => WireType::LengthDelimited,
            _ => WireType::Varint,
        };
        if wire_type != expected {
            return Err(Violation::Malformed);
        }
        skip_field(wire_type, number, &mut buf, DecodeContext::default()).map_err(|_| Violation::Malformed)?;
        seen.push(number);
    }
    Ok(seen)
}

/// Names of the fields a decoded payload carries (non-default values).
pub fn present_fields(p: &pb::AttestationPayload) -> Vec<&'static str> {
    let flags = [
        p.version != 0,
        !p.province.is_empty(),
        p.status != 0,
        p.issued_at != 0,
        p.expires_at != 0,
        !p.token_digest.is_empty(),
        !p.rule_id.is_empty(),
        p.test_recency != 0,
        !p.purpose.is_empty(),
    ];
    PAYLOAD_FIELDS.iter().zip(flags).filter(|(_, present)| *present).map(|((_, name), _)| *name).collect()
}

/// Allowed fields per purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPolicy {
    purposes: BTreeMap<String, BTreeSet<&'static str>>,
}

impl Default for FieldPolicy {
    /// The architecture's minimal dataset for every transit purpose; venue entry gets no
    /// test-recency bucket.
    fn default() -> Self {
        let all: BTreeSet<&'static str> = PAYLOAD_FIELDS.iter().map(|(_, n)| *n).collect();
        let purposes = DEFAULT_PURPOSES
            .iter()
            .map(|p| {
                let mut fields = all.clone();
                if *p == "venue.entry" {
                    fields.remove("test_recency");
                }
                (p.to_string(), fields)
            })
            .collect();
        Self { purposes }
    }
}

impl FieldPolicy {
    /// Reads the policy of a trust list; an absent or empty policy is the default.
    pub fn from_pb(policy: Option<&pb::FieldPolicy>) -> Result<Self, String> {
        let Some(policy) = policy.filter(|p| !p.purposes.is_empty()) else {
            return Ok(Self::default());
        };
        let mut purposes = BTreeMap::new();
        for p in &policy.purposes {
            if !crate::attest::valid_purpose(&p.purpose) {
                return Err(format!("field policy purpose {:?} is malformed", p.purpose));
            }
            let mut fields = BTreeSet::new();
            for f in &p.fields {
                let name = PAYLOAD_FIELDS
                    .iter()
                    .map(|(_, n)| *n)
                    .find(|n| n == f)
                    .ok_or_else(|| format!("field policy for {:?} names unknown field {f:?}", p.purpose))?;
                fields.insert(name);
            }
            if let Some(missing) = REQUIRED_FIELDS.iter().find(|r| !fields.contains(*r)) {
                return Err(format!("field policy for {:?} must allow {missing}", p.purpose));
            }
            if purposes.insert(p.purpose.clone(), fields).is_some() {
                return Err(format!("field policy lists purpose {:?} twice", p.purpose));
            }
        }
        Ok(Self { purposes })
    }

    /// The wire form, as carried in the trust list.
    pub fn to_pb(&self) -> pb::FieldPolicy {
        pb::FieldPolicy {
            purposes: self
                .purposes
                .iter()
                .map(|(p, f)| pb::PurposePolicy {
                    purpose: p.clone(),
                    fields: f.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// Fields allowed for `purpose`; `None` if the policy does not know the purpose.
    pub fn allowed(&self, purpose: &str) -> Option<&BTreeSet<&'static str>> {
        self.purposes.get(purpose)
    }

    /// The purposes the policy knows, in sorted order.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.purposes.keys().map(String::as_str)
    }

    /// Whether `field` may be sent for `purpose`.
    pub fn allows(&self, purpose: &str, field: &str) -> bool {
        self.allowed(purpose).is_some_and(|f| f.contains(field))
    }

    /// Checks a decoded payload's fields against its purpose.
    pub fn check(&self, payload: &pb::AttestationPayload) -> Result<(), Violation> {
        let allowed =
            self.allowed(&payload.purpose).ok_or_else(|| Violation::PurposeNotInPolicy(payload.purpose.clone()))?;
        match present_fields(payload).into_iter().find(|f| !allowed.contains(f)) {
            Some(field) => Err(Violation::FieldNotAllowed { field, purpose: payload.purpose.clone() }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn payload() -> pb::AttestationPayload {
        pb::AttestationPayload {
            version: 1,
            province: "340000".into(),
            status: 1,
            issued_at: 10,
            expires_at: 20,
            token_digest: vec![0; 32],
            rule_id: String::new(),
            test_recency: 2,
            purpose: "venue.entry".into(),
        }
    }

    #[test]
    fn wire_scan_refuses_unknown_and_repeated_fields() {
        let good = payload().encode_to_vec();
        assert_eq!(wire_fields(&good).unwrap(), vec![1, 2, 3, 4, 5, 6, 8, 9]);
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[(10 << 3) as u8, 1]); // field 10, varint 1
        assert_eq!(wire_fields(&unknown), Err(Violation::UnknownField(10)));
        let mut repeated = good.clone();
        repeated.extend_from_slice(&[(3 << 3) as u8, 3]); // status again
        assert_eq!(wire_fields(&repeated), Err(Violation::DuplicateField(3)));
        let mut wrong_type = good.clone();
        wrong_type.extend_from_slice(&[(7 << 3) as u8, 1]); // rule_id as varint
        assert_eq!(wire_fields(&wrong_type), Err(Violation::Malformed));
        assert_eq!(wire_fields(&[0xff]), Err(Violation::Malformed));
        assert_eq!(wire_fields(&vec![0; 300]), Err(Violation::Oversized(300)));
    }

    #[test]
    fn each_purpose_gets_exactly_its_fields() {
        let policy = FieldPolicy::default();
        let mut p = payload();
        assert_eq!(
            policy.check(&p),
            Err(Violation::FieldNotAllowed { field: "test_recency", purpose: "venue.entry".into() })
        );
        p.purpose = "transit.rail".into();
        assert_eq!(policy.check(&p), Ok(()));
        p.purpose = "transit.space".into();
        assert_eq!(policy.check(&p), Err(Violation::PurposeNotInPolicy("transit.space".into())));
        assert_eq!(FieldPolicy::from_pb(Some(&policy.to_pb())).unwrap(), policy);
    }

    #[test]
    fn policies_must_allow_the_required_fields() {
        let bad = pb::FieldPolicy {
            purposes: vec![pb::PurposePolicy { purpose: "x.y".into(), fields: vec!["status".into()] }],
        };
        assert!(FieldPolicy::from_pb(Some(&bad)).unwrap_err().contains("must allow version"));
        let unknown = pb::FieldPolicy {
            purposes: vec![pb::PurposePolicy { purpose: "x.y".into(), fields: vec!["name".into()] }],
        };
        assert!(FieldPolicy::from_pb(Some(&unknown)).unwrap_err().contains("unknown field \"name\""));
    }
}
