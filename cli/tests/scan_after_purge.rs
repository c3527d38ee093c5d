//! `huren audit scan` after a manual purge by time: what the purge documents it keeps (the
//! log's hashes, the commitment salt) is reported and passes; subject records fail it; and
//! `--all-deleted` (after a sunset or `purge --all`) expects nothing at all.

mod common;
use common::{huren, ok, one_province_pki, scratch, signal, spawn_server, write_node_toml};

#[test]
fn a_scan_after_a_purge_by_time_passes_on_what_the_purge_keeps_and_fails_on_records() {
    let (dir, d) = scratch();
    let pki = d("pki");
    let root = one_province_pki(&pki, &[("node", "340000"), ("admin", "340000")]);
    let node_toml = dir.path().join("node.toml");
    let data = d("data");
    write_node_toml(&node_toml, &pki, &data, "admin_listen = \"127.0.0.1:0\"\n");
    let node = spawn_server("node", &node_toml);
    let (cert, key) = (format!("{pki}/issued/admin-340000/cert.pem"), format!("{pki}/issued/admin-340000/key.pem"));
    for subject in ["ah-0001", "ah-0002", "ah-0003"] {
        ok(&["admin", "status", "--node", &node.addr, "--cert", &cert, "--key", &key, "--ca", &root, subject, "GREEN"]);
    }
    assert!(signal(node, "-TERM").success());

    // Before any purge, the records are there: the scan fails, naming them.
    let out = huren(&["audit", "scan", "--node-data", &data]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("subject records or record fragments remain"));

    let later =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1000).to_string();
    ok(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--before", &later]);
    let out = huren(&["audit", "scan", "--node-data", &data]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("3 leaf hashes of the transparency log"), "{said}");
    assert!(said.contains("1 commitment salt"), "{said}");
    assert!(said.contains("no subject records remain"), "{said}");

    let out = huren(&["audit", "scan", "--node-data", &data, "--all-deleted"]);
    assert_eq!(out.status.code(), Some(1), "hashes and salt count when nothing may remain");

    ok(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--all"]);
    let said = ok(&["audit", "scan", "--node-data", &data, "--all-deleted"]);
    assert!(said.contains("no subject records remain (nothing at all)"), "{said}");
}
