//! Shared fixture of the fuzz targets: a trust list with deterministic attestation keys
//! (Ed25519 from fixed seeds), so every target verifies against the same federation.
//!
//! The national root (ECDSA P-256) is a fixed test root committed beside this file
//! (`fixture-root.pem`, `fixture-root.key`; made with `huren pki init`, used for nothing
//! else), so seeds signed by it verify in every fuzzing process.

use std::sync::OnceLock;

use huren_pki::attest::AttestationKey;
use huren_pki::ca::{self, CaMaterial};
use huren_pki::trust::{self, TrustList};
use huren_proto::pb;

/// The fixed "now" at which the targets verify.
pub const NOW: i64 = 1_750_000_000;
/// Rules in the fixture's registry.
pub const RED_RULE: &str = "NHC-CC-2022-9";
pub const YELLOW_RULE: &str = "NHC-SC-2022-9";

pub struct Fixture {
    pub root: CaMaterial,
    pub root_der: Vec<u8>,
    pub list: pb::TrustList,
    pub trust: TrustList,
    /// Active keys: Anhui (340000), Shandong (370000).
    pub anhui: AttestationKey,
    pub shandong: AttestationKey,
    /// Anhui keys that are revoked, and past their validity window.
    pub revoked: AttestationKey,
    pub lapsed: AttestationKey,
}

/// An Ed25519 attestation key from a fixed seed (PKCS#8 v1 wrapping).
pub fn key_from_seed(seed: u8) -> AttestationKey {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend([seed; 32]);
    let pem =
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", data_encoding::BASE64.encode(&der));
    AttestationKey::from_pkcs8_pem(&pem).expect("fixed key")
}

fn key_entry(key: &AttestationKey, not_before: i64, not_after: i64, status: pb::KeyStatus) -> pb::AttestationKey {
    pb::AttestationKey {
        kid: key.kid().0.to_vec(),
        public_key: key.public_key().to_vec(),
        not_before,
        not_after,
        status: status as i32,
    }
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = CaMaterial {
            cert_pem: include_str!("fixture-root.pem").to_owned(),
            key_pem: include_str!("fixture-root.key").to_owned(),
        };
        let root_der = ca::pem_to_der(&root.cert_pem).expect("root DER");
        let (anhui, shandong, revoked, lapsed) =
            (key_from_seed(1), key_from_seed(2), key_from_seed(3), key_from_seed(4));
        let (from, to) = (NOW - 86_400, NOW + 365 * 86_400);
        let rule = |id: &str, status: pb::HealthStatus| pb::Rule {
            id: id.into(),
            title: format!("rule {id}"),
            may_assign: vec![status as i32],
            max_duration_seconds: 14 * 86_400,
            // One authority per province, so a non-green status can verify for either.
            authorities: vec!["340000/hefei-cdc".into(), "370000/jinan-cdc".into()],
            lapses_to: pb::HealthStatus::Green as i32,
            ..Default::default()
        };
        let list = pb::TrustList {
            version: trust::TRUST_LIST_VERSION,
            sequence: 7,
            issued_at: NOW - 60,
            next_update: NOW + 86_400,
            trust_domain: "huren.gov".into(),
            provinces: vec![
                pb::Province {
                    code: "340000".into(),
                    name: "Anhui".into(),
                    endpoints: vec!["https://127.0.0.1:7443".into()],
                    ca_cert: vec![],
                    attestation_keys: vec![
                        key_entry(&anhui, from, to, pb::KeyStatus::Active),
                        key_entry(&revoked, from, to, pb::KeyStatus::Revoked),
                        key_entry(&lapsed, NOW - 2 * 86_400, NOW - 86_400, pb::KeyStatus::Retired),
                    ],
                },
                pb::Province {
                    code: "370000".into(),
                    name: "Shandong".into(),
                    endpoints: vec!["https://127.0.0.1:7444".into()],
                    ca_cert: vec![],
                    attestation_keys: vec![key_entry(&shandong, from, to, pb::KeyStatus::Active)],
                },
            ],
            rules: vec![rule(RED_RULE, pb::HealthStatus::Red), rule(YELLOW_RULE, pb::HealthStatus::Yellow)],
            revoked_serials: vec!["0123abcd".into()],
            hubs: vec![pb::HubRegistration {
                id: "sd-jinan-highway".into(),
                purposes: vec!["transit.highway".into()],
                province: "370000".into(),
                name: "Jinan highway exit".into(),
            }],
            ..Default::default()
        };
        let trust = TrustList::verify(trust::sign(&list, &root).expect("sign"), &root_der).expect("fixture list");
        Fixture { root, root_der, list, trust, anhui, shandong, revoked, lapsed }
    })
}

/// A valid payload of the fixture's federation at [`NOW`].
pub fn payload(province: &str, status: pb::HealthStatus, purpose: &str) -> pb::AttestationPayload {
    let rule_id = match status {
        pb::HealthStatus::Red => RED_RULE.into(),
        pb::HealthStatus::Yellow => YELLOW_RULE.into(),
        _ => String::new(),
    };
    pb::AttestationPayload {
        version: huren_pki::attest::PAYLOAD_VERSION,
        province: province.into(),
        status: status as i32,
        issued_at: NOW - 5,
        expires_at: NOW + 300,
        token_digest: huren_pki::attest::token_digest(&[0x5a; 16]).to_vec(),
        rule_id,
        test_recency: if purpose == "venue.entry" { 0 } else { pb::TestRecency::Within48h as i32 },
        purpose: purpose.into(),
    }
}

/// Reads a big-endian u64 from the front of `data`, zero-padded.
pub fn take_u64(data: &mut &[u8]) -> u64 {
    let n = data.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[8 - n..].copy_from_slice(&data[..n]);
    *data = &data[n..];
    u64::from_be_bytes(bytes)
}

/// Reads a 32-byte hash from the front of `data`, zero-padded.
pub fn take_hash(data: &mut &[u8]) -> [u8; 32] {
    let n = data.len().min(32);
    let mut hash = [0u8; 32];
    hash[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    hash
}
