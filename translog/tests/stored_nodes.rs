//! Proofs from stored subtree hashes: the hashes a frontier hands out as it grows are exactly the
//! complete subtrees of the reference, and proofs, roots and frontiers built from them equal the
//! reference answers (the RFC 6962 vectors, every small tree, random trees), read in O(log n).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;

use common::{h, leaves, ref_leaf, ref_mth, ref_path, ref_prefix_roots, ref_proof, unhex};
use huren_translog::{
    consistency_proof, consistency_proof_from_nodes, empty_root, inclusion_proof, inclusion_proof_from_nodes,
    leaf_hash, node_hash, root, root_from_nodes, Frontier, Hash, LeafNodes, NodeId, NodeSource, ProofError,
};
use proptest::prelude::*;

/// What a log stores as it appends `tree`: every leaf hash (level 0) and every interior node a
/// frontier reports completed, each once.
fn stored(tree: &[Hash]) -> HashMap<NodeId, Hash> {
    let mut nodes = HashMap::new();
    let mut frontier = Frontier::new();
    for leaf in tree {
        let index = frontier.push_with(*leaf, |id, hash| {
            assert!(nodes.insert(id, hash).is_none(), "{id:?} completed twice");
        });
        nodes.insert(NodeId::new(0, index), *leaf);
    }
    nodes
}

/// Counts what is asked of it, and how often.
struct Counting<'a> {
    nodes: &'a HashMap<NodeId, Hash>,
    calls: RefCell<Vec<usize>>,
}

impl NodeSource for Counting<'_> {
    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        self.calls.borrow_mut().push(ids.len());
        self.nodes.node_hashes(ids)
    }
}

#[test]
fn stored_nodes_are_every_complete_subtree_with_its_reference_hash() {
    let tree = leaves(3, 77);
    let nodes = stored(&tree);
    let mut expected = 0;
    for level in 0..7u8 {
        for index in 0..(77u64 >> level) {
            let id = NodeId::new(level, index);
            let range = id.leaves();
            assert_eq!(nodes[&id], ref_mth(&tree[range.start as usize..range.end as usize]), "{id:?}");
            expected += 1;
        }
    }
    assert_eq!(nodes.len(), expected, "nothing but complete subtrees is stored");
}

#[test]
fn the_rfc_6962_vectors_from_stored_nodes() {
    let inputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    let tree: Vec<Hash> = inputs.iter().map(|i| leaf_hash(&unhex(i))).collect();
    let nodes = stored(&tree);
    assert_eq!(
        root_from_nodes(8, &nodes).unwrap(),
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
    );
    assert_eq!(
        root_from_nodes(3, &nodes).unwrap(),
        h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77")
    );
    assert_eq!(root_from_nodes(0, &nodes).unwrap(), empty_root());
    assert_eq!(
        inclusion_proof_from_nodes(5, 8, &nodes).unwrap(),
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ]
    );
    assert_eq!(
        consistency_proof_from_nodes(6, 7, &nodes).unwrap(),
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ]
    );
    assert_eq!(
        consistency_proof_from_nodes(2, 5, &nodes).unwrap(),
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ]
    );
}

#[test]
fn every_proof_of_every_small_tree_from_stored_nodes_matches_the_reference() {
    let all = leaves(11, 70);
    let nodes = stored(&all);
    for n in 1..=all.len() {
        let tree = &all[..n];
        let size = n as u64;
        assert_eq!(root_from_nodes(size, &nodes).unwrap(), ref_mth(tree), "root of size {n}");
        assert_eq!(Frontier::from_nodes(size, &nodes).unwrap(), tree.iter().copied().collect::<Frontier>());
        for m in 0..n {
            let proof = inclusion_proof_from_nodes(m as u64, size, &nodes).unwrap();
            assert_eq!(proof, ref_path(m, tree), "PATH({m}, D[{n}])");
        }
        for m in 1..=n {
            let proof = consistency_proof_from_nodes(m as u64, size, &nodes).unwrap();
            let expected = if m == n { vec![] } else { ref_proof(m, tree) };
            assert_eq!(proof, expected, "PROOF({m}, D[{n}])");
        }
    }
}

#[test]
fn a_proof_reads_logarithmically_many_stored_hashes_in_one_batch() {
    let tree = leaves(2, 1000);
    let nodes = stored(&tree);
    let source = Counting { nodes: &nodes, calls: RefCell::new(Vec::new()) };
    for size in [1u64, 2, 3, 511, 512, 513, 999, 1000] {
        for index in [0, size / 3, size / 2, size - 1] {
            source.calls.borrow_mut().clear();
            assert_eq!(
                inclusion_proof_from_nodes(index, size, &source).unwrap(),
                inclusion_proof(index, &tree[..size as usize]).unwrap()
            );
            let calls = source.calls.borrow();
            assert!(calls.len() == 1 && calls[0] <= 2 * 10, "PATH({index}, D[{size}]) read {calls:?}");
        }
        for old in [1, size / 3, size / 2, size - 1].into_iter().filter(|o| *o > 0) {
            source.calls.borrow_mut().clear();
            assert_eq!(
                consistency_proof_from_nodes(old, size, &source).unwrap(),
                consistency_proof(old, &tree[..size as usize]).unwrap()
            );
            let calls = source.calls.borrow();
            assert!(calls.len() == 1 && calls[0] <= 3 * 10, "PROOF({old}, D[{size}]) read {calls:?}");
        }
    }

    // A tree far too large to hold: every stored hash stands in for itself (a hash of its id).
    struct Synthetic(RefCell<usize>);
    impl NodeSource for Synthetic {
        fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
            *self.0.borrow_mut() += ids.len();
            Ok(ids.iter().map(|id| ref_leaf(&[&[id.level][..], &id.index.to_be_bytes()].concat())).collect())
        }
    }
    let synthetic = Synthetic(RefCell::new(0));
    let size = (1u64 << 40) + 12_345;
    inclusion_proof_from_nodes(size - 7, size, &synthetic).unwrap();
    assert!(*synthetic.0.borrow() <= 2 * 41, "{} hashes read", synthetic.0.borrow());
    *synthetic.0.borrow_mut() = 0;
    consistency_proof_from_nodes(size / 3, size, &synthetic).unwrap();
    assert!(*synthetic.0.borrow() <= 3 * 41, "{} hashes read", synthetic.0.borrow());
}

#[test]
fn size_rules_missing_nodes_and_short_answers_are_errors() {
    let tree = leaves(5, 20);
    let mut nodes = stored(&tree);
    assert_eq!(inclusion_proof_from_nodes(20, 20, &nodes), Err(ProofError::IndexOutOfRange { index: 20, size: 20 }));
    assert_eq!(inclusion_proof_from_nodes(0, 0, &nodes), Err(ProofError::IndexOutOfRange { index: 0, size: 0 }));
    assert_eq!(
        consistency_proof_from_nodes(21, 20, &nodes),
        Err(ProofError::OldSizeLargerThanNew { old_size: 21, new_size: 20 })
    );
    assert_eq!(consistency_proof_from_nodes(0, 20, &nodes), Err(ProofError::EmptyOldTree));
    assert_eq!(consistency_proof_from_nodes(0, 0, &nodes), Ok(vec![]));
    assert_eq!(consistency_proof_from_nodes(20, 20, &nodes), Ok(vec![]));

    // The subtree of leaves 0..16 gone: proofs that need it fail, the others work.
    nodes.remove(&NodeId::new(4, 0));
    assert!(matches!(inclusion_proof_from_nodes(17, 20, &nodes), Err(ProofError::Source(_))));
    assert!(matches!(root_from_nodes(20, &nodes), Err(ProofError::Source(_))));
    assert_eq!(inclusion_proof_from_nodes(3, 20, &nodes).unwrap(), inclusion_proof(3, &tree).unwrap());

    struct Short;
    impl NodeSource for Short {
        fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
            Ok(vec![[0; 32]; ids.len().saturating_sub(1)])
        }
    }
    assert!(matches!(inclusion_proof_from_nodes(3, 20, &Short), Err(ProofError::Source(_))));
    assert!(matches!(root_from_nodes(20, &Short), Err(ProofError::Source(_))));
    assert!(matches!(Frontier::from_nodes(20, &Short), Err(ProofError::Source(_))));

    // Computed from leaves instead, nodes past the end are out of range.
    let computed = LeafNodes(tree.as_slice());
    assert_eq!(inclusion_proof_from_nodes(17, 20, &computed).unwrap(), inclusion_proof(17, &tree).unwrap());
    assert_eq!(computed.node_hashes(&[NodeId::new(2, 5)]), Err(ProofError::IndexOutOfRange { index: 23, size: 20 }));
    assert_eq!(computed.node_hashes(&[NodeId::new(1, 3)]).unwrap(), [node_hash(&tree[6], &tree[7])]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stored_node_proofs_equal_the_reference_on_random_trees(
        n in 1..=600u64,
        seed in any::<u64>(),
        samples in proptest::collection::vec(any::<u64>(), 4),
    ) {
        let tree = leaves(seed, n);
        let nodes = stored(&tree);
        let prefix_roots = ref_prefix_roots(&tree);
        prop_assert_eq!(root_from_nodes(n, &nodes).unwrap(), root(&tree));
        for sample in samples {
            let size = sample % n + 1;
            let prefix = &tree[..size as usize];
            let index = (sample >> 20) % size;
            prop_assert_eq!(root_from_nodes(size, &nodes).unwrap(), prefix_roots[size as usize - 1]);
            prop_assert_eq!(
                inclusion_proof_from_nodes(index, size, &nodes).unwrap(),
                ref_path(index as usize, prefix)
            );
            let old = (sample >> 40) % size + 1;
            let expected = if old == size { vec![] } else { ref_proof(old as usize, prefix) };
            prop_assert_eq!(consistency_proof_from_nodes(old, size, &nodes).unwrap(), expected);
            prop_assert_eq!(
                Frontier::from_nodes(size, &nodes).unwrap(),
                prefix.iter().copied().collect::<Frontier>()
            );
        }
    }
}
