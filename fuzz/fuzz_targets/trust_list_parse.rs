//! Trust-list parsing and verification.
//!
//! Mode 0 (first byte even): the rest is an encoded `SignedTrustList`, verified against the
//! fixture's root (a forged signature must never pass). Mode 1 (odd): the rest is a
//! `TrustList` payload, signed with the fixture's root key so that every content check
//! runs; whatever is accepted must be internally consistent.
#![no_main]

use huren_fuzz::{fixture, NOW};
use huren_pki::ca;
use huren_pki::trust::{self, TrustList, TRUST_LIST_CONTEXT};
use huren_proto::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn consistent(list: &TrustList) {
    let raw = pb::TrustList::decode(list.signed().payload.as_slice()).expect("accepted payload decodes");
    assert_eq!(&raw, list.raw());
    assert_eq!(list.sequence(), raw.sequence);
    assert!(!list.trust_domain().is_empty());
    assert_eq!(list.provinces().count(), raw.provinces.len());
    for p in &raw.provinces {
        let entry = list.province(&p.code.parse().expect("accepted province code")).expect("indexed");
        assert_eq!(entry.keys.len(), p.attestation_keys.len());
    }
    for r in &raw.rules {
        assert!(list.rule(&r.id).is_some());
    }
    for h in &raw.hubs {
        for purpose in list.hub_purposes(&h.id).expect("registered hub") {
            assert!(list.field_policy().allowed(purpose).is_some());
        }
    }
    assert!(list.field_policy().purposes().count() > 0);
    let r = list.retention();
    assert!(r.status_max_age > 0 && r.audit_max_age > 0 && r.cache_max > 0);
    let _ = list.sunset_in_force(NOW);
    assert_eq!(trust::diff(list, list), vec![format!("sequence {} -> {}", list.sequence(), list.sequence())]);
    let _ = trust::diff(&fixture().trust, list);
    // A genuine attestation of the fixture federation, checked against the fuzzed list.
    let genuine = fixture().anhui.sign(&huren_fuzz::payload("340000", pb::HealthStatus::Red, "transit.rail"));
    let _ = huren_pki::verify_attestation(list, &genuine, &huren_pki::Expected::default(), NOW);
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(signed) = pb::SignedTrustList::decode(rest) {
            // Only lists the fixture root really signed (the seeds) may pass.
            if let Ok(list) = TrustList::verify(signed, &f.root_der) {
                consistent(&list);
            }
        }
    } else {
        let input = [TRUST_LIST_CONTEXT, rest].concat();
        let signature = ca::sign_with_ca_key(&f.root, &input).expect("root signs");
        match TrustList::verify(pb::SignedTrustList { payload: rest.to_vec(), signature }, &f.root_der) {
            Ok(list) => consistent(&list),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
