//! Writes the seed corpora under `fuzz/corpus/<target>/`: genuine and broken inputs of
//! every format, made with the fixture's deterministic keys and fixed root.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (from the repository root).

use std::path::{Path, PathBuf};

use huren_fuzz::{fixture, payload, NOW};
use huren_pki::qr;
use huren_pki::trust;
use huren_proto::pb;
use huren_translog::{consistency_proof, inclusion_proof, leaf_hash, root, Frontier};
use prost::Message;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    [&[mode][..], bytes].concat()
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let f = fixture();
    let token = [0x5a; 16];
    let payloads = [
        ("green-rail", payload("340000", pb::HealthStatus::Green, "transit.rail")),
        ("red-highway", payload("340000", pb::HealthStatus::Red, "transit.highway")),
        ("yellow-venue", payload("370000", pb::HealthStatus::Yellow, "venue.entry")),
        ("green-general", payload("370000", pb::HealthStatus::Green, "transit.general")),
    ];

    // qr_decode
    let dir = corpus.join("qr_decode");
    for (name, p) in &payloads {
        let key = if p.province == "340000" { &f.anhui } else { &f.shandong };
        let code = pb::QrCode { attestation: Some(key.sign(p)), token: token.to_vec() };
        write(&dir, &format!("{name}.txt"), qr::encode_qr(&code).as_bytes());
    }
    write(&dir, "pair.txt", format!("340000:{}", qr::token_to_text(&token)).as_bytes());
    write(&dir, "pair-lower.txt", format!("370000:{}", qr::token_to_text(&token).to_lowercase()).as_bytes());
    write(
        &dir,
        "no-attestation.txt",
        qr::encode_qr(&pb::QrCode { attestation: None, token: token.to_vec() }).as_bytes(),
    );
    write(&dir, "prefix-only.txt", b"HRN1:");
    write(&dir, "bad-base32.txt", b"HRN1:0189!!");

    // attestation_verify: mode 0 = encoded SignedAttestation, 1..=4 = payload signed by a key
    let dir = corpus.join("attestation_verify");
    for (name, p) in &payloads {
        let key = if p.province == "340000" { &f.anhui } else { &f.shandong };
        write(&dir, &format!("signed-{name}"), &with_mode(0, &key.sign(p).encode_to_vec()));
        let mode = if p.province == "340000" { 1 } else { 2 };
        write(&dir, &format!("payload-{name}"), &with_mode(mode, &p.encode_to_vec()));
    }
    let red = payload("340000", pb::HealthStatus::Red, "transit.rail");
    write(&dir, "payload-revoked-key", &with_mode(3, &red.encode_to_vec()));
    write(&dir, "payload-lapsed-key", &with_mode(4, &red.encode_to_vec()));
    let mut expired = red.clone();
    expired.expires_at = NOW - 1;
    write(&dir, "payload-expired", &with_mode(1, &expired.encode_to_vec()));
    let mut unknown = red.encode_to_vec();
    unknown.extend([15 << 3, 1]);
    write(&dir, "payload-unknown-field", &with_mode(1, &unknown));

    // policy_check: payload bytes
    let dir = corpus.join("policy_check");
    for (name, p) in &payloads {
        write(&dir, name, &p.encode_to_vec());
    }
    let mut venue_with_recency = payload("340000", pb::HealthStatus::Green, "venue.entry");
    venue_with_recency.test_recency = 2;
    write(&dir, "venue-with-recency", &venue_with_recency.encode_to_vec());
    let mut repeated = red.encode_to_vec();
    repeated.extend([3 << 3, 1]);
    write(&dir, "repeated-status", &repeated);
    write(&dir, "empty", b"");

    // trust_list_parse: mode 0 = SignedTrustList, mode 1 = TrustList payload
    let dir = corpus.join("trust_list_parse");
    write(&dir, "signed-fixture", &with_mode(0, &f.trust.signed().encode_to_vec()));
    write(&dir, "payload-fixture", &with_mode(1, &f.list.encode_to_vec()));
    let mut full = f.list.clone();
    full.sequence += 1;
    full.field_policy = Some(huren_pki::policy::FieldPolicy::default().to_pb());
    full.retention = Some(pb::RetentionPolicy {
        status_max_age_seconds: 86_400,
        audit_max_age_seconds: 2 * 86_400,
        cache_max_seconds: 60,
        disclosure_max_age_seconds: 7 * 86_400,
    });
    full.sunset = Some(pb::SunsetOrder { effective_at: NOW + 3600, reason: "end of the emergency".into() });
    write(&dir, "payload-full", &with_mode(1, &full.encode_to_vec()));
    write(&dir, "signed-full", &with_mode(0, &trust::sign(&full, &f.root).unwrap().encode_to_vec()));
    write(
        &dir,
        "payload-minimal",
        &with_mode(
            1,
            &pb::TrustList { version: 1, trust_domain: "huren.gov".into(), ..Default::default() }.encode_to_vec(),
        ),
    );

    // translog_proofs: mode 0 raw, 1 structured, 2 frontier bytes
    let dir = corpus.join("translog_proofs");
    let leaves: Vec<_> = (0u64..7).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let proof = inclusion_proof(3, &leaves).unwrap();
    let mut raw = vec![0];
    raw.extend(3u64.to_be_bytes());
    raw.extend(7u64.to_be_bytes());
    raw.extend(leaves[3]);
    raw.extend(root(&leaves));
    for h in &proof {
        raw.extend(h);
    }
    write(&dir, "raw-inclusion", &raw);
    let proof = consistency_proof(3, &leaves).unwrap();
    let mut raw = vec![0];
    raw.extend(3u64.to_be_bytes());
    raw.extend(7u64.to_be_bytes());
    raw.extend(root(&leaves[..3]));
    raw.extend(root(&leaves));
    for h in &proof {
        raw.extend(h);
    }
    write(&dir, "raw-consistency", &raw);
    write(&dir, "structured-plain", &[1, 6, 3, 2]);
    write(&dir, "structured-tampered", &[1, 40, 17, 9, 5, 0x80, 33, 1, 2]);
    let frontier: Frontier = leaves.iter().copied().collect();
    write(&dir, "frontier-7", &with_mode(2, &frontier.to_bytes()));
    write(&dir, "frontier-empty", &with_mode(2, &Frontier::new().to_bytes()));
    println!("seeds written under {}", corpus.display());
}
