//! Retention, manual purges and the sunset: nothing is kept longer than the policy in
//! the trust list allows, and deletion is proven with a signed receipt.
//!
//! - The retention task purges, every `retention_interval`, statuses older than the
//!   policy's window, expired tokens and old transparency entries (leaf hashes stay, so
//!   the log still verifies), and reports what it did.
//! - [`purge_with_receipt`] is the manual purge of province IT (`huren node purge`).
//! - At a sunset order's effective time the node refuses all calls, purges every subject
//!   record (and the commitment salt), signs a [`pb::DeletionReceipt`] and hands it in
//!   to the gateway until acknowledged. The receipt is kept in the store, so a restart
//!   hands it in again rather than losing it.

use std::collections::BTreeMap;

use huren_pki::{ProvinceCode, TrustList};
use huren_proto::pb;

use crate::keys::KeyRing;
use crate::service::NodeError;
use crate::store::{PurgeOutcome, PurgePlan, Store};

/// What one retention run (or sunset) deleted, for watchers and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Node clock at the run.
    pub time: i64,
    pub reason: &'static str,
    pub deleted: BTreeMap<&'static str, u64>,
}

/// The plan the retention policy calls for at `now`.
pub fn retention_plan(trust: &TrustList, now: i64) -> PurgePlan {
    let r = trust.retention();
    PurgePlan {
        statuses_changed_before: Some(now - r.status_max_age),
        tokens_expired_before: Some(now),
        log_entries_before: Some(now - r.audit_max_age),
        everything: false,
    }
}

fn counts(map: &BTreeMap<&'static str, u64>) -> Vec<pb::DeletedCount> {
    map.iter().map(|(k, v)| pb::DeletedCount { kind: k.to_string(), count: *v }).collect()
}

/// Signs a receipt for a purge that has happened.
#[allow(clippy::too_many_arguments)]
pub fn receipt(
    store: &Store,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    reason: &str,
    outcome: &PurgeOutcome,
    final_tree_head: pb::SignedTreeHead,
    now: i64,
) -> Result<pb::SignedDeletionReceipt, NodeError> {
    let key = keys.signing_key(trust, province, now).ok_or_else(|| {
        NodeError::Unavailable(format!("no active attestation key for province {province}; cannot sign a receipt"))
    })?;
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
    }))
}

/// The log's tree head, signed.
pub fn tree_head(
    store: &Store,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    now: i64,
) -> Result<pb::SignedTreeHead, NodeError> {
    let (size, root) = store.log_head()?;
    let key = keys
        .signing_key(trust, province, now)
        .ok_or_else(|| NodeError::Unavailable(format!("no active attestation key for province {province}")))?;
    Ok(key.sign_tree_head(&pb::TreeHead {
        province: province.to_string(),
        tree_size: size,
        root_hash: root.to_vec(),
        timestamp: now,
    }))
}

/// Purges per `plan` and returns a signed receipt (`reason`: "manual", "sunset", …).
#[allow(clippy::too_many_arguments)]
pub fn purge_with_receipt(
    store: &Store,
    keys: &KeyRing,
    trust: &TrustList,
    province: &ProvinceCode,
    plan: &PurgePlan,
    reason: &str,
    now: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<pb::SignedDeletionReceipt, NodeError> {
    let head = tree_head(store, keys, trust, province, now)?;
    let outcome = store.purge(plan, progress)?;
    receipt(store, keys, trust, province, reason, &outcome, head, now)
}
