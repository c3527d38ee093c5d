//! The store's tests, each run against every backend (a redb file or a fjall folder in a
//! temporary folder, a unique key prefix on the test Redis and on a Redis Cluster), and the
//! Redis backend's own.

use std::path::PathBuf;
use std::sync::Arc;

use huren_proto::pb;
use huren_translog::{Hash, NodeId};
use prost::Message;

use super::{
    FjallStore, NodeStore, PurgePlan, RedisStore, StatusRecord, Store, StoreError, TokenRecord, OLDER_SIGNED_SIZES,
    RECENT_SIGNED_SIZES, RECORD_MARKERS,
};
/// A check by `hub` at `time`, as the disclosure tests record them.
pub(crate) fn check_record(hub: &str, time: i64) -> super::DisclosureRecord {
    super::DisclosureRecord {
        hub_id: hub.into(),
        hub_province: "370000".into(),
        purpose: "transit.rail".into(),
        time,
        gateway: "spiffe://huren.gov/gateway/g".into(),
        outcome: "attested".into(),
        ..Default::default()
    }
}

/// The Redis server of the tests (`HUREN_TEST_REDIS`, else the local default).
pub(crate) fn redis_url() -> String {
    std::env::var("HUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A loopback Redis Cluster of three masters for the tests (`HUREN_TEST_REDIS_CLUSTER`,
/// a URL of one of its nodes, else one started once per test process with `redis-server`
/// and `redis-cli --cluster create` on free ports; its servers exit with the process).
pub(crate) fn redis_cluster_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| std::env::var("HUREN_TEST_REDIS_CLUSTER").unwrap_or_else(|_| start_cluster())).clone()
}

/// A TCP port free on loopback whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// The watchdog shells of the cluster's servers.
static SERVERS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

fn start_cluster() -> String {
    let dir = tempfile::tempdir().unwrap().keep();
    let me = std::process::id();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for port in &ports {
        // The server exits when this test process does: the shell watches it.
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes-{port}.conf \
             --dir {dir} --save '' --appendonly no --daemonize no >/dev/null 2>&1 & r=$!; \
             while kill -0 {me} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 1; done; kill $r",
            dir = dir.display()
        );
        let watchdog = std::process::Command::new("sh").arg("-c").arg(script).spawn().unwrap();
        // Held for the life of the test process (the shell ends with it, taking its server).
        SERVERS.lock().unwrap_or_else(|e| e.into_inner()).push(watchdog);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let url = |port: &u16| format!("redis://127.0.0.1:{port}");
    let ping = |port: &u16| {
        redis::Client::open(url(port))
            .ok()
            .and_then(|c| c.get_connection().ok())
            .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    };
    while !ports.iter().all(ping) {
        assert!(std::time::Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let status = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "redis-cli --cluster create failed");
    let ready = |port: &u16| {
        let mut c = redis::Client::open(url(port)).unwrap().get_connection().unwrap();
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
        info.contains("cluster_state:ok")
    };
    while !ports.iter().all(ready) {
        assert!(std::time::Instant::now() < deadline, "the cluster did not become ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    url(&ports[0])
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Redb,
    /// The store in a fjall (LSM) folder.
    Fjall,
    Redis,
    /// The store on a three-master Redis Cluster.
    RedisCluster,
}

/// A store location of one backend: a temporary folder, or a unique key prefix on the
/// test Redis whose keys are deleted when the fixture drops.
pub(crate) struct Fixture {
    kind: Kind,
    dir: tempfile::TempDir,
    prefix: String,
}

impl Fixture {
    pub(crate) fn new(kind: Kind) -> Self {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).unwrap();
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let prefix = match kind {
            Kind::RedisCluster => format!("{{huren-test:{suffix}}}:"),
            _ => format!("huren-test:{suffix}:"),
        };
        Self { kind, dir: tempfile::tempdir().unwrap(), prefix }
    }

    pub(crate) fn url(&self) -> String {
        match self.kind {
            Kind::RedisCluster => redis_cluster_url(),
            _ => redis_url(),
        }
    }

    fn path(&self) -> PathBuf {
        match self.kind {
            Kind::Fjall => self.dir.path().join("s.fjall"),
            _ => self.dir.path().join("s.redb"),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn open(&self) -> Box<dyn NodeStore> {
        match self.kind {
            Kind::Redb => Box::new(Store::open(&self.path()).unwrap()),
            Kind::Fjall => Box::new(FjallStore::open(&self.path()).unwrap()),
            Kind::Redis | Kind::RedisCluster => Box::new(RedisStore::open(&self.url(), &self.prefix).unwrap()),
        }
    }

    /// Whether the backend leaves a deleted record's bytes behind until a rewrite: redb in
    /// freed pages, fjall in its journal and in tables until compaction (a delete is a
    /// tombstone); Redis drops them from the keyspace at once.
    fn keeps_freed_bytes(&self) -> bool {
        matches!(self.kind, Kind::Redb | Kind::Fjall)
    }

    /// A connection to the server holding the store's keys (on a cluster, its slot's master).
    fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        if let Kind::RedisCluster = self.kind {
            let slot = super::redis::cluster::Slot::new(&client, &self.prefix).unwrap();
            conn = slot.master(&mut conn).unwrap().get_connection().unwrap();
        }
        conn
    }

    /// Connections to every server that may hold the store's keys: the server, or each
    /// master of the cluster (the spread tables' shards sit on any of them).
    fn connections(&self) -> Vec<redis::Connection> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        match self.kind {
            Kind::RedisCluster => {
                let slot = super::redis::cluster::Slot::new(&client, &self.prefix).unwrap();
                slot.masters(&mut conn).unwrap().iter().map(|c| c.get_connection().unwrap()).collect()
            }
            _ => vec![conn],
        }
    }

    /// The store's keys on `conn`: under the prefix, and on a cluster also under the shards'
    /// hash tags (the prefix's tag with `shard<k>` added).
    fn redis_keys(&self, conn: &mut redis::Connection) -> Vec<String> {
        let pattern = match self.kind {
            Kind::RedisCluster => format!("{}*", &self.prefix[..self.prefix.find('}').unwrap()]),
            _ => format!("{}*", self.prefix),
        };
        let mut keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
        keys.sort();
        keys
    }

    /// On Redis, how many places hold a key named `<…>table` (on a cluster: masters; on one
    /// server: keys); `None` on redb and fjall.
    pub(crate) fn places_holding(&self, table: &str) -> Option<usize> {
        if let Kind::Redb | Kind::Fjall = self.kind {
            return None;
        }
        let mut conns = self.connections();
        let named = |conn: &mut redis::Connection| self.redis_keys(conn).iter().filter(|k| k.ends_with(table)).count();
        match self.kind {
            Kind::RedisCluster => Some(conns.iter_mut().map(named).filter(|n| *n > 0).count()),
            _ => Some(named(&mut conns[0])),
        }
    }

    /// Whether what the store keeps (the redb file's bytes; the bytes of every file in the
    /// fjall folder; every key, field, member and value under the Redis prefix) contains
    /// `needle`.
    fn holds(&self, needle: &[u8]) -> bool {
        let contains = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        match self.kind {
            Kind::Redb => contains(&std::fs::read(self.path()).unwrap()),
            Kind::Fjall => {
                let mut folders = vec![self.path()];
                let mut found = false;
                while let Some(folder) = folders.pop() {
                    for entry in std::fs::read_dir(folder).unwrap() {
                        let path = entry.unwrap().path();
                        if path.is_dir() {
                            folders.push(path);
                        } else {
                            found |= contains(&std::fs::read(path).unwrap());
                        }
                    }
                }
                found
            }
            Kind::Redis | Kind::RedisCluster => self.connections().into_iter().any(|mut conn| {
                self.redis_keys(&mut conn).into_iter().any(|key| {
                    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
                    let parts: Vec<Vec<u8>> = match kind.as_str() {
                        "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap(),
                        "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).unwrap(),
                        "string" => vec![redis::cmd("GET").arg(&key).query(&mut conn).unwrap()],
                        other => panic!("unexpected {other} key {key}"),
                    };
                    contains(key.as_bytes()) || parts.iter().any(|p| contains(p))
                })
            }),
        }
    }

    /// Makes the store look as one written before interior log hashes were kept (`keep_below`
    /// 0: no interior hash and no record of them, a redb file without the table), or as one
    /// whose backfill stopped at `keep_below` leaves. The store must be closed.
    fn forget_interior_hashes(&self, keep_below: u64) {
        let gone = |level: u8, index: u64| NodeId::new(level, index).leaves().end > keep_below;
        match self.kind {
            Kind::Redb => {
                use ::redb::ReadableTable as _;
                let db = ::redb::Database::open(self.path()).unwrap();
                let tx = db.begin_write().unwrap();
                {
                    let mut meta = tx.open_table(super::redb::META).unwrap();
                    if keep_below == 0 {
                        meta.remove("nodes_size").unwrap();
                    } else {
                        meta.insert("nodes_size", keep_below.to_be_bytes().as_slice()).unwrap();
                    }
                }
                if keep_below == 0 {
                    assert!(tx.delete_table(super::redb::LOG_NODES).unwrap());
                } else {
                    let mut nodes = tx.open_table(super::redb::LOG_NODES).unwrap();
                    let keys: Vec<(u8, u64)> = nodes.iter().unwrap().map(|item| item.unwrap().0.value()).collect();
                    for (level, index) in keys.into_iter().filter(|(l, i)| gone(*l, *i)) {
                        nodes.remove((level, index)).unwrap();
                    }
                }
                tx.commit().unwrap();
            }
            Kind::Fjall => {
                use super::backend::{Backend as _, Key, Table};
                let backend = super::fjall::Fjall::open(&self.path()).unwrap();
                backend
                    .write(&mut |w| {
                        if keep_below == 0 {
                            w.clear(Table::LogNodes)?;
                            return w.delete(Table::Meta, Key::text("nodes_size"));
                        }
                        // Every subtree of the tests' logs (under 2^14 leaves).
                        for level in 1..=14u8 {
                            for index in (0..(1u64 << 14) >> level).filter(|i| gone(level, *i)) {
                                w.delete(Table::LogNodes, Key::Node(NodeId::new(level, index)))?;
                            }
                        }
                        w.put(Table::Meta, Key::text("nodes_size"), keep_below.to_be_bytes().to_vec())
                    })
                    .unwrap();
            }
            Kind::Redis | Kind::RedisCluster => {
                let mut conn = self.connection();
                let (nodes, meta) = (format!("{}log:nodes", self.prefix), format!("{}meta", self.prefix));
                let fields: Vec<String> = redis::cmd("HKEYS").arg(&nodes).query(&mut conn).unwrap();
                for field in fields {
                    let (level, index) = field.split_once(':').unwrap();
                    if gone(level.parse().unwrap(), index.parse().unwrap()) {
                        let _: () = redis::cmd("HDEL").arg(&nodes).arg(field).query(&mut conn).unwrap();
                    }
                }
                if keep_below == 0 {
                    let _: () = redis::cmd("HDEL").arg(&meta).arg("nodes_size").query(&mut conn).unwrap();
                } else {
                    let size = keep_below.to_be_bytes();
                    let _: () =
                        redis::cmd("HSET").arg(&meta).arg("nodes_size").arg(&size[..]).query(&mut conn).unwrap();
                }
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Kind::Redis | Kind::RedisCluster = self.kind {
            for mut conn in self.connections() {
                for key in self.redis_keys(&mut conn) {
                    let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
                }
            }
        }
    }
}

/// Runs each named test body against every backend: `on_redb::<name>`, `on_fjall::<name>`,
/// `on_redis::<name>`, `on_redis_cluster::<name>`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Redb)) })*
        }
        mod on_fjall {
            $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Fjall)) })*
        }
        mod on_redis {
            $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Redis)) })*
        }
        mod on_redis_cluster {
            $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::RedisCluster)) })*
        }
    };
}

on_every_backend!(
    upsert_bumps_version_and_survives_reopen,
    a_conditional_upsert_writes_only_over_the_version_it_was_decided_on,
    signed_sizes_keep_the_newest_and_a_spread_of_older_ones,
    purge_and_rewrite_leave_no_byte_of_a_deleted_record,
    log_proofs_and_subject_index_agree,
    proofs_hold_over_a_log_longer_than_one_read,
    proofs_read_stored_hashes_equal_to_the_leaves_own,
    an_older_store_gets_its_interior_hashes_at_open,
    an_interrupted_backfill_resumes_where_it_stopped,
    a_store_purged_before_the_upgrade_opens_and_refuses_what_it_lacks,
    tokens_spread_over_the_shards_resolve_purge_and_go_at_the_sunset,
);

/// Token digests of many subjects: on Redis they spread over the shards (on a cluster, over
/// its masters), and lookups, purges and the sunset find every one.
fn tokens_spread_over_the_shards_resolve_purge_and_go_at_the_sunset(fixture: &Fixture) {
    use sha2::Digest as _;
    let store = fixture.open();
    let tokens: Vec<([u8; 32], TokenRecord)> = (0..2000u32)
        .map(|i| {
            let digest: [u8; 32] = sha2::Sha256::digest(i.to_be_bytes()).into();
            (digest, TokenRecord { subject_ref: format!("spread-ref-{i:04}"), expires_at: 5 + 100 * i64::from(i % 2) })
        })
        .collect();
    store.put_tokens(&tokens).unwrap();
    store.put_tokens(&tokens[..300]).unwrap();
    assert_eq!(store.counts().unwrap()["token"], 2000, "a digest written again is the same record");
    if let Some(places) = fixture.places_holding("token") {
        assert!(places > 1, "the token digests sit in {places} place(s)");
    }
    for (digest, record) in &tokens {
        assert_eq!(store.token(digest).unwrap().as_ref(), Some(record));
    }
    assert!(store.token(&[0; 32]).unwrap().is_none());

    let out = store.purge(&PurgePlan { tokens_expired_before: Some(10), ..Default::default() }, &mut |_| {}).unwrap();
    assert_eq!(out.counts.get("token"), Some(&1000));
    for (i, (digest, _)) in tokens.iter().enumerate() {
        assert_eq!(store.token(digest).unwrap().is_some(), i % 2 == 1, "token {i}");
    }
    store.rewrite().unwrap();
    assert!(fixture.holds(b"spread-ref-0001"));
    assert!(!fixture.holds(b"spread-ref-0000"));

    store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
    store.rewrite().unwrap();
    assert_eq!(store.counts().unwrap()["token"], 0);
    assert!(!fixture.holds(b"spread-ref-"), "a token's subject remains after the sunset");
    assert_eq!(fixture.places_holding("token").unwrap_or(0), 0);
}

fn proofs_hold_over_a_log_longer_than_one_read(fixture: &Fixture) {
    let store = fixture.open();
    let batch: Vec<(String, StatusRecord)> =
        (0..9000).map(|i| (format!("s-{i}"), StatusRecord { status: 1, ..Default::default() })).collect();
    store.upsert_batch(batch).unwrap();
    let (size, root) = store.log_head().unwrap();
    assert_eq!((size, store.root_at(size).unwrap()), (9000, root));
    let leaves = store.leaf_hashes(0, size).unwrap();
    for index in [0u64, 4095, 4096, 8999] {
        let leaf = <Hash>::try_from(leaves[index as usize].as_slice()).unwrap();
        let proof = store.inclusion_proof(index, size).unwrap();
        huren_translog::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
    }
    let old = store.root_at(5000).unwrap();
    let proof = store.consistency_proof(5000, size).unwrap();
    huren_translog::verify_consistency(5000, size, &old, &root, &proof).unwrap();
}

fn upsert_bumps_version_and_survives_reopen(fixture: &Fixture) {
    {
        let store = fixture.open();
        let rec = StatusRecord { status: 3, rule_id: "r".into(), ..Default::default() };
        assert_eq!(store.upsert("subj-1", rec.clone()).unwrap(), 1);
        assert_eq!(store.upsert("subj-1", rec).unwrap(), 2);
        store.put_token(&[7; 32], &TokenRecord { subject_ref: "subj-1".into(), expires_at: 9 }).unwrap();
    }
    let store = fixture.open();
    assert_eq!(store.status("subj-1").unwrap().unwrap().version, 2);
    assert_eq!(store.token(&[7; 32]).unwrap().unwrap().subject_ref, "subj-1");
    assert!(store.status("nobody").unwrap().is_none());
    assert_eq!(store.subject_count().unwrap(), 1);
    let batch = (0..100).map(|i| (format!("s-{i}"), StatusRecord { status: 1, ..Default::default() })).collect();
    assert_eq!(store.upsert_batch(batch).unwrap(), vec![1; 100]);
    assert_eq!(store.subject_count().unwrap(), 101);
    assert_eq!(store.log_head().unwrap().0, 102, "every change is logged");
    let twice = vec![("s-1".to_owned(), StatusRecord::default()), ("s-1".to_owned(), StatusRecord::default())];
    assert_eq!(store.upsert_batch(twice).unwrap(), vec![2, 3], "a batch naming a subject twice counts on");
}

fn signed_sizes_keep_the_newest_and_a_spread_of_older_ones(fixture: &Fixture) {
    let store = fixture.open();
    store.record_signed_size(0).unwrap();
    assert!(store.signed_sizes().unwrap().is_empty(), "the empty tree needs no proof");
    for size in 1..=1000 {
        store.record_signed_size(size).unwrap();
        store.record_signed_size(size).unwrap();
    }
    let sizes = store.signed_sizes().unwrap();
    assert_eq!(sizes.len(), RECENT_SIGNED_SIZES + OLDER_SIGNED_SIZES);
    assert!(sizes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(sizes[0], 1, "the oldest stays");
    assert_eq!(sizes[OLDER_SIGNED_SIZES..], (969..=1000).collect::<Vec<_>>()[..], "the newest all stay");
    let widest = sizes[..=OLDER_SIGNED_SIZES].windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest <= 64, "older sizes are spread out, not bunched: widest gap {widest}");
}

fn purge_and_rewrite_leave_no_byte_of_a_deleted_record(fixture: &Fixture) {
    let store = fixture.open();
    let record =
        StatusRecord { status: 1, authority: "spiffe://huren.gov/province/340000/admin".into(), ..Default::default() };
    for i in 0..50 {
        store.upsert(&format!("subject-ref-{i:04}"), record.clone()).unwrap();
    }
    for i in 0..300u16 {
        let mut digest = [9; 32];
        digest[..2].copy_from_slice(&i.to_be_bytes());
        store.put_token(&digest, &TokenRecord { subject_ref: format!("token-ref-{i:04}"), expires_at: 5 }).unwrap();
    }
    store.record_signed_size(50).unwrap();
    let keeps = fixture.keeps_freed_bytes();

    // A partial purge: the tokens go (redb keeps their bytes in freed pages until the rewrite).
    let plan = PurgePlan { tokens_expired_before: Some(10), ..Default::default() };
    let outcome = store.purge(&plan, &mut |_| {}).unwrap();
    assert_eq!(outcome.counts.get("token"), Some(&300));
    assert_eq!(fixture.holds(b"token-ref-"), keeps, "redb keeps freed bytes, or this test would prove nothing");
    store.rewrite().unwrap();
    assert!(!fixture.holds(b"token-ref-"), "a deleted token's bytes remain");
    assert!(fixture.holds(b"subject-ref-0049"), "live records are carried over");
    assert_eq!((store.subject_count().unwrap(), store.log_head().unwrap().0), (50, 50));

    // Everything: no subject reference, no record is left.
    let outcome = store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
    assert_eq!((outcome.counts.get("status"), outcome.counts.get("log_entry")), (Some(&50), Some(&50)));
    assert_eq!(fixture.holds(RECORD_MARKERS[0]), keeps, "redb keeps freed bytes, or this test would prove nothing");
    store.rewrite().unwrap();
    for needle in [&b"subject-ref-00"[..], RECORD_MARKERS[0]] {
        assert!(!fixture.holds(needle), "{} remains", String::from_utf8_lossy(needle));
    }
    assert!(store.counts().unwrap().values().all(|n| *n == 0), "{:?}", store.counts().unwrap());
    assert_eq!(store.log_head().unwrap().0, 50, "the log's frontier stays");
    assert_eq!(store.signed_sizes().unwrap(), [50]);
    store.put_sunset_receipt(b"receipt").unwrap();

    // The store works on after a rewrite, and across a reopen.
    store.upsert("after", record).unwrap();
    drop(store);
    let reopened = fixture.open();
    assert_eq!((reopened.subject_count().unwrap(), reopened.log_head().unwrap().0), (1, 51));
    assert_eq!(reopened.sunset_receipt().unwrap().as_deref(), Some(&b"receipt"[..]));
}

fn log_proofs_and_subject_index_agree(fixture: &Fixture) {
    let store = fixture.open();
    for i in 0..20 {
        let record = StatusRecord { status: 1, updated_at: i, ..Default::default() };
        store.upsert(&format!("subject-{}", i % 3), record).unwrap();
    }
    let (size, root) = store.log_head().unwrap();
    assert_eq!(size, 20);
    assert_eq!(store.root_at(size).unwrap(), root);
    let leaves: Vec<Hash> =
        store.leaf_hashes(0, size).unwrap().into_iter().map(|h| <Hash>::try_from(h.as_slice()).unwrap()).collect();
    for index in [0, 7, 19] {
        let proof = store.inclusion_proof(index, size).unwrap();
        huren_translog::verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
    }
    let old_root = store.root_at(9).unwrap();
    let proof = store.consistency_proof(9, size).unwrap();
    huren_translog::verify_consistency(9, size, &old_root, &root, &proof).unwrap();
    assert!(matches!(store.root_at(21), Err(StoreError::Range(_))));
    assert_eq!(store.subject_log(&store.commitment("subject-1")).unwrap(), [1, 4, 7, 10, 13, 16, 19]);
    let entries = store.log_entries(0, 100).unwrap();
    assert_eq!(entries.len(), 20);
    let entry = pb::LogEntry::decode(entries[4].as_slice()).unwrap();
    assert_eq!((entry.index, entry.subject_commitment), (4, store.commitment("subject-1").to_vec()));

    // Retention: old entries go, their leaf hashes and the proofs stay.
    let outcome = store.purge(&PurgePlan { log_entries_before: Some(5), ..Default::default() }, &mut |_| {}).unwrap();
    assert_eq!(outcome.counts.get("log_entry"), Some(&5));
    assert_eq!(store.log_first_available().unwrap(), 5);
    assert_eq!(store.log_entries(0, 100).unwrap().len(), 15);
    assert_eq!(store.subject_log(&store.commitment("subject-1")).unwrap(), [7, 10, 13, 16, 19]);
    let proof_1 = store.inclusion_proof(1, size).unwrap();
    huren_translog::verify_inclusion(&leaves[1], 1, size, &proof_1, &root).unwrap();
    assert!(store.consistency_proofs(size).unwrap().is_empty());
    store.record_signed_size(9).unwrap();
    assert_eq!(store.consistency_proofs(size).unwrap(), [(9, proof)]);
}

/// The log's leaf hashes, read back.
fn leaves_of(store: &dyn NodeStore) -> Vec<Hash> {
    let (size, _) = store.log_head().unwrap();
    store.leaf_hashes(0, size).unwrap().iter().map(|h| Hash::try_from(h.as_slice()).unwrap()).collect()
}

/// Every root and proof the store gives for trees of these sizes (from stored hashes) equals
/// the one computed from its leaves.
fn assert_proofs_match_leaves(store: &dyn NodeStore, sizes: &[u64]) {
    let leaves = leaves_of(store);
    for &size in sizes {
        let tree = &leaves[..size as usize];
        assert_eq!(store.root_at(size).unwrap(), huren_translog::root(tree), "root of {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            let expected = huren_translog::inclusion_proof(index, tree).unwrap();
            assert_eq!(store.inclusion_proof(index, size).unwrap(), expected, "PATH({index}, D[{size}])");
        }
        for old in [1, size / 3, size / 2, size - 1, size].into_iter().filter(|o| *o > 0) {
            let expected = huren_translog::consistency_proof(old, tree).unwrap();
            assert_eq!(store.consistency_proof(old, size).unwrap(), expected, "PROOF({old}, D[{size}])");
        }
    }
}

/// Interior hashes a log of `size` entries keeps: one per complete subtree above the leaves.
fn interior(size: u64) -> u64 {
    size - u64::from(size.count_ones())
}

fn record(i: i64) -> StatusRecord {
    StatusRecord {
        status: 1,
        updated_at: i,
        authority: "spiffe://huren.gov/province/340000/admin".into(),
        ..Default::default()
    }
}

fn batch(from: usize, n: usize) -> Vec<(String, StatusRecord)> {
    (from..from + n).map(|i| (format!("s-{i}"), record(i as i64))).collect()
}

fn proofs_read_stored_hashes_equal_to_the_leaves_own(fixture: &Fixture) {
    let store = fixture.open();
    for i in 0..37 {
        store.upsert(&format!("one-{}", i % 5), record(i)).unwrap();
    }
    for round in 0..5 {
        store.upsert_batch(batch(round * 200, 200)).unwrap();
    }
    let (size, root) = store.log_head().unwrap();
    assert_eq!(size, 1037);
    assert_eq!(store.counts().unwrap()["log_node"], interior(size));
    assert_proofs_match_leaves(&*store, &[1, 2, 3, 36, 37, 512, 1024, 1025, 1037]);
    assert!(matches!(store.inclusion_proof(size, size), Err(StoreError::Range(_))));
    assert!(matches!(store.inclusion_proof(0, size + 1), Err(StoreError::Range(_))));
    assert!(matches!(store.consistency_proof(0, size), Err(StoreError::Range(_))));
    assert!(matches!(store.consistency_proof(size, size - 1), Err(StoreError::Range(_))));

    // Retention purges entries, never hashes: every proof stays.
    let plan = PurgePlan { log_entries_before: Some(i64::MAX), ..Default::default() };
    assert_eq!(store.purge(&plan, &mut |_| {}).unwrap().counts["log_entry"], size);
    assert_eq!(store.counts().unwrap()["log_node"], interior(size));
    assert_eq!(store.root_at(size).unwrap(), root);
    assert_proofs_match_leaves(&*store, &[5, 1000, 1037]);
}

fn an_older_store_gets_its_interior_hashes_at_open(fixture: &Fixture) {
    {
        let store = fixture.open();
        for round in 0..5 {
            store.upsert_batch(batch(round * 600, 600)).unwrap();
        }
        store.record_signed_size(1000).unwrap();
        store.record_signed_size(2999).unwrap();
    }
    fixture.forget_interior_hashes(0);
    let store = fixture.open();
    let (size, root) = store.log_head().unwrap();
    assert_eq!((size, store.counts().unwrap()["log_node"]), (3000, interior(3000)));
    assert_proofs_match_leaves(&*store, &[1000, 2047, 2048, 2049, 3000]);
    let proofs = store.consistency_proofs(size).unwrap();
    assert_eq!(proofs.iter().map(|(old, _)| *old).collect::<Vec<_>>(), [1000, 2999]);
    for (old, proof) in proofs {
        huren_translog::verify_consistency(old, size, &store.root_at(old).unwrap(), &root, &proof).unwrap();
    }
    // The log grows on with its hashes stored as it goes, and a second open has nothing to do.
    store.upsert_batch(batch(3000, 5)).unwrap();
    drop(store);
    let store = fixture.open();
    assert_eq!(store.counts().unwrap()["log_node"], interior(3005));
    assert_proofs_match_leaves(&*store, &[2999, 3004, 3005]);
}

fn an_interrupted_backfill_resumes_where_it_stopped(fixture: &Fixture) {
    {
        let store = fixture.open();
        store.upsert_batch(batch(0, 2500)).unwrap();
    }
    fixture.forget_interior_hashes(1111);
    let store = fixture.open();
    assert_eq!(store.counts().unwrap()["log_node"], interior(2500));
    assert_proofs_match_leaves(&*store, &[1111, 1112, 2048, 2500]);
}

fn a_store_purged_before_the_upgrade_opens_and_refuses_what_it_lacks(fixture: &Fixture) {
    {
        let store = fixture.open();
        store.upsert_batch(batch(0, 100)).unwrap();
        store.record_signed_size(100).unwrap();
        store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        store.rewrite().unwrap();
        store.upsert_batch(batch(100, 40)).unwrap();
    }
    fixture.forget_interior_hashes(0);
    let store = fixture.open();
    assert_eq!(store.log_head().unwrap().0, 140);
    // Only the subtrees wholly over the 40 leaves still held can be computed.
    let computable = (1..8u8)
        .flat_map(|level| (0..140u64 >> level).map(move |index| NodeId::new(level, index)))
        .filter(|n| n.leaves().start >= 100)
        .count() as u64;
    assert_eq!(store.counts().unwrap()["log_node"], computable);
    assert!(matches!(store.inclusion_proof(120, 140), Err(StoreError::Range(_))));
    assert!(matches!(store.consistency_proof(100, 140), Err(StoreError::Range(_))));
    assert!(store.consistency_proofs(140).unwrap().is_empty(), "the signed size's hashes are gone");
}

// The Redis backend's own.

/// Two handles on one prefix (two processes, say) writing at once: WATCH makes the
/// loser retry, so every change gets its own log index and no version is handed out twice.
#[test]
fn concurrent_writers_on_one_prefix_lose_nothing() {
    let fixture = Fixture::new(Kind::Redis);
    let stores: Vec<Arc<dyn NodeStore>> = (0..2).map(|_| Arc::from(fixture.open())).collect();
    let writers: Vec<_> = stores
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, store)| {
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let subject = format!("subject-{}", i % 5);
                        let record =
                            StatusRecord { status: 1, updated_at: (w * 1000 + i) as i64, ..Default::default() };
                        store.upsert(&subject, record).unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let versions: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let store = &stores[0];
    assert_eq!(store.log_head().unwrap().0, 200, "every acknowledged change is logged once");
    let mut total = 0;
    for s in 0..5 {
        let latest = store.status(&format!("subject-{s}")).unwrap().unwrap().version;
        assert_eq!(latest, 40, "subject-{s}: a version was handed out twice or lost");
        total += store.subject_log(&store.commitment(&format!("subject-{s}"))).unwrap().len();
    }
    assert_eq!(total, 200);
    assert_eq!(versions.len(), 200);
    let (size, root) = store.log_head().unwrap();
    assert_eq!(store.root_at(size).unwrap(), root, "the stored leaves and the frontier agree");
}

/// Redis drops the node's connection: the call that finds out fails (the client is
/// told to retry), the next one connects again and finds everything in place.
#[test]
fn a_dropped_connection_is_opened_again() {
    let fixture = Fixture::new(Kind::Redis);
    let store = RedisStore::open(&redis_url(), fixture.prefix()).unwrap();
    store.upsert("subject-1", StatusRecord { status: 2, ..Default::default() }).unwrap();
    let mut admin = redis::Client::open(redis_url()).unwrap().get_connection().unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let name = format!("name=huren-node:{}", fixture.prefix());
    let ids: Vec<&str> = clients
        .lines()
        .filter(|l| l.split(' ').any(|f| f == name))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "the store's connection, by name: {clients}");
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(ids[0]).query(&mut admin).unwrap();
    assert_eq!(killed, 1);
    let first = store.status("subject-1");
    assert!(first.is_err() || first.as_ref().unwrap().is_some(), "{first:?}");
    assert_eq!(store.status("subject-1").unwrap().unwrap().status, 2);
    assert_eq!(store.upsert("subject-1", StatusRecord::default()).unwrap(), 2);
}

fn a_conditional_upsert_writes_only_over_the_version_it_was_decided_on(fixture: &Fixture) {
    let store = fixture.open();
    let red = StatusRecord { status: 3, rule_id: "r".into(), ..Default::default() };
    assert_eq!(store.upsert_if("subj-1", 1, red.clone()).unwrap(), None, "no status yet: version 0");
    assert_eq!(store.upsert_if("subj-1", 0, red.clone()).unwrap(), Some(1));
    assert_eq!(store.upsert_if("subj-1", 0, red.clone()).unwrap(), None, "another change came first");
    assert_eq!(store.log_head().unwrap().0, 1, "a refused write logs nothing");
    let lift = StatusRecord { status: 1, lifted_rule_id: "r".into(), ..Default::default() };
    assert_eq!(store.upsert_if("subj-1", 1, lift).unwrap(), Some(2));
    let entry = pb::LogEntry::decode(store.log_entries(1, 2).unwrap()[0].as_slice()).unwrap();
    assert_eq!((entry.status, entry.lifted_rule_id.as_str(), entry.index), (1, "r", 1));
    let plain = pb::LogEntry::decode(store.log_entries(0, 1).unwrap()[0].as_slice()).unwrap();
    assert!(plain.lifted_rule_id.is_empty());
}

// The fjall backend's own.

/// A rewrite interrupted before `CURRENT` named its copy leaves that copy beside the live
/// generation; one interrupted after leaves the old generation. Either way the next open
/// keeps the generation `CURRENT` names and wipes the other, bytes and all.
#[test]
fn fjall_open_wipes_what_an_interrupted_rewrite_left() {
    let fixture = Fixture::new(Kind::Fjall);
    fixture.open().upsert("kept", record(1)).unwrap();
    let leftover = fixture.path().join("g00000007");
    std::fs::create_dir_all(leftover.join("tables")).unwrap();
    std::fs::write(leftover.join("tables").join("0"), b"subject-ref-gone").unwrap();
    assert!(fixture.holds(b"subject-ref-gone"));
    let store = fixture.open();
    assert!(!leftover.exists() && !fixture.holds(b"subject-ref-gone"), "the leftover generation remains");
    assert_eq!(store.status("kept").unwrap().unwrap().version, 1, "the live generation was kept");
}

/// Without `CURRENT` the store cannot tell which generation is live: it refuses to open
/// and touches nothing, rather than start empty or wipe the wrong one.
#[test]
fn fjall_refuses_a_folder_that_lost_its_current_file() {
    let fixture = Fixture::new(Kind::Fjall);
    fixture.open().upsert("kept", record(1)).unwrap();
    std::fs::remove_file(fixture.path().join("CURRENT")).unwrap();
    let err = FjallStore::open(&fixture.path()).unwrap_err();
    assert!(err.to_string().contains("CURRENT is missing"), "{err}");
    assert!(fixture.holds(b"kept"), "nothing was wiped");
}
