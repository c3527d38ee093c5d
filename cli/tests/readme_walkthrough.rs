//! The README's "Running a real federation" runs as written: its `sh` blocks, extracted
//! from README.md and executed literally, top to bottom, in one shell in an empty folder,
//! with the built `huren` on the PATH and every server on loopback. The only thing the test
//! chooses is the ports (the README's first block reads them from the environment), so it
//! never collides with other tests. Servers the README starts in the background are
//! stopped by the README itself, and whatever is left of the shell's process group is
//! killed when the test ends, passed or not.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "## Running a real federation";

/// The lines of `readme` from the heading `title` to the next level-2 heading.
fn section<'a>(readme: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != title);
    let heading = lines.next().expect("the section is in README.md");
    std::iter::once(heading).chain(lines.take_while(|l| !l.starts_with("## "))).collect()
}

/// The contents of the fenced blocks tagged `sh`, in order.
fn sh_blocks(lines: &[&str]) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in lines {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(block), "```") => {
                blocks.push(block.join("\n"));
                current = None;
            }
            (Some(block), _) => block.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an sh block is not closed");
    blocks
}

/// Kills a process group (the shell and what it started in the background) when dropped.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0)]).status();
    }
}

/// `n` distinct free loopback ports (held at once while chosen, so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    held.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

#[test]
fn the_readme_federation_runs_top_to_bottom() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let blocks = sh_blocks(&section(&readme, SECTION));
    assert!(blocks.len() >= 6, "the walkthrough has its blocks: {blocks:?}");
    assert!(blocks[0].contains("NODE_PORT=${NODE_PORT:-"), "the first block chooses the ports: {}", blocks[0]);
    let script = format!("set -euo pipefail\n{}\n", blocks.join("\n"));

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("walkthrough.sh"), &script).expect("script written");
    let huren = std::path::Path::new(env!("CARGO_BIN_EXE_huren"));
    let path = format!("{}:{}", huren.parent().expect("bin dir").display(), std::env::var("PATH").unwrap_or_default());
    let ports = free_ports(4);
    let mut child = Command::new("bash")
        .arg("walkthrough.sh")
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("HUREN_PKI_DIR")
        .env("NODE_PORT", ports[0].to_string())
        .env("GATEWAY_PORT", ports[1].to_string())
        .env("NODE_ADMIN_PORT", ports[2].to_string())
        .env("GATEWAY_ADMIN_PORT", ports[3].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let _group = Group(child.id());
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the walkthrough did not finish within 300 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().expect("stdout read"), stderr.join().expect("stderr read"));
    assert!(status.success(), "the README's commands failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}");

    // What the README promises along the way.
    assert!(stdout.contains("trust list sequence 1 signed"), "{stdout}");
    assert!(stdout.contains("GREEN — issued by 340000 Anhui"), "the hub's lookup and offline check: {stdout}");
    let gateway = format!("gateway 127.0.0.1:{} now serves trust list sequence", ports[1]);
    assert_eq!(stdout.matches(&gateway).count(), 6, "every publish uploads: {stdout}");
    assert!(stdout.contains("+ revoked certificate "), "diffs review the change: {stdout}");
}
