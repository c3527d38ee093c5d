//! Fixtures shared by the criterion benchmarks under `benches/`: a full-size signed trust
//! list, one province's attestation key, and attestations it signed.

use huren_pki::attest::{token_digest, AttestationKey, PAYLOAD_VERSION};
use huren_pki::ca::Validity;
use huren_pki::registry::{PkiDir, RegistryRule};
use huren_pki::{unix_now, ProvinceCode, TrustList};
use huren_proto::pb;

/// The 34 provincial-level divisions' GB/T 2260 codes: a full-size trust list.
pub const PROVINCES: [&str; 34] = [
    "110000", "120000", "130000", "140000", "150000", "210000", "220000", "230000", "310000", "320000", "330000",
    "340000", "350000", "360000", "370000", "410000", "420000", "430000", "440000", "450000", "460000", "500000",
    "510000", "520000", "530000", "540000", "610000", "620000", "630000", "640000", "650000", "710000", "810000",
    "820000",
];

/// Rule cited by the RED attestation.
pub const RULE: &str = "NHC-CC-2022-9";

/// A signed trust list of every province, one province's attestation key, and a GREEN
/// and a RED attestation it signed.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The signed trust list of the fixture federation.
    pub trust: TrustList,
    /// The national root certificate (DER) the trust list verifies against.
    pub root_der: Vec<u8>,
    /// The province whose key signed the attestations.
    pub province: ProvinceCode,
    /// That province's active attestation key.
    pub key: AttestationKey,
    /// The opaque token both attestations are bound to.
    pub token: [u8; 16],
    /// A GREEN attestation for `token`.
    pub green: pb::SignedAttestation,
    /// A RED attestation for `token`, citing [`RULE`].
    pub red: pb::SignedAttestation,
    /// Unix seconds at which both attestations are valid.
    pub now: i64,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").field("province", &self.province).finish_non_exhaustive()
    }
}

/// An attestation payload as a node signs it.
pub fn payload(province: &ProvinceCode, token: &[u8], red: bool, now: i64) -> pb::AttestationPayload {
    pb::AttestationPayload {
        version: PAYLOAD_VERSION,
        province: province.to_string(),
        status: if red { pb::HealthStatus::Red as i32 } else { pb::HealthStatus::Green as i32 },
        issued_at: now,
        expires_at: now + 300,
        token_digest: token_digest(token).to_vec(),
        rule_id: if red { RULE.into() } else { String::new() },
        test_recency: pb::TestRecency::Within48h as i32,
        purpose: "transit.highway".into(),
    }
}

impl Fixture {
    /// Builds a PKI with all 34 provinces in a temporary folder (takes a second or so).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = PkiDir::init(&dir.path().join("pki"), huren_pki::DEFAULT_TRUST_DOMAIN, Validity::days(30))
            .expect("pki init");
        pki.put_rule(RegistryRule {
            id: RULE.into(),
            title: "Close contact of a confirmed case".into(),
            legal_basis: "bench".into(),
            may_assign: vec!["RED".into()],
            max_duration_seconds: 1_209_600,
            exit_condition: "bench".into(),
            authorities: vec!["340000/hefei-cdc".into()],
            ..Default::default()
        })
        .expect("rule");
        for (i, code) in PROVINCES.iter().enumerate() {
            let code: ProvinceCode = code.parse().expect("code");
            let endpoint = format!("https://127.0.0.1:{}", 17000 + i);
            pki.add_province(&code, &format!("P{code}"), &[endpoint], Validity::days(30)).expect("province");
        }
        let trust = pki.sign_trust_list().expect("trust list");
        let root_der = pki.root_cert_der().expect("root");
        let province: ProvinceCode = "340000".parse().expect("code");
        let pem = std::fs::read_to_string(pki.active_attestation_key(&province).expect("key path")).expect("key");
        let key = AttestationKey::from_pkcs8_pem(&pem).expect("key");
        let token = [7u8; 16];
        let now = unix_now();
        let green = key.sign(&payload(&province, &token, false, now));
        let red = key.sign(&payload(&province, &token, true, now));
        Self { _dir: dir, trust, root_der, province, key, token, green, red, now }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
