//! RFC 9162 section 2.1.4: Merkle consistency proofs between two tree sizes.
//!
//! Sizes: RFC 9162 defines proofs for `0 < old_size < new_size`. This crate also answers
//! `old_size == new_size` (the proof is empty and the two roots must be equal, which holds for
//! two empty trees too), refuses `old_size > new_size` with [`ProofError::OldSizeLargerThanNew`],
//! and refuses `0 == old_size < new_size` with [`ProofError::EmptyOldTree`], both when generating
//! and when verifying: the empty tree is trivially a prefix of every tree, so there is nothing
//! for a proof to show, and accepting one would let an unchecked "old root" through.

use std::ops::Range;

use crate::hash::node_hash;
use crate::inclusion::shift_until_odd_or_zero;
use crate::tree::{split_point, subtree_root};
use crate::{Hash, LeafSource, ProofError};

/// The consistency proof `PROOF(old_size, D[n])` between the tree of the first `old_size` leaves
/// and the tree of all `leaves` (RFC 9162 section 2.1.4.1). See the module notes on sizes.
pub fn consistency_proof(old_size: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_from(old_size, leaves)
}

/// [`consistency_proof`] over the `source.leaf_count()` leaves of a [`LeafSource`].
///
/// O(n) hashing, O(log n) memory and recursion depth. A log that stores its interior hashes
/// answers in O(log n) with [`consistency_proof_from_nodes`](crate::consistency_proof_from_nodes).
pub fn consistency_proof_from<S: LeafSource + ?Sized>(old_size: u64, source: &S) -> Result<Vec<Hash>, ProofError> {
    consistency_ranges(old_size, source.leaf_count())?
        .into_iter()
        .map(|r| subtree_root(source, r.start, r.end))
        .collect()
}

/// The ranges of leaves whose Merkle Tree Hashes make up `PROOF(old_size, D[new_size])`, in
/// proof order (none when the sizes are equal).
pub(crate) fn consistency_ranges(old_size: u64, new_size: u64) -> Result<Vec<Range<u64>>, ProofError> {
    check_sizes(old_size, new_size)?;
    let mut ranges = Vec::new();
    if old_size < new_size {
        // PROOF(m, D[n]) = SUBPROOF(m, D[n], true)
        subproof(old_size, 0, new_size, true, &mut ranges);
    }
    Ok(ranges)
}

/// The size rules shared by generation and verification (see the module notes).
fn check_sizes(old_size: u64, new_size: u64) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeLargerThanNew { old_size, new_size });
    }
    if old_size == 0 && new_size != 0 {
        return Err(ProofError::EmptyOldTree);
    }
    Ok(())
}

/// Appends the ranges of `SUBPROOF(m, D[start:end], b)` to `out`, for `0 < m <= end - start`.
fn subproof(m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Range<u64>>) {
    let n = end - start;
    if m == n {
        // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
        if !b {
            out.push(start..end);
        }
        return;
    }
    // m < n, so n >= 2.
    let k = split_point(n);
    if m <= k {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        subproof(m, start, start + k, b, out);
        out.push(start + k..end);
    } else {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        subproof(m - k, start + k, end, false, out);
        out.push(start..start + k);
    }
}

/// How many hashes the verifier of RFC 9162 section 2.1.4.2 consumes for `0 < old_size < new_size`:
/// its loop run with the hashing left out, plus the first element unless `old_size` is a power of two.
pub(crate) fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut len = usize::from(!old_size.is_power_of_two());
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

/// Checks that `proof` shows the tree of `old_size` leaves with root `old_root` is a prefix of the
/// tree of `new_size` leaves with root `new_root`, with the algorithm of RFC 9162 section 2.1.4.2.
///
/// `old_size == new_size` needs an empty proof and `old_root == new_root`; `old_size > new_size`
/// and `0 == old_size < new_size` are errors (see the module notes). Otherwise the errors are
/// [`ProofError::WrongProofLength`] for extra or missing hashes, [`ProofError::OldRootMismatch`]
/// and [`ProofError::RootMismatch`] when a recomputed root differs.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_sizes(old_size, new_size)?;
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength { expected: 0, actual: proof.len() });
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    // Now 0 < old_size < new_size.
    let wrong_length =
        || ProofError::WrongProofLength { expected: consistency_proof_len(old_size, new_size), actual: proof.len() };
    // 1. An empty consistency_path fails.
    let Some((head, tail)) = proof.split_first() else {
        return Err(wrong_length());
    };
    // 2. If first is an exact power of 2, prepend first_hash to consistency_path.
    let (seed, rest) = if old_size.is_power_of_two() { (old_root, proof) } else { (head, tail) };
    // 3. fn = first - 1, sn = second - 1.
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    // 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5. fr = sr = the first value of consistency_path.
    let (mut fr, mut sr) = (*seed, *seed);
    // 6. For each subsequent value c:
    for c in rest {
        // sn == 0 here means the proof is too long.
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                shift_until_odd_or_zero(&mut fnode, &mut snode);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // 7. sn must be 0 (else the proof is too short), fr the old root and sr the new root.
    if snode != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::consistency_proof_len;

    /// The closed form used by transparency-dev/merkle: the inclusion-proof shape of leaf
    /// `old_size - 1`, less the levels inside the old tree's last full subtree, plus the seed.
    fn closed_form(old_size: u64, new_size: u64) -> usize {
        let index = old_size - 1;
        let inner = u64::BITS - (index ^ (new_size - 1)).leading_zeros();
        let border = index.checked_shr(inner).unwrap_or(0).count_ones();
        let shift = old_size.trailing_zeros();
        let seed = u32::from(!old_size.is_power_of_two());
        (inner - shift + border + seed) as usize
    }

    #[test]
    fn proof_length_matches_the_closed_form() {
        for new_size in 2..=200u64 {
            for old_size in 1..new_size {
                assert_eq!(
                    consistency_proof_len(old_size, new_size),
                    closed_form(old_size, new_size),
                    "old={old_size} new={new_size}"
                );
            }
        }
        for (old_size, new_size) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 40, (1 << 40) + 3)] {
            assert_eq!(consistency_proof_len(old_size, new_size), closed_form(old_size, new_size));
        }
    }
}
