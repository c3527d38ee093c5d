//! Batched publishing on `StatusAdmin`: `PublishStatuses` (many status changes in one
//! durable transaction with their log entries, idempotent by item id) and `IssueTokens`
//! (many tokens, their digests in one transaction).
//!
//! Each item is decided exactly as its unary call decides it: the call is authorized once
//! by the caller's role (`authz`, as `UpsertStatus` / `IssueToken`), then every status
//! change goes through the same `service::validate_upsert` (rules, authorities, lifting)
//! against the status the subject holds inside the batch's own transaction. The order:
//!
//! 1. the batch size ([`MAX_STATUS_ITEMS`], [`MAX_TOKEN_ITEMS`]; beyond it the whole call
//!    is refused, `INVALID_REQUEST` field `items`);
//! 2. each item's form (item id, the change's fields, as `UpsertStatus` checks them);
//! 3. subjects named by more than one item: all of those items are refused;
//! 4. in one store transaction: items already applied under their id are skipped, the
//!    rest decided; refused items write nothing, the accepted rest commits together with
//!    their log entries (with `all_or_nothing`, nothing commits if anything was refused).
//!
//! A storage failure refuses the whole call (`STORAGE_FAILURE`), and retrying is safe: a
//! `PublishStatuses` wrote nothing; an `IssueTokens` on a store that spreads its token table
//! (Redis: one transaction per shard) may have recorded digests of tokens it never
//! delivered, which nobody holds and which expire unused.

use huren_pki::attest::token_digest;
use huren_pki::{qr, Identity};
use huren_proto::pb;
use huren_runtime::error::Refusal as _;
use prost::Message as _;
use tonic::Request;

use crate::authz::Call;
use crate::error::NodeError;
use crate::request::{batch_size, item_id, InvalidRequest, StatusChange, TokenRequest};
use crate::service::{authorized, validate_upsert, Inner, StatusAdminService};
use crate::store::{self, BatchItem, ItemApplied, TokenRecord};

/// Most status changes in one `PublishStatuses` call.
pub const MAX_STATUS_ITEMS: usize = store::MAX_BATCH_ITEMS;
/// Most tokens in one `IssueTokens` call (each one is signed).
pub const MAX_TOKEN_ITEMS: usize = 1000;
/// Largest `StatusAdmin` request, bytes (a full batch of long references fits).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

fn refusal(e: &NodeError) -> pb::ItemRefusal {
    pb::ItemRefusal {
        reason: e.reason().as_str().to_owned(),
        message: e.message(),
        metadata: e.metadata().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

fn refused(e: &NodeError) -> pb::PublishItemResult {
    pb::PublishItemResult { outcome: pb::ItemOutcome::Refused as i32, refusal: Some(refusal(e)), ..Default::default() }
}

fn outcome(outcome: pb::ItemOutcome, version: u64, log_index: u64) -> pb::PublishItemResult {
    pb::PublishItemResult { outcome: outcome as i32, version, log_index, refusal: None }
}

impl StatusAdminService {
    pub(crate) async fn publish_statuses_inner(
        &self,
        request: Request<pb::PublishStatusesRequest>,
    ) -> Result<pb::PublishStatusesResponse, NodeError> {
        let inner = self.0.clone();
        let caller = authorized(&request, Call::UpsertStatus, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        batch_size(req.items.len(), MAX_STATUS_ITEMS)?;
        behind_lookups(move || publish(&inner, &caller, req)).await
    }

    pub(crate) async fn issue_tokens_inner(
        &self,
        request: Request<pb::IssueTokensRequest>,
    ) -> Result<pb::IssueTokensResponse, NodeError> {
        let inner = self.0.clone();
        authorized(&request, Call::IssueToken, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        batch_size(req.items.len(), MAX_TOKEN_ITEMS)?;
        behind_lookups(move || issue(&inner, req)).await
    }
}

/// Runs `f` (a batch: its decisions and its store write) as bulk work ([`crate::priority`]):
/// on a thread of lower CPU priority, so that lookups run first while an import keeps the
/// cores busy, and at most a few batches at once.
async fn behind_lookups<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    crate::priority::run_bulk(f).await.map_err(|e| NodeError::Internal(format!("running the batch: {e}")))?
}

/// Steps 2 to 4 of the module docs.
fn publish(
    inner: &Inner,
    caller: &Identity,
    req: pb::PublishStatusesRequest,
) -> Result<pb::PublishStatusesResponse, NodeError> {
    let n = req.items.len();
    let mut results: Vec<Option<pb::PublishItemResult>> = vec![None; n];
    let mut changes: Vec<Option<(StatusChange, Vec<u8>, String)>> = Vec::with_capacity(n);
    for (at, item) in req.items.into_iter().enumerate() {
        let checked = item_id(&item.item_id).and_then(|()| {
            let change = item.change.ok_or(InvalidRequest::MissingChange)?;
            let content = change.encode_to_vec();
            Ok((StatusChange::try_from(change)?, content, item.item_id))
        });
        match checked {
            Ok(c) => changes.push(Some(c)),
            Err(e) => {
                results[at] = Some(refused(&e.into()));
                changes.push(None);
            }
        }
    }
    let twice = store::repeated(changes.iter().flatten().map(|(c, _, _)| c.subject_ref.as_str()));
    if !twice.is_empty() {
        let twice: std::collections::HashSet<String> = twice.into_keys().map(str::to_owned).collect();
        for (at, change) in changes.iter_mut().enumerate() {
            if change.as_ref().is_some_and(|(c, _, _)| twice.contains(&c.subject_ref)) {
                results[at] = Some(refused(&InvalidRequest::DuplicateSubject.into()));
                *change = None;
            }
        }
    }
    let (open, items): (Vec<usize>, Vec<BatchItem>) = changes
        .iter()
        .enumerate()
        .filter_map(|(at, c)| c.as_ref().map(|(change, content, id)| (at, change, content, id)))
        .map(|(at, change, content, id)| {
            (at, BatchItem { subject_ref: change.subject_ref.clone(), item_id: id.clone(), content: content.clone() })
        })
        .unzip();
    let early_refusal = open.len() < n;
    let tree_size;
    if items.is_empty() || (req.all_or_nothing && early_refusal) {
        for (at, _) in open.iter().zip(&items) {
            results[*at] = Some(outcome(pb::ItemOutcome::NotApplied, 0, 0));
        }
        tree_size = inner.store.log_head()?.0;
    } else {
        let trust = inner.trust();
        let now = inner.settings.clock.now();
        let default_validity = inner.settings.default_status_validity_seconds;
        let mut decided: Vec<Option<NodeError>> = (0..items.len()).map(|_| None).collect();
        let batch =
            inner.store.publish_statuses(&caller.to_string(), &items, req.all_or_nothing, now, &mut |i, current| {
                let (change, _, _) = changes[open[i]].as_ref()?;
                match validate_upsert(change, current, caller, &trust, now, default_validity) {
                    Ok(record) => Some(record),
                    Err(e) => {
                        decided[i] = Some(e);
                        None
                    }
                }
            })?;
        tree_size = batch.tree_size;
        for (i, applied) in batch.items.into_iter().enumerate() {
            results[open[i]] = Some(match applied {
                ItemApplied::Accepted { version, index } => outcome(pb::ItemOutcome::Accepted, version, index),
                ItemApplied::AlreadyApplied { version, index } => {
                    outcome(pb::ItemOutcome::AlreadyApplied, version, index)
                }
                ItemApplied::IdReused => refused(&InvalidRequest::ItemIdReused.into()),
                ItemApplied::NotApplied => outcome(pb::ItemOutcome::NotApplied, 0, 0),
                ItemApplied::Refused => match decided[i].take() {
                    Some(e) => refused(&e),
                    None => refused(&NodeError::Internal("item refused without a reason".into())),
                },
            });
        }
    }
    let results: Vec<pb::PublishItemResult> = results.into_iter().map(Option::unwrap_or_default).collect();
    let count = |o: pb::ItemOutcome| results.iter().filter(|r| r.outcome == o as i32).count() as u64;
    Ok(pb::PublishStatusesResponse {
        accepted: count(pb::ItemOutcome::Accepted),
        refused: count(pb::ItemOutcome::Refused),
        already_applied: count(pb::ItemOutcome::AlreadyApplied),
        tree_size,
        results,
    })
}

/// Every token request decided as `IssueToken` decides it; the digests of the tokens
/// issued recorded in one transaction.
fn issue(inner: &Inner, req: pb::IssueTokensRequest) -> Result<pb::IssueTokensResponse, NodeError> {
    let now = inner.settings.clock.now();
    let mut results = Vec::with_capacity(req.items.len());
    let mut records = Vec::with_capacity(req.items.len());
    for item in req.items {
        let decided = TokenRequest::try_from(item).map_err(NodeError::from).and_then(|req| {
            let status = inner.store.status(&req.subject_ref)?.ok_or(NodeError::SubjectUnknown)?;
            let token = qr::new_token().map_err(|e| NodeError::Internal(format!("randomness unavailable: {e}")))?;
            let lifetime = req.lifetime_seconds.unwrap_or(inner.settings.token_lifetime_seconds);
            let expires_at = now + i64::from(lifetime);
            let digest = token_digest(&token);
            let attestation = inner.attest(&status, digest, expires_at, &req.purpose, now)?;
            let qr = qr::encode_qr(&pb::QrCode { attestation: Some(attestation), token: token.to_vec() });
            Ok(((digest, TokenRecord { subject_ref: req.subject_ref, expires_at }), (token, expires_at, qr)))
        });
        results.push(match decided {
            Ok((record, (token, expires_at, qr))) => {
                records.push(record);
                pb::TokenItemResult {
                    outcome: pb::ItemOutcome::Accepted as i32,
                    token: Some(pb::IssueTokenResponse { token: token.to_vec(), expires_at, qr }),
                    refusal: None,
                }
            }
            // A storage failure is the whole call's: nothing was issued.
            Err(e @ NodeError::Store(_)) => return Err(e),
            Err(e) => pb::TokenItemResult {
                outcome: pb::ItemOutcome::Refused as i32,
                token: None,
                refusal: Some(refusal(&e)),
            },
        });
    }
    if !records.is_empty() {
        inner.store.put_tokens(&records)?;
    }
    Ok(pb::IssueTokensResponse { results })
}
