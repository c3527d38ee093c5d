//! The wrong role for each restricted RPC: national roles calling hub, coordinator or
//! gateway RPCs, hubs and nodes uploading trust lists, anyone but the gateway calling
//! Attest, anyone but a province's admin and authorities changing its statuses or
//! issuing its tokens, and who may read a node's transparency log.

use huren_proto::pb;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{
    attest, case, green_upsert, grpc, lookup, lookup_request, random_token, root_signed, rows, transparency, upload,
    upsert, Outcome,
};

/// Asks for a token of Anhui's demo subject.
async fn issue_token(channel: Channel) -> Outcome {
    let request = pb::IssueTokenRequest { subject_ref: "ah-driver-0001".into(), ..Default::default() };
    grpc(pb::status_admin_client::StatusAdminClient::new(channel).issue_token(request).await)
}

rows![
    // --- wrong role for each restricted RPC
    case(
        coordinator_calls_lookup,
        "coordinator calls Lookup",
        Status(Code::PermissionDenied, "Lookup/Lookup is for transport hub identities"),
        |c| {
            Box::pin(async move { lookup(c.gateway(&c.id("coordinator", "adv-nhc")), lookup_request("340000")).await })
        },
    ),
    case(
        auditor_calls_lookup,
        "auditor calls Lookup",
        Status(Code::PermissionDenied, "Lookup/Lookup is for transport hub identities"),
        |c| Box::pin(async move { lookup(c.gateway(&c.id("auditor", "adv-a")), lookup_request("340000")).await }),
    ),
    case(
        unregistered_hub_calls_lookup,
        "unregistered hub calls Lookup",
        Status(Code::PermissionDenied, "hub adv-unregistered is not registered in the trust list"),
        |c| {
            Box::pin(async move { lookup(c.gateway(&c.id("hub", "adv-unregistered")), lookup_request("340000")).await })
        },
    ),
    case(
        rail_only_hub_declares_air_travel,
        "rail-only hub declares air travel",
        Status(Code::PermissionDenied, "hub adv-rail-only is not registered for purpose transit.air"),
        |c| {
            Box::pin(async move {
                let request = pb::LookupRequest { purpose: "transit.air".into(), ..lookup_request("340000") };
                lookup(c.gateway(&c.id("hub", "adv-rail-only")), request).await
            })
        },
    ),
    case(
        hub_uploads_a_root_signed_newer_trust_list,
        "hub uploads a root-signed newer trust list",
        Status(Code::PermissionDenied, "TrustRegistry/Upload is for coordinator identities"),
        |c| Box::pin(async move { upload(c.gateway(&c.id("hub", "adv-probe")), root_signed(&c, |_| {})).await }),
    ),
    case(
        node_uploads_a_root_signed_newer_trust_list,
        "node uploads a root-signed newer trust list",
        Status(Code::PermissionDenied, "TrustRegistry/Upload is for coordinator identities"),
        |c| Box::pin(async move { upload(c.gateway(&c.id("node", "340000")), root_signed(&c, |_| {})).await }),
    ),
    case(
        hub_calls_a_nodes_attest_directly,
        "hub calls a node's Attest directly",
        Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
        |c| Box::pin(async move { attest(c.node(&c.id("hub", "adv-probe"), "340000")).await }),
    ),
    case(
        the_provinces_own_admin_calls_attest,
        "the province's own admin calls Attest",
        Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
        |c| Box::pin(async move { attest(c.node(&c.id("admin", "340000"), "340000")).await }),
    ),
    case(
        anhuis_node_calls_shandongs_attest,
        "Anhui's node calls Shandong's Attest",
        Status(Code::PermissionDenied, "Attestation/Attest is for gateway identities"),
        |c| Box::pin(async move { attest(c.node(&c.id("node", "340000"), "370000")).await }),
    ),
    case(
        gateway_calls_upsert_status,
        "gateway calls UpsertStatus",
        Status(
            Code::PermissionDenied,
            "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
        ),
        |c| {
            Box::pin(
                async move { upsert(c.node(&c.id("gateway", "national-1"), "340000"), green_upsert("ah-adv")).await },
            )
        },
    ),
    case(
        shandongs_admin_acts_for_anhui_upsert_status,
        "Shandong's admin acts for Anhui (UpsertStatus)",
        Status(
            Code::PermissionDenied,
            "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
        ),
        |c| {
            Box::pin(async move { upsert(c.node(&c.id("admin", "370000"), "340000"), green_upsert("ah-adv")).await })
        },
    ),
    case(
        anhuis_node_identity_calls_its_own_upsert_status,
        "Anhui's node identity calls its own UpsertStatus",
        Status(
            Code::PermissionDenied,
            "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
        ),
        |c| {
            Box::pin(async move { upsert(c.node(&c.id("node", "340000"), "340000"), green_upsert("ah-adv")).await })
        },
    ),
    case(
        shandongs_node_acts_for_anhui_upsert_status,
        "Shandong's node acts for Anhui (UpsertStatus)",
        Status(
            Code::PermissionDenied,
            "StatusAdmin/UpsertStatus is for the admin and authority identities of province 340000",
        ),
        |c| {
            Box::pin(async move { upsert(c.node(&c.id("node", "370000"), "340000"), green_upsert("ah-adv")).await })
        },
    ),
    case(
        auditor_calls_issue_token,
        "auditor calls IssueToken",
        Status(Code::PermissionDenied, "StatusAdmin/IssueToken is for the admin identity of province 340000"),
        |c| Box::pin(async move { issue_token(c.node(&c.id("auditor", "adv-a"), "340000")).await }),
    ),
    case(
        shandongs_admin_acts_for_anhui_issue_token,
        "Shandong's admin acts for Anhui (IssueToken)",
        Status(Code::PermissionDenied, "StatusAdmin/IssueToken is for the admin identity of province 340000"),
        |c| Box::pin(async move { issue_token(c.node(&c.id("admin", "370000"), "340000")).await }),
    ),
    case(
        hub_reads_a_nodes_tree_head,
        "hub reads a node's tree head",
        Status(Code::PermissionDenied, "Transparency/GetTreeHead is for auditors, coordinators, gateways"),
        |c| {
            Box::pin(async move {
                let mut client = transparency(c.node(&c.id("hub", "adv-probe"), "340000"));
                grpc(client.get_tree_head(pb::GetTreeHeadRequest {}).await)
            })
        },
    ),
    case(
        hub_asks_for_a_consistency_proof,
        "hub asks for a consistency proof",
        Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
        |c| {
            Box::pin(async move {
                let mut client = transparency(c.node(&c.id("hub", "adv-probe"), "340000"));
                grpc(client.get_consistency_proof(pb::ConsistencyProofRequest { old_size: 1, new_size: 1 }).await)
            })
        },
    ),
    case(
        admin_asks_for_an_inclusion_proof,
        "admin asks for an inclusion proof",
        Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
        |c| {
            Box::pin(async move {
                let mut client = transparency(c.node(&c.id("admin", "340000"), "340000"));
                grpc(client.get_inclusion_proof(pb::InclusionProofRequest { index: 0, tree_size: 1 }).await)
            })
        },
    ),
    case(
        gateway_reads_log_entries,
        "gateway reads log entries",
        Status(Code::PermissionDenied, "Transparency proofs and entries is for auditors and coordinators"),
        |c| {
            Box::pin(async move {
                let mut client = transparency(c.node(&c.id("gateway", "national-1"), "340000"));
                grpc(client.get_entries(pb::GetEntriesRequest { start: 0, end: 1 }).await)
            })
        },
    ),
    case(
        shandongs_admin_reads_an_anhui_subjects_entries,
        "Shandong's admin reads an Anhui subject's entries",
        Status(
            Code::PermissionDenied,
            "Transparency/GetSubjectEntries is for auditors and the admin of province 340000",
        ),
        |c| {
            Box::pin(async move {
                let mut client = transparency(c.node(&c.id("admin", "370000"), "340000"));
                grpc(client.get_subject_entries(pb::SubjectEntriesRequest { token: random_token() }).await)
            })
        },
    ),
];
