//! The auditor's client: signed tree heads, consistency and inclusion proofs, and full
//! log verification against a province node's `Transparency` service.

use std::time::Duration;

use huren_pki::trust::AttestationError;
use huren_pki::{Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsError, TlsIdentity};
use huren_translog::{Hash, ProofError};
use pb::transparency_client::TransparencyClient;
use prost::Message;
use tonic::transport::Channel;

/// Entries fetched per call when reading a whole log.
const PAGE: u64 = 5_000;

/// Why a node's log, or what it served, was not believed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The province is not in the trust list the auditor holds.
    #[error("province {0} is not in the trust list")]
    UnknownProvince(ProvinceCode),
    /// No address was given and the trust list lists none for the province.
    #[error("province {0} lists no endpoint")]
    NoEndpoint(ProvinceCode),
    /// The client's TLS configuration or the node address is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node answered with a gRPC error, or could not be reached.
    #[error(transparent)]
    Rpc(#[from] tonic::Status),
    /// A tree head's signature (by a province key in the trust list) does not verify.
    #[error("tree head signature: {0}")]
    TreeHeadSignature(AttestationError),
    /// A tree head signed for another province than the one audited.
    #[error("tree head is for province {got}, not {expected}")]
    WrongProvince {
        /// The province the head names.
        got: String,
        /// The province audited.
        expected: ProvinceCode,
    },
    /// A hash in a proof, or a tree head's root, is not 32 bytes.
    #[error("{0} is not 32 bytes")]
    HashLength(&'static str),
    /// The "old" tree head is larger than the "new" one.
    #[error("old tree head ({old}) is larger than the new one ({new})")]
    OutOfOrder {
        /// Size of the old head.
        old: u64,
        /// Size of the new head.
        new: u64,
    },
    /// Two signed heads of one size with different roots: a rewritten log.
    #[error("two tree heads of size {0} disagree: the log was rewritten")]
    Rewritten(u64),
    /// The node's consistency proof does not verify.
    #[error("the log is not append-only between sizes {old} and {new}: {error}")]
    NotAppendOnly {
        /// Size of the old head.
        old: u64,
        /// Size of the new head.
        new: u64,
        /// What the proof check found.
        error: ProofError,
    },
    /// A page of entries does not hold as many entries as asked for.
    #[error("node returned {got} entries for [{start}, {end})")]
    ShortPage {
        /// Entries (and purged leaf hashes) returned.
        got: usize,
        /// First index asked for.
        start: u64,
        /// One past the last index asked for.
        end: u64,
    },
    /// An entry is not a `LogEntry` message.
    #[error("log entry does not decode: {0}")]
    Decode(prost::DecodeError),
    /// The entries served do not hash to the signed root.
    #[error("log entries do not match the signed tree head of size {0}: the log was tampered with")]
    Tampered(u64),
    /// An entry claims another position than the one it was served at.
    #[error("log entry at position {position} claims index {claimed}")]
    Misplaced {
        /// Where the entry stands in the log.
        position: u64,
        /// The index it claims.
        claimed: u64,
    },
    /// A subject-entries answer without a signed tree head.
    #[error("no tree head in the answer")]
    NoTreeHead,
    /// A subject entry's inclusion proof does not verify.
    #[error("entry {index} is not in the signed log: {error}")]
    NotInLog {
        /// The entry's index.
        index: u64,
        /// What the proof check found.
        error: ProofError,
    },
}

/// The 32-byte hashes of a proof.
pub(crate) fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, AuditError> {
    proof.iter().map(|h| <Hash>::try_from(h.as_slice()).map_err(|_| AuditError::HashLength("proof hash"))).collect()
}

/// A tree head's root hash.
pub(crate) fn root(head: &pb::TreeHead) -> Result<Hash, AuditError> {
    <Hash>::try_from(head.root_hash.as_slice()).map_err(|_| AuditError::HashLength("tree head root"))
}

/// An auditor's connection to one province node.
#[derive(Clone)]
pub struct AuditClient {
    client: TransparencyClient<Channel>,
    province: ProvinceCode,
    trust: TrustList,
}

impl std::fmt::Debug for AuditClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditClient").field("province", &self.province).finish_non_exhaustive()
    }
}

impl AuditClient {
    /// Connects (lazily) to `province`'s node at `endpoint`, or at the first endpoint the
    /// trust list gives for it; the node must present exactly that province's node
    /// identity. `trust` checks every signature the node serves.
    pub fn connect(
        endpoint: Option<&str>,
        province: &ProvinceCode,
        identity: &TlsIdentity,
        trust: TrustList,
    ) -> Result<Self, AuditError> {
        let entry = trust.province(province).ok_or_else(|| AuditError::UnknownProvince(province.clone()))?;
        let endpoint = match endpoint {
            Some(e) => e.to_owned(),
            None => entry.endpoints.first().cloned().ok_or_else(|| AuditError::NoEndpoint(province.clone()))?,
        };
        let expected = ExpectedPeer::Exactly(Identity::new(trust.trust_domain(), Role::Node(province.clone())));
        let config = tls::client_config(identity, expected, Revocations::default())?;
        let channel = tls::channel(&endpoint, config, Duration::from_secs(3))?;
        Ok(Self {
            client: TransparencyClient::new(channel).max_decoding_message_size(16 << 20),
            province: province.clone(),
            trust,
        })
    }

    /// Fetches and verifies the node's signed tree head: the signed form (to save) and
    /// the verified content.
    pub async fn tree_head(&mut self) -> Result<(pb::SignedTreeHead, pb::TreeHead), AuditError> {
        let signed = self.client.get_tree_head(pb::GetTreeHeadRequest {}).await?.into_inner();
        let head = self.verify_head(&signed)?;
        Ok((signed, head))
    }

    /// Checks a tree head's signature (province key in the trust list) and province.
    pub fn verify_head(&self, signed: &pb::SignedTreeHead) -> Result<pb::TreeHead, AuditError> {
        let head = self.trust.verify_tree_head(signed).map_err(AuditError::TreeHeadSignature)?;
        if head.province != self.province.as_str() {
            return Err(AuditError::WrongProvince { got: head.province, expected: self.province.clone() });
        }
        Ok(head)
    }

    /// Verifies that `new` extends `old` (RFC 9162 consistency proof from the node).
    pub async fn verify_consistency(
        &mut self,
        old: &pb::SignedTreeHead,
        new: &pb::SignedTreeHead,
    ) -> Result<(), AuditError> {
        let (old, new) = (self.verify_head(old)?, self.verify_head(new)?);
        if old.tree_size > new.tree_size {
            return Err(AuditError::OutOfOrder { old: old.tree_size, new: new.tree_size });
        }
        if old.tree_size == 0 || old.tree_size == new.tree_size {
            if old.tree_size == new.tree_size && old.root_hash != new.root_hash {
                return Err(AuditError::Rewritten(old.tree_size));
            }
            return Ok(());
        }
        let proof = self
            .client
            .get_consistency_proof(pb::ConsistencyProofRequest { old_size: old.tree_size, new_size: new.tree_size })
            .await?
            .into_inner();
        huren_translog::verify_consistency(
            old.tree_size,
            new.tree_size,
            &root(&old)?,
            &root(&new)?,
            &hashes(&proof.hashes)?,
        )
        .map_err(|error| AuditError::NotAppendOnly { old: old.tree_size, new: new.tree_size, error })
    }

    /// Downloads every entry of `head`'s tree, recomputes the root from the entries
    /// themselves and returns them: any altered, dropped or inserted entry shows.
    /// Entries purged under the retention policy count through their leaf hashes and are
    /// not returned.
    pub async fn fetch_verified(&mut self, head: &pb::TreeHead) -> Result<Vec<pb::LogEntry>, AuditError> {
        let mut leaves = Vec::with_capacity(head.tree_size as usize);
        let mut entries = Vec::with_capacity(head.tree_size as usize);
        let mut start = 0;
        while start < head.tree_size {
            let end = (start + PAGE).min(head.tree_size);
            let page = self.client.get_entries(pb::GetEntriesRequest { start, end }).await?.into_inner();
            let got = page.purged_leaf_hashes.len() + page.entries.len();
            if got as u64 != end - start {
                return Err(AuditError::ShortPage { got, start, end });
            }
            leaves.extend(hashes(&page.purged_leaf_hashes)?);
            for bytes in page.entries {
                leaves.push(huren_translog::leaf_hash(&bytes));
                entries.push(pb::LogEntry::decode(bytes.as_slice()).map_err(AuditError::Decode)?);
            }
            start = end;
        }
        if huren_translog::root(&leaves) != root(head)? {
            return Err(AuditError::Tampered(head.tree_size));
        }
        let first = head.tree_size - entries.len() as u64;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first + i as u64 {
                return Err(AuditError::Misplaced { position: first + i as u64, claimed: e.index });
            }
        }
        Ok(entries)
    }
}

/// Verifies a subject's entries (from `GetSubjectEntries`) against the signed head they
/// came with: each entry's inclusion proof must lead to that head's root.
pub fn verify_subject_entries(
    trust: &TrustList,
    response: &pb::SubjectEntriesResponse,
) -> Result<Vec<pb::LogEntry>, AuditError> {
    let signed = response.tree_head.as_ref().ok_or(AuditError::NoTreeHead)?;
    let head = trust.verify_tree_head(signed).map_err(AuditError::TreeHeadSignature)?;
    let mut out = Vec::new();
    for e in &response.entries {
        let entry = pb::LogEntry::decode(e.entry.as_slice()).map_err(AuditError::Decode)?;
        huren_translog::verify_inclusion(
            &huren_translog::leaf_hash(&e.entry),
            entry.index,
            head.tree_size,
            &hashes(&e.inclusion_proof)?,
            &root(&head)?,
        )
        .map_err(|error| AuditError::NotInLog { index: entry.index, error })?;
        out.push(entry);
    }
    Ok(out)
}

impl AuditClient {
    /// The node's per-hub aggregates of the hours starting in `[since, until)` (`until` 0:
    /// now), and how many disclosure records the node could not write. Asked a day at a
    /// time (longer ranges in at most 64 calls): a province whose travellers hundreds of
    /// hubs check every hour answers a week in several megabytes, more than one gRPC
    /// message should carry.
    pub async fn hub_aggregates(&mut self, since: i64, until: i64) -> Result<pb::HubAggregatesResponse, AuditError> {
        const DAY: i64 = 86_400;
        let end = if until == 0 {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64) + 1
        } else {
            until
        };
        // A day per call for the usual week; a long range (since 0: everything held) in at
        // most 64 calls, so asking for "everything" stays a handful of round trips.
        let mut from = since.div_euclid(3600) * 3600;
        let step = DAY.max((end - from).div_euclid(64 * 3600) * 3600 + 3600);
        let mut out = pb::HubAggregatesResponse::default();
        loop {
            let to = (from + step).min(end);
            let part = self.client.get_hub_aggregates(pb::HubAggregatesRequest { since: from, until: to }).await?;
            let part = part.into_inner();
            out.aggregates.extend(part.aggregates);
            // A running total at the node: the latest answer's is the one to report.
            out.disclosures_dropped = part.disclosures_dropped;
            if to >= end {
                return Ok(out);
            }
            from = to;
        }
    }
}
