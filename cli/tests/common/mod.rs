//! Helpers shared by the CLI's integration tests: running the real `huren` binary.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::process::{Command, Output};

pub const HUREN: &str = env!("CARGO_BIN_EXE_huren");

/// Runs `huren args…` (without an inherited `HUREN_PKI_DIR`) and returns what it did.
pub fn huren(args: &[&str]) -> Output {
    Command::new(HUREN).args(args).env_remove("HUREN_PKI_DIR").output().expect("huren runs")
}

/// Runs a command that must succeed; returns its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = huren(args);
    assert!(out.status.success(), "huren {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a command that must fail with a one-line cause `huren: …`; returns the line.
pub fn refused(args: &[&str]) -> String {
    one_line_cause(args, huren(args))
}

/// As [`refused`], and the exit code must be 1 (a failure, not bad usage or config).
pub fn fails(args: &[&str]) -> String {
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

/// A coordinator PKI in folder `pki` with one province (340000 Anhui), the role
/// certificates `issue` names, and a signed trust list.
pub fn one_province_pki(pki: &str, issue: &[(&str, &str)]) {
    ok(&["pki", "--dir", pki, "init"]);
    ok(&["pki", "--dir", pki, "province", "add", "340000", "--name", "Anhui"]);
    for (kind, name) in issue {
        ok(&["pki", "--dir", pki, "issue", kind, name]);
    }
    ok(&["pki", "--dir", pki, "trust-list", "sign"]);
}

/// Anhui's (first) attestation key file in the PKI folder `pki`.
pub fn attestation_key_file(pki: &str) -> std::path::PathBuf {
    std::fs::read_dir(format!("{pki}/provinces/340000"))
        .expect("province folder")
        .map(|e| e.expect("folder entry").path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("attestation-")))
        .expect("an attestation key")
}
