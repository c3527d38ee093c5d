//! A server's log as a file or a collector gets it (stderr is a pipe, not a terminal):
//! text without ANSI colour codes, or with `log_format = "json"` one JSON object per line;
//! lifecycle events at the default level either way.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{one_province_pki, scratch, write_node_toml, HUREN};

/// The events a node logs at start, at the default level.
const STARTUP: [&str; 4] = ["admin endpoint", "listening on", "node serving", "attestation key in use"];

/// Runs Anhui's node with `env` until it has logged every [`STARTUP`] event, stops it
/// with SIGTERM and returns everything it wrote to stderr.
fn node_log(env: &[(&str, &str)]) -> String {
    let (_dir, path) = scratch();
    let pki = path("pki");
    one_province_pki(&pki, &[("node", "340000")]);
    let config = path("node.toml");
    write_node_toml(Path::new(&config), &pki, &path("data"), "admin_listen = \"127.0.0.1:0\"\n");
    let mut child = Command::new(HUREN)
        .args(["node", "--config", &config])
        .env_remove("HUREN_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("huren node starts");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    while !STARTUP.iter().all(|event| log.iter().any(|l: &String| l.contains(event))) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("not every startup event {STARTUP:?} within 30 s:\n{}", log.join("\n"));
            }
        }
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    child.wait().expect("the node exits");
    log.extend(rx.iter());
    log.join("\n")
}

#[test]
fn text_logs_off_a_terminal_carry_no_colour_codes_and_name_lifecycle_events() {
    let log = node_log(&[]);
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log written to a pipe:\n{log}");
    // Every startup event was seen (node_log waits for them); the lifecycle ones at INFO.
    for event in ["node serving", "attestation key in use"] {
        assert!(log.lines().any(|l| l.contains(" INFO ") && l.contains(event)), "{event:?} at INFO:\n{log}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let log = node_log(&[("HUREN_NODE_LOG_FORMAT", "json")]);
    let mut messages = Vec::new();
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nin\n{log}"));
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{line}");
        messages.push(event["fields"]["message"].as_str().unwrap_or_default().to_owned());
    }
    for event in STARTUP {
        assert!(messages.iter().any(|m| m.contains(event)), "no {event:?} among {messages:#?}");
    }
}
