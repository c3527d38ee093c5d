//! Proofs from stored subtree hashes, as Go's sumdb `tlog` serves them: a log that keeps the
//! hash of every complete subtree ([`NodeId`]), written once when its last leaf is appended
//! (see [`Frontier::push_with`](crate::Frontier::push_with)), answers an inclusion proof, a
//! consistency proof or an old root with O(log n) stored hashes, asked of a [`NodeSource`] in
//! one batch, instead of rehashing O(n) leaves.
//!
//! Every element of an RFC 9162 proof is the Merkle Tree Hash of a range of leaves `D[a:b]`
//! whose start is a multiple of the smallest power of two not below its length (the recursions
//! of sections 2.1.3.1 and 2.1.4.1 only ever split a range at its largest power of two). Such a
//! range of `2^p + 2^q + …` leaves (`p > q > …`) is a run of complete subtrees of `2^p`, `2^q`, …
//! leaves, and its hash is theirs folded from the right, `HASH(0x01 || T_p || HASH(0x01 || T_q
//! || …))`, exactly as a [`Frontier`](crate::Frontier) folds its subtree roots.

use std::collections::HashMap;
use std::ops::Range;

use crate::consistency::consistency_ranges;
use crate::hash::{empty_root, node_hash};
use crate::inclusion::inclusion_ranges;
use crate::tree::subtree_root;
use crate::{Hash, LeafSource, ProofError};

/// A complete subtree: the `2^level` leaves `[index * 2^level, (index + 1) * 2^level)`.
/// Level 0 is the leaf `index` itself; its hash is the leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves (0 for a leaf); below 64.
    pub level: u8,
    /// Position among the subtrees of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The subtree `index` of height `level`.
    pub fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The leaves the subtree covers.
    pub fn leaves(&self) -> Range<u64> {
        let start = self.index << self.level;
        start..start + (1 << self.level)
    }
}

/// Hashes of complete subtrees of one log (leaf hashes at level 0), read many at a time.
///
/// Proof generation asks once per proof, only for subtrees inside the tree being proven.
pub trait NodeSource {
    /// The hashes of `nodes`, in the order asked for. A node the source does not hold (its
    /// leaves were purged, say) is [`ProofError::Source`], as is a storage failure.
    fn node_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ProofError>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    fn node_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        (**self).node_hashes(nodes)
    }
}

/// Subtree hashes held in memory (a test, a cache); a node it lacks is [`ProofError::Source`].
impl NodeSource for HashMap<NodeId, Hash> {
    fn node_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        nodes
            .iter()
            .map(|n| self.get(n).copied().ok_or_else(|| ProofError::Source(format!("no hash of subtree {n:?}"))))
            .collect()
    }
}

/// Subtree hashes computed from the leaves of a [`LeafSource`] (O(n), for checking a store's
/// stored hashes or serving a log that keeps only leaves).
#[derive(Debug, Clone, Copy)]
pub struct LeafNodes<S>(pub S);

impl<S: LeafSource> NodeSource for LeafNodes<S> {
    fn node_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        nodes
            .iter()
            .map(|n| {
                let leaves = n.leaves();
                if leaves.end > self.0.leaf_count() {
                    return Err(ProofError::IndexOutOfRange { index: leaves.end - 1, size: self.0.leaf_count() });
                }
                subtree_root(&self.0, leaves.start, leaves.end)
            })
            .collect()
    }
}

/// The complete subtrees that make up `D[start:end]`, largest (leftmost) first, for a range
/// shaped as the module notes describe.
pub fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::with_capacity((end - start).count_ones() as usize);
    let mut at = start;
    for level in (0..u64::BITS).rev() {
        let width = 1u64 << level;
        if (end - start) & width != 0 {
            debug_assert_eq!(at % width, 0, "D[{start}:{end}] is not a run of aligned subtrees");
            out.push(NodeId::new(level as u8, at >> level));
            at += width;
        }
    }
    out
}

/// The hashes of `ranges` (each shaped as the module notes describe), from one batch read.
fn hash_ranges<S: NodeSource + ?Sized>(ranges: &[Range<u64>], source: &S) -> Result<Vec<Hash>, ProofError> {
    let pieces: Vec<Vec<NodeId>> = ranges.iter().map(|r| range_nodes(r.start, r.end)).collect();
    let nodes: Vec<NodeId> = pieces.iter().flatten().copied().collect();
    let hashes = source.node_hashes(&nodes)?;
    if hashes.len() != nodes.len() {
        return Err(ProofError::Source(format!("asked for {} subtree hashes, got {}", nodes.len(), hashes.len())));
    }
    let mut rest = hashes.as_slice();
    Ok(pieces
        .iter()
        .map(|p| {
            let (these, tail) = rest.split_at(p.len());
            rest = tail;
            fold(these)
        })
        .collect())
}

/// A run of adjacent complete subtrees, largest first, hashed into the range they cover.
fn fold(run: &[Hash]) -> Hash {
    let mut hashes = run.iter().rev();
    match hashes.next() {
        None => empty_root(),
        Some(smallest) => hashes.fold(*smallest, |right, left| node_hash(left, &right)),
    }
}

/// [`inclusion_proof`](crate::inclusion_proof) of leaf `index` in the tree of `size` leaves,
/// from at most 2 log2(size) stored subtree hashes read in one batch.
pub fn inclusion_proof_from_nodes<S: NodeSource + ?Sized>(
    index: u64,
    size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError> {
    hash_ranges(&inclusion_ranges(index, size)?, source)
}

/// [`consistency_proof`](crate::consistency_proof) between the trees of `old_size` and
/// `new_size` leaves, from O(log new_size) stored subtree hashes read in one batch.
pub fn consistency_proof_from_nodes<S: NodeSource + ?Sized>(
    old_size: u64,
    new_size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError> {
    hash_ranges(&consistency_ranges(old_size, new_size)?, source)
}

/// The Merkle Tree Hash of the first `size` leaves ([`empty_root`] for none), from one
/// stored subtree hash per set bit of `size`.
pub fn root_from_nodes<S: NodeSource + ?Sized>(size: u64, source: &S) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    let nodes = range_nodes(0, size);
    let hashes = source.node_hashes(&nodes)?;
    if hashes.len() != nodes.len() {
        return Err(ProofError::Source(format!("asked for {} subtree hashes, got {}", nodes.len(), hashes.len())));
    }
    Ok(fold(&hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_nodes_cover_the_range_with_aligned_subtrees_largest_first() {
        assert_eq!(range_nodes(0, 0), []);
        assert_eq!(range_nodes(0, 1), [NodeId::new(0, 0)]);
        assert_eq!(range_nodes(0, 8), [NodeId::new(3, 0)]);
        assert_eq!(range_nodes(0, 13), [NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]);
        assert_eq!(range_nodes(8, 14), [NodeId::new(2, 2), NodeId::new(1, 6)]);
        for size in 1..200u64 {
            let nodes = range_nodes(0, size);
            let mut at = 0;
            for n in &nodes {
                assert_eq!(n.leaves().start, at, "size {size}");
                at = n.leaves().end;
            }
            assert_eq!(at, size);
            assert!(nodes.windows(2).all(|w| w[0].level > w[1].level));
        }
        assert_eq!(NodeId::new(63, 0).leaves(), 0..1 << 63);
    }
}
