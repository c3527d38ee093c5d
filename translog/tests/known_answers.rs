//! Known-answer tests: the RFC 6962 reference vectors of certificate-transparency's
//! merkle_tree_test (as republished by transparency-dev/merkle), and SHA-256("").

mod common;

use common::{h, unhex};
use huren_translog::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
    Frontier, Hash,
};

const INPUTS: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// Roots of the trees of the first 1..=8 inputs.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves() -> Vec<Hash> {
    INPUTS.iter().map(|input| leaf_hash(&unhex(input))).collect()
}

fn hashes(hex: &[&str]) -> Vec<Hash> {
    hex.iter().map(|s| h(s)).collect()
}

#[test]
fn empty_root_is_sha256_of_the_empty_string() {
    assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(root(&[]), empty_root());
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn leaf_and_node_hashes_are_domain_separated() {
    let leaves = leaves();
    assert_eq!(leaf_hash(b""), h(ROOTS[0]));
    assert_eq!(node_hash(&leaves[0], &leaves[1]), h(ROOTS[1]));
    assert_ne!(leaf_hash(b""), empty_root());
}

#[test]
fn roots_of_every_prefix_match_the_reference() {
    let leaves = leaves();
    let mut frontier = Frontier::new();
    for (n, expected) in ROOTS.iter().enumerate() {
        frontier.push(leaves[n]);
        let prefix = &leaves[..=n];
        assert_eq!(root(prefix), h(expected), "root of size {}", n + 1);
        assert_eq!(frontier.root(), h(expected), "frontier root of size {}", n + 1);
    }
}

#[test]
fn inclusion_proofs_match_the_reference() {
    let leaves = leaves();
    let vectors: [(u64, usize, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, expected) in vectors {
        let tree = &leaves[..size];
        let proof = inclusion_proof(index, tree).unwrap();
        assert_eq!(proof, hashes(expected), "PATH({index}, D[{size}])");
        verify_inclusion(&leaves[index as usize], index, size as u64, &proof, &h(ROOTS[size - 1])).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference() {
    let leaves = leaves();
    let vectors: [(u64, usize, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old_size, new_size, expected) in vectors {
        let proof = consistency_proof(old_size, &leaves[..new_size]).unwrap();
        assert_eq!(proof, hashes(expected), "PROOF({old_size}, D[{new_size}])");
        let old_root = h(ROOTS[old_size as usize - 1]);
        let new_root = h(ROOTS[new_size - 1]);
        verify_consistency(old_size, new_size as u64, &old_root, &new_root, &proof).unwrap();
    }
}
