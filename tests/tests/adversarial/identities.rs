//! Chains that authenticate as no federation identity: a province CA issuing national
//! roles or another province's identities, a province CA minting a sub-CA, the root
//! issuing a province identity, an identity outside the trust domain.

use huren_pki::ca::{self, Validity};
use huren_proto::pb;
use huren_runtime::tls::TlsIdentity;
use huren_tests::{code, identity_from_province_ca, node_peer};
use tonic::Code;

use crate::common::Expect::{Error, Status};
use crate::common::{
    attest, case, green_upsert, grpc, huren_tls_probe, identity, lookup, lookup_request, receipt, root_signed, rows,
    signed_by, submit_receipt, upload, upsert, validity, Ctx, OWN_CA,
};

const ROOT_ONLY: &str = "must be issued directly by the national root";

rows![
    // --- chains that authenticate as no federation identity
    case(
        anhui_ca_issues_a_hub_identity_to_gateway_lookup,
        "Anhui CA issues a hub identity -> gateway Lookup",
        Status(Code::Unauthenticated, ROOT_ONLY),
        |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/hub/adv-probe");
                lookup(c.gateway(&who), lookup_request("340000")).await
            })
        }
    ),
    case(
        anhui_ca_issues_a_coordinator_to_gateway_upload,
        "Anhui CA issues a coordinator -> gateway Upload",
        Status(Code::Unauthenticated, ROOT_ONLY),
        |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/coordinator/adv-nhc");
                upload(c.gateway(&who), root_signed(&c, |_| {})).await
            })
        }
    ),
    case(
        anhui_ca_issues_a_gateway_identity_to_node_attest,
        "Anhui CA issues a gateway identity -> node Attest",
        Status(Code::Unauthenticated, ROOT_ONLY),
        |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/gateway/national-1");
                attest(c.node(&who, "340000")).await
            })
        }
    ),
    case(
        anhui_ca_issues_shandongs_admin_to_shandong_upsert_status,
        "Anhui CA issues Shandong's admin -> Shandong UpsertStatus",
        Status(Code::Unauthenticated, OWN_CA),
        |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/province/370000/admin");
                upsert(c.node(&who, "370000"), green_upsert("sd-adv")).await
            })
        }
    ),
    case(
        anhui_ca_issues_shandongs_node_to_gateway_submit_receipt,
        "Anhui CA issues Shandong's node -> gateway SubmitReceipt",
        Status(Code::Unauthenticated, OWN_CA),
        |c| {
            Box::pin(async move {
                let who = identity_from_province_ca(&c.f, &code("340000"), "spiffe://huren.gov/province/370000/node");
                let signed = signed_by(&c, "370000", &receipt("370000"));
                submit_receipt(c.gateway(&who), signed).await
            })
        }
    ),
    // Anhui's CA (path length 0) mints a "Shandong CA" with the real one's name and URI
    // SAN, and under it a Shandong admin: no path to the root may go through it (the
    // path-length violation is an "other" certificate error: certificate_unknown).
    case(
        anhui_ca_mints_a_shandong_sub_ca_chain_with_anhuis_ca,
        "Anhui CA mints a Shandong sub-CA (chain with Anhui's CA)",
        Error("received fatal alert: CertificateUnknown"),
        |c| {
            Box::pin(async move {
                let who = rogue_sub_ca_admin(&c, true);
                huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("370000")).await
            })
        },
    ),
    case(
        anhui_ca_mints_a_shandong_sub_ca_chain_without_it,
        "Anhui CA mints a Shandong sub-CA (chain without it)",
        Error("received fatal alert: UnknownCA"),
        |c| {
            Box::pin(async move {
                let who = rogue_sub_ca_admin(&c, false);
                huren_tls_probe(&who, node_peer(&c.f, &code("370000")), c.node_addr("370000")).await
            })
        }
    ),
    case(
        root_issues_an_admin_identity_directly_to_node_upsert_status,
        "root issues an admin identity directly -> node UpsertStatus",
        Status(Code::Unauthenticated, OWN_CA),
        |c| {
            Box::pin(async move {
                let who = c.root_issued(identity("spiffe://huren.gov/province/340000/admin"), validity(-3600, 86_400));
                upsert(c.node(&who, "340000"), green_upsert("ah-adv")).await
            })
        },
    ),
    case(
        identity_outside_the_trust_domain_to_gateway_get_trust_list,
        "identity outside the trust domain -> gateway GetTrustList",
        Status(Code::Unauthenticated, "is outside trust domain huren.gov"),
        |c| {
            Box::pin(async move {
                // The client itself expects huren.gov servers; its certificate says evil.gov.
                let root = c.f.pki.root().expect("root");
                let leaf = ca::issue_leaf(&root, &identity("spiffe://evil.gov/hub/adv-probe"), Validity::days(1))
                    .expect("leaf");
                let who = TlsIdentity::from_pem_unchecked(
                    &leaf.cert_pem,
                    &leaf.key_pem,
                    &c.root_pem,
                    identity("spiffe://huren.gov/hub/adv-probe"),
                )
                .expect("identity");
                grpc(
                    pb::trust_registry_client::TrustRegistryClient::new(c.gateway(&who))
                        .get_trust_list(pb::GetTrustListRequest {})
                        .await,
                )
            })
        },
    ),
];

/// A Shandong admin certificate under a "Shandong CA" that Anhui's CA minted (same
/// name and URI SAN as the real one), chained with or without Anhui's CA.
fn rogue_sub_ca_admin(c: &Ctx, with_issuer: bool) -> TlsIdentity {
    let anhui_ca = c.f.pki.province_ca(&code("340000")).expect("Anhui CA");
    let rogue_ca = ca::new_province_ca(&anhui_ca, &c.f.trust_domain, &code("370000"), "Shandong", Validity::days(1))
        .expect("rogue CA");
    let admin = identity("spiffe://huren.gov/province/370000/admin");
    let leaf = ca::issue_leaf(&rogue_ca, &admin, Validity::days(1)).expect("leaf");
    let mut chain = format!("{}{}", leaf.cert_pem, rogue_ca.cert_pem);
    if with_issuer {
        chain.push_str(&anhui_ca.cert_pem);
    }
    TlsIdentity::from_pem_unchecked(&chain, &leaf.key_pem, &c.root_pem, admin).expect("identity")
}
