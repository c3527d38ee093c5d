//! Deferred disclosures: the checks this gateway answered from its attestation cache while
//! the home province's node could not answer (stale-if-error), kept until that node takes
//! them (`Attestation/RecordDisclosures`), so that a traveller's "who checked me" has no
//! hole exactly where an outage was.
//!
//! Layout: [`DeferredDisclosures`] is pure state with explicit time (as `breaker` is): one
//! bounded queue per province of [`PER_PROVINCE`] entries — when it is full the oldest
//! entry is dropped — and when that province is next due for a delivery attempt, backing
//! off from [`DeliveryBackoff::first`] to [`DeliveryBackoff::max`] after each failed one, and
//! due at once when the node answers a lookup again ([`DeferredDisclosures::answered`]).
//! Its methods return how many entries they dropped; [`spawn_delivery`] runs the gateway's
//! one delivery task, which hands each due province's entries in, [`BATCH`] per call, under
//! the province's breaker, deadline, concurrency limit and retry (`State::call_node`, as
//! lookups), and counts every drop in `huren_gateway_deferred_disclosures_dropped_total
//! {province}`.
//!
//! An entry is delivered once the node acknowledges it (the node then records it, or counts
//! it as unknown: a token may have expired during the outage). A call the node may take
//! later (UNAVAILABLE, a passed deadline, a failed connection, `redeliverable`) is tried
//! again after the backoff, the same entries; any other refusal is permanent and its
//! entries are dropped. Delivery is at least once: an acknowledgement lost on the way
//! back sends the entries again.
//!
//! Entries hold the token's SHA-256 digest (what the node keys its token table by), never
//! the token; no log line or metric names either. They are kept in memory only: a gateway
//! that stops before its home nodes answer again loses what it holds (its stop logs how
//! many).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::ProvinceCode;
use huren_proto::pb;
use huren_runtime::live::TaskGuard;
use tokio::time::Instant;
use tonic::Code;

use crate::error::transport_cause;
use crate::node_call;
use crate::service::State;

/// Entries kept per province at most (a few hundred bytes each: about 2 MiB per province
/// when full). The oldest is dropped to make room for a new one.
pub(crate) const PER_PROVINCE: usize = 10_000;
/// Entries per `RecordDisclosures` call (the node's limit).
pub(crate) const BATCH: usize = 250;

/// How long the gateway waits before handing a province's deferred checks in again after a
/// failed attempt: `first`, doubled after each further failure, at most `max`. A province
/// whose node answers a lookup again is tried at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryBackoff {
    /// The wait after the first failure (and before the first attempt: the node has just
    /// failed).
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for DeliveryBackoff {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

/// One check answered from the cache: what the home node needs to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deferred {
    /// SHA-256 of the token (never the token).
    pub(crate) token_digest: [u8; 32],
    pub(crate) hub_id: String,
    /// Empty when the hub's registration names no province.
    pub(crate) hub_province: String,
    pub(crate) purpose: String,
    /// When the cached answer was served, Unix seconds.
    pub(crate) checked_at: i64,
}

impl Deferred {
    fn to_pb(&self) -> pb::DeferredDisclosure {
        pb::DeferredDisclosure {
            token_digest: self.token_digest.to_vec(),
            hub_id: self.hub_id.clone(),
            hub_province: self.hub_province.clone(),
            purpose: self.purpose.clone(),
            checked_at: self.checked_at,
        }
    }
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The node acknowledged the entries.
    Delivered,
    /// The node could not take them now: keep them, try again after the backoff (and not
    /// before `at_least`, e.g. while the province's breaker is open).
    Retry { at_least: Duration },
    /// The node refused them for good (or the province left the trust list): drop them.
    Refused,
}

struct Queue {
    entries: VecDeque<Deferred>,
    /// The wait after the next failure.
    delay: Duration,
    /// When the next delivery attempt may start.
    due: Instant,
}

/// Per-province queues of deferred checks (see the module docs).
pub(crate) struct DeferredDisclosures {
    capacity: usize,
    backoff: DeliveryBackoff,
    queues: Mutex<HashMap<ProvinceCode, Queue>>,
    /// Entries held in every queue (and in flight): lets `answered` skip the lock.
    held: AtomicUsize,
    /// Woken when a province becomes due at once.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for DeferredDisclosures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredDisclosures").field("held", &self.held()).finish_non_exhaustive()
    }
}

impl DeferredDisclosures {
    /// Queues of `capacity` entries per province.
    pub(crate) fn new(capacity: usize, backoff: DeliveryBackoff) -> Self {
        let backoff = DeliveryBackoff { first: backoff.first, max: backoff.max.max(backoff.first) };
        Self {
            capacity: capacity.max(1),
            backoff,
            queues: Mutex::new(HashMap::new()),
            held: AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProvinceCode, Queue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `entry` for `province`'s node; returns how many older entries were dropped to
    /// make room (0 or 1). A province with nothing queued before is first tried after
    /// [`DeliveryBackoff::first`] (its node has just failed).
    pub(crate) fn push(&self, province: &ProvinceCode, entry: Deferred, now: Instant) -> usize {
        let mut queues = self.lock();
        let first = self.backoff.first;
        let queue = queues.entry(province.clone()).or_insert_with(|| Queue {
            entries: VecDeque::new(),
            delay: first,
            due: now + first,
        });
        let was_empty = queue.entries.is_empty();
        if was_empty {
            queue.due = queue.due.max(now + first);
        }
        queue.entries.push_back(entry);
        let mut dropped = 0;
        while queue.entries.len() > self.capacity {
            queue.entries.pop_front();
            dropped += 1;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.held.fetch_sub(dropped, Ordering::Relaxed);
        drop(queues);
        if was_empty {
            // The delivery task may be waiting with nothing due: it learns when this is.
            self.wake.notify_one();
        }
        dropped
    }

    /// `province`'s node answered a lookup: whatever is queued for it is due now.
    pub(crate) fn answered(&self, province: &ProvinceCode, now: Instant) {
        if self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut queues = self.lock();
        if let Some(queue) = queues.get_mut(province).filter(|q| !q.entries.is_empty() && q.due > now) {
            queue.due = now;
            queue.delay = self.backoff.first;
            drop(queues);
            self.wake.notify_one();
        }
    }

    /// The provinces due at `now` and, for each, up to `batch` of its oldest entries (taken
    /// out: hand them back with [`DeferredDisclosures::settle`]). A province taken is not due
    /// again until it is settled.
    pub(crate) fn take_due(&self, now: Instant, batch: usize) -> Vec<(ProvinceCode, Vec<Deferred>)> {
        let mut queues = self.lock();
        let mut out = Vec::new();
        for (province, queue) in queues.iter_mut() {
            if queue.entries.is_empty() || queue.due > now {
                continue;
            }
            let n = queue.entries.len().min(batch.max(1));
            out.push((province.clone(), queue.entries.drain(..n).collect()));
            // In flight: not due again until settled.
            queue.due = now + Duration::from_secs(365 * 86_400);
        }
        out
    }

    /// Settles a batch [`DeferredDisclosures::take_due`] handed out, by `verdict`; returns
    /// how many entries were dropped (the refused batch, or the oldest of a retried batch
    /// when newer entries have filled the queue meanwhile).
    pub(crate) fn settle(
        &self,
        province: &ProvinceCode,
        batch: Vec<Deferred>,
        verdict: Verdict,
        now: Instant,
    ) -> usize {
        let mut queues = self.lock();
        let first = self.backoff.first;
        let queue = queues.entry(province.clone()).or_insert_with(|| Queue {
            entries: VecDeque::new(),
            delay: first,
            due: now,
        });
        let n = batch.len();
        let dropped = match verdict {
            Verdict::Delivered | Verdict::Refused => {
                // The node answered: the rest (if any) goes next, at once.
                queue.delay = first;
                queue.due = now;
                if verdict == Verdict::Refused {
                    n
                } else {
                    0
                }
            }
            Verdict::Retry { at_least } => {
                queue.due = now + queue.delay.max(at_least);
                queue.delay = (queue.delay * 2).min(self.backoff.max);
                // Back at the front, oldest first; past the bound the oldest go.
                for entry in batch.into_iter().rev() {
                    queue.entries.push_front(entry);
                }
                let mut dropped = 0;
                while queue.entries.len() > self.capacity {
                    queue.entries.pop_front();
                    dropped += 1;
                }
                dropped
            }
        };
        let delivered = if verdict == Verdict::Delivered { n } else { 0 };
        self.held.fetch_sub(dropped + delivered, Ordering::Relaxed);
        dropped
    }

    /// Drops everything queued for `province` (it left the trust list); returns how many.
    pub(crate) fn forget(&self, province: &ProvinceCode) -> usize {
        let n = self.lock().get_mut(province).map_or(0, |q| std::mem::take(&mut q.entries).len());
        self.held.fetch_sub(n, Ordering::Relaxed);
        n
    }

    /// When the next province becomes due (`None`: nothing queued).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.lock().values().filter(|q| !q.entries.is_empty()).map(|q| q.due).min()
    }

    /// Entries queued for `province` (not counting a batch in flight).
    pub(crate) fn queued(&self, province: &ProvinceCode) -> usize {
        self.lock().get(province).map_or(0, |q| q.entries.len())
    }

    /// Entries held for every province, in flight included.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Whether a refused `RecordDisclosures` may succeed later with the same entries: the node
/// could not be reached or said it cannot serve now, the deadline passed, or it is
/// overloaded. Anything else (NOT_AUTHORIZED, INVALID_REQUEST, UNIMPLEMENTED from a node
/// without the call) is for good. (A node's SUNSET is UNAVAILABLE too: what is queued then
/// goes with the gateway's sunset purge.)
pub(crate) fn redeliverable(code: Code, transport: bool) -> bool {
    transport
        || matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted | Code::Aborted
        )
}

/// The gateway's delivery task: hands every due province's deferred checks to its node,
/// the provinces at once, until the gateway stops (`State::stopping`); then logs how many
/// it could not hand in (they are lost with the process).
pub(crate) fn spawn_delivery(state: Arc<State>) -> TaskGuard {
    TaskGuard::spawn(async move {
        let mut stopping = state.stopping.subscribe();
        loop {
            let due = state.deferred.take_due(Instant::now(), BATCH);
            if !due.is_empty() {
                let attempts = due.into_iter().map(|(province, batch)| deliver(&state, province, batch));
                tokio::select! {
                    _ = futures::future::join_all(attempts) => continue,
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
            let next = state.deferred.next_due();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = state.deferred.wake.notified() => {}
                _ = sleep => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
        }
        let lost = state.deferred.held();
        if lost > 0 {
            tracing::warn!(
                entries = lost,
                "gateway stopping: checks answered from the cache while their home node was down were not yet \
                 handed in and are lost"
            );
        }
    })
}

/// One delivery attempt of `batch` to `province`'s node, settled by its outcome.
async fn deliver(state: &State, province: ProvinceCode, batch: Vec<Deferred>) {
    let trust = state.trust();
    let label = crate::metrics::province_label(&trust, province.as_str());
    let settle = |batch: Vec<Deferred>, verdict: Verdict| {
        let dropped = state.deferred.settle(&province, batch, verdict, Instant::now());
        state.metrics.deferred_dropped(&label, dropped);
    };
    if trust.province(&province).is_none() {
        // Nobody to hand them to any more.
        let n = batch.len() + state.deferred.forget(&province);
        state.metrics.deferred_dropped(&label, n);
        state.deferred.settle(&province, batch, Verdict::Refused, Instant::now());
        tracing::warn!(%province, entries = n, "deferred disclosures dropped: the province left the trust list");
        return;
    }
    if let Err(wait) = state.breakers.allow(province.as_str(), std::time::Instant::now()) {
        return settle(batch, Verdict::Retry { at_least: wait });
    }
    let route = match state.route(&trust, &province) {
        Ok(route) => route,
        Err(e) => {
            state.breakers.record(province.as_str(), true, std::time::Instant::now());
            tracing::debug!(%province, outcome = huren_runtime::error::Refusal::outcome(&e), "deferred disclosures wait: no route");
            return settle(batch, Verdict::Retry { at_least: Duration::ZERO });
        }
    };
    let request = pb::RecordDisclosuresRequest { entries: batch.iter().map(Deferred::to_pb).collect() };
    let (outcome, _) = state
        .call_node(&province, &route, "RecordDisclosures", &request, |mut client, call| async move {
            node_call::record_disclosures(&mut client, call).await
        })
        .await;
    let verdict = match outcome {
        Some(Ok(answer)) => {
            let counts = answer.into_inner().response;
            tracing::debug!(
                %province,
                recorded = counts.recorded,
                token_unknown = counts.token_unknown,
                too_old = counts.too_old,
                in_future = counts.in_future,
                "deferred disclosures handed in"
            );
            Verdict::Delivered
        }
        Some(Err(status)) if redeliverable(status.code(), transport_cause(&status).is_some()) => {
            tracing::debug!(%province, code = ?status.code(), "deferred disclosures not taken yet; will retry");
            Verdict::Retry { at_least: Duration::ZERO }
        }
        Some(Err(status)) => {
            tracing::warn!(
                %province,
                code = ?status.code(),
                entries = batch.len(),
                detail = status.message(),
                "the home node refused deferred disclosures for good; dropped"
            );
            Verdict::Refused
        }
        None => Verdict::Retry { at_least: Duration::ZERO },
    };
    settle(batch, verdict);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Deferred {
        Deferred {
            token_digest: [n; 32],
            hub_id: "jinan-west".into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            checked_at: 1_800_000_000 + i64::from(n),
        }
    }

    fn backoff() -> DeliveryBackoff {
        DeliveryBackoff { first: Duration::from_secs(1), max: Duration::from_secs(4) }
    }

    fn digests(batch: &[Deferred]) -> Vec<u8> {
        batch.iter().map(|e| e.token_digest[0]).collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_entries_and_counts_them() {
        let q = DeferredDisclosures::new(3, backoff());
        let (anhui, shandong) = ("340000".parse().unwrap(), "370000".parse().unwrap());
        let t0 = Instant::now();
        let dropped: usize = (1..=5).map(|n| q.push(&anhui, entry(n), t0)).sum();
        assert_eq!(dropped, 2, "two entries over the bound of three");
        // Another province has its own bound.
        assert_eq!(q.push(&shandong, entry(9), t0), 0);
        assert_eq!((q.queued(&anhui), q.queued(&shandong), q.held()), (3, 1, 4));
        let due = q.take_due(t0 + Duration::from_secs(1), 10);
        let anhui_batch = due.into_iter().find(|(p, _)| *p == anhui).unwrap().1;
        assert_eq!(digests(&anhui_batch), [3, 4, 5], "the newest three kept, oldest first");
    }

    #[test]
    fn a_province_is_first_due_after_the_backoff_and_at_once_when_its_node_answers() {
        let q = DeferredDisclosures::new(10, backoff());
        let anhui: ProvinceCode = "340000".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(q.next_due(), None);
        q.push(&anhui, entry(1), t0);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(q.take_due(t0, 10).is_empty(), "the node has just failed: not yet");
        q.answered(&anhui, t0 + Duration::from_millis(10));
        assert_eq!(q.take_due(t0 + Duration::from_millis(10), 10).len(), 1);
    }

    #[test]
    fn failed_attempts_back_off_keep_the_entries_and_a_refusal_drops_them() {
        let q = DeferredDisclosures::new(4, backoff());
        let anhui: ProvinceCode = "340000".parse().unwrap();
        let t0 = Instant::now();
        for n in 1..=3 {
            q.push(&anhui, entry(n), t0);
        }
        let mut now = t0 + Duration::from_secs(1);
        // Batches of two; failures wait 1 s, 2 s, 4 s, 4 s (the cap), or longer when asked.
        for (wait, at_least) in [(1, 0), (2, 0), (4, 0), (4, 0), (9, 9)] {
            let (province, batch) = q.take_due(now, 2).pop().unwrap();
            assert_eq!((province, digests(&batch)), (anhui.clone(), vec![1, 2]));
            assert!(q.take_due(now, 2).is_empty(), "in flight: not handed out twice");
            let at_least = Duration::from_secs(at_least);
            assert_eq!(q.settle(&anhui, batch, Verdict::Retry { at_least }, now), 0);
            assert_eq!(q.next_due(), Some(now + Duration::from_secs(wait)));
            now += Duration::from_secs(wait);
        }
        // Newer entries filled the queue while a batch was in flight: its oldest go.
        let (_, batch) = q.take_due(now, 2).pop().unwrap();
        q.push(&anhui, entry(4), now);
        q.push(&anhui, entry(5), now);
        assert_eq!(q.settle(&anhui, batch, Verdict::Retry { at_least: Duration::ZERO }, now), 1);
        assert_eq!(q.held(), 4);
        // Delivered: the rest is due at once, the backoff starts over.
        now += Duration::from_secs(4);
        let (_, batch) = q.take_due(now, 2).pop().unwrap();
        assert_eq!(digests(&batch), [2, 3]);
        assert_eq!(q.settle(&anhui, batch, Verdict::Delivered, now), 0);
        assert_eq!((q.next_due(), q.held()), (Some(now), 2));
        // Refused for good: dropped and counted.
        let (_, batch) = q.take_due(now, 2).pop().unwrap();
        assert_eq!(q.settle(&anhui, batch, Verdict::Refused, now), 2);
        assert_eq!((q.next_due(), q.held()), (None, 0));
    }

    #[test]
    fn only_failures_the_node_may_recover_from_are_delivered_again() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::ResourceExhausted] {
            assert!(redeliverable(code, false), "{code:?}");
        }
        assert!(redeliverable(Code::Unknown, true), "a broken connection");
        for code in [Code::PermissionDenied, Code::InvalidArgument, Code::Unimplemented, Code::Unauthenticated] {
            assert!(!redeliverable(code, false), "{code:?}");
        }
    }
}
