//! Batch verification of concurrent lookups' attestations: a collection window.
//!
//! With `verify_batch_window` above zero, the first lookup whose node answer needs
//! verifying opens a window: it waits up to the window (or until [`BatchVerifier::max`]
//! answers have gathered), then verifies every answer gathered meanwhile together with
//! [`huren_pki::verify_attestations`] — exactly the verdicts one-by-one `verify_strict`
//! would give (a bad signature in the batch is found and refused alone) — and hands each
//! waiting lookup its own verdict. A lone lookup waits at most the window.
//!
//! **Off by default** (window 0: each answer is verified at once, as [`crate::service::check`]
//! does). Measured (BENCHMARKS.md, issue 19): an exact batch must prove every signature's
//! `R` free of small-order components — one scalar multiplication by ℓ each — and that
//! costs what the batch equation saves, so on this code a window adds its latency and
//! saves no CPU. It is here for deployments that measure otherwise (a faster subgroup
//! check would change the balance) and so that the claim stays tested.
//!
//! Cancellation: the lookup that opened the window holds a guard; if its future is
//! dropped while waiting (the hub went away), the guard verifies and answers what was
//! gathered, so no other lookup is left waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::{TrustList, Verified};
use huren_proto::pb;
use tokio::sync::{oneshot, Notify};

use crate::request::Lookup;

/// A verdict as the lookup path reports it: the verified attestation, or why not (the
/// message and the violation's metric label).
pub(crate) type Verdict = Result<Verified, (String, &'static str)>;

struct Job {
    trust: Arc<TrustList>,
    signed: pb::SignedAttestation,
    lookup: Lookup,
    now: i64,
    reply: oneshot::Sender<Verdict>,
}

/// The collection window (see the module docs).
pub(crate) struct BatchVerifier {
    window: Duration,
    max: usize,
    pending: Mutex<Vec<Job>>,
    full: Notify,
}

impl std::fmt::Debug for BatchVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchVerifier").field("window", &self.window).field("max", &self.max).finish_non_exhaustive()
    }
}

impl BatchVerifier {
    /// A verifier gathering for up to `window` (zero: none) and at most `max` answers.
    pub(crate) fn new(window: Duration, max: usize) -> Self {
        Self { window, max: max.max(1), pending: Mutex::new(Vec::new()), full: Notify::new() }
    }

    /// Verifies `signed` as the answer to `lookup` under `trust` at `now`: at once with no
    /// window, otherwise together with the answers of concurrent lookups.
    pub(crate) async fn verify(
        &self,
        trust: Arc<TrustList>,
        signed: &pb::SignedAttestation,
        lookup: &Lookup,
        now: i64,
    ) -> Verdict {
        if self.window.is_zero() {
            return crate::service::check(&trust, signed, lookup, now);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job { trust, signed: signed.clone(), lookup: lookup.clone(), now, reply };
        let (opens, full) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push(job);
            (pending.len() == 1, pending.len() >= self.max)
        };
        if full {
            self.full.notify_one();
        }
        if opens {
            let guard = Window(self);
            tokio::select! {
                _ = tokio::time::sleep(self.window) => {}
                _ = self.full.notified() => {}
            }
            drop(guard); // verifies and answers what gathered, this lookup's answer too
        }
        // The sender is dropped only if verification itself panicked.
        answer.await.unwrap_or_else(|_| Err(("the batch verifier failed".to_owned(), "internal")))
    }

    /// Verifies what has gathered and answers each lookup.
    fn close(&self) {
        let jobs = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (trust, group) in by_trust(jobs) {
            let now = group.iter().map(|j| j.now).max().unwrap_or_default();
            let items: Vec<_> = group.iter().map(|j| (&j.signed, crate::service::expected(&j.lookup))).collect();
            let verdicts = huren_pki::verify_attestations(&trust, &items, now);
            drop(items);
            for (job, verdict) in group.into_iter().zip(verdicts) {
                // A lookup that went away meanwhile no longer listens.
                let _ = job.reply.send(verdict.map_err(|e| (e.to_string(), e.reason())));
            }
        }
    }
}

/// Held by the lookup that opened a window: closing it happens however that lookup ends.
struct Window<'a>(&'a BatchVerifier);

impl Drop for Window<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Jobs grouped by the trust list they are to be verified under (a new list may arrive
/// inside a window), in arrival order within each group.
fn by_trust(jobs: Vec<Job>) -> Vec<(Arc<TrustList>, Vec<Job>)> {
    let mut groups: Vec<(Arc<TrustList>, Vec<Job>)> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &job.trust)) {
            Some((_, group)) => group.push(job),
            None => groups.push((job.trust.clone(), vec![job])),
        }
    }
    groups
}
