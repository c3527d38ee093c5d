//! The one error type of the crate.

/// Why a proof could not be produced or did not verify, or a frontier could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index is not below the tree size (RFC 9162 section 2.1.3.2, step 1).
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The index that was asked for.
        index: u64,
        /// The number of leaves in the tree.
        size: u64,
    },
    /// The proof has more or fewer hashes than the tree sizes call for.
    #[error("wrong proof length: expected {expected} hashes, got {actual}")]
    WrongProofLength {
        /// How many hashes a proof for these sizes has.
        expected: usize,
        /// How many hashes the proof had.
        actual: usize,
    },
    /// The root recomputed from the proof is not the (new) root that was supplied.
    #[error("root mismatch: the root computed from the proof differs from the expected root")]
    RootMismatch,
    /// A consistency proof recomputes an old root other than the one supplied.
    #[error("old root mismatch: the old root computed from the proof differs from the expected old root")]
    OldRootMismatch,
    /// A consistency proof was asked for, or checked, from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeLargerThanNew {
        /// The size of the older tree.
        old_size: u64,
        /// The size of the newer tree.
        new_size: u64,
    },
    /// A consistency proof from the empty tree to a non-empty one: RFC 9162 section 2.1.4
    /// defines proofs only for `0 < old_size < new_size`, so this crate neither produces
    /// nor accepts one.
    #[error("old tree size is 0: consistency with the empty tree is not provable (RFC 9162 needs 0 < old size)")]
    EmptyOldTree,
    /// [`Frontier::from_bytes`](crate::Frontier::from_bytes) was given bytes it does not accept.
    #[error("bad frontier encoding: {0}")]
    BadFrontierEncoding(FrontierEncodingError),
    /// A [`LeafSource`](crate::LeafSource) could not produce a leaf hash (a database error, say).
    #[error("leaf source error: {0}")]
    Source(String),
}

/// What exactly is wrong with a serialized [`Frontier`](crate::Frontier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierEncodingError {
    /// Fewer bytes than the fixed header (a version byte and a big-endian `u64` size).
    #[error("{len} bytes is shorter than the {header}-byte header")]
    TooShort {
        /// The length of the input.
        len: usize,
        /// The length of the header.
        header: usize,
    },
    /// The version byte is not one this crate writes.
    #[error("unsupported version {version} (expected {expected})")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
        /// The version this crate understands.
        expected: u8,
    },
    /// The input length does not match the size in the header (one 32-byte hash per set bit).
    #[error("a frontier of size {size} takes {expected} bytes, got {actual}")]
    WrongLength {
        /// The tree size in the header.
        size: u64,
        /// The length a frontier of that size is encoded in.
        expected: usize,
        /// The length of the input.
        actual: usize,
    },
}

impl From<FrontierEncodingError> for ProofError {
    fn from(err: FrontierEncodingError) -> Self {
        ProofError::BadFrontierEncoding(err)
    }
}
