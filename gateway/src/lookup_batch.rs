//! `Lookup/LookupBatch`: a manifest of up to [`MAX_BATCH_TOKENS`] tokens for one purpose,
//! one answer per token.
//!
//! The manifest is admitted as a whole (caller, sunset, hub registration and purpose, the
//! request rate counting every token, the unknown-token limit); each token is then parsed,
//! served from the cache when a fresh verified attestation is there (as `Lookup` does), and
//! the rest are grouped by province: one `AttestBatch` per province, all provinces at once,
//! each under the province's breaker, deadline and concurrency limit, retried once where
//! safe as `Lookup` is. A province's answers are verified together
//! ([`huren_pki::verify_attestations`]: the same verdicts as one by one, the signatures
//! batched) and cached. Unknown tokens are counted one by one toward the hub's limit, in
//! the manifest's order; once it is reached, every later token is refused with
//! `TOO_MANY_UNKNOWN_TOKENS`. (No stale-if-error here: a failing province's tokens get its
//! refusal.)

use std::collections::HashMap;

use huren_pki::{unix_now, ProvinceCode, TrustList};
use huren_proto::pb;
use huren_runtime::error::Refusal as _;
use prost::Message as _;
use tonic::codegen::Bytes;
use tonic::{Code, Request};

use crate::authz::Call;
use crate::error::{node_failure, GatewayError, UnavailableCause};
use crate::node_call;
use crate::request::{InvalidLookup, Lookup};
use crate::service::{authorized, cache_ttl, expected, hub_id, LookupService};
use crate::shared::{cache_key, CachedAttestation};

/// Most tokens one `LookupBatch` may carry (the node's `AttestBatch` limit too).
pub(crate) const MAX_BATCH_TOKENS: usize = 500;

/// One token of the manifest on its way to its province's node.
struct Pending {
    index: usize,
    lookup: Lookup,
    key: String,
}

/// `google.rpc.Status` as far as the gateway reads it (code and message; the details are
/// passed on as they are).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A node's per-token refusal as the status a single `Attest` would have failed with.
fn refusal_status(bytes: &[u8]) -> tonic::Status {
    match RpcStatus::decode(bytes) {
        Ok(s) => tonic::Status::with_details(Code::from(s.code), s.message, Bytes::copy_from_slice(bytes)),
        Err(_) => tonic::Status::internal("node sent an undecodable refusal"),
    }
}

/// The answer for one token: an attestation or the refusal `Lookup` would have sent.
fn token_answer(result: Result<pb::SignedAttestation, GatewayError>) -> pb::TokenAnswer {
    let answer = match result {
        Ok(signed) => pb::token_answer::Answer::Attestation(signed),
        Err(e) => {
            let status = tonic::Status::from(e);
            let details = status.details();
            let bytes = if details.is_empty() {
                RpcStatus { code: status.code() as i32, message: status.message().to_owned() }.encode_to_vec()
            } else {
                details.to_vec()
            };
            pb::token_answer::Answer::Refusal(bytes)
        }
    };
    pb::TokenAnswer { answer: Some(answer) }
}

impl LookupService {
    /// `LookupBatch`; `from` as for `Lookup`. Per-token outcomes go to the lookup metric.
    pub(crate) async fn lookup_batch_inner(
        &self,
        request: Request<pb::LookupBatchRequest>,
        from: &mut Option<ProvinceCode>,
    ) -> Result<pb::LookupBatchResponse, GatewayError> {
        let started = std::time::Instant::now();
        let state = &self.0;
        let caller = authorized(&request, Call::Lookup)?;
        let hub = hub_id(&caller).to_owned();
        let trust = state.trust();
        *from = trust.hub_province(&hub).cloned();
        let req = request.into_inner();
        state.capture("LookupBatch", "hub->gateway", &req);
        if req.tokens.len() > MAX_BATCH_TOKENS {
            return Err(InvalidLookup::TooManyTokens(req.tokens.len()).into());
        }
        if !huren_pki::attest::valid_purpose(&req.purpose) {
            return Err(InvalidLookup::Purpose.into());
        }
        state.admit(&trust, &hub, &req.purpose, req.tokens.len() as u64).await?;
        let now = unix_now();
        let mut answers: Vec<Option<Result<pb::SignedAttestation, GatewayError>>> = Vec::new();
        answers.resize_with(req.tokens.len(), || None);
        let mut provinces = Vec::with_capacity(req.tokens.len());
        let mut by_province: HashMap<ProvinceCode, Vec<Pending>> = HashMap::new();
        for (index, token) in req.tokens.into_iter().enumerate() {
            let single =
                pb::LookupRequest { province: token.province, token: token.token, purpose: req.purpose.clone() };
            let lookup = match Lookup::try_from(single) {
                Ok(lookup) => lookup,
                Err(e) => {
                    provinces.push("unknown".to_owned());
                    answers[index] = Some(Err(e.into()));
                    continue;
                }
            };
            // Bounded: a province of the trust list in force, else `unknown`.
            provinces.push(crate::metrics::province_label(&trust, lookup.province.as_str()));
            let key = cache_key(state.shared.prefix(), &hub, lookup.province.as_str(), &lookup.purpose, &lookup.token);
            if state.cache {
                if let Some(signed) = self.fresh_from_cache(&trust, &key, &lookup, now).await {
                    state.metrics.cache("hit");
                    answers[index] = Some(Ok(signed));
                    continue;
                }
                state.metrics.cache("miss");
            }
            by_province.entry(lookup.province.clone()).or_default().push(Pending { index, lookup, key });
        }
        let asked = by_province.into_iter().map(|(code, pending)| self.ask_province(&trust, &hub, code, pending, now));
        for (index, result) in futures::future::join_all(asked).await.into_iter().flatten() {
            answers[index] = Some(result);
        }
        // Anti-enumeration, token by token in the manifest's order.
        let mut throttled = false;
        let elapsed = started.elapsed().as_secs_f64();
        let from_label =
            from.as_ref().map_or_else(|| "unknown".to_owned(), |p| crate::metrics::province_label(&trust, p.as_str()));
        let mut out = Vec::with_capacity(answers.len());
        for (answer, province) in answers.into_iter().zip(&provinces) {
            // Every token was answered above; should one not be, it is refused, never dropped.
            let unanswered = || GatewayError::Storage { what: "token left unanswered", cause: String::new() };
            let mut answer = answer.unwrap_or_else(|| Err(unanswered()));
            if throttled {
                answer = Err(GatewayError::TooManyUnknownTokens { hub: hub.clone(), window: state.misses.window() });
            } else if matches!(answer, Err(GatewayError::TokenUnknown { .. })) {
                let misses = state.shared.incr("miss", &hub, state.misses.window()).await;
                if misses >= state.misses.limit() {
                    throttled = true;
                    if misses == state.misses.limit() {
                        tracing::warn!(%hub, "hub throttled after too many unknown-token lookups");
                        state.metrics.throttled(&hub, "unknown_tokens");
                    }
                }
            }
            let outcome = match &answer {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            state.metrics.lookup(&from_label, province, outcome, elapsed);
            out.push(token_answer(answer));
        }
        let response = pb::LookupBatchResponse { answers: out };
        state.capture("LookupBatch", "gateway->hub", &response);
        Ok(response)
    }

    /// A cached attestation for `lookup` fresh enough to serve without asking the node.
    async fn fresh_from_cache(
        &self,
        trust: &TrustList,
        key: &str,
        lookup: &Lookup,
        now: i64,
    ) -> Option<pb::SignedAttestation> {
        let state = &self.0;
        let entry = state.shared.cache_get(key).await.and_then(|b| CachedAttestation::decode(&*b).ok())?;
        if entry.node_serials.is_empty() || entry.node_serials.iter().any(|s| trust.is_revoked(s)) {
            state.metrics.cache("dropped_revoked");
            state.shared.cache_delete(key).await;
            return None;
        }
        let (signed, issued_at) = state.cached_verified(trust, key, &entry.attestation, lookup, now)?;
        (now.saturating_sub(issued_at) < state.cache_fresh_seconds).then(|| pb::SignedAttestation::clone(&signed))
    }

    /// One `AttestBatch` to `code`'s node for `pending`; each token's answer, checked.
    async fn ask_province(
        &self,
        trust: &TrustList,
        hub: &str,
        code: ProvinceCode,
        pending: Vec<Pending>,
        now: i64,
    ) -> Vec<(usize, Result<pb::SignedAttestation, GatewayError>)> {
        let state = &self.0;
        let all = |make: &dyn Fn() -> GatewayError| pending.iter().map(|p| (p.index, Err(make()))).collect::<Vec<_>>();
        if let Err(wait) = state.breakers.allow(code.as_str(), std::time::Instant::now()) {
            return all(&|| GatewayError::ProvinceUnavailable {
                province: code.clone(),
                cause: UnavailableCause::CircuitOpen(wait),
            });
        }
        let Ok(route) = state.route(trust, &code) else {
            state.breakers.record(code.as_str(), true, std::time::Instant::now());
            // The same refusal for every token (route() fails the same way each time).
            return all(&|| match state.route(trust, &code) {
                Err(e) => e,
                Ok(_) => GatewayError::ProvinceUnknown { province: code.clone() },
            });
        };
        let purpose = pending.first().map(|p| p.lookup.purpose.clone()).unwrap_or_default();
        let request = pb::AttestBatchRequest {
            tokens: pending.iter().map(|p| p.lookup.token.to_vec()).collect(),
            purpose,
            // Who asked, from the hub's verified certificate and the trust list (as for
            // AttestRequest): the node records it in each subject's disclosure log.
            hub_id: hub.to_owned(),
            hub_province: trust.hub_province(hub).map(ToString::to_string).unwrap_or_default(),
        };
        let (outcome, answered_by) = state
            .call_node(&code, &route, "AttestBatch", &request, |mut client, call| async move {
                node_call::attest_batch(&mut client, call).await
            })
            .await;
        let answer = match outcome {
            Some(Ok(answer)) => answer.into_inner(),
            Some(Err(status)) => return all(&|| node_failure(&code, status.clone())),
            None => return all(&|| GatewayError::ProvinceTimeout { province: code.clone() }),
        };
        state.capture("AttestBatch", "node->gateway", &answer.response);
        let violation = |reason: String, label: &'static str| {
            state.metrics.violation(code.as_str(), label);
            tracing::warn!(province = %code, reason = label, "policy violation: attestation refused");
            GatewayError::PolicyViolation { province: code.clone(), reason, label }
        };
        if answer.more {
            return all(&|| violation("node answered with more than one message".into(), "multiple_messages"));
        }
        let answers = answer.response.answers;
        if answers.len() != pending.len() {
            let reason = format!("node answered {} tokens of {}", answers.len(), pending.len());
            return all(&|| violation(reason.clone(), "answer_count"));
        }
        // Attestations verified together (same verdicts as one by one), refusals read as a
        // single call's.
        let mut results: Vec<Option<Result<pb::SignedAttestation, GatewayError>>> = Vec::new();
        results.resize_with(pending.len(), || None);
        let mut signed = Vec::new();
        for (i, answer) in answers.into_iter().enumerate() {
            match answer.answer {
                Some(pb::token_answer::Answer::Attestation(a)) => signed.push((i, a)),
                Some(pb::token_answer::Answer::Refusal(bytes)) => {
                    results[i] = Some(Err(node_failure(&code, refusal_status(&bytes))));
                }
                None => results[i] = Some(Err(violation("node answered without an attestation".into(), "empty"))),
            }
        }
        let items: Vec<_> = signed.iter().map(|(i, a)| (a, expected(&pending[*i].lookup))).collect();
        let verdicts = huren_pki::verify_attestations(trust, &items, now);
        let node_serials = route.served_by[answered_by].current();
        for ((i, attestation), verdict) in signed.into_iter().zip(verdicts) {
            let result = match verdict {
                Ok(verified) => {
                    if state.cache && !node_serials.is_empty() {
                        let ttl = cache_ttl(trust, &verified.attestation, now);
                        let bytes = attestation.encode_to_vec();
                        let entry =
                            CachedAttestation { attestation: bytes.clone(), node_serials: node_serials.to_vec() };
                        state.shared.cache_put(&pending[i].key, &entry.encode_to_vec(), ttl).await;
                        state.shared.remember_verified(&pending[i].key, &bytes, attestation.clone(), verified, ttl);
                    }
                    Ok(attestation)
                }
                Err(e) => Err(violation(e.to_string(), e.reason())),
            };
            results[i] = Some(result);
        }
        pending
            .iter()
            .zip(results)
            .map(|(p, r)| (p.index, r.unwrap_or_else(|| Err(violation("token left unanswered".into(), "empty")))))
            .collect()
    }
}
