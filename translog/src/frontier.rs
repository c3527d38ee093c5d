//! An append-only Merkle tree that remembers only its right edge.

use crate::hash::{empty_root, node_hash};
use crate::nodes::range_nodes;
use crate::tree::subtree_root;
use crate::{FrontierEncodingError, Hash, LeafSource, NodeId, NodeSource, ProofError};

/// The compact range `[0, size)` of a growing tree: the roots of its maximal complete subtrees,
/// one per set bit of `size`, largest (leftmost) first.
///
/// This is all that is needed to append a leaf and to compute the RFC 9162 root, each in
/// O(log n), without rereading earlier leaves: the tree of `size = 2^a + 2^b + …` leaves
/// (`a > b > …`) has root `HASH(0x01 || T_a || HASH(0x01 || T_b || …))`, because RFC 9162 splits
/// off the largest power of two first.
///
/// Persist it with [`to_bytes`](Frontier::to_bytes) and restore it with
/// [`from_bytes`](Frontier::from_bytes), or rebuild it from stored leaves with
/// [`from_source`](Frontier::from_source).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// Invariant: `nodes.len() == size.count_ones()`, largest subtree first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The version byte that starts [`to_bytes`](Frontier::to_bytes).
    pub const ENCODING_VERSION: u8 = 1;
    /// The length of the encoding's header: the version byte and the size as a big-endian `u64`.
    pub const HEADER_LEN: usize = 1 + 8;

    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the tree of all the leaves of `source`, in O(n).
    pub fn from_source<S: LeafSource + ?Sized>(source: &S) -> Result<Self, ProofError> {
        let size = source.leaf_count();
        let mut nodes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0;
        for height in (0..u64::BITS).rev() {
            let width = 1u64 << height;
            if size & width != 0 {
                nodes.push(subtree_root(source, start, start + width)?);
                start += width;
            }
        }
        Ok(Self { size, nodes })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the maximal complete subtrees, largest (leftmost) first.
    pub fn subtree_roots(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf hash (see [`leaf_hash`](crate::leaf_hash)) and returns its index.
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        self.push_with(leaf, |_, _| {})
    }

    /// [`push`](Frontier::push), calling `completed` with every interior node the leaf
    /// completes (one per trailing one bit of the old size, lowest first): what a log that
    /// serves proofs from stored subtree hashes stores (see
    /// [`inclusion_proof_from_nodes`](crate::inclusion_proof_from_nodes)).
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) -> u64 {
        let index = self.size;
        self.size = index.checked_add(1).expect("a Merkle tree of more than u64::MAX leaves");
        // The new leaf completes one subtree per trailing one bit of the old size: merge it with
        // the smallest subtrees, right to left.
        let keep = self.nodes.len() - index.trailing_ones() as usize;
        let mut level = 0u8;
        let merged = self.nodes.drain(keep..).rev().fold(leaf, |right, left| {
            level += 1;
            let node = node_hash(&left, &right);
            completed(NodeId::new(level, index >> level), node);
            node
        });
        self.nodes.push(merged);
        index
    }

    /// The frontier of the first `size` leaves of a log, from its stored subtree hashes (one
    /// per set bit of `size`, read in one batch).
    pub fn from_nodes<S: NodeSource + ?Sized>(size: u64, source: &S) -> Result<Self, ProofError> {
        let ids = range_nodes(0, size);
        let nodes = source.node_hashes(&ids)?;
        if nodes.len() != ids.len() {
            return Err(ProofError::Source(format!("asked for {} subtree hashes, got {}", ids.len(), nodes.len())));
        }
        Ok(Self { size, nodes })
    }

    /// The RFC 9162 Merkle Tree Hash of the leaves appended so far ([`empty_root`] for none).
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        match nodes.next() {
            None => empty_root(),
            Some(smallest) => nodes.fold(*smallest, |right, left| node_hash(left, &right)),
        }
    }

    /// The encoding: [`ENCODING_VERSION`](Frontier::ENCODING_VERSION), the size as a big-endian
    /// `u64`, then the subtree roots, largest first (32 bytes each, one per set bit of the size).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + 32 * self.nodes.len());
        out.push(Self::ENCODING_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        for node in &self.nodes {
            out.extend_from_slice(node);
        }
        out
    }

    /// Restores a frontier from [`to_bytes`](Frontier::to_bytes); anything else, including
    /// trailing bytes, is [`ProofError::BadFrontierEncoding`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(FrontierEncodingError::TooShort { len: 0, header: Self::HEADER_LEN }.into());
        };
        let Some((size, nodes)) = rest.split_first_chunk::<8>() else {
            return Err(FrontierEncodingError::TooShort { len: bytes.len(), header: Self::HEADER_LEN }.into());
        };
        if version != Self::ENCODING_VERSION {
            return Err(FrontierEncodingError::UnsupportedVersion { version, expected: Self::ENCODING_VERSION }.into());
        }
        let size = u64::from_be_bytes(*size);
        let count = size.count_ones() as usize;
        let expected = Self::HEADER_LEN + 32 * count;
        if bytes.len() != expected {
            return Err(FrontierEncodingError::WrongLength { size, expected, actual: bytes.len() }.into());
        }
        let nodes = nodes
            .chunks_exact(32)
            .map(|chunk| {
                let mut node = [0; 32];
                node.copy_from_slice(chunk);
                node
            })
            .collect();
        Ok(Self { size, nodes })
    }
}

impl Extend<Hash> for Frontier {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, leaves: I) {
        for leaf in leaves {
            self.push(leaf);
        }
    }
}

impl FromIterator<Hash> for Frontier {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut frontier = Self::new();
        frontier.extend(leaves);
        frontier
    }
}
