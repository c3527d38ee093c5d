//! RFC 9162 section 2.1.1: the Merkle Tree Hash (MTH) of a list of leaf hashes.

use crate::hash::{empty_root, node_hash};
use crate::{Hash, LeafSource, ProofError};

/// The largest power of two strictly smaller than `n` (`n >= 2`): where RFC 9162 splits a tree
/// of `n` leaves into `D[0:k]` and `D[k:n]`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "a tree of {n} leaves is not split");
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of `leaves` (already leaf-hashed): [`empty_root`] for no leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        empty_root()
    } else {
        slice_root(leaves)
    }
}

/// MTH of a non-empty slice.
fn slice_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [only] => *only,
        _ => {
            // The split point is below the slice length, which is a usize.
            let k = split_point(leaves.len() as u64) as usize;
            node_hash(&slice_root(&leaves[..k]), &slice_root(&leaves[k..]))
        }
    }
}

/// The Merkle Tree Hash of all the leaves of `source`: [`empty_root`] for none.
pub fn root_of<S: LeafSource + ?Sized>(source: &S) -> Result<Hash, ProofError> {
    match source.leaf_count() {
        0 => Ok(empty_root()),
        size => subtree_root(source, 0, size),
    }
}

/// `MTH(D[start:end])` for `start < end <= source.leaf_count()`, reading each leaf once.
pub(crate) fn subtree_root<S: LeafSource + ?Sized>(source: &S, start: u64, end: u64) -> Result<Hash, ProofError> {
    debug_assert!(start < end, "empty range {start}..{end}");
    let n = end - start;
    if n == 1 {
        return source.leaf_hash(start);
    }
    let k = split_point(n);
    Ok(node_hash(&subtree_root(source, start, start + k)?, &subtree_root(source, start + k, end)?))
}

#[cfg(test)]
mod tests {
    use super::split_point;

    #[test]
    fn split_point_is_the_largest_power_of_two_below_n() {
        for n in 2..2000u64 {
            let k = split_point(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "n={n} k={k}");
        }
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }
}
