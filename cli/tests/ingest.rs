//! `huren admin import` and `huren admin tokens` against a real `huren node` process:
//! the node `kill -9`ed during an import and the importer killed mid-file, then resumed —
//! every row the node accepted is in the store and in the log exactly once, nothing
//! refused was applied, and every refusal is in the refusals file once, with its line.
//! The kill -9 runs with the node's store in redb and in Redis (the local test Redis,
//! `HUREN_TEST_REDIS`, under a key prefix of its own, deleted afterwards).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use huren_proto::pb;
use prost::Message as _;

mod common;
use common::{anhui_with_rule_r1, ok, scratch, signal, spawn_server, write_node_toml, HUREN};

/// Rows in the big import file.
const ROWS: u64 = 30_000;

struct Setup {
    _dir: tempfile::TempDir,
    node_toml: PathBuf,
    store: StoreAt,
    pki: String,
    file: String,
}

/// Where the node keeps its store.
enum StoreAt {
    /// `data_dir/status.redb`.
    Redb(PathBuf),
    /// Keys under `prefix` on the Redis at `url`.
    Redis { url: String, prefix: String },
}

impl StoreAt {
    /// A Redis store under a prefix no other test uses.
    fn redis() -> Self {
        let url = std::env::var("HUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Self::Redis { url, prefix: format!("huren-test-ingest:{}-{nanos}:", std::process::id()) }
    }

    /// The `node.toml` lines that put the store here.
    fn config(&self) -> String {
        match self {
            StoreAt::Redb(_) => String::new(),
            StoreAt::Redis { url, prefix } => {
                format!("store = \"redis\"\nstore_redis_url = \"{url}\"\nstore_redis_prefix = \"{prefix}\"\n")
            }
        }
    }

    /// The store, opened as the node opens it (the node must be stopped).
    fn open(&self) -> Box<dyn huren_node::NodeStore> {
        match self {
            StoreAt::Redb(path) => Box::new(huren_node::Store::open(path).unwrap()),
            StoreAt::Redis { url, prefix } => Box::new(huren_node::RedisStore::open(url, prefix).unwrap()),
        }
    }
}

impl Drop for StoreAt {
    fn drop(&mut self) {
        if let StoreAt::Redis { url, prefix } = self {
            let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) else { return };
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).unwrap_or_default();
            for key in keys {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut conn);
            }
        }
    }
}

/// How a row of the generated file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Applied(i32),
    Refused(&'static str),
}

fn setup() -> Setup {
    setup_with(None)
}

/// [`setup`] with the node's store in Redis when `redis` is given, else in redb.
fn setup_with(redis: Option<StoreAt>) -> Setup {
    let (dir, d) = scratch();
    let pki = d("pki");
    anhui_with_rule_r1(&pki);
    for (kind, name) in [("node", "340000"), ("admin", "340000"), ("authority", "340000/hefei-cdc")] {
        ok(&["pki", "--dir", &pki, "issue", kind, name]);
    }
    ok(&["pki", "--dir", &pki, "trust-list", "sign"]);
    let store = redis.unwrap_or_else(|| StoreAt::Redb(dir.path().join("node-data").join("status.redb")));
    let node_toml = dir.path().join("node.toml");
    let extra = format!("admin_listen = \"127.0.0.1:0\"\n{}", store.config());
    write_node_toml(&node_toml, &pki, &d("node-data"), &extra);
    Setup { node_toml, store, file: d("statuses.jsonl"), pki, _dir: dir }
}

/// The subject of line `line` and how it must end: mostly GREEN and RED (rule R1) rows,
/// with a rule that does not exist, ID numbers and a subject named twice in one batch
/// mixed in.
fn row(line: u64) -> (String, String, Fate) {
    let subject = format!("imp-{line:06}");
    let green = pb::HealthStatus::Green as i32;
    let red = pb::HealthStatus::Red as i32;
    match line {
        10 | 11 => ("imp-twice".into(), r#""status":"GREEN""#.into(), Fate::Refused("INVALID_REQUEST")),
        l if l % 101 == 0 => (
            format!("3401041990{:07}X", l % 10_000_000),
            r#""status":"GREEN""#.into(),
            Fate::Refused("INVALID_REQUEST"),
        ),
        l if l % 97 == 0 => {
            (subject, r#""status":"RED","rule_id":"NO-SUCH-RULE""#.into(), Fate::Refused("RULE_UNKNOWN"))
        }
        l if l % 3 == 0 => (subject, r#""status":"RED","rule_id":"R1""#.into(), Fate::Applied(red)),
        _ => (subject, r#""status":"green""#.into(), Fate::Applied(green)),
    }
}

fn write_file(path: &str) -> BTreeMap<u64, (String, Fate)> {
    let mut text = String::new();
    let mut rows = BTreeMap::new();
    for line in 1..=ROWS {
        let (subject, fields, fate) = row(line);
        text.push_str(&format!("{{\"subject_ref\":\"{subject}\",{fields}}}\n"));
        rows.insert(line, (subject, fate));
    }
    std::fs::write(path, text).unwrap();
    rows
}

fn identity(pki: &str, who: &str) -> Vec<String> {
    let issued = format!("{pki}/issued/{who}");
    [
        "--cert",
        &format!("{issued}/cert.pem"),
        "--key",
        &format!("{issued}/key.pem"),
        "--ca",
        &format!("{pki}/root/ca.pem"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn importer(setup: &Setup, node: &str, extra: &[&str]) -> Child {
    let mut args = vec!["admin".to_owned(), "import".into(), setup.file.clone(), "--node".into(), node.into()];
    args.extend(identity(&setup.pki, "authority-340000-hefei-cdc"));
    args.extend(
        ["--batch", "100", "--in-flight", "2", "--progress", "plain", "--progress-every", "100ms", "--retry-for", "1s"]
            .map(str::to_owned),
    );
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Command::new(HUREN).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// The checkpoint's line, once it reaches `at_least` (polled, with a deadline); `None` if
/// the importer exited first.
fn wait_for_checkpoint(path: &Path, at_least: u64, child: &mut Child) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(cp) = serde_json::from_str::<serde_json::Value>(&text) {
                let line = cp["line"].as_u64().unwrap();
                if line >= at_least {
                    return Some(line);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "the import did not reach line {at_least}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_import_survives_kill_9_of_the_node_and_of_the_importer() {
    an_import_survives_kill_9(&setup());
}

#[test]
fn an_import_survives_kill_9_of_a_node_whose_store_is_in_redis() {
    an_import_survives_kill_9(&setup_with(Some(StoreAt::redis())));
}

/// The node is killed (`kill -9`) mid-import and started again on the same store, the
/// importer too; resumed, every row ends exactly once as it must.
fn an_import_survives_kill_9(setup: &Setup) {
    let rows = write_file(&setup.file);
    let checkpoint = PathBuf::from(format!("{}.checkpoint", setup.file));
    let refusals = PathBuf::from(format!("{}.refusals.jsonl", setup.file));

    // 1. The node is killed mid-import: the importer gives up after --retry-for and says
    //    how to continue.
    let node = spawn_server("node", &setup.node_toml);
    let mut first = importer(setup, &node.addr, &[]);
    let reached = wait_for_checkpoint(&checkpoint, 3_000, &mut first).expect("the import ran past line 3000");
    assert!(!signal(node, "-9").success());
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(stderr.contains("progress: line "), "plain progress lines: {stderr}");
    eprintln!("node killed with the checkpoint at line {reached}");

    // Without --resume, the unfinished run's checkpoint is not overwritten.
    let node = spawn_server("node", &setup.node_toml);
    let out = importer(setup, &node.addr, &[]).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));

    // 2. The resumed importer is killed mid-file.
    let mut second = importer(setup, &node.addr, &["--resume"]);
    let line = wait_for_checkpoint(&checkpoint, reached + 6_000, &mut second).expect("the resumed import ran on");
    Command::new("kill").args(["-9", &second.id().to_string()]).status().unwrap();
    second.wait().unwrap();
    eprintln!("importer killed with the checkpoint at line {line}");

    // 3. Resumed again, it finishes.
    let out = importer(setup, &node.addr, &["--resume"]).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!checkpoint.exists(), "a finished import leaves no checkpoint");
    let applied = rows.values().filter(|(_, f)| matches!(f, Fate::Applied(_))).count() as u64;
    let refused = ROWS - applied;
    let summary = stdout.lines().find(|l| l.starts_with("done: ")).unwrap_or_else(|| panic!("{stdout}"));
    let number = |what: &str| -> u64 {
        let before = summary.split(what).next().unwrap();
        before.trim_end().rsplit([' ', ',']).next().unwrap().parse().unwrap()
    };
    assert_eq!(number(" refused"), refused, "{summary}");
    assert_eq!(number(" accepted") + number(" skipped"), applied, "{summary}");
    assert!(number(" skipped") > 0, "the resumed runs re-sent batches the killed ones had applied: {summary}");
    signal(node, "-TERM");

    // Every refusal once, with its line and reason; every other row applied exactly once.
    let mut listed: BTreeMap<u64, String> = BTreeMap::new();
    for text in std::fs::read_to_string(&refusals).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let line = v["line"].as_u64().unwrap();
        assert!(!v["message"].as_str().unwrap().contains("3401041990"), "no ID number in {text}");
        assert!(listed.insert(line, v["reason"].as_str().unwrap().to_owned()).is_none(), "line {line} listed twice");
    }
    let store = setup.store.open();
    let (size, _) = store.log_head().unwrap();
    assert_eq!(size, applied, "one log entry per applied row");
    let entries = store.log_entries(0, size).unwrap();
    let mut logged: BTreeMap<Vec<u8>, Vec<i32>> = BTreeMap::new();
    for bytes in entries {
        let e = pb::LogEntry::decode(bytes.as_slice()).unwrap();
        logged.entry(e.subject_commitment).or_default().push(e.status);
    }
    for (line, (subject, fate)) in &rows {
        let commitment = store.commitment(subject).to_vec();
        match fate {
            Fate::Applied(status) => {
                let record = store.status(subject).unwrap().unwrap_or_else(|| panic!("line {line} lost"));
                assert_eq!((record.status, record.version), (*status, 1), "line {line}");
                assert_eq!(logged.get(&commitment), Some(&vec![*status]), "line {line}: logged once");
                assert!(!listed.contains_key(line), "line {line} applied and listed as refused");
            }
            Fate::Refused(reason) => {
                assert!(store.status(subject).unwrap().is_none(), "line {line} refused but applied");
                assert!(!logged.contains_key(&commitment), "line {line} refused but logged");
                assert_eq!(listed.get(line).map(String::as_str), Some(*reason), "line {line}");
            }
        }
    }
}

#[test]
fn csv_statuses_and_a_token_file_in_batches() {
    let setup = setup();
    let node = spawn_server("node", &setup.node_toml);
    let (_dir, d) = scratch();
    let csv = d("statuses.csv");
    // The admin may set GREEN only: the RED row is refused, the rest applies.
    std::fs::write(
        &csv,
        "status,subject_ref,rule_id,test_recency\nGREEN,csv-1,,WITHIN_24H\nRED,csv-2,R1,\nGREEN,csv-3,,\n",
    )
    .unwrap();
    let admin = identity(&setup.pki, "admin-340000");
    let mut args = vec!["admin", "import", &csv, "--node", &node.addr, "--progress", "none"];
    args.extend(admin.iter().map(String::as_str));
    let out = ok(&args);
    assert!(out.contains("done: 2 accepted, 1 refused, 0 skipped"), "{out}");
    let refusals = std::fs::read_to_string(format!("{csv}.refusals.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(refusals.trim()).unwrap();
    assert_eq!((v["line"].as_u64(), v["reason"].as_str()), (Some(3), Some("AUTHORITY_REQUIRED")));
    // The same file again: everything already applied, nothing logged twice.
    let out = ok(&args);
    assert!(out.contains("done: 0 accepted, 1 refused, 2 skipped"), "{out}");

    let tokens = d("tokens.jsonl");
    std::fs::write(&tokens, "{\"subject_ref\":\"csv-1\"}\n{\"subject_ref\":\"nobody\"}\n{\"subject_ref\":\"csv-3\",\"lifetime_seconds\":600}\n").unwrap();
    let mut args = vec!["admin", "tokens", &tokens, "--node", &node.addr, "--progress", "none"];
    args.extend(admin.iter().map(String::as_str));
    let out = ok(&args);
    assert!(out.contains("done: 2 accepted, 1 refused"), "{out}");
    let issued: Vec<serde_json::Value> = std::fs::read_to_string(format!("{tokens}.tokens.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(issued.iter().map(|t| t["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 3]);
    assert!(issued.iter().all(|t| t["qr"].as_str().unwrap().starts_with("HRN1:")));
    let refusals = std::fs::read_to_string(format!("{tokens}.refusals.jsonl")).unwrap();
    assert!(refusals.contains("\"line\":2") && refusals.contains("SUBJECT_UNKNOWN"), "{refusals}");
    drop(node);
}

/// A `StatusAdmin` client of Anhui's node at `addr` as `who` (a folder under `issued/`).
fn admin_client(
    setup: &Setup,
    who: &str,
    addr: &str,
) -> pb::status_admin_client::StatusAdminClient<tonic::transport::Channel> {
    use huren_pki::{Identity, Role};
    use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
    let issued = Path::new(&setup.pki).join("issued").join(who);
    let root = Path::new(&setup.pki).join("root").join("ca.pem");
    let identity = TlsIdentity::load(&issued.join("cert.pem"), &issued.join("key.pem"), &root, "huren.gov").unwrap();
    let expected = ExpectedPeer::Exactly(Identity::new("huren.gov", Role::Node("340000".parse().unwrap())));
    let config = tls::client_config(&identity, expected, Revocations::default()).unwrap();
    pb::status_admin_client::StatusAdminClient::new(tls::channel(addr, config, Duration::from_secs(3)).unwrap())
}

fn item(id: &str, subject: &str, status: pb::HealthStatus, rule: &str) -> pb::PublishStatusItem {
    let change = pb::UpsertStatusRequest {
        subject_ref: subject.into(),
        status: status as i32,
        rule_id: rule.into(),
        ..Default::default()
    };
    pb::PublishStatusItem { item_id: id.into(), change: Some(change) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_is_authorized_as_its_unary_call_and_a_retry_writes_nothing() {
    use pb::HealthStatus::{Green, Red};
    let setup = setup();
    let node = spawn_server("node", &setup.node_toml);
    let mut authority = admin_client(&setup, "authority-340000-hefei-cdc", &node.addr);
    let mut admin = admin_client(&setup, "admin-340000", &node.addr);
    let publish = |items: Vec<pb::PublishStatusItem>| pb::PublishStatusesRequest { items, all_or_nothing: false };

    let red = authority.publish_statuses(publish(vec![item("a:1", "held", Red, "R1")])).await.unwrap().into_inner();
    assert_eq!((red.accepted, red.tree_size), (1, 1));
    // The admin may set GREEN, but not lift a RED held under R1, nor set RED at all.
    let batch = vec![item("b:1", "fresh", Green, ""), item("b:2", "held", Green, ""), item("b:3", "other", Red, "R1")];
    let first = admin.publish_statuses(publish(batch.clone())).await.unwrap().into_inner();
    let reasons: Vec<String> =
        first.results.iter().map(|r| r.refusal.as_ref().map(|f| f.reason.clone()).unwrap_or_default()).collect();
    assert_eq!(reasons, vec!["", "LIFT_NOT_ALLOWED", "AUTHORITY_REQUIRED"]);
    assert_eq!(first.results[1].refusal.as_ref().unwrap().metadata.get("ruleId").map(String::as_str), Some("R1"));
    assert_eq!((first.accepted, first.refused, first.tree_size), (1, 2, 2));
    assert_eq!((first.results[0].version, first.results[0].log_index), (1, 1));
    // The same batch again: the accepted item is skipped with what it got, nothing is logged.
    let again = admin.publish_statuses(publish(batch)).await.unwrap().into_inner();
    assert_eq!((again.accepted, again.already_applied, again.refused, again.tree_size), (0, 1, 2, 2));
    assert_eq!(again.results[0].outcome, pb::ItemOutcome::AlreadyApplied as i32);
    assert_eq!((again.results[0].version, again.results[0].log_index), (1, 1));

    // Too large a batch is refused whole, with the field at fault; so is an empty one.
    let many: Vec<_> =
        (0..=huren_node::MAX_STATUS_ITEMS).map(|i| item(&format!("c:{i}"), &format!("s{i}"), Green, "")).collect();
    for items in [many, Vec::new()] {
        let refused = admin.publish_statuses(publish(items)).await.unwrap_err();
        let details = huren_runtime::error::details(&refused).unwrap();
        assert_eq!(
            (details.reason.as_str(), details.metadata.get("field").map(String::as_str)),
            ("INVALID_REQUEST", Some("items"))
        );
    }
    // An authority may not issue tokens, in a batch either.
    let tokens = pb::IssueTokensRequest {
        items: vec![pb::IssueTokenRequest { subject_ref: "fresh".into(), ..Default::default() }],
    };
    let refused = authority.issue_tokens(tokens).await.unwrap_err();
    assert_eq!(huren_runtime::error::details(&refused).unwrap().reason, "NOT_AUTHORIZED");
    drop(node);
}
