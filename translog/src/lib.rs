//! Merkle tree math for Huren's per-node append-only transparency logs, exactly as
//! RFC 9162 (Certificate Transparency version 2.0) section 2.1 defines it, which is the
//! tree of RFC 6962 section 2.1: SHA-256, with `0x00`/`0x01` domain separation of leaves
//! and interior nodes, split at the largest power of two smaller than the size.
//!
//! Everything works on leaf *hashes* ([`Hash`](type@Hash)): hash each log entry once with
//! [`leaf_hash`] and store that.
//!
//! Layout (private modules; everything public is re-exported here):
//! - `hash`: [`Hash`](type@Hash), [`leaf_hash`], [`node_hash`], [`empty_root`] (RFC 9162 2.1.1).
//! - `tree`: the Merkle Tree Hash, [`root`] over a slice and [`root_of`] over a [`LeafSource`]
//!   (RFC 9162 2.1.1).
//! - `source`: [`LeafSource`], random access to stored leaf hashes (a database table, say),
//!   implemented for `[Hash]`, `[Hash; N]`, `Vec<Hash>` and references to sources.
//! - `inclusion`: [`inclusion_proof`] / [`inclusion_proof_from`] generate `PATH(m, D[n])`
//!   (RFC 9162 2.1.3.1); [`verify_inclusion`] is the verifier of RFC 9162 2.1.3.2, step by step.
//! - `consistency`: [`consistency_proof`] / [`consistency_proof_from`] generate `PROOF(m, D[n])`
//!   via `SUBPROOF(m, D[n], b)` (RFC 9162 2.1.4.1); [`verify_consistency`] is the verifier of
//!   RFC 9162 2.1.4.2, step by step.
//! - `frontier`: [`Frontier`], an appender that keeps only the right-edge subtree roots (the
//!   compact range), so appending a leaf and computing the root are O(log n); it serializes
//!   with [`Frontier::to_bytes`] / [`Frontier::from_bytes`].
//! - `nodes`: proofs from stored subtree hashes. A log that stores the hash of every complete
//!   subtree ([`NodeId`]) when it completes ([`Frontier::push_with`]) serves
//!   [`inclusion_proof_from_nodes`], [`consistency_proof_from_nodes`] and [`root_from_nodes`]
//!   with O(log n) hashes read through a [`NodeSource`] in one batch (as Go's sumdb `tlog`).
//! - `error`: [`ProofError`] (and [`FrontierEncodingError`] inside it).
//!
//! Tree sizes and indices are `u64`. Proof generation over a [`LeafSource`] recomputes subtree
//! roots recursively from the leaves: O(n) hashing per proof, O(log n) memory; over a
//! [`NodeSource`] it reads O(log n) stored hashes and hashes O(log n) times.
//!
//! Size conventions beyond the RFC: a consistency proof between equal sizes is empty and
//! verifies exactly when the two roots are equal (two empty trees included); from size 0 to a
//! larger size there is no proof ([`ProofError::EmptyOldTree`]), as RFC 9162 requires
//! `0 < old_size`; and `old_size > new_size` is [`ProofError::OldSizeLargerThanNew`].
//! Nothing verifies as included in the empty tree ([`ProofError::IndexOutOfRange`]).
//!
//! ```
//! use huren_translog::{consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion, Frontier};
//!
//! let leaves: Vec<_> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
//! let mut frontier = Frontier::new();
//! for leaf in &leaves {
//!     frontier.push(*leaf);
//! }
//! let head = frontier.root();
//! assert_eq!(head, root(&leaves));
//!
//! let proof = inclusion_proof(3, &leaves).unwrap();
//! verify_inclusion(&leaves[3], 3, 7, &proof, &head).unwrap();
//!
//! let old_head = root(&leaves[..4]);
//! let proof = consistency_proof(4, &leaves).unwrap();
//! verify_consistency(4, 7, &old_head, &head, &proof).unwrap();
//!
//! let restored = Frontier::from_bytes(&frontier.to_bytes()).unwrap();
//! assert_eq!(restored, frontier);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod consistency;
mod error;
mod frontier;
mod hash;
mod inclusion;
mod nodes;
mod source;
mod tree;

pub use consistency::{consistency_proof, consistency_proof_from, verify_consistency};
pub use error::{FrontierEncodingError, ProofError};
pub use frontier::Frontier;
pub use hash::{empty_root, leaf_hash, node_hash, Hash};
pub use inclusion::{inclusion_proof, inclusion_proof_from, verify_inclusion};
pub use nodes::{
    consistency_proof_from_nodes, inclusion_proof_from_nodes, range_nodes, root_from_nodes, LeafNodes, NodeId,
    NodeSource,
};
pub use source::LeafSource;
pub use tree::{root, root_of};
