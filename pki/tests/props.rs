//! Property tests: encode/decode round trips and signature properties of the wire formats.
//!
//! The Merkle-tree properties (inclusion and consistency proofs, the frontier) live in
//! `translog/tests/properties.rs`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use huren_pki::attest::{token_digest, Attestation, AttestationKey, Status, PAYLOAD_VERSION};
use huren_pki::ca::{self, CaMaterial, Validity};
use huren_pki::policy::{self, FieldPolicy, Violation, PAYLOAD_FIELDS, REQUIRED_FIELDS};
use huren_pki::qr::{self, QrError, Scanned};
use huren_pki::trust::{self, TrustList};
use huren_proto::pb;
use proptest::prelude::*;
use prost::Message;

/// The fixed "now" of every verification here.
const NOW: i64 = 1_750_000_000;
const PROVINCES: [&str; 2] = ["340000", "370000"];
const RED_RULE: &str = "R-RED";
const YELLOW_RULE: &str = "R-YELLOW";

struct Fixture {
    root: CaMaterial,
    root_der: Vec<u8>,
    list: pb::TrustList,
    trust: TrustList,
    /// One active key per province, in `PROVINCES` order.
    keys: Vec<AttestationKey>,
}

/// The one verifier, with nothing bound beyond the trust list.
fn verify(trust: &TrustList, signed: &pb::SignedAttestation, now: i64) -> Result<Attestation, huren_pki::VerifyError> {
    huren_pki::verify_attestation(trust, signed, &huren_pki::Expected::default(), now)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = ca::new_root("huren.gov", Validity::days(30)).unwrap();
        let root_der = ca::pem_to_der(&root.cert_pem).unwrap();
        let keys: Vec<AttestationKey> = PROVINCES.iter().map(|_| AttestationKey::generate().unwrap()).collect();
        let rule = |id: &str, status: pb::HealthStatus| pb::Rule {
            id: id.into(),
            title: id.into(),
            may_assign: vec![status as i32],
            // Each province's own authority may apply it, so it holds for either signer.
            authorities: PROVINCES.iter().map(|p| format!("{p}/cdc")).collect(),
            ..Default::default()
        };
        let list = pb::TrustList {
            version: trust::TRUST_LIST_VERSION,
            sequence: 1,
            issued_at: NOW - 10,
            next_update: NOW + 86_400,
            trust_domain: "huren.gov".into(),
            provinces: PROVINCES
                .iter()
                .zip(&keys)
                .map(|(code, key)| pb::Province {
                    code: (*code).into(),
                    name: format!("province {code}"),
                    endpoints: vec![],
                    ca_cert: vec![],
                    attestation_keys: vec![pb::AttestationKey {
                        kid: key.kid().0.to_vec(),
                        public_key: key.public_key().to_vec(),
                        not_before: NOW - 86_400,
                        not_after: NOW + 86_400,
                        status: pb::KeyStatus::Active as i32,
                    }],
                })
                .collect(),
            rules: vec![rule(RED_RULE, pb::HealthStatus::Red), rule(YELLOW_RULE, pb::HealthStatus::Yellow)],
            ..Default::default()
        };
        let trust = TrustList::verify(trust::sign(&list, &root).unwrap(), &root_der).unwrap();
        Fixture { root, root_der, list, trust, keys }
    })
}

fn purpose() -> impl Strategy<Value = String> {
    "[a-z_]{1,10}(\\.[a-z_]{1,10}){0,3}"
}

fn province_code() -> impl Strategy<Value = String> {
    "[1-9][0-9]{5}"
}

/// A structurally valid attestation that the fixture's trust list accepts at `NOW`.
fn valid_attestation() -> impl Strategy<Value = (usize, Attestation)> {
    (
        0..PROVINCES.len(),
        prop_oneof![Just(Status::Green), Just(Status::Yellow), Just(Status::Red)],
        // Within the default lifetime bound (an hour) and the keys' windows.
        0i64..1800,
        1i64..1800,
        any::<[u8; 32]>(),
        0i32..=4,
        prop::sample::select(policy::DEFAULT_PURPOSES.to_vec()),
    )
        .prop_map(|(p, status, age, ttl, digest, recency, purpose)| {
            let rule_id = match status {
                Status::Green => None,
                Status::Yellow => Some(YELLOW_RULE.to_owned()),
                Status::Red => Some(RED_RULE.to_owned()),
            };
            // The default policy gives venue entry no test-recency bucket.
            let recency = if purpose == "venue.entry" { 0 } else { recency };
            let attestation = Attestation {
                province: PROVINCES[p].parse().unwrap(),
                status,
                issued_at: NOW - age,
                expires_at: NOW + ttl,
                token_digest: digest,
                rule_id,
                test_recency: pb::TestRecency::try_from(recency).unwrap(),
                purpose: purpose.to_owned(),
            };
            (p, attestation)
        })
}

/// Any `AttestationPayload`, valid or not.
fn any_payload() -> impl Strategy<Value = pb::AttestationPayload> {
    (
        (any::<u32>(), ".{0,12}", any::<i32>(), any::<i64>(), any::<i64>()),
        (prop::collection::vec(any::<u8>(), 0..40), ".{0,20}", any::<i32>(), ".{0,30}"),
    )
        .prop_map(
            |((version, province, status, issued_at, expires_at), (token_digest, rule_id, test_recency, purpose))| {
                pb::AttestationPayload {
                    version,
                    province,
                    status,
                    issued_at,
                    expires_at,
                    token_digest,
                    rule_id,
                    test_recency,
                    purpose,
                }
            },
        )
}

fn signed_attestation() -> impl Strategy<Value = pb::SignedAttestation> {
    (
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(payload, signature, kid)| pb::SignedAttestation { payload, signature, kid })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn qr_strings_round_trip_in_the_alphanumeric_alphabet(
        attestation in signed_attestation(),
        token in any::<[u8; 16]>(),
    ) {
        let code = pb::QrCode { attestation: Some(attestation), token: token.to_vec() };
        let text = qr::encode_qr(&code);
        prop_assert!(text.starts_with(qr::QR_PREFIX));
        prop_assert!(text[qr::QR_PREFIX.len()..].bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        prop_assert_eq!(qr::decode_qr(&text).unwrap(), code.clone());
        // Surrounding whitespace (a scanner's newline) does not matter.
        prop_assert_eq!(qr::decode_qr(&format!(" {text}\n")).unwrap(), code);
    }

    #[test]
    fn qr_decoding_refuses_wrong_token_lengths_and_missing_attestations(
        attestation in signed_attestation(),
        token in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        prop_assume!(token.len() != qr::TOKEN_LEN);
        let with = qr::encode_qr(&pb::QrCode { attestation: Some(attestation), token: token.clone() });
        prop_assert_eq!(qr::decode_qr(&with).unwrap_err(), QrError::Token);
        let without = qr::encode_qr(&pb::QrCode { attestation: None, token });
        prop_assert_eq!(qr::decode_qr(&without).unwrap_err(), QrError::MissingAttestation);
    }

    #[test]
    fn scanned_qr_yields_the_payload_province_and_the_token(
        code in province_code(),
        payload in any_payload(),
        token in any::<[u8; 16]>(),
    ) {
        let payload = pb::AttestationPayload { province: code.clone(), ..payload };
        let signed = pb::SignedAttestation { payload: payload.encode_to_vec(), signature: vec![0; 64], kid: vec![0; 8] };
        let text = qr::encode_qr(&pb::QrCode { attestation: Some(signed), token: token.to_vec() });
        prop_assume!(text.len() <= qr::MAX_QR_CHARS);
        let scanned = Scanned::parse(&text).unwrap();
        prop_assert_eq!(scanned.province().as_str(), code.as_str());
        prop_assert_eq!(scanned.token(), &token[..]);
        // Some scanners report alphanumeric-mode codes in lower case: the same code.
        let lower = Scanned::parse(&text.to_ascii_lowercase()).unwrap();
        prop_assert_eq!(lower.province().as_str(), code.as_str());
        prop_assert_eq!(lower.token(), &token[..]);
    }

    #[test]
    fn token_text_round_trips_in_either_case(token in any::<[u8; 16]>()) {
        let text = qr::token_to_text(&token);
        prop_assert_eq!(text.len(), 26);
        prop_assert_eq!(qr::token_from_text(&text).unwrap(), token.to_vec());
        prop_assert_eq!(qr::token_from_text(&text.to_ascii_lowercase()).unwrap(), token.to_vec());
        let pair = format!("340000:{}", text.to_ascii_lowercase());
        let scanned = Scanned::parse(&pair).unwrap();
        prop_assert_eq!(scanned.token(), &token[..]);
    }

    #[test]
    fn token_text_of_another_length_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        prop_assume!(bytes.len() != qr::TOKEN_LEN);
        prop_assert_eq!(qr::token_from_text(&qr::token_to_text(&bytes)).unwrap_err(), QrError::Token);
    }

    #[test]
    fn signed_attestations_verify_to_exactly_what_was_signed((p, attestation) in valid_attestation()) {
        let f = fixture();
        let payload = pb::AttestationPayload::from(&attestation);
        prop_assert_eq!(payload.version, PAYLOAD_VERSION);
        let signed = f.keys[p].sign(&payload);
        prop_assert_eq!(verify(&f.trust, &signed, NOW).unwrap(), attestation.clone());
        // Through a QR and back, too.
        let token = [7u8; 16];
        let text = qr::encode_qr(&pb::QrCode { attestation: Some(signed), token: token.to_vec() });
        let decoded = qr::decode_qr(&text).unwrap();
        prop_assert_eq!(verify(&f.trust, decoded.attestation.as_ref().unwrap(), NOW).unwrap(), attestation);
        prop_assert_eq!(token_digest(&decoded.token).len(), 32);
    }

    #[test]
    fn any_single_byte_change_to_payload_signature_or_kid_fails_verification(
        (p, attestation) in valid_attestation(),
        part in 0usize..3,
        index in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let f = fixture();
        let mut signed = f.keys[p].sign(&pb::AttestationPayload::from(&attestation));
        let bytes = match part {
            0 => &mut signed.payload,
            1 => &mut signed.signature,
            _ => &mut signed.kid,
        };
        let i = index % bytes.len();
        bytes[i] ^= flip;
        prop_assert!(verify(&f.trust, &signed, NOW).is_err(), "part {} byte {} ^ {:#x} verified", part, i, flip);
    }

    #[test]
    fn attestations_verify_only_within_their_window((p, attestation) in valid_attestation(), skew in 61i64..100_000) {
        let f = fixture();
        let signed = f.keys[p].sign(&pb::AttestationPayload::from(&attestation));
        prop_assert!(verify(&f.trust, &signed, attestation.expires_at).is_err());
        prop_assert!(verify(&f.trust, &signed, attestation.issued_at - skew).is_err());
        prop_assert!(verify(&f.trust, &signed, attestation.issued_at).is_ok());
    }

    #[test]
    fn field_policies_round_trip(
        purposes in prop::collection::btree_map(purpose(), prop::collection::vec(any::<bool>(), 1), 1..6),
    ) {
        let pb_policy = pb::FieldPolicy {
            purposes: purposes
                .iter()
                .map(|(purpose, optional)| {
                    let mut fields: Vec<String> = REQUIRED_FIELDS.iter().map(|f| f.to_string()).collect();
                    if optional[0] {
                        fields.push("test_recency".into());
                    }
                    pb::PurposePolicy { purpose: purpose.clone(), fields }
                })
                .collect(),
        };
        let policy = FieldPolicy::from_pb(Some(&pb_policy)).unwrap();
        prop_assert_eq!(FieldPolicy::from_pb(Some(&policy.to_pb())).unwrap(), policy.clone());
        prop_assert_eq!(policy.purposes().count(), purposes.len());
        for (purpose, optional) in &purposes {
            for f in REQUIRED_FIELDS {
                prop_assert!(policy.allows(purpose, f));
            }
            prop_assert_eq!(policy.allows(purpose, "test_recency"), optional[0]);
        }
    }

    #[test]
    fn wire_fields_accepts_every_encoded_payload(payload in any_payload()) {
        let bytes = payload.encode_to_vec();
        let present: Vec<u32> = policy::present_fields(&payload)
            .iter()
            .map(|name| PAYLOAD_FIELDS.iter().find(|(_, n)| n == name).unwrap().0)
            .collect();
        if bytes.len() <= policy::MAX_PAYLOAD_BYTES {
            prop_assert_eq!(policy::wire_fields(&bytes).unwrap(), present);
        } else {
            prop_assert_eq!(policy::wire_fields(&bytes).unwrap_err(), Violation::Oversized(bytes.len()));
        }
    }

    #[test]
    fn any_verified_payload_is_canonical(
        (p, attestation) in valid_attestation(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        insert in prop::option::of((any::<usize>(), prop::collection::vec(any::<u8>(), 1..4))),
    ) {
        // Arbitrary byte edits of an honest payload, re-signed with the real key: whatever
        // the verifier accepts is exactly prost's (canonical) encoding of what it decodes to.
        let f = fixture();
        let mut bytes = pb::AttestationPayload::from(&attestation).encode_to_vec();
        for (i, b) in edits {
            let i = i % bytes.len();
            bytes[i] = b;
        }
        if let Some((i, extra)) = insert {
            let i = i % (bytes.len() + 1);
            bytes.splice(i..i, extra);
        }
        let signed = f.keys[p].sign_bytes(bytes.clone());
        if verify(&f.trust, &signed, NOW).is_ok() {
            let decoded = pb::AttestationPayload::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(decoded.encode_to_vec(), bytes);
        }
    }

    #[test]
    fn wire_fields_output_is_known_and_unique(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(fields) = policy::wire_fields(&bytes) {
            let mut seen = BTreeMap::new();
            for f in &fields {
                prop_assert!(PAYLOAD_FIELDS.iter().any(|(n, _)| n == f));
                prop_assert!(seen.insert(*f, ()).is_none());
            }
        }
    }

    #[test]
    fn trust_lists_round_trip_and_any_signature_change_is_refused(
        sequence in 1u64..u64::MAX,
        revoked in prop::collection::vec("[0-9a-f]{2,32}", 0..5),
        index in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let f = fixture();
        let list = pb::TrustList { sequence, revoked_serials: revoked.clone(), ..f.list.clone() };
        let signed = trust::sign(&list, &f.root).unwrap();
        let verified = TrustList::verify(signed.clone(), &f.root_der).unwrap();
        prop_assert_eq!(verified.sequence(), sequence);
        prop_assert_eq!(verified.raw(), &list);
        prop_assert_eq!(pb::TrustList::decode(verified.signed().payload.as_slice()).unwrap(), list);
        // Serials are integers: `0a1` and `a1` are one serial.
        let distinct = revoked.iter().map(|s| huren_pki::serial::canonical(s)).collect::<std::collections::HashSet<_>>();
        prop_assert_eq!(verified.revoked_serials().len(), distinct.len());
        prop_assert!(revoked.iter().all(|s| verified.is_revoked(s)));
        let mut bad = signed.clone();
        let i = index % bad.signature.len();
        bad.signature[i] ^= flip;
        prop_assert!(TrustList::verify(bad, &f.root_der).is_err());
        let mut bad = signed;
        let i = index % bad.payload.len();
        bad.payload[i] ^= flip;
        prop_assert!(TrustList::verify(bad, &f.root_der).is_err());
    }
}
