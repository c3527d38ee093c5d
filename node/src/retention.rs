//! Retention, manual purges and the sunset: nothing is kept longer than the policy in
//! the trust list allows, and deletion is proven with a signed receipt.
//!
//! - The retention task purges, every `retention_interval`, statuses older than the
//!   policy's window, expired tokens and old transparency entries (leaf hashes stay, so
//!   the log still verifies), disclosure-log records past `disclosure_max_age_seconds` and
//!   per-hub aggregates past the audit window, and reports what it did.
//! - [`purge_with_receipt`] is the manual purge of province IT (`huren node purge`).
//! - At a sunset order's effective time the node refuses all calls, purges every subject
//!   record (and the commitment salt), signs a [`pb::DeletionReceipt`] and hands it in
//!   to the gateway until acknowledged. The receipt is kept in the store, so a restart
//!   hands it in again rather than losing it.
//! - Every receipt carries RFC 9162 consistency proofs from the sizes of the tree heads
//!   the node signed before (see [`NodeStore::record_signed_size`]) to its final head, so an
//!   auditor's saved head can be checked against the final log after the leaf hashes are
//!   gone; and after a receipted purge the store is rewritten ([`NodeStore::rewrite`]),
//!   so no byte of a deleted record stays on disk in a redb file.
//! - `PurgeMetrics`: what the purges did, as metrics (kinds, reasons, counts, times).

use std::collections::BTreeMap;

use huren_pki::{ProvinceCode, TrustList};
use huren_proto::pb;
use opentelemetry::metrics::{Counter, Gauge, Meter};
use opentelemetry::KeyValue;

use crate::error::{NodeError, Signing};
use crate::keys::KeyRing;
use crate::store::{NodeStore, PurgeOutcome, PurgePlan};

/// What one retention run (or sunset) deleted, for watchers and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Node clock at the run.
    pub time: i64,
    /// Why it ran: `retention` or `sunset`.
    pub reason: &'static str,
    /// Records deleted, by kind (`status`, `token`, `log_entry`).
    pub deleted: BTreeMap<&'static str, u64>,
}

/// Record kinds a purge counts (see [`crate::store::PurgeOutcome`]).
pub(crate) const KINDS: [&str; 5] = ["status", "token", "log_entry", "disclosure", "hub_aggregate"];

/// Purge progress as OpenTelemetry instruments. Labels: province, kind, reason
/// (retention, sunset; a manual purge runs with the node stopped), outcome — never a
/// subject, token or record.
#[derive(Clone)]
pub(crate) struct PurgeMetrics {
    province: KeyValue,
    purged: Counter<u64>,
    runs: Counter<u64>,
    last_run: Gauge<i64>,
    progress: Gauge<u64>,
}

impl std::fmt::Debug for PurgeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeMetrics").finish_non_exhaustive()
    }
}

impl PurgeMetrics {
    /// The instruments, on `meter`, for `province`.
    pub(crate) fn new(meter: &Meter, province: &ProvinceCode) -> Self {
        Self {
            province: KeyValue::new("province", province.to_string()),
            purged: meter
                .u64_counter("huren_node_purged_records")
                .with_description("Records deleted by the running node, by kind and reason (retention, sunset)")
                .build(),
            runs: meter
                .u64_counter("huren_node_purge_runs")
                .with_description("Purge runs by reason and outcome (ok, failed)")
                .build(),
            last_run: meter
                .i64_gauge("huren_node_purge_last_run_timestamp")
                .with_description("Node clock (Unix seconds) at the last completed purge run, by reason")
                .with_unit("s")
                .build(),
            progress: meter
                .u64_gauge("huren_node_purge_progress_records")
                .with_description("Records deleted so far by the purge under way (0 between runs)")
                .build(),
        }
    }

    /// A run that completed: its deletions per kind (zeros included, so every series
    /// exists from the first run), the run and its time.
    pub(crate) fn completed(&self, report: &PurgeReport) {
        let reason = KeyValue::new("reason", report.reason);
        for kind in KINDS {
            let n = report.deleted.get(kind).copied().unwrap_or(0);
            self.purged.add(n, &[self.province.clone(), reason.clone(), KeyValue::new("kind", kind)]);
        }
        self.runs.add(1, &[self.province.clone(), reason.clone(), KeyValue::new("outcome", "ok")]);
        self.last_run.record(report.time, &[self.province.clone(), reason]);
        self.progress.record(0, std::slice::from_ref(&self.province));
    }

    /// A run that failed (it is retried at the next tick).
    pub(crate) fn failed(&self, reason: &'static str) {
        let labels = [self.province.clone(), KeyValue::new("reason", reason), KeyValue::new("outcome", "failed")];
        self.runs.add(1, &labels);
        self.progress.record(0, std::slice::from_ref(&self.province));
    }

    /// Records deleted so far by the run under way.
    pub(crate) fn progress(&self, deleted: u64) {
        self.progress.record(deleted, std::slice::from_ref(&self.province));
    }
}

/// The plan the retention policy calls for at `now`.
pub(crate) fn retention_plan(trust: &TrustList, now: i64) -> PurgePlan {
    let r = trust.retention();
    PurgePlan {
        statuses_changed_before: Some(now - r.status_max_age),
        tokens_expired_before: Some(now),
        log_entries_before: Some(now - r.audit_max_age),
        everything: false,
        disclosures_before: Some(now - trust.disclosure_max_age()),
        // Aggregates name no one: kept as long as the audit log.
        hub_aggregates_before: Some(now - r.audit_max_age),
    }
}

fn counts(map: &BTreeMap<&'static str, u64>) -> Vec<pb::DeletedCount> {
    map.iter().map(|(k, v)| pb::DeletedCount { kind: k.to_string(), count: *v }).collect()
}

/// Signs a receipt for a purge that has happened (`consistency`: proofs from earlier
/// signed sizes to `final_tree_head`, see [`NodeStore::consistency_proofs`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn receipt(
    store: &dyn NodeStore,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    reason: &str,
    outcome: &PurgeOutcome,
    final_tree_head: pb::SignedTreeHead,
    consistency: Vec<pb::ConsistencyFrom>,
    now: i64,
) -> Result<pb::SignedDeletionReceipt, NodeError> {
    let key = keys
        .signing_key(trust, province, now)
        .ok_or_else(|| NodeError::NoSigningKey { province: province.clone(), signing: Signing::Receipt })?;
    let (range_start, range_end) = outcome.range.unwrap_or((0, 0));
    let mut remaining = store.counts()?;
    remaining.retain(|_, v| *v > 0);
    Ok(key.sign_receipt(&pb::DeletionReceipt {
        province: province.to_string(),
        time: now,
        reason: reason.to_owned(),
        counts: counts(&outcome.counts),
        range_start,
        range_end,
        deleted_root: outcome.deleted.root().to_vec(),
        final_tree_head: Some(final_tree_head),
        remaining: counts(&remaining),
        consistency,
    }))
}

/// The log's tree head, signed (and its size remembered, see [`NodeStore::record_signed_size`]).
pub(crate) fn tree_head(
    store: &dyn NodeStore,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    now: i64,
) -> Result<pb::SignedTreeHead, NodeError> {
    let (size, root) = store.log_head()?;
    let key = keys
        .signing_key(trust, province, now)
        .ok_or_else(|| NodeError::NoSigningKey { province: province.clone(), signing: Signing::TreeHead })?;
    let signed = key.sign_tree_head(&pb::TreeHead {
        province: province.to_string(),
        tree_size: size,
        root_hash: root.to_vec(),
        timestamp: now,
    });
    store.record_signed_size(size)?;
    Ok(signed)
}

/// Purges per `plan` and returns a signed receipt (`reason`: "manual", "sunset", …):
/// signs the final tree head, proves consistency to it from every remembered signed size
/// while the leaf hashes are still there, deletes, rewrites the store file so no deleted
/// byte remains in it, and counts what is left.
#[allow(clippy::too_many_arguments)]
pub fn purge_with_receipt(
    store: &dyn NodeStore,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    plan: &PurgePlan,
    reason: &str,
    now: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<pb::SignedDeletionReceipt, NodeError> {
    let head = tree_head(store, keys, trust, province, now)?;
    let size = <pb::TreeHead as prost::Message>::decode(head.tree_head.as_slice())
        .map_err(|e| NodeError::Internal(format!("own tree head does not decode: {e}")))?
        .tree_size;
    let consistency = store
        .consistency_proofs(size)?
        .into_iter()
        .map(|(old_size, proof)| pb::ConsistencyFrom { old_size, hashes: proof.iter().map(|h| h.to_vec()).collect() })
        .collect();
    let outcome = store.purge(plan, progress)?;
    store.rewrite()?;
    receipt(store, keys, trust, province, reason, &outcome, head, consistency, now)
}
