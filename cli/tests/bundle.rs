//! `huren pki bundle`: a folder per party that starts a server or a client as it is.

mod common;
use std::os::unix::fs::PermissionsExt as _;

use common::{huren, ok, scratch, spawn_server};

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).permissions().mode() & 0o777
}

#[test]
fn bundles_hold_what_each_party_needs_and_start_as_they_are() {
    let (_dir, d) = scratch();
    let pki = d("pki");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
        &format!("https://127.0.0.1:{port}"),
    ]);
    let out = huren(&["pki", "--dir", &pki, "bundle", "node", "340000", "--out", &d("node")]);
    assert_eq!(out.status.code(), Some(64), "no trust list yet is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("huren pki trust-list sign"));
    ok(&["pki", "--dir", &pki, "trust-list", "sign"]);

    let said =
        ok(&["pki", "--dir", &pki, "bundle", "node", "340000", "--out", &d("node"), "--admin-listen", "127.0.0.1:0"]);
    assert!(said.contains("issued spiffe://huren.gov/province/340000/node"), "{said}");
    assert!(said.contains("huren node --config"), "says what to run: {said}");
    let node = d("node");
    for f in ["cert.pem", "ca.pem", "trust-list.bin", "node.toml", "README.txt"] {
        assert_eq!(mode(&format!("{node}/{f}")), 0o644, "{f}");
    }
    assert_eq!(mode(&node), 0o700);
    assert_eq!(mode(&format!("{node}/key.pem")), 0o600);
    let keys: Vec<_> =
        std::fs::read_dir(format!("{node}/attestation-keys")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(keys.len(), 1, "the province's active key: {keys:?}");
    assert_eq!(mode(keys[0].to_str().unwrap()), 0o600);
    let config = std::fs::read_to_string(format!("{node}/node.toml")).unwrap();
    assert!(config.contains(&format!("listen = \"127.0.0.1:{port}\"")), "the registry's endpoint: {config}");

    // Bundling again reuses the issued certificate.
    let again =
        ok(&["pki", "--dir", &pki, "bundle", "node", "340000", "--out", &d("node"), "--admin-listen", "127.0.0.1:0"]);
    assert!(again.contains("using the certificate issued earlier"), "{again}");

    // The node starts from its bundle, and the admin's bundle publishes to it.
    let server = spawn_server("node", std::path::Path::new(&format!("{node}/node.toml")));
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    ok(&["pki", "--dir", &pki, "bundle", "admin", "340000", "--out", &d("admin")]);
    let admin = d("admin");
    let (cert, key, ca) = (format!("{admin}/cert.pem"), format!("{admin}/key.pem"), format!("{admin}/ca.pem"));
    let said = ok(&[
        "admin",
        "status",
        "--node",
        &server.addr,
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &ca,
        "ah-0001",
        "GREEN",
    ]);
    assert!(said.contains("status recorded"), "{said}");

    // A gateway starts from its bundle.
    ok(&[
        "pki",
        "--dir",
        &pki,
        "bundle",
        "gateway",
        "gw1",
        "--out",
        &d("gw"),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let gateway = spawn_server("gateway", std::path::Path::new(&format!("{}/gateway.toml", d("gw"))));
    assert!(gateway.addr.starts_with("127.0.0.1:"));

    // A new key is not "published" until signed and uploaded: `key add` says what is left.
    let said = ok(&["pki", "--dir", &pki, "key", "add", "340000"]);
    assert!(said.contains("signs nothing") && said.contains("still to do:\n  1. publish it"), "{said}");
    assert!(said.contains("re-run huren pki bundle node 340000"), "{said}");

    // Unknown kinds are usage errors.
    let out = huren(&["pki", "--dir", &pki, "bundle", "wizard", "x"]);
    assert_eq!(out.status.code(), Some(64));
}
