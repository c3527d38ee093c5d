//! The `huren` binary end to end: the demo, and a federation of real processes set up
//! only with CLI commands and TOML files.

mod common;
use common::{anhui_with_rule_r1, audit_target, huren, ok, scratch, signal, spawn_server, write_node_toml};

#[test]
fn demo_once_json_reports_every_step_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let out = huren(&["demo", "--once", "--json", "--capture", capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let captured = std::fs::read_to_string(&capture).unwrap();
    assert!(captured.lines().count() >= 8, "{captured}");
    for line in captured.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(["Lookup", "Attest"].contains(&record["rpc"].as_str().unwrap()));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["ok"], true);
    let steps = report["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "shandong_highway_checks_anhui_driver",
            "guangdong_rail_checks_red_code",
            "offline_qr_verify",
            "purpose_binding_refused",
            "unknown_token_refused",
            "unknown_province_refused",
            "foreign_ca_refused",
            "hub_calling_node_directly_refused",
            "red_code_without_authority_refused",
        ]
    );
    for s in steps {
        assert_eq!(s["ok"], true, "{s}");
    }
    assert_eq!(steps[0]["status"]["status"], "GREEN");
    assert_eq!(steps[1]["status"]["status"], "RED");
    assert_eq!(steps[1]["status"]["rule_id"], "NHC-CC-2022-9");
    let red = steps[8]["outcome"].as_str().unwrap();
    assert!(red.contains("must be applied by an authority identity"), "{red}");
}

#[test]
fn bad_config_and_bad_input_exit_nonzero_with_one_line() {
    let out = huren(&["node", "--config", "/nonexistent/node.toml"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("huren: cannot read /nonexistent/node.toml"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "listen = \"nowhere\"\n").unwrap();
    let out = huren(&["gateway", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen \"nowhere\" is not an ip:port address"));

    std::fs::write(&cfg, "listne = \"127.0.0.1:1\"\n").unwrap();
    let out = huren(&["gateway", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `listne`"));

    let pki = dir.path().join("pki");
    let pki = pki.to_str().unwrap();
    ok(&["pki", "--dir", pki, "init"]);
    let out = huren(&["pki", "--dir", pki, "province", "add", "34000", "--name", "Anhui"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid province code"));
    let out = huren(&["pki", "--dir", pki, "init"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));

    let out = huren(&["hub", "verify", "--trust-list", "x", "--ca", "y", "HRN1:!!"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1);
}

#[test]
fn a_federation_of_processes_set_up_with_the_cli() {
    let (dir, d) = scratch();
    let pki = d("pki");
    anhui_with_rule_r1(&pki);
    // A rule must say who may apply it, as <province>/<name>.
    let out = huren(&[
        "pki",
        "--dir",
        &pki,
        "rule",
        "add",
        "--id",
        "R2",
        "--title",
        "T",
        "--may-assign",
        "RED",
        "--max-duration-seconds",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must name the authorities"));
    // It may name who lifts its status early, written the same way (comma-separated).
    let lifted = |may_lift: &str| {
        let args = ["--may-assign", "RED", "--max-duration-seconds", "60", "--authority", "340000/hefei-cdc"];
        let mut all = vec!["pki", "--dir", &pki, "rule", "add", "--id", "R3", "--title", "T"];
        all.extend(args);
        all.extend(["--may-lift", may_lift]);
        huren(&all)
    };
    let out = lifted("340000/hefei-cdc,bengbu-cdc");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be written <province code>/<name>"));
    assert!(lifted("340000/hefei-cdc, 340000/bengbu-cdc").status.success());
    for (kind, name) in [
        ("node", "340000"),
        ("admin", "340000"),
        ("authority", "340000/hefei-cdc"),
        ("authority", "340000/some-bank"),
        ("gateway", "g1"),
        ("hub", "h1"),
        ("coordinator", "nhc"),
        ("auditor", "a1"),
    ] {
        let out = ok(&["pki", "--dir", &pki, "issue", kind, name]);
        assert!(out.starts_with("spiffe://huren.gov/"), "{out}");
    }
    ok(&["pki", "--dir", &pki, "hub", "register", "h1", "--purpose", "transit.highway", "--province", "370000"]);
    let out =
        huren(&["pki", "--dir", &pki, "hub", "register", "h9", "--purpose", "transit.highway", "--province", "99"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid province code \"99\""));
    let out = huren(&["pki", "--dir", &pki, "hub", "register", "h2", "--purpose", "transit.space"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the field policy"));
    assert!(ok(&["pki", "--dir", &pki, "trust-list", "sign"]).contains("sequence 1"));
    let shown: serde_json::Value = serde_json::from_str(&ok(&["pki", "--dir", &pki, "trust-list", "show"])).unwrap();
    assert_eq!(shown["attestation_bounds"]["max_lifetime_seconds"], 3600, "the built-in default");
    let out = huren(&["pki", "--dir", &pki, "attestation-bounds", "--max-lifetime-seconds=-1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be negative"));
    ok(&["pki", "--dir", &pki, "attestation-bounds", "--max-lifetime-seconds", "1800"]);

    let root = format!("{pki}/root/ca.pem");
    let node_toml = dir.path().join("node.toml");
    write_node_toml(&node_toml, &pki, &d("node-data"), "");
    let node = spawn_server("node", &node_toml);

    ok(&["pki", "--dir", &pki, "province", "set-endpoint", "340000", &format!("https://{}", node.addr)]);
    assert!(ok(&["pki", "--dir", &pki, "trust-list", "sign"]).contains("sequence 2"));
    let shown: serde_json::Value = serde_json::from_str(&ok(&["pki", "--dir", &pki, "trust-list", "show"])).unwrap();
    assert_eq!(shown["sequence"], 2);
    assert_eq!(shown["attestation_bounds"]["max_lifetime_seconds"], 1800);
    let rule = |id: &str| shown["rules"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(rule("R3")["may_lift"], serde_json::json!(["340000/hefei-cdc", "340000/bengbu-cdc"]));
    assert_eq!(rule("R1")["may_lift"], rule("R1")["authorities"], "by default the authorities lift");
    assert_eq!(shown["provinces"][0]["endpoints"][0], format!("https://{}", node.addr));

    let gateway_toml = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        format!(
            "listen = \"127.0.0.1:0\"\ncert = \"{pki}/issued/gateway-g1/cert.pem\"\nkey = \"{pki}/issued/gateway-g1/key.pem\"\n\
             ca = \"{root}\"\ntrust_list = \"{pki}/trust-list.bin\"\ndata_dir = \"{}\"\n",
            d("gateway-data")
        ),
    )
    .unwrap();
    let gateway = spawn_server("gateway", &gateway_toml);

    // `who` is the issued folder of the calling identity: the certificate says who acts.
    let as_who = |who: &str, extra: &[&str]| {
        let mut args = vec!["admin", extra[0], "--node", &node.addr, "--ca", &root];
        let cert = format!("{pki}/issued/{who}/cert.pem");
        let key = format!("{pki}/issued/{who}/key.pem");
        args.extend(["--cert", &cert, "--key", &key]);
        args.extend(&extra[1..]);
        huren(&args)
    };
    let admin = |extra: &[&str]| as_who("admin-340000", extra);
    let cdc = |extra: &[&str]| as_who("authority-340000-hefei-cdc", extra);
    let out = admin(&["status", "ah-0001", "RED", "--rule", "R1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be applied by an authority identity"));
    let out = admin(&["status", "ah-0001", "RED", "--rule", "R1", "--authority", "340000/hefei-cdc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the caller"));
    let out = cdc(&["status", "ah-0001", "RED", "--rule", "R1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_who("authority-340000-some-bank", &["status", "ah-0002", "RED", "--rule", "R1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not allowed to apply rule"));
    let out = admin(&["token", "ah-0001", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let hub_cert = format!("{pki}/issued/hub-h1/cert.pem");
    let hub_key = format!("{pki}/issued/hub-h1/key.pem");
    let saved = d("hub-trust-list.bin");
    let pair = format!("340000:{}", token["token"].as_str().unwrap());
    // The hub `h1` asks the gateway.
    let lookup = |extra: &[&str]| {
        let mut args = vec!["hub", "lookup", "--gateway", &gateway.addr, "--ca", &root];
        args.extend(["--cert", &hub_cert, "--key", &hub_key]);
        args.extend(extra);
        huren(&args)
    };
    let looked_up = lookup(&["--purpose", "transit.highway", "--trust-list-cache", &saved, "--json", &pair]);
    assert!(looked_up.status.success(), "{}", String::from_utf8_lossy(&looked_up.stderr));
    let status: serde_json::Value = serde_json::from_slice(&looked_up.stdout).unwrap();
    assert_eq!((status["status"].as_str(), status["rule_id"].as_str()), (Some("RED"), Some("R1")));
    assert_eq!(status["trust_list_sequence"], 2);

    let verified = ok(&["hub", "verify", "--trust-list", &saved, "--ca", &root, token["qr"].as_str().unwrap()]);
    assert!(verified.starts_with("RED — issued by 340000 Anhui"), "{verified}");

    let unknown = lookup(&["--purpose", "transit.highway", "340000:AAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));

    // Auditor: tree head, consistency after more changes, statistics.
    let target = audit_target(&pki, &node.addr, "a1");
    let audit = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(target.iter().map(String::as_str));
        huren(&args)
    };
    let head1 = d("head1.bin");
    let out = audit(&["audit", "tree-head", "--out", &head1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(head["tree_size"], 1);
    let out = cdc(&["status", "ah-0003", "RED", "--rule", "R1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = audit(&["audit", "log", "verify", "--old", &head1, "--full"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("grew from 1 to 2 entries"));
    let out = audit(&["audit", "stats", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["non_green"][0]["authority"], "spiffe://huren.gov/province/340000/authority/hefei-cdc");
    assert_eq!(stats["non_green"][0]["count"], 2);

    // Coordinator: revoke the hub's certificate, sign, diff, upload.
    let seq2 = d("seq2.bin");
    std::fs::copy(format!("{pki}/trust-list.bin"), &seq2).unwrap();
    assert!(ok(&["pki", "--dir", &pki, "revoke", "hub", "h1"]).contains("revoked"));
    assert!(ok(&["pki", "--dir", &pki, "trust-list", "sign"]).contains("sequence 3"));
    let diff = ok(&["pki", "--dir", &pki, "trust-list", "diff", &seq2, &format!("{pki}/trust-list.bin")]);
    assert!(diff.starts_with("sequence 2 -> 3\n") && diff.contains("\n+ revoked certificate "), "{diff}");
    let upload = |kind: &str, name: &str| {
        huren(&[
            "pki",
            "--dir",
            &pki,
            "trust-list",
            "upload",
            "--gateway",
            &gateway.addr,
            "--ca",
            &root,
            "--cert",
            &format!("{pki}/issued/{kind}-{name}/cert.pem"),
            "--key",
            &format!("{pki}/issued/{kind}-{name}/key.pem"),
        ])
    };
    let refused = upload("hub", "h1");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
    let uploaded = upload("coordinator", "nhc");
    assert!(uploaded.status.success(), "{}", String::from_utf8_lossy(&uploaded.stderr));
    assert!(String::from_utf8_lossy(&uploaded.stdout).contains("now serves trust list sequence 3"));
    // The same list again (same sequence, same bytes) is a no-op, not a rollback.
    let again = upload("coordinator", "nhc");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stdout).contains("now serves trust list sequence 3"));
    // The revoked hub is now refused at the handshake.
    let revoked = lookup(&[&pair]);
    assert_eq!(revoked.status.code(), Some(1));
    let said = String::from_utf8_lossy(&revoked.stderr);
    assert!(said.contains("refused this client's certificate (spiffe://huren.gov/hub/h1): it is revoked"), "{said}");

    // SIGTERM stops both servers cleanly.
    assert!(signal(gateway, "-TERM").success());
    assert!(signal(node, "-TERM").success());

    // Province IT purges everything with a receipt; an auditor checks it and the disk.
    let receipt = d("purge.receipt");
    let out = huren(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--all", "--receipt", &receipt]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("deleted 1 disclosure, 1 hub_aggregate, 2 log_entry, 2 status, 1 token"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = huren(&[
        "audit",
        "verify-receipt",
        &receipt,
        "--trust-list",
        &format!("{pki}/trust-list.bin"),
        "--ca",
        &root,
        "--tree-head",
        &head1,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((checked["reason"].as_str(), checked["final_tree_size"].as_u64()), (Some("manual"), Some(2)));
    let out = huren(&["audit", "scan", "--node-data", &d("node-data")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no subject records remain"));
}

#[test]
fn pki_revoke_by_serial_reads_every_form_openssl_and_browsers_print_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki = pki.to_str().unwrap();
    ok(&["pki", "--dir", pki, "init"]);
    // One high-bit serial, as openssl x509 -serial, openssl -text, browsers and people write it.
    for form in
        ["serial=8F1A2B3C4D", "8F:1A:2B:3C:4D", "008F1A2B3C4D", "0x8F1A2B3C4D", "8f1a2b3c4d", "00 8f 1a 2b 3c 4d"]
    {
        let out = huren(&["pki", "--dir", pki, "revoke", "--serial", form]);
        assert!(out.status.success(), "{form}: {}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.starts_with("certificate 8f1a2b3c4d revoked"), "{form}: {said}");
    }
    ok(&["pki", "--dir", pki, "trust-list", "sign"]);
    let shown: serde_json::Value =
        serde_json::from_slice(&huren(&["pki", "--dir", pki, "trust-list", "show"]).stdout).expect("JSON");
    assert_eq!(shown["revoked_serials"], serde_json::json!(["8f1a2b3c4d"]), "one serial, once: {shown}");

    for garbage in ["8G1A", "serial=", "8f::1a", "0x", "8f1a; rm -rf /"] {
        let out = huren(&["pki", "--dir", pki, "revoke", "--serial", garbage]);
        assert_eq!(out.status.code(), Some(64), "{garbage}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("invalid serial"), "{err}");
    }
}
