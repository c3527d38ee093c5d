//! Deterministic checks: exhaustive small trees against the reference, the size rules, errors,
//! leaf sources and the frontier encoding.

mod common;

use std::cell::Cell;

use common::{leaves, ref_mth, ref_path, ref_proof};
use huren_translog::{
    consistency_proof, consistency_proof_from, empty_root, inclusion_proof, inclusion_proof_from, leaf_hash, root,
    root_of, verify_consistency, verify_inclusion, Frontier, FrontierEncodingError, Hash, LeafSource, ProofError,
};

#[test]
fn every_proof_of_every_small_tree_matches_the_reference_and_verifies() {
    let all = leaves(7, 40);
    for n in 1..=all.len() {
        let tree = &all[..n];
        let tree_root = root(tree);
        assert_eq!(tree_root, ref_mth(tree), "root of size {n}");
        for m in 0..n {
            let proof = inclusion_proof(m as u64, tree).unwrap();
            assert_eq!(proof, ref_path(m, tree), "PATH({m}, D[{n}])");
            verify_inclusion(&tree[m], m as u64, n as u64, &proof, &tree_root).unwrap();
        }
        for m in 1..=n {
            let proof = consistency_proof(m as u64, tree).unwrap();
            let expected = if m == n { vec![] } else { ref_proof(m, tree) };
            assert_eq!(proof, expected, "PROOF({m}, D[{n}])");
            verify_consistency(m as u64, n as u64, &root(&tree[..m]), &tree_root, &proof).unwrap();
        }
    }
}

#[test]
fn nothing_is_included_in_the_empty_tree_or_past_the_end() {
    let tree = leaves(1, 5);
    let r = root(&tree);
    assert_eq!(inclusion_proof(0, &[]), Err(ProofError::IndexOutOfRange { index: 0, size: 0 }));
    assert_eq!(inclusion_proof(5, &tree), Err(ProofError::IndexOutOfRange { index: 5, size: 5 }));
    assert_eq!(inclusion_proof(u64::MAX, &tree), Err(ProofError::IndexOutOfRange { index: u64::MAX, size: 5 }));
    assert_eq!(
        verify_inclusion(&tree[0], 0, 0, &[], &empty_root()),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    let proof = inclusion_proof(4, &tree).unwrap();
    assert_eq!(verify_inclusion(&tree[4], 5, 5, &proof, &r), Err(ProofError::IndexOutOfRange { index: 5, size: 5 }));
}

#[test]
fn a_single_leaf_is_its_own_root_with_an_empty_proof() {
    let leaf = leaf_hash(b"data");
    assert_eq!(root(&[leaf]), leaf);
    assert_eq!(inclusion_proof(0, &[leaf]).unwrap(), Vec::<Hash>::new());
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &empty_root()), Err(ProofError::RootMismatch));
    assert_eq!(
        verify_inclusion(&leaf, 0, 1, &[leaf], &leaf),
        Err(ProofError::WrongProofLength { expected: 0, actual: 1 })
    );
}

#[test]
fn wrong_lengths_report_the_expected_length() {
    let tree = leaves(2, 13);
    let r = root(&tree);
    let proof = inclusion_proof(6, &tree).unwrap();
    assert_eq!(proof.len(), 4);
    assert_eq!(
        verify_inclusion(&tree[6], 6, 13, &proof[..3], &r),
        Err(ProofError::WrongProofLength { expected: 4, actual: 3 })
    );
    let mut longer = proof.clone();
    longer.push(r);
    assert_eq!(
        verify_inclusion(&tree[6], 6, 13, &longer, &r),
        Err(ProofError::WrongProofLength { expected: 4, actual: 5 })
    );

    let old = root(&tree[..6]);
    let proof = consistency_proof(6, &tree).unwrap();
    let expected = proof.len();
    assert_eq!(
        verify_consistency(6, 13, &old, &r, &proof[..expected - 1]),
        Err(ProofError::WrongProofLength { expected, actual: expected - 1 })
    );
    assert_eq!(verify_consistency(6, 13, &old, &r, &[]), Err(ProofError::WrongProofLength { expected, actual: 0 }));
    assert_eq!(
        verify_consistency(1, 2, &tree[0], &root(&tree[..2]), &[]),
        Err(ProofError::WrongProofLength { expected: 1, actual: 0 })
    );
}

#[test]
fn consistency_size_rules() {
    let tree = leaves(3, 5);
    let (r3, r5) = (root(&tree[..3]), root(&tree));
    // old > new
    assert_eq!(consistency_proof(6, &tree), Err(ProofError::OldSizeLargerThanNew { old_size: 6, new_size: 5 }));
    assert_eq!(
        verify_consistency(5, 3, &r5, &r3, &[]),
        Err(ProofError::OldSizeLargerThanNew { old_size: 5, new_size: 3 })
    );
    // 0 == old < new
    assert_eq!(consistency_proof(0, &tree), Err(ProofError::EmptyOldTree));
    assert_eq!(verify_consistency(0, 5, &empty_root(), &r5, &[]), Err(ProofError::EmptyOldTree));
    // old == new: empty proof, equal roots
    assert_eq!(consistency_proof(0, &[]), Ok(vec![]));
    assert_eq!(consistency_proof(5, &tree), Ok(vec![]));
    verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    verify_consistency(5, 5, &r5, &r5, &[]).unwrap();
    assert_eq!(verify_consistency(5, 5, &r5, &r3, &[]), Err(ProofError::RootMismatch));
    assert_eq!(verify_consistency(5, 5, &r5, &r5, &[r5]), Err(ProofError::WrongProofLength { expected: 0, actual: 1 }));
    // old and new roots are told apart
    let proof = consistency_proof(3, &tree).unwrap();
    verify_consistency(3, 5, &r3, &r5, &proof).unwrap();
    assert_eq!(verify_consistency(3, 5, &r5, &r5, &proof), Err(ProofError::OldRootMismatch));
    assert_eq!(verify_consistency(3, 5, &r3, &r3, &proof), Err(ProofError::RootMismatch));
}

#[test]
fn error_messages_are_lowercase_and_precise() {
    assert_eq!(
        ProofError::IndexOutOfRange { index: 9, size: 4 }.to_string(),
        "leaf index 9 is out of range for tree size 4"
    );
    assert_eq!(
        ProofError::WrongProofLength { expected: 3, actual: 4 }.to_string(),
        "wrong proof length: expected 3 hashes, got 4"
    );
    assert_eq!(
        ProofError::OldSizeLargerThanNew { old_size: 5, new_size: 3 }.to_string(),
        "old tree size 5 is larger than new tree size 3"
    );
    assert_eq!(
        ProofError::from(FrontierEncodingError::UnsupportedVersion { version: 7, expected: 1 }).to_string(),
        "bad frontier encoding: unsupported version 7 (expected 1)"
    );
    assert_eq!(ProofError::Source("disk on fire".into()).to_string(), "leaf source error: disk on fire");
    for err in [ProofError::RootMismatch, ProofError::OldRootMismatch, ProofError::EmptyOldTree] {
        let message = err.to_string();
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
    }
}

/// A stand-in for a database table of leaf hashes: counts reads and can fail at one index.
struct Table {
    rows: Vec<Hash>,
    broken_row: Option<u64>,
    reads: Cell<u64>,
}

impl LeafSource for Table {
    fn leaf_count(&self) -> u64 {
        self.rows.len() as u64
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        self.reads.set(self.reads.get() + 1);
        if self.broken_row == Some(index) {
            return Err(ProofError::Source(format!("row {index} is unreadable")));
        }
        self.rows.get(index as usize).copied().ok_or(ProofError::IndexOutOfRange { index, size: self.leaf_count() })
    }
}

#[test]
fn leaf_sources_give_the_same_answers_as_slices() {
    let rows = leaves(4, 77);
    let table = Table { rows: rows.clone(), broken_row: None, reads: Cell::new(0) };
    assert_eq!(root_of(&table).unwrap(), root(&rows));
    assert_eq!(table.reads.get(), 77, "a root reads each leaf once");
    table.reads.set(0);
    assert_eq!(inclusion_proof_from(30, &table).unwrap(), inclusion_proof(30, &rows).unwrap());
    assert_eq!(table.reads.get(), 76, "an inclusion proof reads every other leaf once");
    assert_eq!(consistency_proof_from(45, &table).unwrap(), consistency_proof(45, &rows).unwrap());
    assert_eq!(Frontier::from_source(&table).unwrap(), rows.iter().copied().collect::<Frontier>());

    // Vec, &Vec, arrays and references are sources too.
    assert_eq!(root_of(&rows).unwrap(), root(&rows));
    assert_eq!(root_of(&&rows).unwrap(), root(&rows));
    let array: [Hash; 3] = [rows[0], rows[1], rows[2]];
    assert_eq!(root_of(&array).unwrap(), root(&rows[..3]));
    assert_eq!(root_of(rows.as_slice()).unwrap(), root(&rows));
    assert_eq!(root_of(&Vec::<Hash>::new()).unwrap(), empty_root());
    assert_eq!(rows.as_slice().leaf_hash(77), Err(ProofError::IndexOutOfRange { index: 77, size: 77 }));
}

#[test]
fn leaf_source_errors_propagate() {
    let table = Table { rows: leaves(5, 20), broken_row: Some(17), reads: Cell::new(0) };
    let broken = ProofError::Source("row 17 is unreadable".into());
    assert_eq!(root_of(&table), Err(broken.clone()));
    assert_eq!(inclusion_proof_from(3, &table), Err(broken.clone()));
    assert_eq!(consistency_proof_from(5, &table), Err(broken.clone()));
    assert_eq!(Frontier::from_source(&table), Err(broken));
    // Proofs that do not need the broken row still work.
    assert!(inclusion_proof_from(17, &table).is_ok());
    assert!(consistency_proof_from(16, &table.rows[..17]).is_ok());
}

#[test]
fn frontier_root_is_root_of_every_prefix_and_keeps_one_subtree_root_per_set_bit() {
    let rows = leaves(6, 300);
    let mut frontier = Frontier::new();
    for (i, leaf) in rows.iter().enumerate() {
        assert_eq!(frontier.push(*leaf), i as u64);
        assert_eq!(frontier.size(), i as u64 + 1);
        assert_eq!(frontier.subtree_roots().len(), (i + 1).count_ones() as usize);
        assert_eq!(frontier.root(), root(&rows[..=i]), "prefix of {} leaves", i + 1);
    }
    let rows = &rows[..100];
    let frontier: Frontier = rows.iter().copied().collect();
    // 100 = 64 + 32 + 4
    assert_eq!(frontier.subtree_roots(), &[root(&rows[..64]), root(&rows[64..96]), root(&rows[96..])][..]);
    let mut extended = Frontier::new();
    extended.extend(rows[..40].iter().copied());
    extended.extend(rows[40..].iter().copied());
    assert_eq!(extended, frontier);
}

#[test]
fn frontier_encoding_is_fixed_and_checked() {
    let empty = Frontier::new().to_bytes();
    assert_eq!(empty, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(Frontier::from_bytes(&empty).unwrap(), Frontier::new());

    let rows = leaves(8, 5);
    let frontier: Frontier = rows.iter().copied().collect();
    let bytes = frontier.to_bytes();
    let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0, 5];
    expected.extend_from_slice(&root(&rows[..4]));
    expected.extend_from_slice(&rows[4]);
    assert_eq!(bytes, expected);

    let bad = |err| Err(ProofError::BadFrontierEncoding(err));
    assert_eq!(Frontier::from_bytes(&[]), bad(FrontierEncodingError::TooShort { len: 0, header: 9 }));
    assert_eq!(Frontier::from_bytes(&bytes[..8]), bad(FrontierEncodingError::TooShort { len: 8, header: 9 }));
    let mut other_version = bytes.clone();
    other_version[0] = 2;
    assert_eq!(
        Frontier::from_bytes(&other_version),
        bad(FrontierEncodingError::UnsupportedVersion { version: 2, expected: 1 })
    );
    assert_eq!(
        Frontier::from_bytes(&bytes[..bytes.len() - 1]),
        bad(FrontierEncodingError::WrongLength { size: 5, expected: 73, actual: 72 })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Frontier::from_bytes(&trailing),
        bad(FrontierEncodingError::WrongLength { size: 5, expected: 73, actual: 74 })
    );
    let mut other_size = bytes.clone();
    other_size[8] = 7; // three subtree roots needed, two given
    assert_eq!(
        Frontier::from_bytes(&other_size),
        bad(FrontierEncodingError::WrongLength { size: 7, expected: 105, actual: 73 })
    );

    // The largest tree there can be: 64 subtree roots.
    let mut huge = vec![1];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    huge.extend(std::iter::repeat_n(0xab, 64 * 32));
    let restored = Frontier::from_bytes(&huge).unwrap();
    assert_eq!(restored.size(), u64::MAX);
    assert_eq!(restored.to_bytes(), huge);
}
