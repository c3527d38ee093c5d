//! Property tests: random trees up to 300 leaves, checked against the reference in `common`, and
//! every proof rejected once anything about it is altered.

mod common;

use common::{leaves, ref_mth, ref_path, ref_prefix_roots, ref_proof};
use huren_translog::{
    consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion, Frontier, Hash, ProofError,
};
use proptest::prelude::*;

const MAX_LEAVES: u64 = 300;

/// Flips bit `bit % 256` of `hash`.
fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

fn is_wrong_length(result: Result<(), ProofError>) -> bool {
    matches!(result, Err(ProofError::WrongProofLength { .. }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inclusion_proofs_verify_and_reject_any_alteration(
        (n, index) in (1..=MAX_LEAVES).prop_flat_map(|n| (Just(n), 0..n)),
        seed in any::<u64>(),
        bit in 0usize..256,
        other in any::<u64>(),
    ) {
        let tree = leaves(seed, n);
        let r = root(&tree);
        prop_assert_eq!(r, ref_mth(&tree));
        let leaf = tree[index as usize];
        let proof = inclusion_proof(index, &tree).unwrap();
        prop_assert_eq!(&proof, &ref_path(index as usize, &tree));
        prop_assert_eq!(verify_inclusion(&leaf, index, n, &proof, &r), Ok(()));

        // Any proof element altered.
        for i in 0..proof.len() {
            let mut altered = proof.clone();
            altered[i] = flip(&altered[i], bit);
            prop_assert_eq!(verify_inclusion(&leaf, index, n, &altered, &r), Err(ProofError::RootMismatch));
        }
        // The leaf or the root altered.
        prop_assert_eq!(verify_inclusion(&flip(&leaf, bit), index, n, &proof, &r), Err(ProofError::RootMismatch));
        prop_assert_eq!(verify_inclusion(&leaf, index, n, &proof, &flip(&r, bit)), Err(ProofError::RootMismatch));
        // Another leaf of the tree, with its own index, does not match this proof.
        let j = other % n;
        if j != index {
            prop_assert!(verify_inclusion(&tree[j as usize], j, n, &proof, &r).is_err());
        }
        // The index altered.
        let mut indices = vec![index ^ 1, index ^ 2, index.wrapping_sub(1), index + 1, j];
        indices.retain(|&i| i != index && i < n);
        for i in indices {
            prop_assert!(verify_inclusion(&leaf, i, n, &proof, &r).is_err(), "index {} instead of {}", i, index);
        }
        prop_assert_eq!(
            verify_inclusion(&leaf, n, n, &proof, &r),
            Err(ProofError::IndexOutOfRange { index: n, size: n })
        );

        // Truncated, extended, prepended or with an element inserted.
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(is_wrong_length(verify_inclusion(&leaf, index, n, shorter, &r)));
        }
        for extra in [r, leaf, [0; 32]] {
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(is_wrong_length(verify_inclusion(&leaf, index, n, &longer, &r)));
            let mut prepended = vec![extra];
            prepended.extend_from_slice(&proof);
            prop_assert!(is_wrong_length(verify_inclusion(&leaf, index, n, &prepended, &r)));
        }
        if !proof.is_empty() {
            let mut inserted = proof.clone();
            inserted.insert(1, flip(&r, bit));
            prop_assert!(is_wrong_length(verify_inclusion(&leaf, index, n, &inserted, &r)));
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_any_alteration(
        (n, m) in (1..=MAX_LEAVES).prop_flat_map(|n| (Just(n), 1..=n)),
        seed in any::<u64>(),
        bit in 0usize..256,
    ) {
        let tree = leaves(seed, n);
        let (old_root, new_root) = (root(&tree[..m as usize]), root(&tree));
        let proof = consistency_proof(m, &tree).unwrap();
        if m == n {
            prop_assert!(proof.is_empty());
        } else {
            prop_assert_eq!(&proof, &ref_proof(m as usize, &tree));
        }
        prop_assert_eq!(verify_consistency(m, n, &old_root, &new_root, &proof), Ok(()));

        // Any proof element altered.
        for i in 0..proof.len() {
            let mut altered = proof.clone();
            altered[i] = flip(&altered[i], bit);
            prop_assert!(verify_consistency(m, n, &old_root, &new_root, &altered).is_err(), "element {}", i);
        }
        // Either root altered, or the two swapped.
        prop_assert!(verify_consistency(m, n, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(m, n, &old_root, &flip(&new_root, bit), &proof).is_err());
        if m != n {
            prop_assert!(verify_consistency(m, n, &new_root, &old_root, &proof).is_err());
        }
        // The old size altered.
        for other in [m - 1, m + 1, m ^ 1, m ^ 2] {
            if other != m && other <= n {
                prop_assert!(
                    verify_consistency(other, n, &old_root, &new_root, &proof).is_err(),
                    "old size {} instead of {}", other, m
                );
            }
        }
        prop_assert_eq!(
            verify_consistency(n + 1, n, &old_root, &new_root, &proof),
            Err(ProofError::OldSizeLargerThanNew { old_size: n + 1, new_size: n })
        );

        // Truncated, extended or prepended.
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(is_wrong_length(verify_consistency(m, n, &old_root, &new_root, shorter)));
        }
        for extra in [old_root, new_root, [0; 32]] {
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(is_wrong_length(verify_consistency(m, n, &old_root, &new_root, &longer)));
            let mut prepended = vec![extra];
            prepended.extend_from_slice(&proof);
            prop_assert!(is_wrong_length(verify_consistency(m, n, &old_root, &new_root, &prepended)));
        }
    }

    #[test]
    fn frontier_root_is_the_root_of_every_prefix_and_round_trips(
        n in 0..=MAX_LEAVES,
        seed in any::<u64>(),
        samples in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let tree = leaves(seed, n);
        // Every prefix root, computed independently in O(n log n) (root() of every prefix would
        // be O(n^2) hashing, too slow unoptimized; tests/edge_cases.rs does that for one tree).
        let prefix_roots = ref_prefix_roots(&tree);
        if let Some(last) = prefix_roots.last() {
            prop_assert_eq!(*last, ref_mth(&tree));
        }
        // The crate's root() of a few random prefixes agrees with that reference.
        for sample in samples {
            if n > 0 {
                let size = (sample % n) as usize + 1;
                prop_assert_eq!(root(&tree[..size]), prefix_roots[size - 1]);
            }
        }
        let mut frontier = Frontier::new();
        prop_assert_eq!(frontier.root(), root(&[]));
        for (i, leaf) in tree.iter().enumerate() {
            prop_assert_eq!(frontier.push(*leaf), i as u64);
            prop_assert_eq!(frontier.root(), prefix_roots[i], "prefix of {} leaves", i + 1);
            let bytes = frontier.to_bytes();
            let restored = Frontier::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&restored, &frontier);
            prop_assert_eq!(restored.to_bytes(), bytes);
        }
        prop_assert_eq!(frontier.size(), n);
        prop_assert_eq!(&Frontier::from_source(&tree).unwrap(), &frontier);

        // A restored frontier keeps growing like the original.
        let mut restored = Frontier::from_bytes(&frontier.to_bytes()).unwrap();
        let more = leaves(seed ^ 1, 5);
        let mut all = tree.clone();
        for leaf in more {
            frontier.push(leaf);
            restored.push(leaf);
            all.push(leaf);
        }
        prop_assert_eq!(&restored, &frontier);
        prop_assert_eq!(restored.root(), root(&all));
    }

    #[test]
    fn frontier_decoding_accepts_only_canonical_encodings(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(frontier) = Frontier::from_bytes(&bytes) {
            prop_assert_eq!(frontier.to_bytes(), bytes);
        }
    }

    #[test]
    fn frontier_decoding_rejects_truncated_or_extended_encodings(n in 0..=MAX_LEAVES, seed in any::<u64>(), cut in any::<usize>()) {
        let frontier: Frontier = leaves(seed, n).into_iter().collect();
        let bytes = frontier.to_bytes();
        let shorter = &bytes[..cut % bytes.len()];
        prop_assert!(matches!(Frontier::from_bytes(shorter), Err(ProofError::BadFrontierEncoding(_))));
        let mut longer = bytes.clone();
        longer.push((cut % 256) as u8);
        prop_assert!(matches!(Frontier::from_bytes(&longer), Err(ProofError::BadFrontierEncoding(_))));
    }
}
