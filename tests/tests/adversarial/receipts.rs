//! Deletion receipts handed in to the gateway: only a province's node may hand in its
//! own province's receipts, signed with its own key, and a sunset receipt must say
//! nothing remains; only coordinators and auditors list them.

use huren_proto::pb;
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{case, grpc, receipt, rows, signed_by, submit_receipt};

rows![
    case(
        hub_hands_in_a_deletion_receipt,
        "hub hands in a deletion receipt",
        Status(Code::PermissionDenied, "TrustRegistry/SubmitReceipt is for province node identities"),
        |c| {
            Box::pin(async move {
                let signed = signed_by(&c, "340000", &receipt("340000"));
                let channel = c.gateway(&c.id("hub", "adv-probe"));
                submit_receipt(channel, signed).await
            })
        },
    ),
    case(
        anhuis_node_hands_in_shandongs_receipt,
        "Anhui's node hands in Shandong's receipt",
        Status(Code::PermissionDenied, "node of province 340000 cannot hand in a receipt for province 370000"),
        |c| {
            Box::pin(async move {
                let signed = signed_by(&c, "370000", &receipt("370000"));
                let channel = c.gateway(&c.id("node", "340000"));
                submit_receipt(channel, signed).await
            })
        },
    ),
    case(
        anhuis_node_forges_a_receipt_for_shandong_with_its_own_key,
        "Anhui's node forges a receipt for Shandong with its own key",
        Status(Code::InvalidArgument, "is not an attestation key of province 370000"),
        |c| {
            Box::pin(async move {
                let signed = signed_by(&c, "340000", &receipt("370000"));
                let channel = c.gateway(&c.id("node", "340000"));
                submit_receipt(channel, signed).await
            })
        },
    ),
    case(
        anhuis_node_hands_in_a_sunset_receipt_that_says_records_remain,
        "Anhui's node hands in a sunset receipt that says records remain",
        Status(Code::InvalidArgument, "sunset receipt of province 340000 says records remain: 3 status"),
        |c| {
            Box::pin(async move {
                let claim = pb::DeletionReceipt {
                    reason: "sunset".into(),
                    remaining: vec![pb::DeletedCount { kind: "status".into(), count: 3 }],
                    ..receipt("340000")
                };
                let signed = signed_by(&c, "340000", &claim);
                let channel = c.gateway(&c.id("node", "340000"));
                submit_receipt(channel, signed).await
            })
        },
    ),
    case(
        hub_lists_deletion_receipts,
        "hub lists deletion receipts",
        Status(Code::PermissionDenied, "TrustRegistry/ListReceipts is for coordinators and auditors"),
        |c| {
            Box::pin(async move {
                let channel = c.gateway(&c.id("hub", "adv-probe"));
                grpc(
                    pb::trust_registry_client::TrustRegistryClient::new(channel)
                        .list_receipts(pb::ListReceiptsRequest {})
                        .await,
                )
            })
        },
    ),
];
