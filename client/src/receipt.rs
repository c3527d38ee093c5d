//! Deletion receipts: what a node signs when it purges subject data, and the checks an
//! auditor runs on one (`huren audit verify-receipt`).

use std::collections::BTreeMap;

use huren_pki::trust::AttestationError;
use huren_pki::TrustList;
use huren_proto::pb;
use huren_translog::{Hash, ProofError};
use serde::Serialize;

use crate::audit::{hashes, root, AuditError};

/// Why a deletion receipt was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt's signature, key or dates do not hold, or a sunset receipt admits to
    /// records left (checked by the trust list, as the gateway checks receipts).
    #[error("deletion receipt refused: {0}")]
    Refused(AttestationError),
    /// The receipt carries no final tree head.
    #[error("receipt carries no final tree head")]
    NoFinalTreeHead,
    /// The final tree head's signature does not verify.
    #[error("final tree head: {0}")]
    FinalTreeHead(AttestationError),
    /// The saved tree head given to compare with does not verify.
    #[error("saved tree head: {0}")]
    SavedTreeHead(AttestationError),
    /// A consistency proof in the receipt starts from an impossible size.
    #[error("receipt carries a consistency proof from size {old} to size {new}")]
    ProofSize {
        /// The proof's old size.
        old: u64,
        /// The final log's size.
        new: u64,
    },
    /// The saved tree head is of another province.
    #[error("saved tree head is for province {saved}, the receipt for {receipt}")]
    OtherProvince {
        /// The saved head's province.
        saved: String,
        /// The receipt's province.
        receipt: String,
    },
    /// The final log is smaller than a head seen earlier.
    #[error("the receipt's final log ({final_size} entries) is behind a head seen earlier ({saved_size})")]
    Behind {
        /// Size of the receipt's final log.
        final_size: u64,
        /// Size of the saved head.
        saved_size: u64,
    },
    /// The final log and the saved head have one size and different roots.
    #[error("the receipt's final log differs from the head seen earlier at the same size")]
    Forked,
    /// A saved head of size 0 whose root is not the empty tree's.
    #[error("the saved tree head of the empty log has a wrong root")]
    EmptyRoot,
    /// The receipt proves no consistency from the saved head's size.
    #[error(
        "the receipt carries no consistency proof from tree size {saved_size} (its proofs are from {available:?}): \
         consistency with the saved head cannot be checked"
    )]
    NoProofFrom {
        /// Size of the saved head.
        saved_size: u64,
        /// The sizes the receipt's proofs start from.
        available: Vec<u64>,
    },
    /// The receipt's consistency proof from the saved head's size does not verify.
    #[error(
        "the receipt's final log ({final_size} entries) is not an append-only extension of the saved head \
         ({saved_size}): {error}"
    )]
    NotAnExtension {
        /// Size of the receipt's final log.
        final_size: u64,
        /// Size of the saved head.
        saved_size: u64,
        /// What the proof check found.
        error: ProofError,
    },
    /// A malformed hash in a proof or a tree head.
    #[error(transparent)]
    Log(#[from] AuditError),
}

/// What `verify-receipt` found: the receipt's content once every check passed.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedReceipt {
    /// The province whose node signed the receipt.
    pub province: String,
    /// When the purge ran, Unix seconds.
    pub time: i64,
    /// Why (`manual`, `retention`, `sunset`).
    pub reason: String,
    /// Records deleted, by kind.
    pub deleted: BTreeMap<String, u64>,
    /// Records left, by kind.
    pub remaining: BTreeMap<String, u64>,
    /// Earliest change among the deleted records, Unix seconds.
    pub range_start: i64,
    /// Latest change among the deleted records, Unix seconds.
    pub range_end: i64,
    /// Commitment to the purged set, hex.
    pub deleted_root: String,
    /// Size of the log after the purge.
    pub final_tree_size: u64,
    /// Root of the log after the purge, hex.
    pub final_root: String,
    /// Earlier tree sizes the receipt proves its final log consistent with.
    pub consistency_from: Vec<u64>,
    /// Size of the saved tree head the final log was checked against, if one was given.
    pub consistent_with_saved_head: Option<u64>,
}

/// Checks a deletion receipt: signature by a non-revoked key of its province in the trust
/// list, dated within that key's validity window; the final tree head's signature (and
/// its key's window); for a sunset, that nothing remains; every consistency proof in it
/// well-formed; and — given a tree head saved earlier — that the final log is an
/// append-only extension of it (RFC 9162 consistency proof carried in the receipt, for
/// exactly the saved size).
pub fn verify_receipt(
    trust: &TrustList,
    signed: &pb::SignedDeletionReceipt,
    saved_head: Option<&pb::SignedTreeHead>,
) -> Result<CheckedReceipt, ReceiptError> {
    // Signature, key (listed, not revoked, valid at the receipt's and the head's own
    // dates) and, for a sunset, that nothing remains: checked by the trust list, exactly
    // as the gateway checks receipts handed in to it.
    let receipt = trust.verify_receipt(signed).map_err(ReceiptError::Refused)?;
    let signed_head = receipt.final_tree_head.as_ref().ok_or(ReceiptError::NoFinalTreeHead)?;
    let head = trust.verify_tree_head(signed_head).map_err(ReceiptError::FinalTreeHead)?;
    let final_root = root(&head)?;
    for proof in &receipt.consistency {
        if proof.old_size == 0 || proof.old_size >= head.tree_size {
            return Err(ReceiptError::ProofSize { old: proof.old_size, new: head.tree_size });
        }
        hashes(&proof.hashes)?;
    }
    let consistent_with_saved_head = match saved_head {
        Some(saved) => Some(check_saved_head(trust, &receipt, (head.tree_size, final_root), saved)?),
        None => None,
    };
    let map = |c: &[pb::DeletedCount]| c.iter().map(|c| (c.kind.clone(), c.count)).collect();
    Ok(CheckedReceipt {
        province: receipt.province.clone(),
        time: receipt.time,
        reason: receipt.reason.clone(),
        deleted: map(&receipt.counts),
        remaining: map(&receipt.remaining),
        range_start: receipt.range_start,
        range_end: receipt.range_end,
        deleted_root: data_encoding::HEXLOWER.encode(&receipt.deleted_root),
        final_tree_size: head.tree_size,
        final_root: data_encoding::HEXLOWER.encode(&head.root_hash),
        consistency_from: receipt.consistency.iter().map(|c| c.old_size).collect(),
        consistent_with_saved_head,
    })
}

/// Checks that the receipt's final log (its size and root) is an append-only extension of
/// a head saved earlier; returns the saved head's size.
fn check_saved_head(
    trust: &TrustList,
    receipt: &pb::DeletionReceipt,
    (final_size, final_root): (u64, Hash),
    saved: &pb::SignedTreeHead,
) -> Result<u64, ReceiptError> {
    let saved = trust.verify_tree_head(saved).map_err(ReceiptError::SavedTreeHead)?;
    if saved.province != receipt.province {
        return Err(ReceiptError::OtherProvince { saved: saved.province, receipt: receipt.province.clone() });
    }
    let (saved_root, saved_size) = (root(&saved)?, saved.tree_size);
    if saved_size > final_size {
        return Err(ReceiptError::Behind { final_size, saved_size });
    }
    if saved_size == final_size {
        if saved_root != final_root {
            return Err(ReceiptError::Forked);
        }
    } else if saved_size == 0 {
        if saved_root != huren_translog::empty_root() {
            return Err(ReceiptError::EmptyRoot);
        }
    } else {
        let proof =
            receipt.consistency.iter().find(|c| c.old_size == saved_size).ok_or_else(|| ReceiptError::NoProofFrom {
                saved_size,
                available: receipt.consistency.iter().map(|c| c.old_size).collect(),
            })?;
        huren_translog::verify_consistency(saved_size, final_size, &saved_root, &final_root, &hashes(&proof.hashes)?)
            .map_err(|error| ReceiptError::NotAnExtension { final_size, saved_size, error })?;
    }
    Ok(saved_size)
}
