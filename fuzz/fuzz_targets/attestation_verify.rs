//! Signed-attestation decoding and verification against a fixed trust list.
//!
//! The first byte picks the mode: 0 = the rest is an encoded `SignedAttestation`
//! (signature almost never valid: exercises decoding, kid, wire and policy checks);
//! 1..=4 = the rest is payload bytes, signed correctly by Anhui's active, Shandong's
//! active, Anhui's revoked or Anhui's lapsed key (exercises every content check past the
//! signature). Whatever verifies must satisfy the checks the verifier promises: among
//! them canonical bytes, a lifetime within the trust list's bound and the key's window,
//! and for a non-green status a rule that may assign it and names the signing province.
#![no_main]

use huren_fuzz::{fixture, Fixture, NOW};
use huren_pki::attest::{Attestation, Kid, Status};
use huren_pki::policy;
use huren_pki::qr;
use huren_pki::trust::MAX_CLOCK_SKEW_SECS;
use huren_pki::AuthorityRef;
use huren_proto::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check(f: &Fixture, signed: &pb::SignedAttestation, now: i64) {
    match huren_pki::verify_attestation(&f.trust, signed, &huren_pki::Expected::default(), now) {
        Ok(a) => {
            assert!(policy::wire_fields(&signed.payload).is_ok());
            let p = pb::AttestationPayload::decode(signed.payload.as_slice()).expect("verified payload decodes");
            assert_eq!(p.encode_to_vec(), signed.payload, "verified payload is canonical");
            assert!(f.trust.field_policy().check(&p).is_ok());
            assert_eq!(Attestation::try_from(p).expect("verified payload is valid"), a);
            assert!(a.expires_at > now && a.issued_at <= now + MAX_CLOCK_SKEW_SECS);
            let province = f.trust.province(&a.province).expect("listed province");
            let key = province.keys.get(&Kid::from_slice(&signed.kid).expect("kid")).expect("listed key");
            assert!(a.expires_at - a.issued_at <= f.trust.attestation_bounds().max_lifetime);
            assert!(key.not_before <= a.issued_at && a.expires_at <= key.not_after);
            match a.status {
                Status::Green => assert!(a.rule_id.is_none()),
                status => {
                    let rule = f.trust.rule(a.rule_id.as_deref().expect("rule")).expect("registered rule");
                    assert!(rule.may_assign.contains(&(status.to_pb() as i32)));
                    let own = |r: &String| r.parse::<AuthorityRef>().is_ok_and(|r| r.province == a.province);
                    assert!(rule.authorities.iter().any(own));
                }
            }
            // A QR carrying it hands the exact bytes back.
            let text = qr::encode_qr(&pb::QrCode { attestation: Some(signed.clone()), token: vec![0; 16] });
            if text.len() <= qr::MAX_QR_CHARS {
                assert_eq!(qr::decode_qr(&text).expect("QR").attestation.as_ref(), Some(signed));
            }
        }
        Err(e) => {
            let _ = (e.reason(), e.to_string());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => {
            if let Ok(signed) = pb::SignedAttestation::decode(rest) {
                check(f, &signed, NOW);
            }
        }
        m => {
            let key = match m {
                1 => &f.anhui,
                2 => &f.shandong,
                3 => &f.revoked,
                _ => &f.lapsed,
            };
            let signed = key.sign_bytes(rest.to_vec());
            check(f, &signed, NOW);
            // And at the payload's own issue time, where the time checks pass.
            if let Ok(p) = pb::AttestationPayload::decode(rest) {
                check(f, &signed, p.issued_at);
            }
        }
    }
});
