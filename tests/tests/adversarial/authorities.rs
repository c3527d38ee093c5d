//! Who applies a status: an authority identity the rule names, issued by its own
//! province's CA, never a claim in the request. Who lifts one before it lapses: only an
//! authority its rule names as a lifter, never the province admin.
//!
//! The lift rows run against [`LIFT_RULE`] (assigned by Hefei and Bengbu CDC, lifted by
//! Hefei CDC only) and [`HELD_RED`], a subject Bengbu CDC turned red under it, both set up
//! with the real federation ([`set_up_lifts`]). What is accepted, and what the log then
//! says, is [`lifts_by_the_named_lifter_are_logged_and_the_admin_greens_only_where_nothing_holds`],
//! in a federation of its own with a clock the test moves.

use huren_cli::federation::{Federation, FederationOptions};
use huren_pki::ca::Validity;
use huren_pki::registry::RegistryRule;
use huren_pki::unix_now;
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_tests::{audit_client, change, code, start_with, RED_RULE, YELLOW_RULE};
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{case, green_upsert, identity, rows, upsert, OWN_CA};

/// A rule whose status two authorities may assign and only one may lift early.
pub(crate) const LIFT_RULE: &str = "ADV-LIFT-1";
/// A subject holding a current RED under [`LIFT_RULE`], applied by Bengbu CDC.
pub(crate) const HELD_RED: &str = "ah-adv-held-red";
const HEFEI_CDC: &str = "340000/hefei-cdc";
const BENGBU_CDC: &str = "340000/bengbu-cdc";

fn lift_rule() -> RegistryRule {
    RegistryRule {
        id: LIFT_RULE.into(),
        title: "Close contact (district assessment)".into(),
        may_assign: vec!["RED".into()],
        max_duration_seconds: 14 * 86_400,
        authorities: vec![HEFEI_CDC.into(), BENGBU_CDC.into()],
        may_lift: vec![HEFEI_CDC.into()],
        lapses_to: Some("GREEN".into()),
        ..Default::default()
    }
}

/// Registers [`LIFT_RULE`] (published with the federation's next trust list).
pub(crate) fn register_lift_rule(f: &Federation) {
    f.pki.put_rule(lift_rule()).expect("lift rule");
}

/// Bengbu CDC turns [`HELD_RED`] red under [`LIFT_RULE`] for a day (once the nodes hold
/// the rule).
pub(crate) async fn set_up_lifts(f: &Federation) {
    let mut bengbu = f.authority_client(BENGBU_CDC).expect("Bengbu CDC");
    let red = pb::UpsertStatusRequest {
        valid_until: unix_now() + 86_400,
        ..change(HELD_RED, pb::HealthStatus::Red, LIFT_RULE, "")
    };
    bengbu.upsert_status(red).await.expect("Bengbu CDC applies the lift rule");
}

/// What a refused lift of [`HELD_RED`] says: the rule and who may lift it.
const ONLY_HEFEI_LIFTS: &str =
    "holds a current RED status under rule \"ADV-LIFT-1\"; only the authorities 340000/hefei-cdc may lift it";

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
    // --- who lifts a status before it lapses: an authority its rule names as a lifter
    case(
        anhuis_admin_lifts_an_authoritys_red_early,
        "Anhui's admin lifts an authority's RED early",
        Status(Code::PermissionDenied, ONLY_HEFEI_LIFTS),
        |c| Box::pin(async move { upsert(c.node(&c.id("admin", "340000"), "340000"), green_upsert(HELD_RED)).await }),
    ),
    case(
        an_authority_that_may_assign_but_not_lift_lifts_a_red,
        "an authority that may assign the rule but not lift it lifts a RED",
        Status(Code::PermissionDenied, ONLY_HEFEI_LIFTS),
        |c| Box::pin(
            async move { upsert(c.node(&c.id("authority", BENGBU_CDC), "340000"), green_upsert(HELD_RED)).await }
        ),
    ),
    case(
        an_authority_no_rule_names_lifts_a_red,
        "an authority no rule names lifts a RED",
        Status(Code::PermissionDenied, ONLY_HEFEI_LIFTS),
        |c| {
            Box::pin(async move {
                upsert(c.node(&c.id("authority", "340000/county-bank"), "340000"), green_upsert(HELD_RED)).await
            })
        },
    ),
    case(
        an_authority_cuts_a_red_short_by_re_assigning_it_briefly,
        "an authority cuts a RED short by re-assigning it for a minute",
        Status(Code::PermissionDenied, ONLY_HEFEI_LIFTS),
        |c| {
            Box::pin(async move {
                let brief = pb::UpsertStatusRequest {
                    valid_until: unix_now() + 60,
                    ..change(HELD_RED, pb::HealthStatus::Red, LIFT_RULE, "")
                };
                upsert(c.node(&c.id("authority", BENGBU_CDC), "340000"), brief).await
            })
        },
    ),
];

/// The accepted side of lifting, and what the log records: the named lifter lifts (the
/// entry names it and the lifted rule); re-assigning to extend is no lift; an escalation
/// under another rule is no lift, a short one is; the admin sets GREEN where nothing
/// holds, and after a status lapsed. Time moves on the nodes' clock, not by waiting.
#[tokio::test]
async fn lifts_by_the_named_lifter_are_logged_and_the_admin_greens_only_where_nothing_holds() {
    let now = unix_now();
    let (clock, hand) = Clock::manual(now);
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    let (f, _dir) = start_with(options).await;
    register_lift_rule(&f);
    let sequence = f.publish().await.unwrap();
    f.until_everyone_has(sequence).await.unwrap();
    let anhui = code("340000");
    let mut admin = f.admin_client(&anhui).unwrap();
    let mut hefei = f.authority_client(HEFEI_CDC).unwrap();
    let mut bengbu = f.authority_client(BENGBU_CDC).unwrap();
    let until = |subject: &str, status, rule: &str, valid_until| pb::UpsertStatusRequest {
        valid_until,
        ..change(subject, status, rule, "")
    };
    let green = |subject: &str| change(subject, pb::HealthStatus::Green, "", "");
    let refused = |r: Result<tonic::Response<pb::UpsertStatusResponse>, tonic::Status>| {
        let status = r.expect_err("the lift was accepted");
        let details = huren_runtime::error::details(&status).expect("typed refusal");
        assert_eq!(
            (status.code(), details.reason.as_str()),
            (Code::PermissionDenied, "LIFT_NOT_ALLOWED"),
            "{status:?}"
        );
        (details.metadata["ruleId"].clone(), details.metadata["mayLift"].clone())
    };

    // Bengbu CDC turns a code red; it may extend it, but neither it nor the admin may lift it.
    bengbu.upsert_status(until("ah-red", pb::HealthStatus::Red, LIFT_RULE, now + 3600)).await.unwrap();
    bengbu.upsert_status(until("ah-red", pb::HealthStatus::Red, LIFT_RULE, now + 7200)).await.unwrap();
    let lifters = (LIFT_RULE.to_owned(), HEFEI_CDC.to_owned());
    assert_eq!(refused(admin.upsert_status(green("ah-red")).await), lifters);
    assert_eq!(refused(bengbu.upsert_status(green("ah-red")).await), lifters);
    // Hefei CDC, the rule's lifter, lifts it.
    hefei.upsert_status(green("ah-red")).await.unwrap();

    // The admin sets GREEN where no non-green status holds: a new subject, a green one.
    admin.upsert_status(green("ah-fresh")).await.unwrap();
    admin.upsert_status(green("ah-fresh")).await.unwrap();

    // Escalating a YELLOW to a RED under another rule, lasting at least as long, is no
    // lift of the yellow rule; a RED that would end before the YELLOW is.
    hefei.upsert_status(until("ah-yellow", pb::HealthStatus::Yellow, YELLOW_RULE, now + 600)).await.unwrap();
    let short = refused(bengbu.upsert_status(until("ah-yellow", pb::HealthStatus::Red, LIFT_RULE, now + 60)).await);
    assert_eq!(
        short,
        (
            YELLOW_RULE.to_owned(),
            "370000/jinan-cdc,370000/qingdao-cdc,340000/hefei-cdc,440000/guangzhou-cdc".to_owned()
        )
    );
    bengbu.upsert_status(until("ah-yellow", pb::HealthStatus::Red, LIFT_RULE, now + 600)).await.unwrap();

    // Once a status has lapsed, nothing holds and the admin may set GREEN.
    bengbu.upsert_status(until("ah-lapsing", pb::HealthStatus::Red, LIFT_RULE, now + 100)).await.unwrap();
    assert_eq!(refused(admin.upsert_status(green("ah-lapsing")).await), lifters);
    hand.advance(100);
    admin.upsert_status(green("ah-lapsing")).await.unwrap();

    // The log: every accepted change, the lift naming its lifter and the lifted rule.
    let mut audit = audit_client(&f, &anhui, "lift-auditor");
    let (_, head) = audit.tree_head().await.unwrap();
    let entries = audit.fetch_verified(&head).await.unwrap();
    let uri = |a: &str| format!("spiffe://huren.gov/province/{}", a.replace('/', "/authority/"));
    let admin_uri = "spiffe://huren.gov/province/340000/admin".to_owned();
    let seen: Vec<(i32, String, String, String)> =
        entries.iter().map(|e| (e.status, e.rule_id.clone(), e.authority.clone(), e.lifted_rule_id.clone())).collect();
    let (g, y, r) = (pb::HealthStatus::Green as i32, pb::HealthStatus::Yellow as i32, pb::HealthStatus::Red as i32);
    let none = String::new;
    assert_eq!(
        seen,
        vec![
            (r, LIFT_RULE.into(), uri(BENGBU_CDC), none()),
            (r, LIFT_RULE.into(), uri(BENGBU_CDC), none()),
            (g, none(), uri(HEFEI_CDC), LIFT_RULE.into()),
            (g, none(), admin_uri.clone(), none()),
            (g, none(), admin_uri.clone(), none()),
            (y, YELLOW_RULE.into(), uri(HEFEI_CDC), none()),
            (r, LIFT_RULE.into(), uri(BENGBU_CDC), none()),
            (r, LIFT_RULE.into(), uri(BENGBU_CDC), none()),
            (g, none(), admin_uri, none()),
        ]
    );
}
