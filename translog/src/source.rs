//! Where leaf hashes come from: a slice in memory, or anything else (a database table).

use crate::{Hash, ProofError};

/// Random access to the leaf hashes of a tree, in order.
///
/// The tree a source describes has [`leaf_count`](LeafSource::leaf_count) leaves; to serve proofs
/// for an older tree head, implement this over the first `tree_size` leaves only.
///
/// Proof generation asks only for indices below `leaf_count()`, each at most once per proof.
pub trait LeafSource {
    /// The number of leaves, i.e. the tree size.
    fn leaf_count(&self) -> u64;

    /// The hash of leaf `index` (`index < leaf_count()`); [`ProofError::Source`] is meant for
    /// storage failures.
    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError>;
}

impl LeafSource for [Hash] {
    fn leaf_count(&self) -> u64 {
        self.len() as u64
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.get(i))
            .copied()
            .ok_or(ProofError::IndexOutOfRange { index, size: self.leaf_count() })
    }
}

impl<const N: usize> LeafSource for [Hash; N] {
    fn leaf_count(&self) -> u64 {
        self.as_slice().leaf_count()
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        self.as_slice().leaf_hash(index)
    }
}

impl LeafSource for Vec<Hash> {
    fn leaf_count(&self) -> u64 {
        self.as_slice().leaf_count()
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        self.as_slice().leaf_hash(index)
    }
}

impl<S: LeafSource + ?Sized> LeafSource for &S {
    fn leaf_count(&self) -> u64 {
        (**self).leaf_count()
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        (**self).leaf_hash(index)
    }
}
