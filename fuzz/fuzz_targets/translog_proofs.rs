//! Transparency-log proof verification and frontier decoding.
//!
//! First byte picks the mode:
//! 0: raw inputs (index, size, leaf, root, proof hashes) to `verify_inclusion`, and
//!    (old, new, roots, proof) to `verify_consistency`: never a panic, never an accepted
//!    proof for an index outside the tree or a size pair out of order;
//! 1: a real tree of up to 64 leaves, a real inclusion and consistency proof (which must
//!    verify), then fuzzed byte flips / length changes of the proof or the claimed hashes
//!    (which must not);
//! 2: `Frontier::from_bytes` on the rest: anything accepted re-encodes to the same bytes.
#![no_main]

use huren_fuzz::{take_hash, take_u64};
use huren_translog::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion, Frontier, Hash,
};
use libfuzzer_sys::fuzz_target;

fn hashes(mut data: &[u8]) -> Vec<Hash> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < 80 {
        out.push(take_hash(&mut data));
    }
    out
}

/// Applies the fuzzed edits in `edits` (pairs of position and xor byte, then a length
/// change) to `proof` and to *one* of the two claimed hashes `a`, `b` (which one: the
/// parity of the first edit byte). Returns whether anything changed (edits may cancel).
///
/// Changing both claimed hashes alike is not tampering for a one-leaf tree, whose root
/// is its leaf (and for equal-size consistency, whose two roots are one): such pairs
/// stay valid, so they are not generated.
fn tamper(edits: &[u8], proof: &mut Vec<Hash>, a: &mut Hash, b: &mut Hash) -> bool {
    let before = (proof.clone(), *a, *b);
    let claimed = if edits.first().is_some_and(|e| e % 2 == 0) { &mut *a } else { &mut *b };
    for pair in edits.chunks_exact(2).take(8) {
        let (pos, xor) = (pair[0] as usize, pair[1]);
        let slots = proof.len() + 1;
        let byte = (pos / slots) % 32;
        let target = match pos % slots {
            0 => &mut *claimed,
            s => &mut proof[s - 1],
        };
        target[byte] ^= xor;
    }
    if edits.len() % 2 == 1 {
        match edits[edits.len() - 1] % 3 {
            0 => {
                proof.pop();
            }
            1 => proof.push([edits.len() as u8; 32]),
            _ => {}
        }
    }
    (proof.clone(), *a, *b) != before
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let index = take_u64(&mut rest);
            let size = take_u64(&mut rest);
            let leaf = take_hash(&mut rest);
            let root_hash = take_hash(&mut rest);
            let proof = hashes(rest);
            if verify_inclusion(&leaf, index, size, &proof, &root_hash).is_ok() {
                assert!(index < size);
                assert!(proof.len() <= 64);
            }
            let (old, new) = (index, size);
            if verify_consistency(old, new, &leaf, &root_hash, &proof).is_ok() {
                assert!(old <= new && (old > 0 || new == 0));
                assert!(old != new || leaf == root_hash);
            }
        }
        1 => {
            let n = u64::from(rest.first().copied().unwrap_or(0) % 64) + 1;
            let index = u64::from(rest.get(1).copied().unwrap_or(0)) % n;
            let old = u64::from(rest.get(2).copied().unwrap_or(0)) % n + 1;
            let edits = rest.get(3..).unwrap_or_default();
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let head = root(&leaves);

            let mut proof = inclusion_proof(index, &leaves).expect("inclusion proof");
            let (mut leaf, mut claimed) = (leaves[index as usize], head);
            verify_inclusion(&leaf, index, n, &proof, &claimed).expect("a real inclusion proof verifies");
            if tamper(edits, &mut proof, &mut leaf, &mut claimed) {
                assert!(
                    verify_inclusion(&leaf, index, n, &proof, &claimed).is_err(),
                    "tampered inclusion proof verified"
                );
            }

            let mut proof = consistency_proof(old, &leaves).expect("consistency proof");
            let (mut old_root, mut new_root) = (root(&leaves[..old as usize]), head);
            verify_consistency(old, n, &old_root, &new_root, &proof).expect("a real consistency proof verifies");
            if tamper(edits, &mut proof, &mut old_root, &mut new_root) {
                assert!(
                    verify_consistency(old, n, &old_root, &new_root, &proof).is_err(),
                    "tampered consistency proof verified"
                );
            }

            let frontier: Frontier = leaves.iter().copied().collect();
            assert_eq!(frontier.root(), head);
            assert_eq!(Frontier::from_bytes(&frontier.to_bytes()).expect("round trip"), frontier);
        }
        _ => {
            if let Ok(frontier) = Frontier::from_bytes(rest) {
                assert_eq!(frontier.to_bytes(), rest);
                assert_eq!(frontier.subtree_roots().len(), frontier.size().count_ones() as usize);
                let _ = frontier.root();
                if frontier.size() < u64::MAX {
                    let mut next = frontier.clone();
                    assert_eq!(next.push(leaf_hash(b"next")), frontier.size());
                    assert_eq!(next.size(), frontier.size() + 1);
                    assert_eq!(Frontier::from_bytes(&next.to_bytes()).expect("round trip"), next);
                }
            }
        }
    }
});
