//! The strict minimum-fields check: `policy::wire_fields` on arbitrary payload bytes, and
//! `FieldPolicy::check` on whatever prost decodes from them (default and a custom policy).
#![no_main]

use std::sync::OnceLock;

use huren_pki::policy::{self, FieldPolicy, Violation, PAYLOAD_FIELDS, REQUIRED_FIELDS};
use huren_proto::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn custom() -> &'static FieldPolicy {
    static POLICY: OnceLock<FieldPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let fields: Vec<String> = REQUIRED_FIELDS.iter().map(|f| f.to_string()).collect();
        FieldPolicy::from_pb(Some(&pb::FieldPolicy {
            purposes: vec![
                pb::PurposePolicy { purpose: "venue.stadium".into(), fields: fields.clone() },
                pb::PurposePolicy {
                    purpose: "transit.ferry".into(),
                    fields: fields.into_iter().chain(["test_recency".to_owned()]).collect(),
                },
            ],
        }))
        .expect("custom policy")
    })
}

fn number(name: &str) -> u32 {
    PAYLOAD_FIELDS.iter().find(|(_, n)| *n == name).expect("known field").0
}

fn check_policy(policy: &FieldPolicy, p: &pb::AttestationPayload) {
    match policy.check(p) {
        Ok(()) => {
            let allowed = policy.allowed(&p.purpose).expect("purpose in policy");
            assert!(policy::present_fields(p).iter().all(|f| allowed.contains(f)));
        }
        Err(Violation::PurposeNotInPolicy(purpose)) => {
            assert_eq!(purpose, p.purpose);
            assert!(policy.allowed(&p.purpose).is_none());
        }
        Err(Violation::FieldNotAllowed { field, purpose }) => {
            assert_eq!(purpose, p.purpose);
            assert!(policy::present_fields(p).contains(&field));
            assert!(!policy.allows(&purpose, field));
        }
        Err(other) => panic!("check gave a wire-level violation: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let wire = policy::wire_fields(data);
    match &wire {
        Ok(fields) => {
            assert!(data.len() <= policy::MAX_PAYLOAD_BYTES);
            for (i, f) in fields.iter().enumerate() {
                assert!(PAYLOAD_FIELDS.iter().any(|(n, _)| n == f), "unknown field {f} accepted");
                assert!(!fields[..i].contains(f), "field {f} accepted twice");
            }
        }
        Err(Violation::Oversized(n)) => assert_eq!(*n, data.len()),
        Err(_) => assert!(data.len() <= policy::MAX_PAYLOAD_BYTES),
    }
    let Ok(p) = pb::AttestationPayload::decode(data) else { return };
    let present: Vec<u32> = policy::present_fields(&p).iter().map(|n| number(n)).collect();
    if let Ok(fields) = &wire {
        // Every field that decoded to a non-default value was on the wire.
        assert!(present.iter().all(|n| fields.contains(n)), "present {present:?} not within wire {fields:?}");
    }
    check_policy(&FieldPolicy::default(), &p);
    check_policy(custom(), &p);
    // prost's own encoding of the decoded payload is always accepted (if small enough).
    let canonical = p.encode_to_vec();
    if canonical.len() <= policy::MAX_PAYLOAD_BYTES {
        assert_eq!(policy::wire_fields(&canonical).expect("canonical encoding"), present);
    }
});
