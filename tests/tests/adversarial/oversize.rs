//! Oversized messages: servers decode at most 64 KiB, trust lists 8 MiB.

use huren_proto::pb;
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{
    case, green_upsert, grpc, lookup, lookup_request, root_signed, rows, upload_as_coordinator, upsert,
};

// gRPC convention for a message over a size limit; the servers keep both sizes in the message.
const TOO_LARGE: Code = Code::ResourceExhausted;
const TOO_LARGE_TEXT: &str = "request message length too large: found ";

rows![
    // --- oversized messages (servers decode at most 64 KiB; trust lists 8 MiB)
    case(one_mib_token_in_a_lookup, "1 MiB token in a Lookup", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
        Box::pin(async move {
            let request = pb::LookupRequest { token: vec![0x41; 1 << 20], ..lookup_request("340000") };
            lookup(c.gateway(&c.id("hub", "adv-probe")), request).await
        })
    }),
    case(
        one_mib_subject_reference_in_an_upsert_status,
        "1 MiB subject reference in an UpsertStatus",
        Status(TOO_LARGE, TOO_LARGE_TEXT),
        |c| {
            Box::pin(async move {
                upsert(c.node(&c.id("admin", "340000"), "340000"), green_upsert(&"a".repeat(1 << 20))).await
            })
        }
    ),
    case(one_mib_token_in_an_attest, "1 MiB token in an Attest", Status(TOO_LARGE, TOO_LARGE_TEXT), |c| {
        Box::pin(async move {
            let request =
                pb::AttestRequest { token: vec![1; 1 << 20], purpose: "transit.rail".into(), ..Default::default() };
            let channel = c.node(&c.id("gateway", "national-1"), "340000");
            grpc(pb::attestation_client::AttestationClient::new(channel).attest(request).await)
        })
    }),
    case(
        nine_mib_root_signed_trust_list_upload,
        "9 MiB root-signed trust list upload",
        Status(TOO_LARGE, TOO_LARGE_TEXT),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.rules[0].legal_basis = "x".repeat(9 << 20));
                upload_as_coordinator(&c, list).await
            })
        }
    ),
];
