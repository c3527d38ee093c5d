//! Who applies a status: an authority identity the rule names, issued by its own
//! province's CA, never a claim in the request.

use huren_pki::ca::Validity;
use huren_proto::pb;
use huren_tests::{change, RED_RULE};
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{case, identity, rows, upsert, OWN_CA};

rows![
    // --- who applies a status: an authority identity the rule names, never a claim
    case(
        shandongs_authority_acts_at_anhuis_node,
        "Shandong's authority acts at Anhui's node",
        Status(Code::PermissionDenied, "is for the admin and authority identities of province 340000"),
        |c| {
            Box::pin(async move {
                let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                upsert(c.node(&c.id("authority", "370000/jinan-cdc"), "340000"), red).await
            })
        },
    ),
    case(
        anhuis_admin_turns_a_code_red_naming_hefei_cdc,
        "Anhui's admin turns a code red naming Hefei CDC",
        Status(Code::PermissionDenied, "is not the caller"),
        |c| {
            Box::pin(async move {
                let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "340000/hefei-cdc");
                upsert(c.node(&c.id("admin", "340000"), "340000"), red).await
            })
        },
    ),
    case(
        anhuis_admin_turns_a_code_red,
        "Anhui's admin turns a code red",
        Status(Code::PermissionDenied, "must be applied by an authority identity"),
        |c| {
            Box::pin(async move {
                let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                upsert(c.node(&c.id("admin", "340000"), "340000"), red).await
            })
        },
    ),
    case(
        an_anhui_authority_no_rule_names_turns_a_code_red,
        "an Anhui authority no rule names turns a code red",
        Status(Code::PermissionDenied, "authority 340000/county-bank is not allowed to apply rule"),
        |c| {
            Box::pin(async move {
                let red = change("ah-adv", pb::HealthStatus::Red, RED_RULE, "");
                upsert(c.node(&c.id("authority", "340000/county-bank"), "340000"), red).await
            })
        },
    ),
    case(
        shandongs_ca_issues_an_anhui_authority,
        "Shandong's CA issues an Anhui authority",
        Status(Code::Unauthenticated, OWN_CA),
        |c| {
            Box::pin(async move {
                let identity = identity("spiffe://huren.gov/province/340000/authority/hefei-cdc");
                let who = c.province_issued("370000", identity, Validity::days(1));
                upsert(c.node(&who, "340000"), change("ah-adv", pb::HealthStatus::Red, RED_RULE, "")).await
            })
        }
    ),
];
