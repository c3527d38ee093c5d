//! `huren demo`: a three-province federation on loopback and the story it exists for.

use std::path::Path;

use anyhow::{Context, Result};
use huren_pki::ca::{self, Validity};
use huren_pki::qr::{self, Scanned};
use huren_pki::registry::RegistryRule;
use huren_pki::{unix_now, ProvinceCode};
use huren_proto::pb;
use huren_runtime::tls::TlsIdentity;
use serde::Serialize;

use crate::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_client::{verify_offline, HubClient, HubError, VerifiedStatus};

/// Rule under which the demo's red code is assigned.
pub const RED_RULE: &str = "NHC-CC-2022-9";
/// Rule under which the demo's yellow code is assigned.
pub const YELLOW_RULE: &str = "NHC-SC-2022-9";

/// The rule registry the demo federation starts with.
pub fn demo_rules() -> Vec<RegistryRule> {
    vec![
        RegistryRule {
            id: RED_RULE.into(),
            title: "Close contact of a confirmed case".into(),
            legal_basis:
                "Law on the Prevention and Treatment of Infectious Diseases, art. 39; control protocol 9th ed. §5.1"
                    .into(),
            may_assign: vec!["RED".into()],
            max_duration_seconds: 14 * 86_400,
            exit_condition: "Ends after the isolation period with two negative PCR tests 24 h apart".into(),
            authorities: vec!["370000/jinan-cdc".into(), "340000/hefei-cdc".into(), "440000/guangzhou-cdc".into()],
            lapses_to: Some("GREEN".into()),
            may_lift: Vec::new(),
        },
        RegistryRule {
            id: YELLOW_RULE.into(),
            title: "Contact of a close contact".into(),
            legal_basis: "Control protocol 9th ed. §5.2".into(),
            may_assign: vec!["YELLOW".into()],
            max_duration_seconds: 7 * 86_400,
            exit_condition: "Ends after one negative PCR test".into(),
            authorities: vec![
                "370000/jinan-cdc".into(),
                "370000/qingdao-cdc".into(),
                "340000/hefei-cdc".into(),
                "440000/guangzhou-cdc".into(),
            ],
            lapses_to: Some("GREEN".into()),
            may_lift: Vec::new(),
        },
    ]
}

/// A synthetic subject the demo seeds. `name`, `id_number` and `phone` are what the
/// province's own health-code backend knows; they never leave it (only `subject_ref`, a
/// province-internal pseudonym, reaches the node, and nothing of the subject crosses the
/// border but the minimal signed status).
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: &'static str,
    pub id_number: &'static str,
    pub phone: &'static str,
    pub province: &'static str,
    pub subject_ref: &'static str,
    pub status: pb::HealthStatus,
    pub rule_id: &'static str,
    /// The authority (`<code>/<name>`) that applies a non-green status, with its own
    /// certificate; empty for GREEN (set by the province admin identity).
    pub authority: &'static str,
    pub test_recency: pb::TestRecency,
}

/// The demo's synthetic travellers (pseudonymous references only).
pub fn demo_subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "王建国",
            id_number: "340104198003151234",
            phone: "13905511234",
            province: "340000",
            subject_ref: "ah-driver-0001",
            status: pb::HealthStatus::Green,
            rule_id: "",
            authority: "",
            test_recency: pb::TestRecency::Within48h,
        },
        Subject {
            name: "李秀英",
            id_number: "370102199107224321",
            phone: "15805311234",
            province: "370000",
            subject_ref: "sd-traveller-0002",
            status: pb::HealthStatus::Red,
            rule_id: RED_RULE,
            authority: "370000/jinan-cdc",
            test_recency: pb::TestRecency::None,
        },
        Subject {
            name: "陈志强",
            id_number: "44010619850909567X",
            phone: "13802201234",
            province: "440000",
            subject_ref: "gd-resident-0003",
            status: pb::HealthStatus::Yellow,
            rule_id: YELLOW_RULE,
            authority: "440000/guangzhou-cdc",
            test_recency: pb::TestRecency::Within24h,
        },
    ]
}

/// Publishes a subject's status at its home node and issues a token (QR) for it.
pub async fn seed(federation: &Federation, s: &Subject, token_lifetime: u32) -> Result<pb::IssueTokenResponse> {
    let code: ProvinceCode = s.province.parse()?;
    let mut admin = federation.admin_client(&code)?;
    let mut assessor = if s.authority.is_empty() { admin.clone() } else { federation.authority_client(s.authority)? };
    assessor
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: s.subject_ref.into(),
            status: s.status as i32,
            rule_id: s.rule_id.into(),
            authority: String::new(),
            valid_until: 0,
            test_recency: s.test_recency as i32,
        })
        .await
        .with_context(|| format!("seeding {} at {}", s.subject_ref, s.province))?;
    let issued = admin
        .issue_token(pb::IssueTokenRequest {
            subject_ref: s.subject_ref.into(),
            lifetime_seconds: token_lifetime,
            purpose: String::new(),
        })
        .await
        .with_context(|| format!("issuing a token for {}", s.subject_ref))?;
    Ok(issued.into_inner())
}

/// One step of the story and how it turned out.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub story: &'static str,
    pub expected: String,
    pub outcome: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VerifiedStatus>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub gateway: String,
    pub trust_list_sequence: u64,
    pub steps: Vec<Step>,
}

/// A refusal as the story expects it: the gRPC code and the machine-readable reason
/// (`google.rpc.ErrorInfo`) that any client reads, not the English message.
fn refused(expected: (tonic::Code, &str), result: Result<VerifiedStatus, HubError>) -> (String, bool) {
    match result {
        Ok(s) => (format!("accepted: {}", s.status), false),
        Err(e) => {
            let ok = e.code() == Some(expected.0) && e.reason() == Some(expected.1);
            (format!("refused: {e}"), ok)
        }
    }
}

/// The same for a node's answer to a direct call.
fn refused_by_node<T>(expected: (tonic::Code, &str), result: Result<T, tonic::Status>) -> (String, bool) {
    match result {
        Ok(_) => ("accepted".to_owned(), false),
        Err(s) => {
            let reason = huren_runtime::error::details(&s).map(|d| d.reason);
            let ok = s.code() == expected.0 && reason.as_deref() == Some(expected.1);
            (format!("refused: {:?}: {}", s.code(), s.message()), ok)
        }
    }
}

fn status_step(
    step: &'static str,
    story: &'static str,
    want_status: &str,
    want_rule: Option<&str>,
    result: Result<VerifiedStatus, HubError>,
) -> Step {
    let expected = match want_rule {
        Some(r) => format!("{want_status} citing rule {r}"),
        None => want_status.to_owned(),
    };
    match result {
        Ok(s) => {
            let ok = s.status == want_status
                && s.rule_id.as_deref() == want_rule
                && s.rule_title.is_some() == want_rule.is_some();
            Step { step, story, expected, outcome: s.line(), ok, status: Some(s) }
        }
        Err(e) => Step { step, story, expected, outcome: format!("error: {e}"), ok: false, status: None },
    }
}

/// Runs the story against a running federation whose subjects are seeded.
pub async fn story(federation: &Federation, qrs: &[(Subject, pb::IssueTokenResponse)]) -> Result<Report> {
    let qr_of = |subject_ref: &str| {
        qrs.iter()
            .find(|(s, _)| s.subject_ref == subject_ref)
            .map(|(_, t)| t.qr.clone())
            .with_context(|| format!("no QR for {subject_ref}"))
    };
    let mut steps = Vec::new();

    // 1. Shandong highway checkpoint checks an Anhui driver.
    federation.register_hub_in("sd-jinan-highway-g3", &["transit.highway"], &"370000".parse()?).await?;
    let mut highway = HubClient::connect(
        &federation.gateway_addr().to_string(),
        &federation.identity("hub", "sd-jinan-highway-g3")?,
    )?;
    let scanned = Scanned::parse(&qr_of("ah-driver-0001")?)?;
    let result = highway.lookup(scanned.province(), scanned.token(), "transit.highway").await;
    steps.push(status_step(
        "shandong_highway_checks_anhui_driver",
        "A Shandong highway exit scans the QR of a driver from Anhui; the Anhui node answers through the gateway.",
        "GREEN",
        None,
        result,
    ));

    // 2. Guangdong rail hub checks a red code and sees the rule.
    federation.register_hub_in("gd-guangzhou-south-rail", &["transit.rail"], &"440000".parse()?).await?;
    let mut rail = HubClient::connect(
        &federation.gateway_addr().to_string(),
        &federation.identity("hub", "gd-guangzhou-south-rail")?,
    )?;
    let scanned = Scanned::parse(&qr_of("sd-traveller-0002")?)?;
    let result = rail.lookup(scanned.province(), scanned.token(), "transit.rail").await;
    steps.push(status_step(
        "guangdong_rail_checks_red_code",
        "A Guangzhou rail station checks a traveller from Shandong with a red code, and sees which published rule assigned it.",
        "RED",
        Some(RED_RULE),
        result,
    ));

    // 3. Offline verification of a QR against the saved trust list.
    let trust = rail.trust_list().cloned().context("hub holds no trust list")?;
    let result = verify_offline(&trust, &qr_of("gd-resident-0003")?, unix_now());
    steps.push(status_step(
        "offline_qr_verify",
        "With the network down, the rail hub verifies a Guangdong resident's QR against its saved trust list.",
        "YELLOW",
        Some(YELLOW_RULE),
        result,
    ));

    // 3b. A hub may only declare the purposes it is registered for.
    let scanned = Scanned::parse(&qr_of("ah-driver-0001")?)?;
    let (outcome, ok) = refused(
        (tonic::Code::PermissionDenied, "PURPOSE_NOT_REGISTERED"),
        highway.lookup(scanned.province(), scanned.token(), "venue.entry").await,
    );
    steps.push(Step {
        step: "purpose_binding_refused",
        story: "The highway checkpoint asks for a venue-entry check it is not registered for, and is refused.",
        expected: "PERMISSION_DENIED (PURPOSE_NOT_REGISTERED)".into(),
        outcome,
        ok,
        status: None,
    });

    // 4. An unknown token is refused.
    let anhui: ProvinceCode = "340000".parse()?;
    let token = qr::new_token().map_err(|e| anyhow::anyhow!("randomness unavailable: {e}"))?;
    let (outcome, ok) =
        refused((tonic::Code::NotFound, "TOKEN_UNKNOWN"), highway.lookup(&anhui, &token, "transit.highway").await);
    steps.push(Step {
        step: "unknown_token_refused",
        story: "A token Anhui never issued (a guess, or a stale screenshot) is refused.",
        expected: "NOT_FOUND (TOKEN_UNKNOWN)".into(),
        outcome,
        ok,
        status: None,
    });

    // 5. A province outside the federation is refused.
    let outside: ProvinceCode = "810000".parse()?;
    let (outcome, ok) =
        refused((tonic::Code::NotFound, "PROVINCE_UNKNOWN"), highway.lookup(&outside, &token, "transit.highway").await);
    steps.push(Step {
        step: "unknown_province_refused",
        story: "A lookup for a province that is not in the signed trust list is refused.",
        expected: "NOT_FOUND (PROVINCE_UNKNOWN)".into(),
        outcome,
        ok,
        status: None,
    });

    // 6. A certificate from a foreign CA is refused at the handshake.
    let foreign_root = ca::new_root("huren.gov", Validity::days(1))?;
    let foreign_hub = ca::issue_leaf(&foreign_root, &"spiffe://huren.gov/hub/impostor".parse()?, Validity::days(1))?;
    // The impostor trusts the real root (it is public) and copies its name, but its own
    // certificate was signed by a different key.
    let real_root = std::fs::read_to_string(federation.pki.root_cert_path())?;
    let foreign = TlsIdentity::from_pem(&foreign_hub.cert_pem, &foreign_hub.key_pem, &real_root, "huren.gov")?;
    let mut impostor = HubClient::connect(&federation.gateway_addr().to_string(), &foreign)?;
    let (outcome, ok) = match impostor.refresh_trust_list().await {
        Ok(_) => ("accepted".to_owned(), false),
        Err(e) => (format!("refused: {e}"), e.is_transport()),
    };
    steps.push(Step {
        step: "foreign_ca_refused",
        story:
            "A hub presenting a certificate from a CA outside the federation cannot even complete the TLS handshake.",
        expected: "connection refused at the TLS handshake".into(),
        outcome,
        ok,
        status: None,
    });

    // 7. A hub cannot bypass the gateway.
    let hub_identity = federation.identity("hub", "sd-jinan-highway-g3")?;
    let mut direct = federation.admin_client_as(&anhui, &hub_identity)?;
    let result = direct
        .issue_token(pb::IssueTokenRequest {
            subject_ref: "ah-driver-0001".into(),
            lifetime_seconds: 0,
            purpose: String::new(),
        })
        .await;
    let (outcome, ok) = refused_by_node((tonic::Code::PermissionDenied, "NOT_AUTHORIZED"), result);
    steps.push(Step {
        step: "hub_calling_node_directly_refused",
        story: "A hub that calls the Anhui node directly is refused: only Anhui's own admin may use it, only gateways may ask it for attestations.",
        expected: "PERMISSION_DENIED (NOT_AUTHORIZED)".into(),
        outcome,
        ok,
        status: None,
    });

    // 8. Nobody can turn a code red without an authority and a rule that names it (the
    // Henan depositors' red codes had neither), and the log says who did what.
    let result = federation
        .admin_client(&anhui)?
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: "ah-depositor-0042".into(),
            status: pb::HealthStatus::Red as i32,
            rule_id: RED_RULE.into(),
            authority: String::new(),
            valid_until: 0,
            test_recency: 0,
        })
        .await;
    let (outcome, ok) = refused_by_node((tonic::Code::PermissionDenied, "AUTHORITY_REQUIRED"), result);
    steps.push(Step {
        step: "red_code_without_authority_refused",
        story:
            "Anhui's health-code backend tries to turn a bank depositor's code red itself, citing the close-contact \
                rule: refused, because only an authority that the rule names, with its own certificate, may assign it.",
        expected: "PERMISSION_DENIED (AUTHORITY_REQUIRED)".into(),
        outcome,
        ok,
        status: None,
    });

    Ok(Report {
        ok: steps.iter().all(|s| s.ok),
        gateway: federation.gateway_addr().to_string(),
        trust_list_sequence: trust.sequence(),
        steps,
    })
}

/// Prints a report for people.
pub fn print_human(report: &Report) {
    println!(
        "Huren demo — three provinces (340000 Anhui, 370000 Shandong, 440000 Guangdong) and a gateway at {}",
        report.gateway
    );
    println!("trust list sequence {}\n", report.trust_list_sequence);
    for (i, s) in report.steps.iter().enumerate() {
        println!("{}. [{}] {}", i + 1, if s.ok { "ok" } else { "UNEXPECTED" }, s.step);
        println!("   {}", s.story);
        println!("   expected: {}", s.expected);
        println!("   outcome:  {}\n", s.outcome);
    }
    println!(
        "{}",
        if report.ok { "Every step behaved as expected." } else { "Some steps did not behave as expected." }
    );
}

/// Starts the federation under `dir`, seeds it and runs the story.
pub async fn run(
    dir: &Path,
    token_lifetime: u32,
    options: FederationOptions,
) -> Result<(Federation, Vec<(Subject, pb::IssueTokenResponse)>, Report)> {
    let federation = Federation::start_with(dir, &DEMO_PROVINCES, demo_rules(), options).await?;
    let mut qrs = Vec::new();
    for s in demo_subjects() {
        let issued = seed(&federation, &s, token_lifetime).await?;
        qrs.push((s, issued));
    }
    let report = story(&federation, &qrs).await?;
    Ok((federation, qrs, report))
}

/// Where a kept-running demo federation can be reached, for scripts and the worked examples
/// (`huren demo --info <file>`, `examples/run.sh`): addresses (as `127.0.0.1:<port>` and
/// `localhost:<port>`, both names every server certificate carries), the national root, the
/// coordinator's signed trust list, the hubs' certificates and purposes, and the seeded
/// travellers' tokens and QR strings (synthetic).
pub fn info(federation: &Federation, qrs: &[(Subject, pb::IssueTokenResponse)]) -> Result<serde_json::Value> {
    let pki = federation.pki.path();
    let gateway = federation.gateway_addr();
    let hubs = [("sd-jinan-highway-g3", "transit.highway"), ("gd-guangzhou-south-rail", "transit.rail")];
    let mut nodes = serde_json::Map::new();
    for (code, _) in DEMO_PROVINCES {
        let addr = federation.node_addr(&code.parse()?)?;
        nodes.insert(
            code.to_owned(),
            serde_json::json!({ "address": addr.to_string(), "dns": format!("localhost:{}", addr.port()) }),
        );
    }
    Ok(serde_json::json!({
        "gateway": { "address": gateway.to_string(), "dns": format!("localhost:{}", gateway.port()) },
        "nodes": nodes,
        "root_ca": pki.join("root/ca.pem"),
        "trust_list": federation.pki.trust_list_path(),
        "hubs": hubs.iter().map(|(id, purpose)| {
            let dir = federation.pki.issued_dir("hub", id);
            serde_json::json!({ "id": id, "purposes": [purpose], "cert": dir.join("cert.pem"), "key": dir.join("key.pem") })
        }).collect::<Vec<_>>(),
        "travellers": qrs.iter().map(|(s, issued)| serde_json::json!({
            "subject_ref": s.subject_ref,
            "province": s.province,
            "status": s.status.as_str_name().trim_start_matches("HEALTH_STATUS_"),
            "rule_id": s.rule_id,
            "token": huren_pki::qr::token_to_text(&issued.token),
            "qr": issued.qr,
        })).collect::<Vec<_>>(),
    }))
}
