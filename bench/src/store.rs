//! The node's store on its own, on an embedded backend ([`StoreEngine`]: redb or fjall):
//! bulk ingest (`upsert_batch`), random batched updates, single durable upserts and point
//! lookups, with load rate, size on disk and peak memory (`huren bench store`). The phases
//! are the same on every backend, so their reports compare.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use huren_node::{FjallStore, NodeStore, Store};
use huren_pki::unix_now;
use huren_proto::pb;
use serde_json::{json, Value};

use crate::error::{BenchError, Result};
use crate::measure::{histogram, memory_kib, ms, percentiles, round};

/// The embedded backend a store run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StoreEngine {
    /// One redb file (`status.redb`), the node's default.
    #[default]
    Redb,
    /// A fjall LSM database (the folder `status.fjall/`).
    Fjall,
}

impl StoreEngine {
    /// Its name, as `store = "…"` in `node.toml` spells it.
    pub fn name(self) -> &'static str {
        match self {
            StoreEngine::Redb => "redb",
            StoreEngine::Fjall => "fjall",
        }
    }

    /// Where its store lives in `dir`.
    fn path(self, dir: &std::path::Path) -> PathBuf {
        match self {
            StoreEngine::Redb => dir.join("status.redb"),
            StoreEngine::Fjall => dir.join("status.fjall"),
        }
    }

    fn open(self, path: &std::path::Path) -> Result<Box<dyn NodeStore>> {
        Ok(match self {
            StoreEngine::Redb => Box::new(Store::open(path)?),
            StoreEngine::Fjall => Box::new(FjallStore::open(path)?),
        })
    }
}

/// Bytes a store takes on disk: its file, or every file in its folder.
fn size_on_disk(path: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    let mut paths = vec![path.to_owned()];
    while let Some(path) = paths.pop() {
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                paths.push(entry?.path());
            }
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// A store run: `huren bench store`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The backend measured.
    pub engine: StoreEngine,
    /// Subjects to load.
    pub subjects: u64,
    /// Subjects per durable transaction during the bulk load and the updates.
    pub batch: usize,
    /// Single durable upserts (one transaction each), for comparison.
    pub singles: u64,
    /// Random updates of existing subjects, in batches (`None`: min(subjects, 500000)).
    pub updates: Option<u64>,
    /// Random point lookups after loading.
    pub lookups: u64,
    /// Threads writing batches at once during the bulk load and the updates (a node serving
    /// an import has several batches in flight; the store reads a waiting batch's values
    /// while another one commits).
    pub writers: usize,
    /// Folder for the store (`None`: a temporary folder, removed afterwards).
    pub dir: Option<PathBuf>,
    /// Keep the store.
    pub keep: bool,
}

/// What a store run measured.
#[derive(Debug, Clone)]
pub struct StoreReport {
    /// The whole report as one JSON object (`huren bench store --json`).
    pub json: Value,
    /// Where the store was kept, if asked to keep it.
    pub kept: Option<PathBuf>,
    text: String,
}

impl StoreReport {
    /// The report for people, a few lines.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A fixed pseudo-random permutation of 0..n (multiplication by a unit mod n), so that
/// subjects arrive in no particular key order, as they would from a province backend.
struct Permutation {
    n: u64,
    step: u64,
}

impl Permutation {
    fn new(n: u64) -> Self {
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let mut step = 2_654_435_761 % n.max(1);
        while n > 1 && gcd(step, n) != 1 {
            step += 1;
        }
        Self { n, step: step.max(1) }
    }

    fn at(&self, i: u64) -> u64 {
        ((i as u128 * self.step as u128) % self.n as u128) as u64
    }
}

/// xorshift64*: cheap, deterministic randomness for picking subjects.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Runs `work` on `writers` threads at once; the first error wins, and raises `stop`, which
/// the other threads' loops check so that they end early.
fn parallel(writers: usize, stop: &AtomicBool, work: impl Fn() -> Result<()> + Sync) -> Result<()> {
    let work = || {
        let result = work();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers).map(|_| scope.spawn(work)).collect();
        threads.into_iter().try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

fn subject(i: u64) -> String {
    format!("subj-{i:010}")
}

fn record(i: u64, now: i64) -> huren_node::store::StatusRecord {
    let red = matches!(i % 50, 0);
    huren_node::store::StatusRecord {
        status: if red { pb::HealthStatus::Red as i32 } else { pb::HealthStatus::Green as i32 },
        rule_id: if red { "NHC-CC-2022-9".into() } else { String::new() },
        authority: if red { "spiffe://huren.gov/province/340000/authority/hefei-cdc".into() } else { String::new() },
        valid_until: now + 7 * 86_400,
        test_recency: pb::TestRecency::Within48h as i32,
        updated_at: now,
        ..Default::default()
    }
}

/// Runs the four steps on a fresh store; `progress` gets a line after each tenth
/// of the bulk load. Blocking: call it from a blocking thread.
pub fn store(options: &StoreOptions, progress: &mut (dyn FnMut(&str) + Send)) -> Result<StoreReport> {
    if options.subjects == 0 || options.batch == 0 || options.writers == 0 {
        return Err(BenchError::usage("--subjects, --batch and --writers must be positive"));
    }
    let temp;
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("huren-bench-store-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let engine = options.engine;
    let path = engine.path(&dir);
    if path.exists() {
        return Err(BenchError::usage(format!("{} exists; give an empty --dir", path.display())));
    }
    let store = engine.open(&path)?;
    let now = unix_now();
    let n = options.subjects;
    let order = Permutation::new(n);

    // 1. Bulk load: upsert_batch, one durable transaction per batch, `writers` batches at once.
    let started = Instant::now();
    let batch_latency = Mutex::new(histogram());
    let next_batch = AtomicU64::new(0);
    let loaded = AtomicU64::new(0);
    let progress = Mutex::new(progress);
    let batch_size = options.batch as u64;
    let stop = AtomicBool::new(false);
    parallel(options.writers, &stop, || {
        let mut latencies = histogram();
        loop {
            let i = next_batch.fetch_add(batch_size, Ordering::Relaxed);
            if i >= n || stop.load(Ordering::Relaxed) {
                break;
            }
            let end = (i + batch_size).min(n);
            let batch: Vec<_> = (i..end).map(|k| order.at(k)).map(|s| (subject(s), record(s, now))).collect();
            let t = Instant::now();
            store.upsert_batch(batch)?;
            let _ = latencies.record(t.elapsed().as_micros() as u64);
            let before = loaded.fetch_add(end - i, Ordering::Relaxed);
            let tenth = (n / 10).max(1);
            if (before + end - i) / tenth > before / tenth && before + end - i < n {
                let done = before + end - i;
                let rate = done as f64 / started.elapsed().as_secs_f64();
                (progress.lock().unwrap_or_else(|e| e.into_inner()))(&format!(
                    "  loaded {done} subjects ({rate:.0}/s)"
                ));
            }
        }
        let _ = batch_latency.lock().unwrap_or_else(|e| e.into_inner()).add(&latencies);
        Ok(())
    })?;
    let batch_latency = batch_latency.into_inner().unwrap_or_else(|e| e.into_inner());
    let load_s = started.elapsed().as_secs_f64();
    let after_load_mem = memory_kib();
    let file_bytes = size_on_disk(&path)?;

    // 2. Random updates of existing subjects, batched (what a province backend's stream looks like).
    let updates = options.updates.unwrap_or(n.min(500_000));
    let started = Instant::now();
    let claimed = AtomicU64::new(0);
    let seeds = AtomicU64::new(0);
    parallel(options.writers, &stop, || {
        let mut rng =
            Rng(0x9E37_79B9_7F4A_7C15 ^ seeds.fetch_add(1, Ordering::Relaxed).wrapping_mul(0xD1B5_4A32_D192_ED03));
        loop {
            let from = claimed.fetch_add(batch_size, Ordering::Relaxed);
            if from >= updates || stop.load(Ordering::Relaxed) {
                break;
            }
            let size = batch_size.min(updates - from);
            let batch: Vec<_> = (0..size).map(|_| rng.below(n)).map(|s| (subject(s), record(s + 1, now))).collect();
            store.upsert_batch(batch)?;
        }
        Ok(())
    })?;
    let update_s = started.elapsed().as_secs_f64();

    // 3. Single durable upserts (one transaction each), for comparison.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut single = histogram();
    let started = Instant::now();
    for _ in 0..options.singles {
        let s = rng.below(n);
        let t = Instant::now();
        store.upsert(&subject(s), record(s, now))?;
        let _ = single.record((t.elapsed().as_micros() as u64).max(1));
    }
    let single_s = started.elapsed().as_secs_f64();

    // 4. Random point lookups of existing subjects (one read transaction each, as the node does).
    let mut lookup = histogram();
    let started = Instant::now();
    for _ in 0..options.lookups {
        let s = subject(rng.below(n));
        let t = Instant::now();
        let found = store.status(&s)?;
        let _ = lookup.record((t.elapsed().as_nanos() as u64).max(1));
        if found.is_none() {
            return Err(BenchError::Missing(s));
        }
    }
    let lookup_s = started.elapsed().as_secs_f64();
    let count = store.subject_count()?;
    let file_bytes_final = size_on_disk(&path)?;
    let (peak_kib, rss_kib) = memory_kib();
    drop(store);
    let kept = options.keep.then(|| path.clone());
    if !options.keep && options.dir.is_some() {
        match engine {
            StoreEngine::Fjall => std::fs::remove_dir_all(&path)?,
            _ => std::fs::remove_file(&path)?,
        }
    }

    let lookups = percentiles(&lookup);
    let singles = percentiles(&single);
    let json = json!({
        "backend": engine.name(),
        "subjects": n,
        "subject_count": count,
        "batch": options.batch,
        "writers": options.writers,
        "load": {
            "seconds": round(load_s, 2),
            "subjects_per_s": round(n as f64 / load_s, 0),
            "batch_commit_us": percentiles(&batch_latency),
            "rss_kib_after": after_load_mem.1,
        },
        "updates": {
            "count": updates,
            "seconds": round(update_s, 2),
            "updates_per_s": round(updates as f64 / update_s.max(1e-9), 0),
        },
        "single_upserts": {
            "count": options.singles,
            "per_s": round(options.singles as f64 / single_s.max(1e-9), 0),
            "latency_us": singles,
        },
        "lookups": {
            "count": options.lookups,
            "per_s": round(options.lookups as f64 / lookup_s.max(1e-9), 0),
            "latency_ns": lookups,
        },
        "file_bytes": file_bytes_final,
        "file_bytes_after_load": file_bytes,
        "bytes_per_subject": round(file_bytes_final as f64 / n as f64, 1),
        "peak_rss_kib": peak_kib,
        "rss_kib": rss_kib,
        "unix_time": unix_now(),
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "node store on {}, {n} subjects (batches of {}, {} at once):",
        engine.name(),
        options.batch,
        options.writers
    );
    let _ = writeln!(text, "  bulk load        {:.0} subjects/s ({load_s:.1} s)", n as f64 / load_s);
    let _ =
        writeln!(text, "  batched updates  {:.0} updates/s ({updates} random)", updates as f64 / update_s.max(1e-9));
    let _ = writeln!(
        text,
        "  single upserts   {:.0}/s, p50 {} p99 {}",
        options.singles as f64 / single_s.max(1e-9),
        ms(singles.p50),
        ms(singles.p99)
    );
    let _ = writeln!(
        text,
        "  point lookups    p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs ({:.0}/s, one thread)",
        lookups.p50 as f64 / 1000.0,
        lookups.p99 as f64 / 1000.0,
        lookups.max as f64 / 1000.0,
        options.lookups as f64 / lookup_s.max(1e-9)
    );
    let _ = writeln!(
        text,
        "  on disk          {:.1} MiB ({:.0} bytes/subject)",
        file_bytes_final as f64 / 1048576.0,
        file_bytes_final as f64 / n as f64
    );
    let _ = writeln!(text, "  memory           peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
    Ok(StoreReport { json, kept, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        for n in [1u64, 2, 10, 1000, 1024] {
            let p = Permutation::new(n);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
