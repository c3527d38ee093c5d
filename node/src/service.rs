//! gRPC services of a node: `Attestation` (for gateways: `Attest`, `AttestBatch`, and
//! `RecordDisclosures` for the checks they answered from their cache while the node was
//! down) and `StatusAdmin` (for the
//! province's own admin and authority identities). Requests become domain types on the way
//! in ([`crate::request`]); refusals are [`NodeError`]s, sent as typed statuses in one place
//! ([`crate::error`]).

use std::sync::Arc;

use huren_pki::attest::{token_digest, Status, PAYLOAD_VERSION};
use huren_pki::qr;
use huren_pki::{Identity, ProvinceCode, TrustList};
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_runtime::live::LiveTrust;
use tonic::{Request, Response};

use crate::authz::{authorize, Call};
use crate::disclosure::{Disclosures, Pending};
use crate::error::{NodeError, Signing, StatusChangeRefused};
use crate::keys::KeyRing;
use crate::lift;
use crate::metrics;
use crate::request::{
    deferred_checks, Attest, DisclosureQuery, HubContext, InvalidRequest, StatusChange, TokenRequest,
};
use crate::store::{DisclosureRecord, NodeStore, StatusRecord, StoreError, TokenRecord, SERVED_FROM_CACHE};

/// Tunables of a node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Longest validity of an attestation, seconds (also clamped to the trust list's
    /// lifetime bound and the signing key's `not_after` when signing).
    pub attestation_ttl_seconds: i64,
    /// Token lifetime when `IssueToken` asks for none, seconds.
    pub token_lifetime_seconds: u32,
    /// Validity of a status when `UpsertStatus` gives none, seconds.
    pub default_status_validity_seconds: i64,
    /// Source of time (the system clock outside tests).
    pub clock: Clock,
    /// How often the retention purge runs.
    pub retention_interval: std::time::Duration,
    /// Limits on TLS handshakes in progress at this node.
    pub handshakes: huren_runtime::tls::HandshakeLimits,
    /// Where the node's metrics go; `None` uses the global meter provider's `huren-node`
    /// meter (or the one given to [`crate::Node::with_meter`]).
    pub meter: Option<opentelemetry::metrics::Meter>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            attestation_ttl_seconds: 300,
            token_lifetime_seconds: 300,
            default_status_validity_seconds: 7 * 86_400,
            clock: Clock::system(),
            retention_interval: std::time::Duration::from_secs(60),
            handshakes: huren_runtime::tls::HandshakeLimits::default(),
            meter: None,
        }
    }
}

/// Everything a node's services share.
pub(crate) struct Inner {
    pub(crate) province: ProvinceCode,
    pub(crate) keys: KeyRing,
    pub(crate) trust: LiveTrust,
    pub(crate) store: Arc<dyn NodeStore>,
    pub(crate) settings: NodeSettings,
    /// Set once the sunset purge has run: every call is refused from then on.
    pub(crate) sunset: std::sync::atomic::AtomicBool,
    pub(crate) reports: tokio::sync::watch::Sender<crate::retention::PurgeReport>,
    /// The request instruments, set when the node starts serving.
    pub(crate) metrics: std::sync::OnceLock<crate::metrics::NodeMetrics>,

    /// The disclosure log's queue and writer (see [`crate::disclosure`]).
    pub(crate) disclosures: Arc<Disclosures>,
}

/// The caller of `request`, if it may make `call` on this province's node.
pub(crate) fn authorized<T>(request: &Request<T>, call: Call, own: &ProvinceCode) -> Result<Identity, NodeError> {
    Ok(huren_runtime::error::authorized(request, |caller| authorize(call, caller, own))?)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| NodeError::Internal(format!("blocking task failed: {e}")))?
}

/// How often a status change is decided again when another change to the same subject
/// got in between its read and its write.
const UPSERT_ATTEMPTS: usize = 8;

/// Checks a well-formed status change by `caller` against the rule registry and the
/// subject's `current` status, and builds the stored record. The record's authority is the
/// caller's identity (URI), never a claim: a non-green status must come from an authority
/// identity of this province that the cited rule names; the province admin identity may
/// only set GREEN, and only where no non-green status holds. Lifting a held status before
/// it lapses is for the authorities its rule names as lifters (the `lift` module); the record
/// then names the lifted rule. A rule that names no authority, no status or no maximum
/// duration lets nobody apply it (fail closed).
pub(crate) fn validate_upsert(
    change: &StatusChange,
    current: Option<&StatusRecord>,
    caller: &Identity,
    trust: &TrustList,
    now: i64,
    default_validity: i64,
) -> Result<StatusRecord, NodeError> {
    let status = change.status;
    let valid_until = change.valid_until.unwrap_or(now + default_validity);
    if valid_until <= now {
        return Err(InvalidRequest::ValidUntil(valid_until).into());
    }
    if !change.authority.is_empty()
        && change.authority != caller.to_string()
        && caller.role.authority().is_none_or(|a| change.authority != a.to_string())
    {
        return Err(StatusChangeRefused::AuthorityNotCaller {
            claimed: change.authority.clone(),
            caller: caller.clone(),
        }
        .into());
    }
    let rule_id = || change.rule_id.clone();
    if status == Status::Green {
        if !change.rule_id.is_empty() {
            return Err(InvalidRequest::GreenWithRule.into());
        }
    } else {
        if change.rule_id.is_empty() {
            return Err(StatusChangeRefused::RuleRequired { status }.into());
        }
        let rule =
            trust.rule(&change.rule_id).ok_or_else(|| StatusChangeRefused::RuleUnknown { rule_id: rule_id() })?;
        if !rule.may_assign.contains(&(status.to_pb() as i32)) {
            return Err(StatusChangeRefused::RuleCannotAssign { rule_id: rule_id(), status }.into());
        }
        let Some(authority) = caller.role.authority() else {
            return Err(
                StatusChangeRefused::AuthorityRequired { status, rule_id: rule_id(), caller: caller.clone() }.into()
            );
        };
        if !rule.authorities.iter().any(|a| a.parse::<huren_pki::AuthorityRef>().is_ok_and(|a| a == authority)) {
            return Err(StatusChangeRefused::AuthorityNotAllowed { authority, rule_id: rule_id() }.into());
        }
        if rule.max_duration_seconds <= 0 {
            return Err(StatusChangeRefused::RuleNotApplicable { rule_id: rule_id() }.into());
        }
        if valid_until - now > rule.max_duration_seconds {
            return Err(StatusChangeRefused::DurationExceedsRule {
                rule_id: rule_id(),
                max_seconds: rule.max_duration_seconds,
                requested_seconds: valid_until - now,
            }
            .into());
        }
    }
    let held = lift::held(current, trust, now);
    let replacement = lift::Replacement { status, rule_id: &change.rule_id, valid_until };
    let lifted_rule_id = lift::decide(held.as_ref(), &replacement, caller, trust)?.unwrap_or_default();
    Ok(StatusRecord {
        status: status.to_pb() as i32,
        rule_id: change.rule_id.clone(),
        authority: caller.to_string(),
        valid_until,
        test_recency: change.test_recency as i32,
        updated_at: now,
        version: 0,
        lifted_rule_id,
    })
}

impl Inner {
    pub(crate) fn trust(&self) -> Arc<TrustList> {
        self.trust.current()
    }

    /// Refuses every call once the federation has been sunset.
    pub(crate) fn refuse_if_sunset(&self) -> Result<(), NodeError> {
        let trust = self.trust();
        let order = trust.sunset_in_force(self.settings.clock.now());
        if self.sunset.load(std::sync::atomic::Ordering::SeqCst) || order.is_some() {
            let reason = order.map(|o| o.reason.clone()).unwrap_or_default();
            return Err(NodeError::Sunset { reason });
        }
        Ok(())
    }

    /// Signs the minimal payload for a subject's current status.
    pub(crate) fn attest(
        &self,
        status: &StatusRecord,
        digest: [u8; 32],
        not_after: i64,
        purpose: &str,
        now: i64,
    ) -> Result<pb::SignedAttestation, NodeError> {
        let trust = self.trust();
        let key = self.keys.signing_key(&trust, &self.province, now);
        self.attest_with(&trust, key.as_deref(), status, digest, not_after, purpose, now)
    }

    /// [`Inner::attest`] with the trust list and signing key already looked up (once for a
    /// whole `AttestBatch`).
    #[allow(clippy::too_many_arguments)]
    fn attest_with(
        &self,
        trust: &TrustList,
        key: Option<&huren_pki::attest::AttestationKey>,
        status: &StatusRecord,
        digest: [u8; 32],
        not_after: i64,
        purpose: &str,
        now: i64,
    ) -> Result<pb::SignedAttestation, NodeError> {
        let lapsed;
        let (status, valid_until) = if status.valid_until > now {
            (status, status.valid_until)
        } else {
            // A lapsed status becomes what its rule's exit says (usually GREEN); with no
            // such exit the subject has no current status until re-assessed.
            let exit = trust.rule(&status.rule_id).map(|r| r.lapses_to).unwrap_or(0);
            if status.status == pb::HealthStatus::Green as i32 || exit == 0 {
                return Err(NodeError::NoCurrentStatus { province: self.province.clone() });
            }
            let rule_id = if exit == pb::HealthStatus::Green as i32 { String::new() } else { status.rule_id.clone() };
            lapsed = StatusRecord { status: exit, rule_id, ..status.clone() };
            (&lapsed, now + self.settings.attestation_ttl_seconds)
        };
        // Only the fields the trust list's policy allows for this purpose are ever built.
        let policy = trust.field_policy();
        if policy.allowed(purpose).is_none() {
            return Err(NodeError::PurposeNotInPolicy { purpose: purpose.to_owned() });
        }
        let key = key.ok_or_else(|| NodeError::NoSigningKey {
            province: self.province.clone(),
            signing: Signing::Attestation { trust_list: trust.sequence() },
        })?;
        // Never sign what a verifier refuses: within the trust list's lifetime bound and
        // the signing key's window, whatever the configured TTL or the token's lifetime.
        let key_not_after =
            trust.province(&self.province).and_then(|p| p.keys.get(&key.kid())).map_or(now, |k| k.not_after);
        let expires_at = (now + self.settings.attestation_ttl_seconds)
            .min(valid_until)
            .min(not_after)
            .min(now + trust.attestation_bounds().max_lifetime)
            .min(key_not_after);
        let test_recency = if policy.allows(purpose, "test_recency") { status.test_recency } else { 0 };
        let payload = pb::AttestationPayload {
            version: PAYLOAD_VERSION,
            province: self.province.to_string(),
            status: status.status,
            issued_at: now,
            expires_at,
            token_digest: digest.to_vec(),
            rule_id: status.rule_id.clone(),
            test_recency,
            purpose: purpose.to_owned(),
        };
        Ok(key.sign(&payload))
    }
}

/// `huren.v1.Attestation`.
#[derive(Clone)]
pub(crate) struct AttestationService(pub(crate) Arc<Inner>);

#[tonic::async_trait]
impl pb::attestation_server::Attestation for AttestationService {
    async fn attest(&self, request: Request<pb::AttestRequest>) -> Result<Response<pb::AttestResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("huren.node.attest", province = %self.0.province);
        huren_runtime::tracectx::adopt(&span, &request);
        let result = tracing::Instrument::instrument(self.attest_inner(request), span).await;
        if let Some(m) = self.0.metrics.get() {
            m.attestation(&metrics::outcome(&result), started.elapsed().as_secs_f64());
        }
        Ok(Response::new(pb::AttestResponse { attestation: Some(result?) }))
    }

    async fn attest_batch(
        &self,
        request: Request<pb::AttestBatchRequest>,
    ) -> Result<Response<pb::AttestBatchResponse>, tonic::Status> {
        let span = tracing::info_span!("huren.node.attest_batch", province = %self.0.province);
        huren_runtime::tracectx::adopt(&span, &request);
        Ok(Response::new(tracing::Instrument::instrument(self.attest_batch_inner(request), span).await?))
    }

    async fn record_disclosures(
        &self,
        request: Request<pb::RecordDisclosuresRequest>,
    ) -> Result<Response<pb::RecordDisclosuresResponse>, tonic::Status> {
        let span = tracing::info_span!("huren.node.record_disclosures", province = %self.0.province);
        huren_runtime::tracectx::adopt(&span, &request);
        let result = tracing::Instrument::instrument(self.record_disclosures_inner(request), span).await;
        if let (Some(m), Ok(counts)) = (self.0.metrics.get(), &result) {
            m.deferred_disclosures(counts);
        }
        Ok(Response::new(result?))
    }
}

/// Most tokens one `AttestBatch` (and one gateway `LookupBatch`) may carry.
pub const MAX_BATCH_TOKENS: usize = 500;

impl AttestationService {
    /// `AttestBatch`: the caller, the sunset and the batch's size and purpose are checked
    /// once; the trust list and the signing key are looked up once; then each token is
    /// answered exactly as `Attest` would answer it.
    async fn attest_batch_inner(
        &self,
        request: Request<pb::AttestBatchRequest>,
    ) -> Result<pb::AttestBatchResponse, NodeError> {
        let inner = &self.0;
        let gateway = authorized(&request, Call::Attest, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        if req.tokens.len() > MAX_BATCH_TOKENS {
            return Err(InvalidRequest::AttestBatchSize(req.tokens.len()).into());
        }
        // As for Attest: every check that reaches a subject is recorded in its disclosure
        // log, so a batch that does not say which hub asked is not answered.
        let hub = HubContext::of_batch(&req).ok_or(NodeError::HubContextRequired)?;
        if !huren_pki::attest::valid_purpose(&req.purpose) {
            return Err(InvalidRequest::Purpose.into());
        }
        let now = inner.settings.clock.now();
        let trust = inner.trust();
        let key = inner.keys.signing_key(&trust, &inner.province, now);
        // Each token's answer, and the subject it reached (for the disclosure log).
        let answer = |token: Vec<u8>| -> (Result<pb::SignedAttestation, NodeError>, Option<String>) {
            let req =
                match Attest::try_from(pb::AttestRequest { token, purpose: req.purpose.clone(), ..Default::default() })
                {
                    Ok(req) => req,
                    Err(e) => return (Err(e.into()), None),
                };
            let digest = token_digest(&req.token);
            let not_known = || NodeError::TokenUnknown { province: Some(inner.province.clone()) };
            let record = match inner.store.token(&digest) {
                Ok(Some(t)) if t.expires_at > now => t,
                Ok(_) => return (Err(not_known()), None),
                Err(e) => return (Err(e.into()), None),
            };
            let status = match inner.store.status(&record.subject_ref) {
                Ok(Some(status)) => status,
                Ok(None) => return (Err(not_known()), None),
                Err(e) => return (Err(e.into()), None),
            };
            let signed =
                inner.attest_with(&trust, key.as_deref(), &status, digest, record.expires_at, &req.purpose, now);
            (signed, Some(record.subject_ref))
        };
        let mut answers = Vec::with_capacity(req.tokens.len());
        for token in req.tokens {
            let (signed, subject) = answer(token);
            if let Some(subject_ref) = subject {
                let disclosure = DisclosureRecord {
                    hub_id: hub.hub_id.clone(),
                    hub_province: hub.hub_province.clone(),
                    purpose: req.purpose.clone(),
                    time: now,
                    gateway: gateway.to_string(),
                    outcome: attest_outcome(&signed).to_owned(),
                    ..Default::default()
                };
                inner.disclosures.record(Pending { subject_ref, record: disclosure }).await;
            }
            answers.push(pb::TokenAnswer {
                answer: Some(match signed {
                    Ok(signed) => pb::token_answer::Answer::Attestation(signed),
                    Err(e) => pb::token_answer::Answer::Refusal(tonic::Status::from(e).details().to_vec()),
                }),
            });
        }
        Ok(pb::AttestBatchResponse { answers })
    }

    async fn attest_inner(&self, request: Request<pb::AttestRequest>) -> Result<pb::SignedAttestation, NodeError> {
        let inner = &self.0;
        let gateway = authorized(&request, Call::Attest, &inner.province)?;
        inner.refuse_if_sunset()?;
        let wire = request.into_inner();
        // Every check that reaches a subject is recorded in its disclosure log: a call
        // that does not say which hub asked is not answered.
        let hub = HubContext::of(&wire).ok_or(NodeError::HubContextRequired)?;
        let req = Attest::try_from(wire)?;
        // Two point reads from redb (microseconds, from the page cache) and one signature:
        // done inline; a hop through the blocking pool would cost more than the work.
        let now = inner.settings.clock.now();
        let digest = token_digest(&req.token);
        let not_known = || NodeError::TokenUnknown { province: Some(inner.province.clone()) };
        let record = inner.store.token(&digest)?.filter(|t| t.expires_at > now).ok_or_else(not_known)?;
        let status = inner.store.status(&record.subject_ref)?.ok_or_else(not_known)?;
        let signed = inner.attest(&status, digest, record.expires_at, &req.purpose, now);
        let outcome = attest_outcome(&signed);
        // Off the lookup path: queued for the batching writer.
        let disclosure = DisclosureRecord {
            hub_id: hub.hub_id,
            hub_province: hub.hub_province,
            purpose: req.purpose,
            time: now,
            gateway: gateway.to_string(),
            outcome: outcome.to_owned(),
            ..Default::default()
        };
        inner.disclosures.record(Pending { subject_ref: record.subject_ref, record: disclosure }).await;
        signed
    }
}

impl AttestationService {
    /// `RecordDisclosures`: the caller (a gateway) and the sunset are checked once, every
    /// entry's form before anything is recorded; then each entry in the clock and retention
    /// window whose token the node holds (and that had not expired when the gateway served
    /// it) is queued for the disclosure writer, exactly as `Attest` queues its records. The
    /// rest are counted, not refused: a token may have expired and been purged during the
    /// outage.
    async fn record_disclosures_inner(
        &self,
        request: Request<pb::RecordDisclosuresRequest>,
    ) -> Result<pb::RecordDisclosuresResponse, NodeError> {
        let inner = self.0.clone();
        let gateway = authorized(&request, Call::RecordDisclosures, &inner.province)?;
        inner.refuse_if_sunset()?;
        let checks = deferred_checks(request.into_inner())?;
        let now = inner.settings.clock.now();
        // Older records would be purged at once: the window the trust list keeps them for.
        let oldest = now - inner.trust().disclosure_max_age();
        let skew = huren_pki::trust::MAX_CLOCK_SKEW_SECS;
        let store = inner.store.clone();
        let (resolved, mut counts) = blocking(move || {
            let mut counts = pb::RecordDisclosuresResponse::default();
            let mut resolved = Vec::with_capacity(checks.len());
            for check in checks {
                if check.checked_at > now + skew {
                    counts.in_future += 1;
                } else if check.checked_at < oldest {
                    counts.too_old += 1;
                } else {
                    match store.token(&check.token_digest)? {
                        // The gateway served an attestation no longer valid than the token.
                        Some(token) if token.expires_at + skew > check.checked_at => {
                            resolved.push((token.subject_ref, check))
                        }
                        _ => counts.token_unknown += 1,
                    }
                }
            }
            Ok((resolved, counts))
        })
        .await?;
        for (subject_ref, check) in resolved {
            let record = DisclosureRecord {
                hub_id: check.hub.hub_id,
                hub_province: check.hub.hub_province,
                purpose: check.purpose,
                time: check.checked_at,
                gateway: gateway.to_string(),
                outcome: SERVED_FROM_CACHE.to_owned(),
                ..Default::default()
            };
            inner.disclosures.record(Pending { subject_ref, record }).await;
            counts.recorded += 1;
        }
        Ok(counts)
    }
}

/// What a disclosure record says of an attestation's outcome.
fn attest_outcome(signed: &Result<pb::SignedAttestation, NodeError>) -> &'static str {
    match signed {
        Ok(_) => "attested",
        Err(NodeError::NoCurrentStatus { .. }) => "no_current_status",
        Err(NodeError::PurposeNotInPolicy { .. }) => "purpose_not_in_policy",
        Err(NodeError::NoSigningKey { .. }) => "no_signing_key",
        Err(_) => "refused",
    }
}

/// `huren.v1.StatusAdmin`.
#[derive(Clone)]
pub(crate) struct StatusAdminService(pub(crate) Arc<Inner>);

#[tonic::async_trait]
impl pb::status_admin_server::StatusAdmin for StatusAdminService {
    async fn upsert_status(
        &self,
        request: Request<pb::UpsertStatusRequest>,
    ) -> Result<Response<pb::UpsertStatusResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let status = metrics::status_label(request.get_ref().status);
        let result = self.upsert_status_inner(request).await;
        if let Some(m) = self.0.metrics.get() {
            m.status_change(status, &metrics::outcome(&result), started.elapsed().as_secs_f64());
        }
        Ok(Response::new(pb::UpsertStatusResponse { version: result? }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let result = self.issue_token_inner(request).await;
        if let Some(m) = self.0.metrics.get() {
            m.token(&metrics::outcome(&result), started.elapsed().as_secs_f64());
        }
        Ok(Response::new(result?))
    }

    async fn publish_statuses(
        &self,
        request: Request<pb::PublishStatusesRequest>,
    ) -> Result<Response<pb::PublishStatusesResponse>, tonic::Status> {
        Ok(Response::new(self.publish_statuses_inner(request).await?))
    }

    async fn issue_tokens(
        &self,
        request: Request<pb::IssueTokensRequest>,
    ) -> Result<Response<pb::IssueTokensResponse>, tonic::Status> {
        Ok(Response::new(self.issue_tokens_inner(request).await?))
    }

    async fn list_disclosures(
        &self,
        request: Request<pb::ListDisclosuresRequest>,
    ) -> Result<Response<pb::ListDisclosuresResponse>, tonic::Status> {
        Ok(Response::new(self.list_disclosures_inner(request).await?))
    }
}

impl StatusAdminService {
    async fn upsert_status_inner(&self, request: Request<pb::UpsertStatusRequest>) -> Result<u64, NodeError> {
        let inner = self.0.clone();
        let caller = authorized(&request, Call::UpsertStatus, &inner.province)?;
        inner.refuse_if_sunset()?;
        let change = StatusChange::try_from(request.into_inner())?;
        blocking(move || {
            // Decided on the status read, written only if it is still that one.
            for _ in 0..UPSERT_ATTEMPTS {
                let current = inner.store.status(&change.subject_ref)?;
                let record = validate_upsert(
                    &change,
                    current.as_ref(),
                    &caller,
                    &inner.trust(),
                    inner.settings.clock.now(),
                    inner.settings.default_status_validity_seconds,
                )?;
                let expected = current.map_or(0, |c| c.version);
                if let Some(version) = inner.store.upsert_if(&change.subject_ref, expected, record)? {
                    return Ok(version);
                }
            }
            Err(StoreError::Backend(format!(
                "status change kept conflicting with other changes to the subject ({UPSERT_ATTEMPTS} attempts)"
            ))
            .into())
        })
        .await
    }

    /// A subject's disclosure log for its province's app backend (the admin identity),
    /// hub ids resolved to their registered names in the node's trust list.
    async fn list_disclosures_inner(
        &self,
        request: Request<pb::ListDisclosuresRequest>,
    ) -> Result<pb::ListDisclosuresResponse, NodeError> {
        let inner = self.0.clone();
        authorized(&request, Call::ListDisclosures, &inner.province)?;
        let query = DisclosureQuery::try_from(request.into_inner())?;
        blocking(move || {
            let now = inner.settings.clock.now();
            let since = now - i64::from(query.days) * 86_400;
            let trust = inner.trust();
            let found = inner.store.disclosures(&query.subject_ref, since, now)?;
            let disclosures = found
                .entries
                .into_iter()
                .map(|d| pb::Disclosure {
                    hub_name: trust.hub_name(&d.hub_id).unwrap_or_default().to_owned(),
                    count: d.checks(),
                    last_time: d.last(),
                    hub_id: d.hub_id,
                    hub_province: d.hub_province,
                    purpose: d.purpose,
                    time: d.time,
                    gateway: d.gateway,
                    outcome: d.outcome,
                })
                .collect();
            Ok(pb::ListDisclosuresResponse { disclosures, unitemized_checks: found.unitemized })
        })
        .await
    }

    async fn issue_token_inner(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<pb::IssueTokenResponse, NodeError> {
        let inner = self.0.clone();
        authorized(&request, Call::IssueToken, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = TokenRequest::try_from(request.into_inner())?;
        blocking(move || {
            let now = inner.settings.clock.now();
            let status = inner.store.status(&req.subject_ref)?.ok_or(NodeError::SubjectUnknown)?;
            let token = qr::new_token().map_err(|e| NodeError::Internal(format!("randomness unavailable: {e}")))?;
            let lifetime = req.lifetime_seconds.unwrap_or(inner.settings.token_lifetime_seconds);
            let expires_at = now + i64::from(lifetime);
            let digest = token_digest(&token);
            let attestation = inner.attest(&status, digest, expires_at, &req.purpose, now)?;
            inner.store.put_token(&digest, &TokenRecord { subject_ref: req.subject_ref.clone(), expires_at })?;
            let qr = qr::encode_qr(&pb::QrCode { attestation: Some(attestation), token: token.to_vec() });
            Ok(pb::IssueTokenResponse { token: token.to_vec(), expires_at, qr })
        })
        .await
    }
}
