//! `huren pki issue` gives server certificates (node, gateway) the DNS and IP names stock
//! TLS clients check: from `--dns` / `--ip`, or for a node by default from its province's
//! registered endpoints; roles that serve nothing carry none.

mod common;
use common::{huren, ok, refused, scratch};
use huren_pki::endpoint::HostName;

fn names_in(cert: &str) -> Vec<String> {
    let pem = std::fs::read_to_string(cert).expect("certificate");
    let der = huren_pki::ca::pem_to_der(&pem).expect("PEM");
    huren_pki::ca::host_names(&der).expect("SANs").iter().map(HostName::to_string).collect()
}

#[test]
fn a_node_certificate_names_its_registered_endpoints_or_what_is_given() {
    let (_dir, path) = scratch();
    let pki = path("pki");
    ok(&["pki", "--dir", &pki, "init"]);
    ok(&[
        "pki",
        "--dir",
        &pki,
        "province",
        "add",
        "340000",
        "--name",
        "Anhui",
        "--endpoint",
        "https://Node.AH.example:7443",
        "--endpoint",
        "10.1.0.5:7443",
    ]);
    let out = ok(&["pki", "--dir", &pki, "issue", "node", "340000"]);
    assert!(out.contains("names:  DNS:node.ah.example, IP:10.1.0.5"), "{out}");
    let cert = format!("{pki}/issued/node-340000/cert.pem");
    assert_eq!(names_in(&cert), ["DNS:node.ah.example", "IP:10.1.0.5"]);

    ok(&[
        "pki",
        "--dir",
        &pki,
        "issue",
        "node",
        "340000",
        "--dns",
        "node2.ah.example",
        "--ip",
        "10.1.0.6",
        "--ip",
        "fd00::5",
    ]);
    assert_eq!(names_in(&cert), ["DNS:node2.ah.example", "IP:10.1.0.6", "IP:fd00::5"]);

    let out =
        ok(&["pki", "--dir", &pki, "issue", "gateway", "national-1", "--dns", "gw.huren.example", "--ip", "10.0.0.7"]);
    assert!(out.contains("names:  DNS:gw.huren.example, IP:10.0.0.7"), "{out}");
    assert_eq!(names_in(&format!("{pki}/issued/gateway-national-1/cert.pem")), ["DNS:gw.huren.example", "IP:10.0.0.7"]);
    let out = ok(&["pki", "--dir", &pki, "issue", "gateway", "national-2"]);
    assert!(out.contains("names:  none"), "{out}");

    ok(&["pki", "--dir", &pki, "issue", "admin", "340000"]);
    assert!(names_in(&format!("{pki}/issued/admin-340000/cert.pem")).is_empty(), "an admin serves nothing");
}

#[test]
fn names_for_roles_that_serve_nothing_and_malformed_names_are_usage_errors() {
    let (_dir, path) = scratch();
    let pki = path("pki");
    ok(&["pki", "--dir", &pki, "init"]);
    ok(&["pki", "--dir", &pki, "province", "add", "340000", "--name", "Anhui"]);
    for args in [
        &["issue", "hub", "h1", "--dns", "hub.example"][..],
        &["issue", "admin", "340000", "--ip", "10.0.0.1"],
        &["issue", "node", "340000", "--ip", "10.0.0.300"],
        &["issue", "node", "340000", "--dns", "spiffe://huren.gov/province/340000/node"],
        &["issue", "gateway", "g", "--dns", "*.huren.example"],
    ] {
        let mut full = vec!["pki", "--dir", &pki];
        full.extend_from_slice(args);
        let line = refused(&full);
        assert_eq!(huren(&full).status.code(), Some(64), "{args:?}: {line}");
    }
    assert!(!std::path::Path::new(&format!("{pki}/issued/hub-h1")).exists(), "nothing issued");
}
