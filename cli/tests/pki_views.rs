//! `huren pki trust-list show --json` (every field), `trust-list diff` against the history
//! signing keeps, and `huren pki list …`, run as the real binary.

mod common;

use common::{huren, ok, refused, scratch};

#[test]
fn signing_keeps_history_and_diff_names_every_changed_field() {
    let (_dir, d) = scratch();
    let pki = d("pki");
    let p = |args: &[&str]| ok(&[&["pki", "--dir", &pki][..], args].concat());
    p(&["init"]);
    p(&["province", "add", "340000", "--name", "Anhui", "--endpoint", "https://127.0.0.1:7001"]);
    p(&[
        "rule",
        "add",
        "--id",
        "R1",
        "--title",
        "Close contact",
        "--may-assign",
        "RED",
        "--max-duration-seconds",
        "100",
        "--authority",
        "340000/cdc",
    ]);
    p(&["trust-list", "sign"]);
    // Nothing signed before the first list: diff says so, as a usage error.
    let err = refused(&["pki", "--dir", &pki, "trust-list", "diff"]);
    assert!(err.contains("no trust list signed before sequence 1"), "{err}");

    p(&[
        "rule",
        "add",
        "--id",
        "R1",
        "--title",
        "Close contact",
        "--may-assign",
        "RED",
        "--may-assign",
        "YELLOW",
        "--lapses-to",
        "GREEN",
        "--max-duration-seconds",
        "200",
        "--authority",
        "340000/cdc",
        "--may-lift",
        "340000/lifter",
    ]);
    p(&["hub", "register", "h1", "--purpose", "transit.rail", "--province", "340000"]);
    p(&["retention", "--cache-max-seconds", "10"]);
    p(&["attestation-bounds", "--max-lifetime-seconds", "600"]);
    p(&["sunset", "--at", "2000000000", "--reason", "over"]);
    p(&["province", "set-endpoint", "340000", "https://127.0.0.1:7002"]);
    p(&["trust-list", "sign"]);
    assert!(std::path::Path::new(&format!("{pki}/history/trust-list-1.bin")).exists());
    assert!(std::path::Path::new(&format!("{pki}/history/trust-list-2.bin")).exists());

    let diff = p(&["trust-list", "diff"]);
    for expected in [
        "sequence 1 -> 2\n",
        "~ rules[R1].may_assign: [\"RED\"] -> [\"RED\",\"YELLOW\"]",
        "~ rules[R1].lapses_to: null -> \"GREEN\"",
        "~ rules[R1].max_duration_seconds: 100 -> 200",
        "~ rules[R1].may_lift: [\"340000/cdc\"] -> [\"340000/lifter\"]",
        "+ hubs[h1]: {\"id\":\"h1\",\"province\":\"340000\",\"purposes\":[\"transit.rail\"]}",
        "~ retention.cache_max_seconds: 30 -> 10",
        "~ attestation_bounds.max_lifetime_seconds: 3600 -> 600",
        "~ sunset: null -> {\"effective_at\":2000000000,\"reason\":\"over\"}",
        "~ provinces[340000].endpoints: [\"https://127.0.0.1:7001\"] -> [\"https://127.0.0.1:7002\"]",
    ] {
        assert!(diff.contains(expected), "missing {expected:?} in:\n{diff}");
    }
    // The same with explicit files.
    let files =
        p(&["trust-list", "diff", &format!("{pki}/history/trust-list-1.bin"), &format!("{pki}/trust-list.bin")]);
    assert_eq!(files, diff);

    let shown: serde_json::Value = serde_json::from_str(&p(&["trust-list", "show", "--json"])).unwrap();
    assert_eq!(shown["hubs"][0]["purposes"][0], "transit.rail");
    assert_eq!(shown["rules"][0]["may_assign"], serde_json::json!(["RED", "YELLOW"]));
    assert_eq!(shown["rules"][0]["lapses_to"], "GREEN");
    assert_eq!(shown["sunset"]["reason"], "over");
    assert_eq!(shown["retention"]["cache_max_seconds"], 10);
    assert_eq!(shown["retention"]["status_max_age_seconds"], 30 * 86_400, "defaults shown as in force");
    assert!(shown["field_policy"]["venue.entry"].as_array().is_some_and(|f| !f.is_empty()));
    assert!(shown["provinces"][0]["ca_certificate"]["not_after"].as_i64().is_some());
    assert!(shown["provinces"][0]["attestation_keys"][0]["public_key"].as_str().is_some_and(|k| k.len() == 64));
}

#[test]
fn pki_list_shows_what_the_trust_list_holds_with_days_left() {
    let (_dir, d) = scratch();
    let pki = d("pki");
    let p = |args: &[&str]| ok(&[&["pki", "--dir", &pki][..], args].concat());
    p(&["init"]);
    p(&["province", "add", "370000", "--name", "Shandong", "--days", "100"]);
    p(&[
        "rule",
        "add",
        "--id",
        "R9",
        "--title",
        "t",
        "--may-assign",
        "YELLOW",
        "--max-duration-seconds",
        "60",
        "--authority",
        "370000/jinan-cdc",
    ]);
    p(&["issue", "hub", "g3", "--purpose", "transit.highway", "--days", "20"]);
    p(&["trust-list", "sign"]);
    let provinces = p(&["list", "provinces"]);
    assert!(provinces.lines().nth(1).is_some_and(|l| l.starts_with("370000  Shandong")), "{provinces}");
    let hubs = p(&["list", "hubs"]);
    assert!(hubs.contains("g3") && hubs.contains("transit.highway"), "{hubs}");
    let rules = p(&["list", "rules"]);
    assert!(rules.contains("R9") && rules.contains("YELLOW") && rules.contains("370000/jinan-cdc"), "{rules}");
    let keys: serde_json::Value = serde_json::from_str(&p(&["list", "keys", "--json"])).unwrap();
    assert_eq!(keys[0]["province"], "370000");
    assert_eq!(keys[0]["status"], "active");
    let certs: serde_json::Value = serde_json::from_str(&p(&["list", "certs", "--json"])).unwrap();
    assert_eq!(certs[0]["what"], "hub-g3", "soonest expiry first: {certs}");
    assert!((19..=20).contains(&certs[0]["days_left"].as_i64().unwrap()), "{certs}");
    assert_eq!(certs[1]["what"], "province-ca 370000");
    let out = huren(&["pki", "--dir", &pki, "list", "planets"]);
    assert_eq!(out.status.code(), Some(64), "clap refuses an unknown listing");
}
