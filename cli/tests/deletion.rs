//! Proven deletion with the `huren` binary: a running node's purge metrics and
//! readiness, a manual purge of the stopped node with its signed receipt, and an
//! auditor's checks of that receipt (and refusals of altered or unknown ones) and of the
//! disk.

use huren_node::NodeStore as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

mod common;
use common::{audit_target, ok, one_province_pki, refused, scratch, write_node_toml, HUREN};

/// Bound on every wait for a server event: against hangs, not a performance assertion.
const DEADLINE: Duration = Duration::from_secs(30);

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A `huren node` process; killed on drop if still running.
struct Node {
    child: Child,
    /// gRPC (mTLS) address.
    addr: String,
    /// Admin (plain HTTP) address.
    admin: String,
    lines: Receiver<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn spawn(config: &Path) -> Self {
        let mut child = Command::new(HUREN)
            .args(["node", "--config", config.to_str().unwrap()])
            .env("HUREN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn huren node");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        // Keeps draining so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut node = Self { child, addr: String::new(), admin: String::new(), lines };
        let line = node.wait_for("admin endpoint", "the node's admin endpoint");
        node.admin = line.rsplit("http://").next().unwrap().trim().to_owned();
        let line = node.wait_for("listening on", "the node to listen");
        node.addr = line.rsplit("listening on ").next().unwrap().trim().to_owned();
        node
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn wait_for(&self, needle: &str, what: &str) -> String {
        let until = Instant::now() + DEADLINE;
        let mut seen = String::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => panic!("gave up after {DEADLINE:?} waiting for {what}; node said:\n{seen}"),
            }
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

/// One HTTP/1.1 GET on the admin endpoint: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the one series `name{…}` whose labels include all of `labels`.
fn series(body: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in:\n{body}");
    found[0]
}

/// A GREEN status set by Anhui's admin, last changed 40 days before `now` (past the
/// default 30-day retention window) and lapsed a day later.
fn green_40_days_before(now: i64) -> huren_node::store::StatusRecord {
    huren_node::store::StatusRecord {
        status: huren_proto::pb::HealthStatus::Green as i32,
        authority: "spiffe://huren.gov/province/340000/admin".into(),
        valid_until: now - 39 * 86_400,
        updated_at: now - 40 * 86_400,
        ..Default::default()
    }
}

#[test]
fn a_manual_purge_receipt_verifies_and_altered_or_unknown_ones_are_refused() {
    let started = huren_pki::unix_now();
    let (dir, d) = scratch();
    let pki = d("pki");
    let root = one_province_pki(&pki, &[("node", "340000"), ("admin", "340000"), ("auditor", "a1")]);
    let trust_list = format!("{pki}/trust-list.bin");

    // Two statuses last changed 40 days ago: past the default 30-day window.
    let data = d("node-data");
    {
        let store = huren_node::Store::open(&Path::new(&data).join("status.redb")).unwrap();
        for subject in ["ah-old-1", "ah-old-2"] {
            store.upsert(subject, green_40_days_before(started)).unwrap();
        }
    }
    let node_toml = dir.path().join("node.toml");
    write_node_toml(&node_toml, &pki, &data, "admin_listen = \"127.0.0.1:0\"\n");

    // The running node purges them at once and says so on /metrics; /readyz is fine.
    let node = Node::spawn(&node_toml);
    node.wait_for("retention purge", "the node's first retention purge");
    let (status, body) = http_get(&node.admin, "/metrics");
    assert!(status.contains("200"), "{status}");
    let retention = ["province=\"340000\"", "reason=\"retention\""];
    let kind = |k: &'static str| [retention[0], retention[1], k];
    assert_eq!(series(&body, "huren_node_purged_records_total", &kind("kind=\"status\"")), 2.0);
    assert_eq!(series(&body, "huren_node_purged_records_total", &kind("kind=\"token\"")), 0.0);
    assert_eq!(series(&body, "huren_node_purged_records_total", &kind("kind=\"log_entry\"")), 0.0);
    assert!(series(&body, "huren_node_purge_runs_total", &[retention[1], "outcome=\"ok\""]) >= 1.0);
    let last_run = series(&body, "huren_node_purge_last_run_timestamp_seconds", &retention) as i64;
    assert!((started..=huren_pki::unix_now()).contains(&last_run), "last run at {last_run}");
    assert!(series(&body, "huren_expiry_seconds", &["what=\"trust list (next_update)\""]) > 0.0);
    assert!(
        series(&body, "huren_expiry_seconds", &["what=\"certificate spiffe://huren.gov/province/340000/node\""]) > 0.0
    );
    assert!(!body.contains("ah-old"), "a subject reference reached the metrics");
    let (status, body) = http_get(&node.admin, "/readyz");
    assert!(status.contains("200") && body.starts_with("province 340000; trust list 1"), "{status} {body}");
    assert!(!body.contains("DEGRADED"), "{body}");

    // Fresh statuses and a token; an auditor saves the tree head at size 3; one more change.
    let (cert, key) = (format!("{pki}/issued/admin-340000/cert.pem"), format!("{pki}/issued/admin-340000/key.pem"));
    let admin = |extra: &[&str]| {
        let mut args = vec!["admin", extra[0], "--node", &node.addr, "--ca", &root, "--cert", &cert, "--key", &key];
        args.extend(&extra[1..]);
        ok(&args)
    };
    admin(&["status", "ah-0001", "GREEN"]);
    admin(&["token", "ah-0001"]);
    let head = d("head.bin");
    let mut tree_head = vec!["audit".to_owned(), "tree-head".into(), "--out".into(), head.clone()];
    tree_head.extend(audit_target(&pki, &node.addr, "a1"));
    ok(&strs(&tree_head));
    admin(&["status", "ah-0002", "GREEN"]);
    assert!(node.terminate().success());

    // Province IT purges what changed before now, node stopped, with a receipt.
    let receipt = d("before.receipt");
    let before = (huren_pki::unix_now() + 1).to_string();
    let out =
        ok(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--before", &before, "--receipt", &receipt]);
    assert!(out.starts_with("deleted 4 log_entry, 2 status"), "{out}");
    let verify = |receipt: &str, trust_list: &str, ca: &str| -> Vec<String> {
        ["audit", "verify-receipt", receipt, "--trust-list", trust_list, "--ca", ca, "--tree-head", &head]
            .map(str::to_owned)
            .to_vec()
    };
    let checked: serde_json::Value = serde_json::from_str(&ok(&strs(&verify(&receipt, &trust_list, &root)))).unwrap();
    assert_eq!(checked["reason"], "manual");
    assert_eq!((checked["deleted"]["status"].as_u64(), checked["deleted"]["log_entry"].as_u64()), (Some(2), Some(4)));
    assert_eq!(checked["remaining"]["token"], 1, "the token is not yet expired: {checked}");
    assert_eq!(
        (checked["final_tree_size"].as_u64(), checked["consistent_with_saved_head"].as_u64()),
        (Some(4), Some(3))
    );

    // One byte altered: the signature no longer holds.
    let mut bytes = std::fs::read(&receipt).unwrap();
    let at = bytes.windows(6).position(|w| w == b"manual").expect("the reason is in the receipt");
    bytes[at] = b'n';
    let altered = d("altered.receipt");
    std::fs::write(&altered, &bytes).unwrap();
    let err = refused(&strs(&verify(&altered, &trust_list, &root)));
    assert!(err.contains("deletion receipt refused") && err.contains("does not verify"), "{err}");

    // A trust list (of another federation, with its own root) that lacks the signing key.
    let other = d("other-pki");
    ok(&["pki", "--dir", &other, "init"]);
    ok(&["pki", "--dir", &other, "province", "add", "340000", "--name", "Anhui"]);
    ok(&["pki", "--dir", &other, "trust-list", "sign"]);
    let err = refused(&strs(&verify(&receipt, &format!("{other}/trust-list.bin"), &format!("{other}/root/ca.pem"))));
    assert!(
        err.contains("deletion receipt refused") && err.contains("is not an attestation key of province 340000"),
        "{err}"
    );

    // The token is left, so the disk is not clean yet, and the scan says so.
    let scan = ["audit", "scan", "--node-data", &data, "--pattern", "ah-0001", "--pattern", "ah-old-1"];
    let err = refused(&scan);
    assert!(err.contains("remain"), "{err}");
    // Everything: the receipt still proves consistency with the saved head, nothing is left.
    let all = d("all.receipt");
    ok(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--all", "--receipt", &all]);
    let checked: serde_json::Value = serde_json::from_str(&ok(&strs(&verify(&all, &trust_list, &root)))).unwrap();
    assert_eq!(
        (checked["deleted"]["token"].as_u64(), checked["consistent_with_saved_head"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(ok(&scan).contains("no subject records remain"));
}

/// Deletes every key under a test's own Redis prefix on drop.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        use redis::Commands as _;
        let cleanup = || -> redis::RedisResult<()> {
            let mut conn = redis::Client::open(self.url.as_str())?.get_connection()?;
            let keys =
                conn.scan_match::<_, String>(format!("{}*", self.prefix))?.collect::<redis::RedisResult<Vec<_>>>()?;
            if !keys.is_empty() {
                conn.del::<_, ()>(keys)?;
            }
            Ok(())
        };
        let _ = cleanup();
    }
}

/// `store = "redis"`: the node command serves from Redis (its retention purge finds the
/// statuses put there), statuses survive a restart, `huren node purge --all` empties the
/// prefix and `huren audit scan --redis` says so (and refused before).
#[test]
fn a_node_on_redis_serves_survives_a_restart_and_its_purge_leaves_no_subject_key() {
    let started = huren_pki::unix_now();
    let (dir, d) = scratch();
    let pki = d("pki");
    let root = one_province_pki(&pki, &[("node", "340000"), ("admin", "340000")]);
    let url = std::env::var("HUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis =
        RedisKeys { url: url.clone(), prefix: format!("huren-test:cli-node:{}:{started}:", std::process::id()) };
    {
        let store = huren_node::RedisStore::open(&url, &redis.prefix).unwrap();
        store.upsert("ah-old-1", green_40_days_before(started)).unwrap();
    }
    let data = d("node-data");
    let node_toml = dir.path().join("node.toml");
    let redis_store =
        format!("store = \"redis\"\nstore_redis_url = \"{url}\"\nstore_redis_prefix = \"{}\"\n", redis.prefix);
    write_node_toml(&node_toml, &pki, &data, &format!("admin_listen = \"127.0.0.1:0\"\n{redis_store}"));

    let node = Node::spawn(&node_toml);
    node.wait_for("retention purge", "the node's retention purge of the old status in Redis");
    let (cert, admin_key) =
        (format!("{pki}/issued/admin-340000/cert.pem"), format!("{pki}/issued/admin-340000/key.pem"));
    let admin = |addr: &str, extra: &[&str]| {
        let mut args = vec!["admin", extra[0], "--node", addr, "--ca", &root, "--cert", &cert, "--key", &admin_key];
        args.extend(&extra[1..]);
        ok(&args)
    };
    admin(&node.addr, &["status", "ah-0001", "GREEN"]);
    assert!(node.terminate().success());
    assert!(!Path::new(&data).join("status.redb").exists(), "no redb file when the store is in Redis");

    let node = Node::spawn(&node_toml);
    admin(&node.addr, &["token", "ah-0001"]);
    assert!(node.terminate().success());

    let scan = ["audit", "scan", "--redis", &url, "--redis-prefix", &redis.prefix];
    let err = refused(&scan);
    assert!(err.contains("remain"), "{err}");
    let receipt = d("all.receipt");
    let out = ok(&["node", "purge", "--config", node_toml.to_str().unwrap(), "--all", "--receipt", &receipt]);
    assert!(out.contains("1 status") && out.contains("1 token") && out.contains("2 log_entry"), "{out}");
    assert!(out.contains("gone from Redis"), "{out}");
    assert!(ok(&scan).contains("no subject records remain"));
}
