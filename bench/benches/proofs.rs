//! Transparency-log proof generation at large log sizes (1 M, 10 M entries), on the
//! node's redb store and, optionally, its Redis store.
//!
//! A log of N entries built through full status upserts takes long (the node ingests about
//! 14.5 k/s), and a proof's cost depends only on the tree, not on what the entries say. So
//! this bench writes the log's leaf hashes and frontier straight into a store in the
//! on-disk layout every node version reads (`log_hashes` and the `frontier` in `meta` for
//! redb; `log:hashes` and `meta` under a key prefix for Redis), then opens it with
//! [`Store::open`] / [`RedisStore::open`] (the time printed as `open`; a store that keeps
//! interior hashes computes the missing ones there, once) and times, one call at a time:
//!
//! - `inclusion`: `inclusion_proof(index, N)` for pseudo-random indices;
//! - `consistency`: `consistency_proof(old, N)` for pseudo-random old sizes;
//! - `root_at`: `root_at(old)` for the same old sizes.
//!
//! Every proof is verified against the roots the fill computed (outside the timing).
//!
//! ```sh
//! cargo bench -p huren-bench --bench proofs                     # 1 M entries, redb
//! HUREN_BENCH_LOG_SIZES=1000000,10000000 HUREN_BENCH_PROOFS=5 \
//! HUREN_BENCH_REDIS=redis://127.0.0.1:6379 cargo bench -p huren-bench --bench proofs
//! ```
//!
//! `HUREN_BENCH_LOG_SIZES` (comma-separated, default `1000000`), `HUREN_BENCH_PROOFS`
//! (calls timed per operation, default 20), `HUREN_BENCH_REDIS` (also measure the Redis
//! store, under a fresh key prefix deleted afterwards; sizes above
//! `HUREN_BENCH_REDIS_MAX`, default 1,000,000, are skipped there).

use std::path::Path;
use std::time::{Duration, Instant};

use huren_node::redis_store::RedisStore;
use huren_node::store::{NodeStore, Store};
use huren_translog::{leaf_hash, verify_consistency, verify_inclusion, Frontier, Hash};
use redb::{Database, TableDefinition};

const LOG_HASHES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log_hashes");
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Leaf hashes written per redb write transaction or Redis pipeline.
const FILL_BATCH: u64 = 1 << 20;
const REDIS_FILL_BATCH: u64 = 10_000;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

/// The log under test: its size, the old sizes asked for, and the roots to check against.
struct Plan {
    size: u64,
    indices: Vec<u64>,
    /// (old size, root of the first `old size` leaves), ascending.
    olds: Vec<(u64, Hash)>,
    root: Hash,
}

impl Plan {
    fn new(size: u64, proofs: usize) -> Self {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ size);
        let indices = (0..proofs).map(|_| rng.below(size)).collect();
        let mut old: Vec<u64> = (0..proofs).map(|_| 1 + rng.below(size - 1)).collect();
        old.sort_unstable();
        old.dedup();
        Self { size, indices, olds: old.into_iter().map(|s| (s, [0; 32])).collect(), root: [0; 32] }
    }

    /// Feeds every leaf, in order, to `sink` in batches, noting the old roots and the root.
    fn fill(&mut self, batch: u64, sink: &mut dyn FnMut(u64, &[Hash])) -> Frontier {
        let mut frontier = Frontier::new();
        let mut next_old = 0;
        let mut start = 0;
        while start < self.size {
            let end = self.size.min(start + batch);
            let mut hashes = Vec::with_capacity((end - start) as usize);
            for i in start..end {
                let h = leaf(i);
                frontier.push(h);
                hashes.push(h);
                while next_old < self.olds.len() && self.olds[next_old].0 == frontier.size() {
                    self.olds[next_old].1 = frontier.root();
                    next_old += 1;
                }
            }
            sink(start, &hashes);
            start = end;
        }
        self.root = frontier.root();
        frontier
    }
}

fn fill_redb(path: &Path, plan: &mut Plan) {
    let db = Database::create(path).expect("create the store file");
    let frontier = plan.fill(FILL_BATCH, &mut |start, hashes| {
        let tx = db.begin_write().expect("write transaction");
        {
            let mut table = tx.open_table(LOG_HASHES).expect("log_hashes");
            for (i, h) in (start..).zip(hashes) {
                table.insert(i, h.as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
    });
    let tx = db.begin_write().expect("write transaction");
    tx.open_table(META).expect("meta").insert("frontier", frontier.to_bytes().as_slice()).expect("frontier");
    tx.commit().expect("commit");
}

fn fill_redis(url: &str, prefix: &str, plan: &mut Plan) {
    let mut conn = redis::Client::open(url).expect("redis url").get_connection().expect("redis");
    let key = format!("{prefix}log:hashes");
    let frontier = plan.fill(REDIS_FILL_BATCH, &mut |start, hashes| {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for (i, h) in (start..).zip(hashes) {
            cmd.arg(i).arg(h.as_slice());
        }
        cmd.exec(&mut conn).expect("HSET");
    });
    redis::cmd("HSET")
        .arg(format!("{prefix}meta"))
        .arg("frontier")
        .arg(frontier.to_bytes())
        .exec(&mut conn)
        .expect("frontier");
}

fn delete_redis(url: &str, prefix: &str) {
    let mut conn = redis::Client::open(url).expect("redis url").get_connection().expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).expect("KEYS");
    for key in keys {
        // UNLINK: the server frees a large hash in the background.
        redis::cmd("UNLINK").arg(key).exec(&mut conn).expect("UNLINK");
    }
}

fn summary(label: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "  {label:<12} calls {:>3}  median {:>11.3} ms  mean {:>11.3} ms  min {:>11.3} ms  max {:>11.3} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(mean),
        ms(times[0]),
        ms(times[times.len() - 1]),
    );
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn measure(store: &dyn NodeStore, plan: &Plan) {
    let (size, root) = store.log_head().expect("log head");
    assert_eq!((size, root), (plan.size, plan.root), "the store's head is the filled log's");
    let mut times = Vec::new();
    for &index in &plan.indices {
        let (proof, t) = time(|| store.inclusion_proof(index, size).expect("inclusion proof"));
        verify_inclusion(&leaf(index), index, size, &proof, &root).expect("the inclusion proof verifies");
        times.push(t);
    }
    summary("inclusion", &mut times);
    times.clear();
    for (old, old_root) in &plan.olds {
        let (proof, t) = time(|| store.consistency_proof(*old, size).expect("consistency proof"));
        verify_consistency(*old, size, old_root, &root, &proof).expect("the consistency proof verifies");
        times.push(t);
    }
    summary("consistency", &mut times);
    times.clear();
    for (old, old_root) in &plan.olds {
        let (at, t) = time(|| store.root_at(*old).expect("root_at"));
        assert_eq!(&at, old_root, "root_at({old})");
        times.push(t);
    }
    summary("root_at", &mut times);
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) a small log is a smoke test.
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = std::env::var("HUREN_BENCH_LOG_SIZES")
        .ok()
        .filter(|_| bench)
        .unwrap_or_else(|| if bench { "1000000" } else { "1000" }.into())
        .split(',')
        .map(|s| s.trim().parse().expect("HUREN_BENCH_LOG_SIZES: sizes above 1, comma-separated"))
        .collect();
    assert!(sizes.iter().all(|s| *s > 1), "HUREN_BENCH_LOG_SIZES: sizes above 1");
    let proofs: usize = std::env::var("HUREN_BENCH_PROOFS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let redis_url = std::env::var("HUREN_BENCH_REDIS").ok();
    let redis_max: u64 = std::env::var("HUREN_BENCH_REDIS_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    for &size in &sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("status.redb");
        let mut plan = Plan::new(size, proofs);
        let ((), fill) = time(|| fill_redb(&path, &mut plan));
        let (store, open) = time(|| Store::open(&path).expect("open the store"));
        let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "redb, {size} entries: fill {:.1} s, open {:.1} s, file {} MB",
            fill.as_secs_f64(),
            open.as_secs_f64(),
            file >> 20
        );
        measure(&store, &plan);
        drop(store);

        if let Some(url) = redis_url.as_deref().filter(|_| size <= redis_max) {
            let prefix = format!("huren-bench-proofs:{}:{size}:", std::process::id());
            let ((), fill) = time(|| fill_redis(url, &prefix, &mut plan));
            let (store, open) = time(|| RedisStore::open(url, &prefix).expect("open the Redis store"));
            println!("redis, {size} entries: fill {:.1} s, open {:.1} s", fill.as_secs_f64(), open.as_secs_f64());
            measure(&store, &plan);
            drop(store);
            delete_redis(url, &prefix);
        }
    }
}
