//! The node's redb status store: point lookups in a loaded store (as `Attest` does: a
//! token lookup then a subject lookup, each in its own read transaction), and writes
//! (single durable upsert; `upsert_batch` of 1,000 in one durable transaction).
//!
//! `HUREN_BENCH_STORE_SUBJECTS` sets the loaded size (default 100,000). The 10-million
//! subject load with file size and peak memory is `huren bench store --subjects 10000000`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use huren_node::store::{NodeStore, StatusRecord, Store, TokenRecord};
use huren_pki::unix_now;

fn subject(i: u64) -> String {
    format!("subj-{i:010}")
}

fn record(now: i64) -> StatusRecord {
    StatusRecord { status: 1, valid_until: now + 86_400, test_recency: 1, updated_at: now, ..Default::default() }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn store(c: &mut Criterion) {
    let n: u64 = std::env::var("HUREN_BENCH_STORE_SUBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("status.redb")).expect("store");
    let now = unix_now();
    // Load in a scattered key order, 10,000 per durable transaction.
    let step = 2_654_435_761u64;
    for start in (0..n).step_by(10_000) {
        let batch = (start..(start + 10_000).min(n)).map(|i| (subject((i * step) % n), record(now))).collect();
        store.upsert_batch(batch).expect("load");
    }
    for i in 0..10u64 {
        let digest = huren_pki::attest::token_digest(&i.to_be_bytes());
        store.put_token(&digest, &TokenRecord { subject_ref: subject(i), expires_at: now + 86_400 }).expect("token");
    }

    let mut g = c.benchmark_group(format!("store_{n}_subjects"));
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(0x1234_5678_9abc_def1);
    g.bench_function("point_lookup_subject", |b| {
        b.iter_batched(
            || subject(rng.below(n)),
            |s| store.status(black_box(&s)).expect("read").expect("present"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("point_lookup_missing", |b| b.iter(|| store.status(black_box("subj-none")).expect("read")));
    let digest = huren_pki::attest::token_digest(&0u64.to_be_bytes());
    g.bench_function("attest_reads_token_then_subject", |b| {
        b.iter(|| {
            let t = store.token(black_box(&digest)).expect("read").expect("token");
            store.status(&t.subject_ref).expect("read").expect("present")
        })
    });
    g.bench_function("upsert_single_durable", |b| {
        b.iter_batched(
            || subject(rng.below(n)),
            |s| store.upsert(&s, record(now)).expect("write"),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("upsert_batch_1000_durable", |b| {
        b.iter_batched(
            || (0..1000).map(|_| (subject(rng.below(n)), record(now))).collect::<Vec<_>>(),
            |batch| store.upsert_batch(batch).expect("write"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = store
}
criterion_main!(benches);
