//! The disclosure log's writer: every `Attest` that resolved to a subject is recorded
//! (who asked, for what purpose, when, through which gateway, what was disclosed) without
//! slowing the lookup, and so is every check a gateway answered from its cache while the
//! node was down and handed in later (`RecordDisclosures`; a straggler from an hour already
//! closed counts as a new subject in that hour's aggregate).
//!
//! Layout: [`Disclosures`] is what the `Attest` handler holds: [`Disclosures::record`] puts
//! a record on a bounded channel ([`QUEUE`]) and returns; one writer task
//! ([`Disclosures::spawn_writer`]) gathers what queues for up to [`LINGER`] (at most
//! [`MAX_BATCH`] records) and writes it, then the per-hub aggregates ([`HourlyDistinct`]),
//! to the store (two writes; a batch carries a random id, so a retried one is not appended
//! twice: see `crate::store::NodeStore::append_disclosures`). A node killed outright loses
//! at most the records of that window; a node stopped normally writes everything queued.
//!
//! **When the writer falls behind.** A disclosure record is the traveller's legal right
//! to know who processed their data, so it is not dropped silently: a full queue applies
//! back-pressure — the `Attest` waits up to [`BACKPRESSURE`] for room — and only then is
//! the record dropped, counted in `huren_node_disclosures_dropped_total` and in a counter
//! kept in the store that auditors read with every `GetHubAggregates`
//! (`disclosures_dropped`). A batch whose write fails is retried ([`WRITE_ATTEMPTS`]
//! times, with back-off) before it is counted as dropped. On shutdown the writer drains
//! the queue and writes what is left.
//!
//! **Aggregates without subject identity.** For the hour under way the writer keeps, per
//! (hub, hub province, purpose), the set of 16-byte keyed hashes SHA-256(hour key ‖
//! subject ref) it has seen; the hour key is random, held only in memory, and the sets
//! and the key are discarded when the hour ends. Only counts reach the store (as deltas:
//! how many subjects of the batch were new to the set, how many checks). An exact set
//! rather than HyperLogLog: an hour of one hub's checks is small (thousands), exactness
//! makes a flagged hub's count defensible, and a HyperLogLog register file kept across
//! the hour would be a longer-lived, subject-derived structure. A node restarted within
//! an hour starts a fresh set, so a subject checked before and after the restart counts
//! twice in that hour (an over-count). A node killed between a batch's records and its
//! deltas leaves that batch (at most [`MAX_BATCH`] checks) out of the counts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::store::{DisclosureRecord, HubAggregateRecord, NodeStore};

/// Records that may wait for the writer.
pub(crate) const QUEUE: usize = 65_536;
/// Most records written in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;
/// How long an `Attest` waits for room in a full queue before its record is dropped (and counted).
pub(crate) const BACKPRESSURE: Duration = Duration::from_millis(200);
/// How long the writer gathers records after the first before writing them: at most this
/// much of the disclosure log is lost when the node dies (the checks were answered, the
/// records not yet written).
pub(crate) const LINGER: Duration = Duration::from_millis(100);
/// Writes of one batch before it is counted as dropped.
const WRITE_ATTEMPTS: u32 = 5;

/// One check to record.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) subject_ref: String,
    pub(crate) record: DisclosureRecord,
}

/// A random id for a batch of records (see `NodeStore::append_disclosures`); without
/// randomness, the clock's nanoseconds and a counter.
fn batch_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u64::from_be_bytes(bytes);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}

/// The `Attest` handler's end of the disclosure log.
pub(crate) struct Disclosures {
    tx: mpsc::Sender<Pending>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Pending>>>,
    /// Dropped since the last time the writer added them to the store's counter.
    dropped: AtomicU64,
    /// Dropped since start (for tests and `/metrics`).
    dropped_total: AtomicU64,
    /// Held while a batch is written: the sunset takes it so that no batch lands after
    /// its purge.
    pub(crate) gate: Arc<std::sync::Mutex<()>>,
    metrics: std::sync::OnceLock<Counter<u64>>,
}

impl std::fmt::Debug for Disclosures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disclosures").finish_non_exhaustive()
    }
}

impl Default for Disclosures {
    fn default() -> Self {
        Self::with_capacity(QUEUE)
    }
}

impl Disclosures {
    /// A queue of `capacity` records.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            gate: Arc::new(std::sync::Mutex::new(())),
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// Queues a record for the writer; waits up to [`BACKPRESSURE`] when the queue is
    /// full, then drops it and counts the drop.
    pub(crate) async fn record(&self, pending: Pending) {
        let pending = match self.tx.try_send(pending) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(p)) => p,
            Err(mpsc::error::TrySendError::Closed(_)) => return self.dropped(1),
        };
        match tokio::time::timeout(BACKPRESSURE, self.tx.send(pending)).await {
            Ok(Ok(())) => {}
            _ => self.dropped(1),
        }
    }

    fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.dropped_total.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = self.metrics.get() {
            c.add(n, &[]);
        }
        tracing::error!(dropped = n, "disclosure records dropped: the writer fell behind or the store failed");
    }

    /// Counts drops in `huren_node_disclosures_dropped_total` on `meter`.
    pub(crate) fn register_metrics(&self, meter: &opentelemetry::metrics::Meter, province: &str) {
        let counter = meter
            .u64_counter("huren_node_disclosures_dropped")
            .with_description("Disclosure-log records the node could not write (should stay 0)")
            .build();
        counter.add(0, &[KeyValue::new("province", province.to_owned())]);
        let _ = self.metrics.set(counter);
    }

    /// Starts the writer task over `store`; it stops, after writing what is queued, when
    /// `stop` resolves. `sunset` tells it the sunset purge has run (nothing more is kept).
    pub(crate) fn spawn_writer(
        self: &Arc<Self>,
        store: Arc<dyn NodeStore>,
        sunset: Arc<dyn Fn() -> bool + Send + Sync>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let this = self.clone();
        Some(tokio::spawn(async move { this.run_writer(rx, store, sunset, stop).await }))
    }

    async fn run_writer(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Pending>,
        store: Arc<dyn NodeStore>,
        sunset: Arc<dyn Fn() -> bool + Send + Sync>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut hourly = HourlyDistinct::default();
        loop {
            let first = tokio::select! {
                biased;
                p = rx.recv() => match p { Some(p) => p, None => break },
                _ = stop.wait_for(|s| *s) => break,
            };
            // Gather for up to LINGER: one durable commit per tenth of a second under load
            // rather than one per handful of records (each commit is an fsync and a rewrite
            // of every touched subject-day).
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + LINGER;
            let mut stopping = false;
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    biased;
                    n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                    _ = stop.wait_for(|s| *s) => { stopping = true; break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.write(&store, &mut hourly, batch, &sunset).await;
            if stopping {
                break;
            }
        }
        // Shutting down: write what is still queued.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(p) = rx.try_recv() {
            rest.push(p);
            if rest.len() == MAX_BATCH {
                self.write(&store, &mut hourly, std::mem::take(&mut rest), &sunset).await;
            }
        }
        if !rest.is_empty() {
            self.write(&store, &mut hourly, rest, &sunset).await;
        }
    }

    async fn write(
        &self,
        store: &Arc<dyn NodeStore>,
        hourly: &mut HourlyDistinct,
        batch: Vec<Pending>,
        sunset: &Arc<dyn Fn() -> bool + Send + Sync>,
    ) {
        let deltas = hourly.count(&batch);
        let n = batch.len() as u64;
        let records: Arc<Vec<(String, DisclosureRecord)>> =
            Arc::new(batch.into_iter().map(|p| (p.subject_ref, p.record)).collect());
        let deltas = Arc::new(deltas);
        let dropped_before = self.dropped.swap(0, Ordering::Relaxed);
        // The same id on every attempt: a subject's log the batch already reached is not
        // appended to again.
        let batch_id = batch_id();
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            let (store, records, deltas, sunset) = (store.clone(), records.clone(), deltas.clone(), sunset.clone());
            let gate = self.gate.clone();
            let result = tokio::task::spawn_blocking(move || {
                let _held = gate.lock().unwrap_or_else(|e| e.into_inner());
                if sunset() {
                    // The sunset purged every disclosure: nothing is kept from now on.
                    return Ok(());
                }
                store.append_disclosures(batch_id, &records, &deltas)?;
                if dropped_before > 0 {
                    store.add_dropped_disclosures(dropped_before)?;
                }
                Ok::<(), crate::store::StoreError>(())
            })
            .await;
            match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, attempt, "disclosure batch not written; retrying"),
                Err(e) => tracing::warn!(error = %e, attempt, "disclosure writer task failed; retrying"),
            }
            if attempt < WRITE_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        self.dropped.fetch_add(dropped_before, Ordering::Relaxed);
        self.dropped(n);
    }

    /// Records dropped since this node started.
    #[cfg(test)]
    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

/// Distinct subjects per (hub, hub province, purpose) in the hour under way, as keyed
/// hashes under a random per-hour key that is never stored (see the module docs).
#[derive(Default)]
pub(crate) struct HourlyDistinct {
    hour: i64,
    key: [u8; 32],
    seen: HashMap<(String, String, String), HashSet<[u8; 16]>>,
}

impl HourlyDistinct {
    fn start(&mut self, hour: i64) {
        self.hour = hour;
        self.seen.clear();
        if getrandom::getrandom(&mut self.key).is_err() {
            // No randomness: a key derived from the hour still hides subjects from anyone
            // without this process's memory, and the sets go with the hour.
            self.key = Sha256::digest(hour.to_be_bytes()).into();
        }
    }

    fn tag(&self, subject_ref: &str) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"huren/hourly-distinct/v1\0");
        h.update(self.key);
        h.update(subject_ref.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// The aggregate deltas of `batch`: per (hour, hub, hub province, purpose), how many
    /// of its subjects were not yet seen in that hour, and how many checks.
    pub(crate) fn count(&mut self, batch: &[Pending]) -> Vec<HubAggregateRecord> {
        let mut deltas: HashMap<(i64, String, String, String), (u64, u64)> = HashMap::new();
        for p in batch {
            let r = &p.record;
            let hour = r.time - r.time.rem_euclid(3600);
            if hour > self.hour {
                self.start(hour);
            }
            let group = (r.hub_id.clone(), r.hub_province.clone(), r.purpose.clone());
            // A straggler from an hour already closed cannot be matched: counted as new.
            let new = hour < self.hour || {
                let tag = self.tag(&p.subject_ref);
                self.seen.entry(group.clone()).or_default().insert(tag)
            };
            let d = deltas.entry((hour, group.0, group.1, group.2)).or_default();
            d.0 += u64::from(new);
            d.1 += 1;
        }
        deltas
            .into_iter()
            .map(|((hour, hub_id, hub_province, purpose), (distinct_subjects, checks))| HubAggregateRecord {
                hour,
                hub_id,
                hub_province,
                purpose,
                distinct_subjects,
                checks,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(subject: &str, hub: &str, time: i64) -> Pending {
        Pending { subject_ref: subject.into(), record: crate::store::tests::check_record(hub, time) }
    }

    fn sorted(mut v: Vec<HubAggregateRecord>) -> Vec<(i64, String, u64, u64)> {
        v.sort_by(|a, b| (a.hour, &a.hub_id).cmp(&(b.hour, &b.hub_id)));
        v.into_iter().map(|r| (r.hour, r.hub_id, r.distinct_subjects, r.checks)).collect()
    }

    #[test]
    fn distinct_subjects_are_counted_per_hub_and_hour_across_batches() {
        let mut h = HourlyDistinct::default();
        let first =
            h.count(&[check("a", "h1", 7200), check("a", "h1", 7201), check("b", "h1", 7202), check("a", "h2", 7203)]);
        assert_eq!(sorted(first), vec![(7200, "h1".into(), 2, 3), (7200, "h2".into(), 1, 1)]);
        // The same subjects again in the same hour: checks, no new subjects.
        let again = h.count(&[check("a", "h1", 7300), check("c", "h1", 7301)]);
        assert_eq!(sorted(again), vec![(7200, "h1".into(), 1, 2)]);
        // A new hour: everyone is new again, and the old sets are gone.
        let next = h.count(&[check("a", "h1", 10_800)]);
        assert_eq!(sorted(next), vec![(10_800, "h1".into(), 1, 1)]);
        assert_eq!(h.seen.values().map(HashSet::len).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_applies_back_pressure_then_counts_the_drop() {
        let d = Disclosures::with_capacity(1);
        d.record(check("a", "h1", 7200)).await;
        assert_eq!(d.dropped_total(), 0);
        // No writer takes the first: the second waits, then is dropped and counted.
        let started = std::time::Instant::now();
        d.record(check("b", "h1", 7200)).await;
        assert!(started.elapsed() >= BACKPRESSURE);
        assert_eq!(d.dropped_total(), 1);
    }

    #[test]
    fn the_hourly_sets_hold_no_subject_reference() {
        let mut h = HourlyDistinct::default();
        h.count(&[check("ah-subject-0001", "h1", 7200)]);
        let held: Vec<u8> = h.seen.values().flat_map(|s| s.iter().flatten().copied()).collect();
        assert!(!held.windows(4).any(|w| w == b"ah-s"));
        assert_eq!(held.len(), 16);
    }
}
