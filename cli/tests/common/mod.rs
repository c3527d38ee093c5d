//! Helpers shared by the CLI's integration tests: running the real `huren` binary, a
//! one-province PKI and node configuration made with it, and server processes.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

pub(crate) const HUREN: &str = env!("CARGO_BIN_EXE_huren");

/// Runs `huren args…` (without an inherited `HUREN_PKI_DIR`) and returns what it did.
pub(crate) fn huren(args: &[&str]) -> Output {
    Command::new(HUREN).args(args).env_remove("HUREN_PKI_DIR").output().expect("huren runs")
}

/// Runs a command that must succeed; returns its standard output.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = huren(args);
    assert!(out.status.success(), "huren {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a command that must fail with a one-line cause `huren: …`; returns the line.
pub(crate) fn refused(args: &[&str]) -> String {
    one_line_cause(args, huren(args))
}

/// As [`refused`], and the exit code must be 1 (a failure, not bad usage or config).
pub(crate) fn fails(args: &[&str]) -> String {
    let out = huren(args);
    assert_eq!(out.status.code(), Some(1), "huren {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    one_line_cause(args, out)
}

fn one_line_cause(args: &[&str], out: Output) -> String {
    assert!(!out.status.success(), "huren {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "not a one-line cause: {err}");
    assert!(err.starts_with("huren: "), "{err}");
    err
}

/// A temporary folder for one test (removed when dropped), and a function that gives the
/// path of a name in it as a string.
pub(crate) fn scratch() -> (tempfile::TempDir, impl Fn(&str) -> String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().to_owned();
    (dir, move |name: &str| base.join(name).to_str().expect("utf-8 path").to_owned())
}

/// A coordinator PKI in folder `pki` with one province (340000 Anhui), the role
/// certificates `issue` names, and a signed trust list; returns the national root
/// certificate's path.
pub(crate) fn one_province_pki(pki: &str, issue: &[(&str, &str)]) -> String {
    ok(&["pki", "--dir", pki, "init"]);
    ok(&["pki", "--dir", pki, "province", "add", "340000", "--name", "Anhui"]);
    for (kind, name) in issue {
        ok(&["pki", "--dir", pki, "issue", kind, name]);
    }
    ok(&["pki", "--dir", pki, "trust-list", "sign"]);
    format!("{pki}/root/ca.pem")
}

/// Anhui's (first) attestation key file in the PKI folder `pki`.
pub(crate) fn attestation_key_file(pki: &str) -> std::path::PathBuf {
    std::fs::read_dir(format!("{pki}/provinces/340000"))
        .expect("province folder")
        .map(|e| e.expect("folder entry").path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("attestation-")))
        .expect("an attestation key")
}

/// A coordinator PKI in folder `pki` with one province (340000 Anhui) and rule `R1`
/// (close contact, may assign RED, 14 days) applied by the authority `340000/hefei-cdc`;
/// nothing issued or signed yet.
pub(crate) fn anhui_with_rule_r1(pki: &str) {
    ok(&["pki", "--dir", pki, "init"]);
    ok(&["pki", "--dir", pki, "province", "add", "340000", "--name", "Anhui"]);
    let rule = ["--id", "R1", "--title", "Close contact", "--may-assign", "RED", "--max-duration-seconds", "1209600"];
    let mut args = vec!["pki", "--dir", pki, "rule", "add"];
    args.extend(rule);
    args.extend(["--authority", "340000/hefei-cdc"]);
    ok(&args);
}

/// Writes the configuration of Anhui's node (PKI folder `pki`, data in `data_dir`,
/// gRPC on an ephemeral loopback port) to `path`, with `extra` TOML lines appended.
pub(crate) fn write_node_toml(path: &Path, pki: &str, data_dir: &str, extra: &str) {
    let key = attestation_key_file(pki);
    let issued = format!("{pki}/issued/node-340000");
    let config = format!(
        "province = \"340000\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data_dir}\"\n\
         cert = \"{issued}/cert.pem\"\nkey = \"{issued}/key.pem\"\nca = \"{pki}/root/ca.pem\"\n\
         attestation_key = \"{}\"\ntrust_list = \"{pki}/trust-list.bin\"\n{extra}",
        key.display()
    );
    std::fs::write(path, config).expect("node.toml written");
}

/// The options that point an `huren audit` command at Anhui's node at `node`, as the
/// auditor `auditor` of the PKI folder `pki`.
pub(crate) fn audit_target(pki: &str, node: &str, auditor: &str) -> Vec<String> {
    let issued = format!("{pki}/issued/auditor-{auditor}");
    let trust_list = format!("{pki}/trust-list.bin");
    let (root, cert, key) = (format!("{pki}/root/ca.pem"), format!("{issued}/cert.pem"), format!("{issued}/key.pem"));
    ["--province", "340000", "--node", node, "--trust-list", &trust_list, "--ca", &root, "--cert", &cert, "--key", &key]
        .map(str::to_owned)
        .to_vec()
}

/// A `huren node` or `huren gateway` process; killed on drop if still running.
pub(crate) struct Server {
    pub child: Child,
    /// The gRPC address it listens on.
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `huren <role> --config <config>` and waits for its "listening on" line.
pub(crate) fn spawn_server(role: &str, config: &Path) -> Server {
    let mut child = Command::new(HUREN)
        .args([role, "--config", config.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("{role} did not start: {seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("an address").to_owned();
        }
    };
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    Server { child, addr }
}

/// Sends `signal` (`-TERM`, `-9`) to the server and waits for it to exit.
pub(crate) fn signal(mut server: Server, signal: &str) -> ExitStatus {
    let status = Command::new("kill").args([signal, &server.child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    server.child.wait().expect("the server exits")
}
