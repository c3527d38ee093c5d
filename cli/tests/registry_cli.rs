//! The coordinator runbook with real `huren` processes: rotate an attestation key with
//! overlap (`huren pki key add|activate|retire|revoke`, `huren pki trust-list sign|upload`)
//! while a `huren node` and a `huren gateway` serve lookups, and keep a hub's offline copy
//! current with `huren hub watch`, also across a gateway outage.
//!
//! Every wait is bounded by [`DEADLINE`] and polls a file or a process's output; nothing
//! sleeps a fixed time and then asserts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod common;
use common::{fails, huren, ok, HUREN};

/// Longest wait for any event (a process starting, a trust list arriving). A guard
/// against hangs, not a performance assertion.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a polled file or process is looked at again.
const POLL: Duration = Duration::from_millis(25);
const PROVINCE: &str = "340000";
const PURPOSE: &str = "transit.highway";

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "gave up after {DEADLINE:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// A child process whose stderr lines are collected; killed on drop if still running.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(HUREN)
            .args(args)
            .env_remove("HUREN_PKI_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn huren");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (tx, lines) = mpsc::channel();
        // Drains the pipe for the process's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The first stderr line (from now on) for which `find` says something, within [`DEADLINE`].
    fn line<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = find(&line);
                    self.seen.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(e) => panic!("no stderr line with {what} ({e}); seen: {:#?}", self.seen),
            }
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

/// The address a server prints on its "listening on" line.
fn listening(proc: &mut Proc) -> String {
    proc.line("\"listening on\"", |l| {
        l.split("listening on ").nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned)
    })
}

/// A one-province federation of real processes: a gateway, a node whose attestation key
/// is a folder (as during a rotation) and which follows the gateway, a registered hub,
/// and one GREEN subject with a token and a QR issued at the start.
struct Federation {
    dir: tempfile::TempDir,
    pki: String,
    root: String,
    root_der: Vec<u8>,
    node_keys: PathBuf,
    node_trust: PathBuf,
    gateway_toml: PathBuf,
    gateway: Option<Proc>,
    gateway_addr: String,
    _node: Proc,
    /// `340000:<token>`, looked up online.
    pair: String,
    /// The QR issued before any rotation.
    qr: String,
}

impl Federation {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p);
        let pki = path("pki").to_str().unwrap().to_owned();
        let root = format!("{pki}/root/ca.pem");
        ok(&["pki", "--dir", &pki, "init"]);
        ok(&["pki", "--dir", &pki, "province", "add", PROVINCE, "--name", "Anhui"]);
        for (kind, name) in [("node", PROVINCE), ("admin", PROVINCE), ("gateway", "g1"), ("coordinator", "nhc")] {
            ok(&["pki", "--dir", &pki, "issue", kind, name]);
        }
        ok(&["pki", "--dir", &pki, "issue", "hub", "h1", "--purpose", PURPOSE]);
        assert!(ok(&["pki", "--dir", &pki, "trust-list", "sign"]).contains("sequence 1"));
        let root_der = huren_pki::ca::pem_to_der(&std::fs::read_to_string(&root).unwrap()).unwrap();

        // The node's key folder holds what province IT was given: the first key only.
        let node_keys = path("node-keys");
        std::fs::create_dir(&node_keys).unwrap();
        let kid = only_kid(&show(&pki));
        copy_key(&pki, &kid, &node_keys);

        // The gateway first (the node follows it), without its attestation cache so that
        // every lookup is signed afresh by the node.
        let gateway_toml = path("gateway.toml");
        write_gateway_toml(&gateway_toml, &pki, "127.0.0.1:0", &path("gateway-data"));
        let mut gateway = Proc::spawn(&["gateway", "--config", gateway_toml.to_str().unwrap()]);
        let gateway_addr = listening(&mut gateway);

        let node_toml = path("node.toml");
        std::fs::write(
            &node_toml,
            format!(
                "province = \"{PROVINCE}\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 data_dir = \"{}\"\ncert = \"{pki}/issued/node-{PROVINCE}/cert.pem\"\n\
                 key = \"{pki}/issued/node-{PROVINCE}/key.pem\"\nca = \"{root}\"\nattestation_key = \"{}\"\n\
                 trust_list = \"{pki}/trust-list.bin\"\ngateway = \"{gateway_addr}\"\n",
                path("node-data").display(),
                node_keys.display(),
            ),
        )
        .unwrap();
        let mut node = Proc::spawn(&["node", "--config", node_toml.to_str().unwrap()]);
        let node_addr = listening(&mut node);

        let mut f = Self {
            node_trust: path("node-data").join("trust-list.bin"),
            dir,
            pki,
            root,
            root_der,
            node_keys,
            gateway_toml,
            gateway: Some(gateway),
            gateway_addr,
            _node: node,
            pair: String::new(),
            qr: String::new(),
        };
        ok(&["pki", "--dir", &f.pki, "province", "set-endpoint", PROVINCE, &format!("https://{node_addr}")]);
        assert_eq!(f.publish(), 2);

        let admin = |extra: &[&str]| {
            let cert = format!("{}/issued/admin-{PROVINCE}/cert.pem", f.pki);
            let key = format!("{}/issued/admin-{PROVINCE}/key.pem", f.pki);
            let mut args = vec!["admin", extra[0], "--node", &node_addr, "--ca", &f.root, "--cert", &cert];
            args.extend(["--key", &key]);
            args.extend(&extra[1..]);
            ok(&args)
        };
        admin(&["status", "ah-0001", "GREEN"]);
        let token: serde_json::Value = serde_json::from_str(&admin(&["token", "ah-0001", "--json"])).unwrap();
        f.pair = format!("{PROVINCE}:{}", token["token"].as_str().unwrap());
        f.qr = token["qr"].as_str().unwrap().to_owned();
        f
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn pki(&self, args: &[&str]) -> String {
        let mut all = vec!["pki", "--dir", &self.pki];
        all.extend(args);
        ok(&all)
    }

    fn hub_tls(&self) -> Vec<String> {
        let issued = format!("{}/issued/hub-h1", self.pki);
        let (cert, key) = (format!("{issued}/cert.pem"), format!("{issued}/key.pem"));
        ["--gateway", &self.gateway_addr, "--cert", &cert, "--key", &key, "--ca", &self.root]
            .map(str::to_owned)
            .to_vec()
    }

    /// Signs the registry's next list and uploads it as the coordinator; returns its
    /// sequence once the node holds it too.
    fn publish(&self) -> u64 {
        let signed = self.pki(&["trust-list", "sign"]);
        let sequence: u64 = signed
            .split("sequence ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no sequence in {signed:?}"));
        let coordinator = format!("{}/issued/coordinator-nhc", self.pki);
        let uploaded = self.pki(&[
            "trust-list",
            "upload",
            "--gateway",
            &self.gateway_addr,
            "--ca",
            &self.root,
            "--cert",
            &format!("{coordinator}/cert.pem"),
            "--key",
            &format!("{coordinator}/key.pem"),
        ]);
        assert!(uploaded.contains(&format!("now serves trust list sequence {sequence}")), "{uploaded}");
        until(&format!("the node to hold trust list {sequence}"), || {
            sequence_of(&self.node_trust, &self.root_der) >= Some(sequence)
        });
        sequence
    }

    /// `huren hub lookup --json` of the subject; the verified status.
    fn lookup(&self, cache: Option<&str>) -> Result<serde_json::Value, String> {
        let mut args: Vec<String> = ["hub", "lookup"].into_iter().map(str::to_owned).collect();
        args.extend(self.hub_tls());
        args.extend(["--purpose", PURPOSE, "--json"].map(str::to_owned));
        if let Some(cache) = cache {
            args.extend(["--trust-list-cache".to_owned(), cache.to_owned()]);
        }
        args.push(self.pair.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = huren(&args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).expect("one JSON status"))
    }

    fn lookup_green(&self, cache: Option<&str>, when: &str) {
        let status = self.lookup(cache).unwrap_or_else(|e| panic!("lookup {when} failed: {e}"));
        assert_eq!(status["status"], "GREEN", "{when}: {status}");
    }

    fn verify(&self, cache: &str, qr: &str) -> Output {
        huren(&["hub", "verify", "--trust-list", cache, "--ca", &self.root, qr])
    }

    fn verify_ok(&self, cache: &str, qr: &str, when: &str) {
        let out = self.verify(cache, qr);
        assert!(out.status.success(), "offline verification {when} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("GREEN — issued by 340000 Anhui"), "{when}");
    }

    /// Starts the gateway again on the address it had, over the same data folder.
    fn start_gateway(&mut self) {
        write_gateway_toml(&self.gateway_toml, &self.pki, &self.gateway_addr, &self.dir.path().join("gateway-data"));
        let mut gateway = Proc::spawn(&["gateway", "--config", self.gateway_toml.to_str().unwrap()]);
        assert_eq!(listening(&mut gateway), self.gateway_addr);
        self.gateway = Some(gateway);
    }
}

fn write_gateway_toml(path: &Path, pki: &str, listen: &str, data: &Path) {
    std::fs::write(
        path,
        format!(
            "listen = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\ncache = false\n\
             cert = \"{pki}/issued/gateway-g1/cert.pem\"\nkey = \"{pki}/issued/gateway-g1/key.pem\"\n\
             ca = \"{pki}/root/ca.pem\"\ntrust_list = \"{pki}/trust-list.bin\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
}

fn show(pki: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["pki", "--dir", pki, "trust-list", "show"])).unwrap()
}

/// The one attestation key of the province in a shown trust list.
fn only_kid(shown: &serde_json::Value) -> String {
    let keys = shown["provinces"][0]["attestation_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{shown}");
    keys[0]["kid"].as_str().unwrap().to_owned()
}

/// The status of key `kid` in a shown trust list.
fn key_status(shown: &serde_json::Value, kid: &str) -> String {
    let keys = shown["provinces"][0]["attestation_keys"].as_array().unwrap();
    let key = keys.iter().find(|k| k["kid"] == kid).unwrap_or_else(|| panic!("no key {kid} in {shown}"));
    key["status"].as_str().unwrap().to_owned()
}

/// What province IT does with the file the coordinator hands over.
fn copy_key(pki: &str, kid: &str, node_keys: &Path) {
    let name = format!("attestation-{kid}.key");
    std::fs::copy(Path::new(pki).join("provinces").join(PROVINCE).join(&name), node_keys.join(&name)).unwrap();
}

/// `huren pki key add`: the new key's kid.
fn add_key(f: &Federation) -> String {
    let out = f.pki(&["key", "add", PROVINCE]);
    out.strip_prefix("key ")
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{out}"))
}

fn sequence_of(path: &Path, root_der: &[u8]) -> Option<u64> {
    huren_pki::TrustList::load(path, root_der).ok().map(|t| t.sequence())
}

/// `huren hub lookup` in a loop on another thread until stopped (at most 2 000 times),
/// collecting every failure: "lookups keep succeeding throughout". Stops when dropped.
struct Continuous {
    stop: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<(u32, Vec<String>)>>,
}

impl Drop for Continuous {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Continuous {
    fn start(f: &Federation) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut args: Vec<String> = ["hub", "lookup"].into_iter().map(str::to_owned).collect();
        args.extend(f.hub_tls());
        args.extend(["--purpose", PURPOSE, &f.pair].map(str::to_owned));
        let flag = stop.clone();
        let worker = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (mut ok, mut failed) = (0, Vec::new());
            for _ in 0..2_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let out = huren(&args);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("GREEN") {
                    ok += 1;
                } else {
                    failed.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
                }
            }
            (ok, failed)
        });
        Self { stop, worker: Some(worker) }
    }

    /// Stops the loop; every lookup it made must have been a verified GREEN.
    fn finish(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = self.worker.take().expect("running").join().expect("lookup loop");
        assert!(failed.is_empty(), "{} lookups failed during the rotation: {failed:#?}", failed.len());
        eprintln!("{ok} lookups by a separate hub process during the rotation, none failed");
        ok
    }
}

#[test]
fn key_rotation_with_the_cli_keeps_lookups_and_old_qrs_working_until_the_old_key_is_revoked() {
    let f = Federation::start();
    let cache = f.file("hub-cache.bin");
    let old = only_kid(&show(&f.pki));
    f.lookup_green(Some(&cache), "before the rotation");
    f.verify_ok(&cache, &f.qr, "before the rotation");
    let lookups = Continuous::start(&f);

    // 1. Prepare: the new key is published (verifies, does not sign) and handed to the node.
    let new = add_key(&f);
    assert_ne!(new, old);
    f.publish();
    assert_eq!(key_status(&show(&f.pki), &new), "KEY_STATUS_PUBLISHED");
    f.lookup_green(Some(&cache), "with the new key published");
    copy_key(&f.pki, &new, &f.node_keys);

    // 2. Activate: the node signs with the new key; the old one is retired.
    f.pki(&["key", "activate", PROVINCE, &new]);
    f.publish();
    let shown = show(&f.pki);
    assert_eq!(
        (key_status(&shown, &new), key_status(&shown, &old)),
        ("KEY_STATUS_ACTIVE".into(), "KEY_STATUS_RETIRED".into())
    );
    f.lookup_green(Some(&cache), "after the activation");
    // The hub's refreshed cache still verifies the QR signed before the rotation.
    assert_eq!(sequence_of(Path::new(&cache), &f.root_der), Some(4));
    f.verify_ok(&cache, &f.qr, "after the activation");

    // 3. Retire (explicitly, as the runbook does): still verifies until its not_after.
    f.pki(&["key", "retire", PROVINCE, &old]);
    f.publish();
    f.lookup_green(Some(&cache), "after the retirement");
    f.verify_ok(&cache, &f.qr, "after the retirement");
    let before_revocation = f.file("cache-before-revocation.bin");
    std::fs::copy(&cache, &before_revocation).unwrap();

    // 4. Revoke the old key: lookups still succeed (the gateway and the hub refuse
    // anything the revoked key signs, so the node must be signing with the new key) ...
    f.pki(&["key", "revoke", PROVINCE, &old]);
    let revoked_in = f.publish();
    f.lookup_green(Some(&cache), "after the revocation");
    assert!(lookups.finish() > 0, "the lookup loop made no lookup");
    assert_eq!(sequence_of(Path::new(&cache), &f.root_der), Some(revoked_in));
    // ... and the QR the old key signed fails offline against the refreshed cache, with
    // a one-line cause naming the revoked key.
    let err = fails(&["hub", "verify", "--trust-list", &cache, "--ca", &f.root, &f.qr]);
    assert!(err.contains(&format!("key {old} of province {PROVINCE} is revoked")), "{err}");
    // A hub that has not heard of the revocation yet still accepts it: the cache is what counts.
    f.verify_ok(&before_revocation, &f.qr, "with a cache from before the revocation");
}

#[test]
fn a_node_without_the_new_key_file_keeps_signing_with_the_retired_key_until_the_file_arrives() {
    let f = Federation::start();
    let old = only_kid(&show(&f.pki));
    let lookups = Continuous::start(&f);

    // The coordinator activates the new key before province IT has copied its file.
    let new = add_key(&f);
    f.publish();
    f.pki(&["key", "activate", PROVINCE, &new]);
    f.publish();
    assert!(!f.node_keys.join(format!("attestation-{new}.key")).exists());
    for i in 0..3 {
        f.lookup_green(None, &format!("while the node lacks the activated key ({i})"));
    }
    let cache = f.file("hub-cache.bin");
    f.lookup_green(Some(&cache), "while the node lacks the activated key");
    f.verify_ok(&cache, &f.qr, "while the node lacks the activated key");

    // The file arrives; the next trust list (the runbook's retirement) makes the node
    // rescan its key folder; once the old key is revoked, only the new one can sign.
    copy_key(&f.pki, &new, &f.node_keys);
    f.pki(&["key", "retire", PROVINCE, &old]);
    f.publish();
    f.lookup_green(None, "after the key file arrived");
    f.pki(&["key", "revoke", PROVINCE, &old]);
    f.publish();
    for i in 0..3 {
        f.lookup_green(Some(&cache), &format!("with the old key revoked ({i})"));
    }
    assert!(lookups.finish() > 0, "the lookup loop made no lookup");
    let err = fails(&["hub", "verify", "--trust-list", &cache, "--ca", &f.root, &f.qr]);
    assert!(err.contains(&format!("key {old} of province {PROVINCE} is revoked")), "{err}");
}

#[test]
fn hub_watch_keeps_the_cache_current_and_restarts_from_it_while_the_gateway_is_down() {
    let mut f = Federation::start();
    let cache = f.file("watch-cache.bin");
    let hub_tls = f.hub_tls();
    let watch_args = |cache: &str| {
        let mut args: Vec<String> = ["hub", "watch"].into_iter().map(str::to_owned).collect();
        args.extend(hub_tls.iter().cloned());
        args.extend(["--trust-list-cache".to_owned(), cache.to_owned()]);
        args
    };
    let spawn_watch = |args: &[String]| Proc::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let following = |l: &str| {
        l.strip_prefix("following ")
            .and_then(|rest| rest.split("trust list sequence ").nth(1))
            .and_then(|s| s.trim().parse::<u64>().ok())
    };

    // No cache yet: the watcher fetches the gateway's list, then follows it.
    let mut watch = spawn_watch(&watch_args(&cache));
    assert_eq!(watch.line("the watcher following the gateway", following), 2);
    until("the cache to hold sequence 2", || sequence_of(Path::new(&cache), &f.root_der) == Some(2));
    f.verify_ok(&cache, &f.qr, "with the watched cache");

    // A new list reaches the cache without any lookup.
    f.pki(&["hub", "register", "h2", "--purpose", PURPOSE]);
    let third = f.publish();
    until(&format!("the cache to hold sequence {third}"), || {
        sequence_of(Path::new(&cache), &f.root_der) == Some(third)
    });

    // The gateway goes away: offline verification goes on from the cache.
    f.gateway.take();
    f.verify_ok(&cache, &f.qr, "with the gateway down");
    drop(watch);

    // A restarted watcher starts from its last good copy instead of giving up ...
    let mut watch = spawn_watch(&watch_args(&cache));
    assert_eq!(watch.line("the watcher starting from its cache", following), third);
    assert!(watch.still_running(), "the watcher stopped while the gateway was down");
    assert_eq!(sequence_of(Path::new(&cache), &f.root_der), Some(third));
    f.verify_ok(&cache, &f.qr, "after restarting the watcher with the gateway down");

    // ... while one with neither a usable cache nor a gateway fails with a one-line cause.
    let damaged = f.file("damaged-cache.bin");
    std::fs::write(&damaged, b"not a trust list").unwrap();
    let args = watch_args(&damaged);
    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("nothing is listening at"), "the gateway down, in words: {err}");
    assert!(err.contains("damaged-cache.bin unusable"), "the cache's own problem is named too: {err}");

    // The gateway comes back (from its own persisted list) and the watcher catches up.
    f.start_gateway();
    f.pki(&["hub", "register", "h3", "--purpose", PURPOSE]);
    let fourth = f.publish();
    until(&format!("the restarted watcher's cache to hold sequence {fourth}"), || {
        sequence_of(Path::new(&cache), &f.root_der) == Some(fourth)
    });
    assert_eq!(
        watch.line("the watcher reporting the new list", |l| l.strip_prefix("trust list sequence ").map(str::to_owned)),
        fourth.to_string()
    );
}
