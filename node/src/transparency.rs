//! `huren.v1.Transparency`: a node's append-only status-change log, for auditors and for
//! subjects (through a token they hold, via their province's admin identity).
//!
//! Every acknowledged `UpsertStatus` appended one `LogEntry` in the same durable
//! transaction (see [`crate::store`]). Tree heads are signed with the province's active
//! attestation key, and the size of each is remembered (sizes only) so that deletion
//! receipts can prove consistency from it; proofs follow RFC 9162.

use std::sync::Arc;

use huren_pki::attest::token_digest;
use huren_proto::pb;
use tonic::{Request, Response};

use crate::authz::Call;
use crate::error::NodeError;
use crate::request::{self, InvalidRequest, MAX_ENTRIES_PER_CALL};
use crate::service::{authorized, blocking, Inner};
use crate::store::StoreError;

/// `huren.v1.Transparency`.
#[derive(Clone)]
pub(crate) struct TransparencyService(pub(crate) Arc<Inner>);

impl Inner {
    /// Signs the current tree head, remembering its size: a later deletion receipt then
    /// proves consistency from it (see [`crate::retention`]).
    pub(crate) fn signed_tree_head(&self) -> Result<pb::SignedTreeHead, NodeError> {
        crate::retention::tree_head(
            &*self.store,
            &self.keys,
            &self.trust.current(),
            &self.province,
            self.settings.clock.now(),
        )
    }
}

/// A store error, where a tree size or index beyond the log is the caller's mistake.
fn range(e: StoreError) -> NodeError {
    match e {
        StoreError::Range(m) => InvalidRequest::LogRange(m).into(),
        other => NodeError::Store(other),
    }
}

#[tonic::async_trait]
impl pb::transparency_server::Transparency for TransparencyService {
    async fn get_hub_aggregates(
        &self,
        request: Request<pb::HubAggregatesRequest>,
    ) -> Result<Response<pb::HubAggregatesResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::HubAggregates, &inner.province)?;
        let req = request.into_inner();
        let now = inner.settings.clock.now();
        let until = if req.until == 0 { now + 1 } else { req.until };
        let since = req.since - req.since.rem_euclid(3600);
        if until < since {
            return Err(NodeError::from(InvalidRequest::EntriesRange).into());
        }
        let response = blocking(move || {
            let aggregates = inner
                .store
                .hub_aggregates(since, until)?
                .into_iter()
                .map(|a| pb::HubAggregate {
                    hour: a.hour,
                    hub_id: a.hub_id,
                    hub_province: a.hub_province,
                    purpose: a.purpose,
                    distinct_subjects: a.distinct_subjects,
                    checks: a.checks,
                })
                .collect();
            Ok(pb::HubAggregatesResponse { aggregates, disclosures_dropped: inner.store.dropped_disclosures()? })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn get_tree_head(
        &self,
        request: Request<pb::GetTreeHeadRequest>,
    ) -> Result<Response<pb::SignedTreeHead>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::TreeHead, &inner.province)?;
        Ok(Response::new(blocking(move || inner.signed_tree_head()).await?))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ProofResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::LogRead, &inner.province)?;
        let req = request.into_inner();
        let hashes = blocking(move || inner.store.consistency_proof(req.old_size, req.new_size).map_err(range)).await?;
        Ok(Response::new(pb::ProofResponse { hashes: hashes.iter().map(|h| h.to_vec()).collect() }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::ProofResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::LogRead, &inner.province)?;
        let req = request.into_inner();
        let hashes = blocking(move || inner.store.inclusion_proof(req.index, req.tree_size).map_err(range)).await?;
        Ok(Response::new(pb::ProofResponse { hashes: hashes.iter().map(|h| h.to_vec()).collect() }))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::LogRead, &inner.province)?;
        let req = request.into_inner();
        if req.end < req.start || req.end - req.start > MAX_ENTRIES_PER_CALL {
            return Err(NodeError::from(InvalidRequest::EntriesRange).into());
        }
        let response = blocking(move || {
            let first = inner.store.log_first_available()?;
            let from = req.start.max(first).min(req.end);
            let purged_leaf_hashes =
                if req.start < from { inner.store.leaf_hashes(req.start, from)? } else { Vec::new() };
            let entries = inner.store.log_entries(from, req.end)?;
            Ok(pb::GetEntriesResponse { entries, first_available: from, purged_leaf_hashes })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn get_subject_entries(
        &self,
        request: Request<pb::SubjectEntriesRequest>,
    ) -> Result<Response<pb::SubjectEntriesResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::SubjectEntries, &inner.province)?;
        let token = request::token(&request.into_inner().token).map_err(NodeError::from)?;
        let response = blocking(move || {
            let now = inner.settings.clock.now();
            let record = inner
                .store
                .token(&token_digest(&token))?
                .filter(|t| t.expires_at > now)
                .ok_or(NodeError::TokenUnknown { province: None })?;
            // One tree head and the proofs against it, read consistently enough: the head is
            // taken first and every proof is for exactly its size.
            let head = inner.signed_tree_head()?;
            let size = tree_size(&head)?;
            let commitment = inner.store.commitment(&record.subject_ref);
            let mut entries = Vec::new();
            for index in inner.store.subject_log(&commitment)?.into_iter().filter(|i| *i < size) {
                let entry = inner
                    .store
                    .log_entries(index, index + 1)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| NodeError::Store(StoreError::Corrupt(format!("log entry {index} missing"))))?;
                let proof = inner.store.inclusion_proof(index, size).map_err(range)?;
                entries.push(pb::SubjectEntry { entry, inclusion_proof: proof.iter().map(|h| h.to_vec()).collect() });
            }
            Ok(pb::SubjectEntriesResponse { tree_head: Some(head), entries })
        })
        .await?;
        Ok(Response::new(response))
    }
}

fn tree_size(head: &pb::SignedTreeHead) -> Result<u64, NodeError> {
    use prost::Message;
    pb::TreeHead::decode(head.tree_head.as_slice())
        .map(|h| h.tree_size)
        .map_err(|e| NodeError::Internal(format!("own tree head does not decode: {e}")))
}
