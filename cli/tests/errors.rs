//! Exit codes and errors in words: 64 for usage, configuration and unusable files, 1 for
//! runtime failures, each cause said once, and failed connections explained (the wrong
//! server, a port that does not speak TLS, nothing listening, a key that is not the
//! certificate's).

mod common;
use common::{huren, ok, one_province_pki, scratch, spawn_server, write_node_toml};

/// The one line a failing command printed, after checking its exit code.
fn failed_with(code: i32, args: &[&str]) -> String {
    let out = huren(args);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(out.status.code(), Some(code), "huren {args:?}: {err}");
    err
}

#[test]
fn usage_errors_exit_64_everywhere_and_help_exits_0() {
    for args in [
        &["pki", "issue"][..],
        &["pki", "--bogus"],
        &["pki"],
        &["hub", "lookup", "--gateway", "x:1"],
        &["admin", "status", "--purpose"],
        &["nonsense"],
    ] {
        let out = huren(args);
        assert_eq!(out.status.code(), Some(64), "huren {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for args in [&["--help"][..], &["pki", "--help"], &["--version"]] {
        let out = huren(args);
        assert_eq!(out.status.code(), Some(0), "huren {args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn a_malformed_qr_is_bad_input_offline_and_online_and_said_once() {
    let (_dir, d) = scratch();
    let pki = d("pki");
    let root = one_province_pki(&pki, &[("hub", "h1")]);
    let list = format!("{pki}/trust-list.bin");
    let err = failed_with(64, &["hub", "verify", "--trust-list", &list, "--ca", &root, "HRN1:!!!"]);
    assert_eq!(err, "huren: QR body is not base32", "the cause, once");
    let (cert, key) = (format!("{pki}/issued/hub-h1/cert.pem"), format!("{pki}/issued/hub-h1/key.pem"));
    let online = ["hub", "lookup", "--gateway", "127.0.0.1:9", "--cert", &cert, "--key", &key, "--ca", &root];
    let err = failed_with(64, &[&online[..], &["HRN1:!!!"]].concat());
    assert_eq!(err, "huren: QR body is not base32", "the same input, the same answer");
}

#[test]
fn registry_edits_that_are_not_well_formed_exit_64() {
    let (_dir, d) = scratch();
    let pki = d("pki");
    ok(&["pki", "--dir", &pki, "init"]);
    failed_with(64, &["pki", "--dir", &d("nowhere"), "province", "add", "340000", "--name", "Anhui"]);
    failed_with(64, &["pki", "--dir", &pki, "issue", "wizard", "merlin"]);
    failed_with(64, &["pki", "--dir", &pki, "issue", "node", "340000"]);
    let err = failed_with(64, &["pki", "--dir", &pki, "init"]);
    assert!(err.contains("refusing to overwrite"), "{err}");
}

#[test]
fn a_key_that_is_not_the_certificates_stops_a_node_before_it_listens() {
    let (dir, d) = scratch();
    let pki = d("pki");
    one_province_pki(&pki, &[("node", "340000"), ("admin", "340000")]);
    let node_toml = dir.path().join("node.toml");
    write_node_toml(&node_toml, &pki, &d("data"), "");
    let wrong_key = format!("{pki}/issued/admin-340000/key.pem");
    let text =
        std::fs::read_to_string(&node_toml).unwrap().replace(&format!("{pki}/issued/node-340000/key.pem"), &wrong_key);
    std::fs::write(&node_toml, text).unwrap();
    let out = huren(&["node", "--config", node_toml.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(!err.contains("listening"), "{err}");
    assert!(err.contains(&format!("{wrong_key} is not the private key of the certificate in")), "{err}");
}

#[test]
fn failed_connections_are_explained_in_words() {
    let (dir, d) = scratch();
    let pki = d("pki");
    let root = one_province_pki(&pki, &[("node", "340000"), ("admin", "340000"), ("hub", "h1")]);
    let node_toml = dir.path().join("node.toml");
    write_node_toml(&node_toml, &pki, &d("data"), "admin_listen = \"127.0.0.1:0\"\n");
    let node = spawn_server("node", &node_toml);
    let (cert, key) = (format!("{pki}/issued/hub-h1/cert.pem"), format!("{pki}/issued/hub-h1/key.pem"));
    let lookup = |gateway: &str| {
        let args = ["hub", "lookup", "--gateway", gateway, "--cert", &cert, "--key", &key, "--ca", &root];
        huren(&[&args[..], &["340000:AAAAAAAAAAAAAAAAAAAAAAAAAA"]].concat())
    };

    // A node where a gateway was meant.
    let out = lookup(&node.addr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert_eq!(
        err.trim(),
        format!("huren: the server at {} presented spiffe://huren.gov/province/340000/node, not a gateway", node.addr)
    );

    // A port that answers in plain HTTP.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in plain.incoming().flatten() {
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let out = lookup(&plain_addr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains(&format!("{plain_addr} does not speak TLS")), "{err}");

    // Nothing listening.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = lookup(&gone);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("nothing is listening at {gone}")), "{err}");

    // The admin client pointed at the right node, as a hub: the node names who it is.
    let (acert, akey) = (format!("{pki}/issued/admin-340000/cert.pem"), format!("{pki}/issued/admin-340000/key.pem"));
    let out =
        huren(&["admin", "token", "--node", &node.addr, "--cert", &acert, "--key", &akey, "--ca", &root, "ah-0001"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a refusal by the node: {err}");
    assert!(err.contains("node refused: NotFound"), "{err}");
    assert_eq!(err.matches("NotFound").count(), 1, "said once: {err}");
}
