//! Rolled-back, mis-signed and malformed trust lists, uploaded by a real coordinator.

use huren_pki::ca::{self, Validity};
use huren_pki::trust;
use huren_proto::pb;
use huren_tests::code;
use prost::Message;
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{case, newer_list, root_signed, rows, upload_as_coordinator};

rows![
    // --- rolled-back and mis-signed trust lists (uploaded by a real coordinator)
    case(
        trust_list_rolled_back_to_an_older_sequence,
        "trust list rolled back to an older sequence",
        Status(Code::FailedPrecondition, "is not newer than the held sequence"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.sequence -= 11);
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        the_current_trust_list_replayed,
        "the current trust list replayed",
        Status(Code::FailedPrecondition, "is not newer than the held sequence"),
        |c| {
            Box::pin(async move {
                let current = c.f.gateway_trust().expect("gateway").current().signed().clone();
                upload_as_coordinator(&c, current).await
            })
        },
    ),
    case(
        trust_list_signed_by_a_province_ca_key,
        "trust list signed by a province CA key",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let list = newer_list(&c);
                let signed = trust::sign(&list, &c.f.pki.province_ca(&code("340000")).expect("CA")).expect("sign");
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_signed_by_a_foreign_root,
        "trust list signed by a foreign root",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let list = newer_list(&c);
                let foreign = ca::new_root("huren.gov", Validity::days(1)).expect("foreign root");
                upload_as_coordinator(&c, trust::sign(&list, &foreign).expect("sign")).await
            })
        },
    ),
    case(
        trust_list_payload_altered_after_signing,
        "trust list payload altered after signing",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                let mut list = pb::TrustList::decode(signed.payload.as_slice()).expect("decode");
                list.revoked_serials.clear();
                list.sequence += 1;
                signed.payload = list.encode_to_vec();
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_with_a_truncated_signature,
        "trust list with a truncated signature",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                signed.signature.truncate(signed.signature.len() / 2);
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_without_a_signature,
        "trust list without a signature",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                signed.signature.clear();
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        root_signed_bytes_that_are_no_trust_list,
        "root-signed bytes that are no TrustList",
        Status(Code::InvalidArgument, "not a valid TrustList message"),
        |c| {
            Box::pin(async move {
                let payload = vec![0xff; 40];
                let signature = ca::sign_with_ca_key(
                    &c.f.pki.root().expect("root"),
                    &[trust::TRUST_LIST_CONTEXT, payload.as_slice()].concat(),
                )
                .expect("sign");
                upload_as_coordinator(&c, pb::SignedTrustList { payload, signature }).await
            })
        },
    ),
    case(
        root_signed_trust_list_of_an_unknown_format_version,
        "root-signed trust list of an unknown format version",
        Status(Code::InvalidArgument, "unsupported trust list version 2"),
        |c| Box::pin(async move { upload_as_coordinator(&c, root_signed(&c, |l| l.version = 2)).await }),
    ),
    case(
        root_signed_trust_list_for_another_trust_domain,
        "root-signed trust list for another trust domain",
        Status(Code::FailedPrecondition, "is for trust domain \"evil.gov\", not \"huren.gov\""),
        |c| {
            Box::pin(
                async move { upload_as_coordinator(&c, root_signed(&c, |l| l.trust_domain = "evil.gov".into())).await },
            )
        },
    ),
    case(
        root_signed_trust_list_listing_a_province_twice,
        "root-signed trust list listing a province twice",
        Status(Code::InvalidArgument, "duplicate province 340000"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    let anhui = l.provinces.iter().find(|p| p.code == "340000").expect("anhui").clone();
                    l.provinces.push(anhui);
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_whose_kid_does_not_match_its_key,
        "root-signed trust list whose kid does not match its key",
        Status(Code::InvalidArgument, "kid does not match its key"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.provinces[0].attestation_keys[0].kid[0] ^= 1);
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_with_a_31_byte_attestation_key,
        "root-signed trust list with a 31-byte attestation key",
        Status(Code::InvalidArgument, "attestation key is not 32 bytes"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.provinces[0].attestation_keys[0].public_key.pop();
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_registering_a_hub_for_an_unknown_purpose,
        "root-signed trust list registering a hub for an unknown purpose",
        Status(Code::InvalidArgument, "which the field policy lacks"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.hubs.push(pb::HubRegistration {
                        id: "adv-space".into(),
                        purposes: vec!["transit.space".into()],
                        province: String::new(),
                    })
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_placing_a_hub_in_no_valid_province,
        "root-signed trust list placing a hub in no valid province",
        Status(Code::InvalidArgument, "hub adv-nowhere: invalid province code \"99\""),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.hubs.push(pb::HubRegistration {
                        id: "adv-nowhere".into(),
                        purposes: vec!["transit.rail".into()],
                        province: "99".into(),
                    })
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_whose_field_policy_drops_a_required_field,
        "root-signed trust list whose field policy drops a required field",
        Status(Code::InvalidArgument, "must allow token_digest"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    let mut policy = huren_pki::policy::FieldPolicy::default().to_pb();
                    policy.purposes[0].fields.retain(|f| f != "token_digest");
                    l.field_policy = Some(policy);
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
];
