//! RFC 9162 section 2.1.3: Merkle inclusion proofs (audit paths).

use std::ops::Range;

use crate::hash::node_hash;
use crate::tree::{split_point, subtree_root};
use crate::{Hash, LeafSource, ProofError};

/// The inclusion proof `PATH(index, D[n])` of leaf `index` in the tree of `leaves`
/// (RFC 9162 section 2.1.3.1), ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_from(index, leaves)
}

/// [`inclusion_proof`] over the `source.leaf_count()` leaves of a [`LeafSource`].
///
/// Reads every leaf but the one proven once: O(n) hashing, O(log n) memory and recursion depth.
/// A log that stores its interior hashes answers in O(log n) with
/// [`inclusion_proof_from_nodes`](crate::inclusion_proof_from_nodes).
pub fn inclusion_proof_from<S: LeafSource + ?Sized>(index: u64, source: &S) -> Result<Vec<Hash>, ProofError> {
    inclusion_ranges(index, source.leaf_count())?.into_iter().map(|r| subtree_root(source, r.start, r.end)).collect()
}

/// The ranges of leaves whose Merkle Tree Hashes make up `PATH(index, D[size])`, in proof order.
pub(crate) fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<Range<u64>>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut ranges = Vec::with_capacity(inclusion_proof_len(index, size));
    path(index, 0, size, &mut ranges);
    Ok(ranges)
}

/// Appends the ranges of `PATH(m, D[start:end])` to `out`; `m` is relative to `start`, and
/// `m < end - start`.
fn path(m: u64, start: u64, end: u64, out: &mut Vec<Range<u64>>) {
    let n = end - start;
    if n == 1 {
        // PATH(0, {d(0)}) = {}
        return;
    }
    let k = split_point(n);
    if m < k {
        // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
        path(m, start, start + k, out);
        out.push(start + k..end);
    } else {
        // PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
        path(m - k, start + k, end, out);
        out.push(start..start + k);
    }
}

/// Right-shifts `fnode` and `snode` equally "until either LSB(fn) is set or fn is 0"
/// (RFC 9162 sections 2.1.3.2 and 2.1.4.2).
pub(crate) fn shift_until_odd_or_zero(fnode: &mut u64, snode: &mut u64) {
    while *fnode & 1 == 0 && *fnode != 0 {
        *fnode >>= 1;
        *snode >>= 1;
    }
}

/// How many hashes the verifier of RFC 9162 section 2.1.3.2 consumes for leaf `index` of a tree of
/// `size` leaves (`index < size`): its loop run with the hashing left out.
pub(crate) fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut fnode, mut snode) = (index, size - 1);
    let mut len = 0;
    while snode != 0 {
        if fnode & 1 == 1 || fnode == snode {
            shift_until_odd_or_zero(&mut fnode, &mut snode);
        }
        fnode >>= 1;
        snode >>= 1;
        len += 1;
    }
    len
}

/// Checks that `proof` proves `leaf` (a leaf hash) is leaf `index` of the tree of `tree_size` leaves
/// whose root is `root`, with the algorithm of RFC 9162 section 2.1.3.2.
///
/// Errors: [`ProofError::IndexOutOfRange`] when `index >= tree_size` (so nothing verifies against
/// the empty tree), [`ProofError::WrongProofLength`] when the proof has extra or missing hashes,
/// [`ProofError::RootMismatch`] when the recomputed root differs.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let wrong_length =
        || ProofError::WrongProofLength { expected: inclusion_proof_len(index, tree_size), actual: proof.len() };
    // 1. leaf_index >= tree_size fails.
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, size: tree_size });
    }
    // 2. fn = leaf_index, sn = tree_size - 1.
    let (mut fnode, mut snode) = (index, tree_size - 1);
    // 3. r = hash.
    let mut r = *leaf;
    // 4. For each p in inclusion_path:
    for p in proof {
        // a. sn == 0 here means the proof is too long.
        if snode == 0 {
            return Err(wrong_length());
        }
        // b.
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                shift_until_odd_or_zero(&mut fnode, &mut snode);
            }
        } else {
            r = node_hash(&r, p);
        }
        // c.
        fnode >>= 1;
        snode >>= 1;
    }
    // 5. sn must be 0 (else the proof is too short) and r must be the root.
    if snode != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inclusion_proof_len;

    /// The closed form used by other implementations (transparency-dev/merkle): the levels below
    /// where the paths to `index` and to the last leaf part, plus one per set bit above them.
    fn closed_form(index: u64, size: u64) -> usize {
        let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
        let border = (index.checked_shr(inner).unwrap_or(0)).count_ones();
        (inner + border) as usize
    }

    #[test]
    fn proof_length_matches_the_closed_form() {
        for size in 1..=300u64 {
            for index in 0..size {
                assert_eq!(inclusion_proof_len(index, size), closed_form(index, size), "index={index} size={size}");
            }
        }
        for (index, size) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 40, (1 << 40) + 1)] {
            assert_eq!(inclusion_proof_len(index, size), closed_form(index, size), "index={index} size={size}");
        }
    }
}
