//! gRPC services of a node: `Attestation` (for gateways) and `StatusAdmin` (for the
//! province's own admin identity). Domain errors become `tonic::Status` in [`NodeError`].

use std::sync::Arc;

use huren_pki::attest::{token_digest, valid_purpose, Status, PAYLOAD_VERSION};
use huren_pki::qr::{self, TOKEN_LEN};
use huren_pki::{Identity, ProvinceCode, TrustList};
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_runtime::live::LiveTrust;
use tonic::{Request, Response};

use crate::authz::{authorize, Call};
use crate::keys::KeyRing;
use crate::store::{NodeStore, StatusRecord, StoreError, TokenRecord};

/// Default purpose bound into a QR's embedded attestation.
pub const DEFAULT_QR_PURPOSE: &str = "transit.general";
/// Longest token lifetime a caller may ask for.
pub const MAX_TOKEN_LIFETIME_SECS: u32 = 86_400;

/// Tunables of a node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub attestation_ttl_seconds: i64,
    pub token_lifetime_seconds: u32,
    pub default_status_validity_seconds: i64,
    /// Source of time (the system clock outside tests).
    pub clock: Clock,
    /// How often the retention purge runs.
    pub retention_interval: std::time::Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            attestation_ttl_seconds: 300,
            token_lifetime_seconds: 300,
            default_status_validity_seconds: 7 * 86_400,
            clock: Clock::system(),
            retention_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// Everything a node's services share.
pub(crate) struct Inner {
    pub province: ProvinceCode,
    pub keys: KeyRing,
    pub trust: LiveTrust,
    pub store: Arc<dyn NodeStore>,
    pub settings: NodeSettings,
    /// Set once the sunset purge has run: every call is refused from then on.
    pub sunset: std::sync::atomic::AtomicBool,
    pub reports: tokio::sync::watch::Sender<crate::retention::PurgeReport>,
}

/// Failures of a node call, each mapped to one gRPC status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("{0}")]
    Unauthenticated(tonic::Status),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Unauthenticated(s) => s,
            NodeError::PermissionDenied(m) => tonic::Status::permission_denied(m),
            NodeError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            NodeError::NotFound(m) => tonic::Status::not_found(m),
            NodeError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            NodeError::Unavailable(m) => tonic::Status::unavailable(m),
            NodeError::Store(e) => {
                tracing::error!(error = %e, "status store failure");
                tonic::Status::unavailable(format!("node storage failure, nothing was changed; retry is safe: {e}"))
            }
            NodeError::Join(m) => tonic::Status::internal(m),
        }
    }
}

pub(crate) fn authorized<T>(request: &Request<T>, call: Call, own: &ProvinceCode) -> Result<Identity, NodeError> {
    let caller = huren_runtime::tls::peer(request).map_err(NodeError::Unauthenticated)?;
    authorize(call, &caller, own).map_err(NodeError::PermissionDenied)?;
    Ok(caller)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| NodeError::Join(e.to_string()))?
}

pub(crate) fn token_array(token: &[u8]) -> Result<[u8; TOKEN_LEN], NodeError> {
    <[u8; TOKEN_LEN]>::try_from(token)
        .map_err(|_| NodeError::InvalidArgument(format!("token must be {TOKEN_LEN} bytes, got {}", token.len())))
}

/// Whether a subject reference looks like personal data rather than a pseudonym:
/// an 18-character resident ID number or an 11-digit mobile number.
pub fn looks_like_personal_id(s: &str) -> bool {
    let b = s.as_bytes();
    let resident_id = b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x');
    let mobile = b.len() == 11 && b[0] == b'1' && b.iter().all(u8::is_ascii_digit);
    resident_id || mobile
}

fn check_subject_ref(subject_ref: &str) -> Result<(), NodeError> {
    let ok_chars = subject_ref.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
    if subject_ref.is_empty() || subject_ref.len() > 128 || !ok_chars {
        return Err(NodeError::InvalidArgument(
            "subject_ref must be 1-128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'".into(),
        ));
    }
    if looks_like_personal_id(subject_ref) {
        return Err(NodeError::InvalidArgument(
            "subject_ref looks like a resident ID or phone number; nodes hold pseudonymous references only".into(),
        ));
    }
    Ok(())
}

/// Checks a status change by `caller` against the rule registry and builds the stored
/// record. The record's authority is the caller's identity (URI), never a claim: a
/// non-green status must come from an authority identity of this province that the cited
/// rule names; the province admin identity may only set GREEN. A rule that names no
/// authority, no status or no maximum duration lets nobody apply it (fail closed).
pub fn validate_upsert(
    req: &pb::UpsertStatusRequest,
    caller: &huren_pki::Identity,
    trust: &TrustList,
    now: i64,
    default_validity: i64,
) -> Result<StatusRecord, NodeError> {
    check_subject_ref(&req.subject_ref)?;
    let status = Status::from_pb(req.status)
        .ok_or_else(|| NodeError::InvalidArgument("status must be GREEN, YELLOW or RED".into()))?;
    pb::TestRecency::try_from(req.test_recency)
        .map_err(|_| NodeError::InvalidArgument(format!("unknown test_recency {}", req.test_recency)))?;
    let valid_until = if req.valid_until == 0 { now + default_validity } else { req.valid_until };
    if valid_until <= now {
        return Err(NodeError::InvalidArgument(format!("valid_until {valid_until} is not in the future")));
    }
    if !req.authority.is_empty()
        && req.authority != caller.to_string()
        && caller.role.authority().is_none_or(|a| req.authority != a.to_string())
    {
        return Err(NodeError::PermissionDenied(format!(
            "authority {:?} is not the caller {caller}: the certificate says who applies a status",
            req.authority
        )));
    }
    if status == Status::Green {
        if !req.rule_id.is_empty() {
            return Err(NodeError::InvalidArgument("a GREEN status cites no rule; leave rule_id empty".into()));
        }
    } else {
        if req.rule_id.is_empty() {
            return Err(NodeError::FailedPrecondition(format!(
                "a {status} status must cite a registered rule (rule_id is empty)"
            )));
        }
        let rule = trust.rule(&req.rule_id).ok_or_else(|| {
            NodeError::FailedPrecondition(format!("rule {:?} is not in the rule registry", req.rule_id))
        })?;
        if !rule.may_assign.contains(&req.status) {
            return Err(NodeError::FailedPrecondition(format!("rule {:?} may not assign {status}", req.rule_id)));
        }
        let Some(authority) = caller.role.authority() else {
            return Err(NodeError::PermissionDenied(format!(
                "a {status} status must be applied by an authority identity (province/<code>/authority/<name>) \
                 that rule {:?} names; caller {caller} may only set GREEN",
                req.rule_id
            )));
        };
        if !rule.authorities.iter().any(|a| a.parse::<huren_pki::AuthorityRef>().is_ok_and(|a| a == authority)) {
            return Err(NodeError::PermissionDenied(format!(
                "authority {authority} is not allowed to apply rule {:?}",
                req.rule_id
            )));
        }
        if rule.max_duration_seconds <= 0 {
            return Err(NodeError::FailedPrecondition(format!(
                "rule {:?} sets no maximum duration, so it cannot be applied",
                req.rule_id
            )));
        }
        if valid_until - now > rule.max_duration_seconds {
            return Err(NodeError::FailedPrecondition(format!(
                "rule {:?} allows at most {} s; requested {} s",
                req.rule_id,
                rule.max_duration_seconds,
                valid_until - now
            )));
        }
    }
    Ok(StatusRecord {
        status: req.status,
        rule_id: req.rule_id.clone(),
        authority: caller.to_string(),
        valid_until,
        test_recency: req.test_recency,
        updated_at: now,
        version: 0,
    })
}

impl Inner {
    fn trust(&self) -> Arc<TrustList> {
        self.trust.current()
    }

    /// Refuses every call once the federation has been sunset.
    pub(crate) fn refuse_if_sunset(&self) -> Result<(), NodeError> {
        let trust = self.trust();
        let order = trust.sunset_in_force(self.settings.clock.now());
        if self.sunset.load(std::sync::atomic::Ordering::SeqCst) || order.is_some() {
            let reason = order.map(|o| o.reason.clone()).unwrap_or_default();
            return Err(NodeError::Unavailable(format!(
                "federation sunset: this node no longer serves and its subject data is deleted ({reason})"
            )));
        }
        Ok(())
    }

    /// Signs the minimal payload for a subject's current status.
    fn attest(
        &self,
        status: &StatusRecord,
        digest: [u8; 32],
        not_after: i64,
        purpose: &str,
        now: i64,
    ) -> Result<pb::SignedAttestation, NodeError> {
        let trust = self.trust();
        let lapsed;
        let (status, valid_until) = if status.valid_until > now {
            (status, status.valid_until)
        } else {
            // A lapsed status becomes what its rule's exit says (usually GREEN); with no
            // such exit the subject has no current status until re-assessed.
            let exit = trust.rule(&status.rule_id).map(|r| r.lapses_to).unwrap_or(0);
            if status.status == pb::HealthStatus::Green as i32 || exit == 0 {
                return Err(NodeError::FailedPrecondition(format!(
                    "subject has no current status in province {} (it lapsed); the province must re-assess",
                    self.province
                )));
            }
            let rule_id = if exit == pb::HealthStatus::Green as i32 { String::new() } else { status.rule_id.clone() };
            lapsed = StatusRecord { status: exit, rule_id, ..status.clone() };
            (&lapsed, now + self.settings.attestation_ttl_seconds)
        };
        let expires_at = (now + self.settings.attestation_ttl_seconds).min(valid_until).min(not_after);
        // Only the fields the trust list's policy allows for this purpose are ever built.
        let policy = trust.field_policy();
        if policy.allowed(purpose).is_none() {
            return Err(NodeError::InvalidArgument(format!("purpose {purpose} is not in the field policy")));
        }
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
        let key = self.keys.signing_key(&trust, &self.province, now).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "this node holds no attestation key that trust list {} lists as active for province {}",
                trust.sequence(),
                self.province
            ))
        })?;
        Ok(key.sign(&payload))
    }
}

/// `huren.v1.Attestation`.
#[derive(Clone)]
pub struct AttestationService(pub(crate) Arc<Inner>);

#[tonic::async_trait]
impl pb::attestation_server::Attestation for AttestationService {
    async fn attest(&self, request: Request<pb::AttestRequest>) -> Result<Response<pb::AttestResponse>, tonic::Status> {
        let span = tracing::info_span!("huren.node.attest", province = %self.0.province);
        huren_runtime::tracectx::adopt(&span, &request);
        tracing::Instrument::instrument(self.attest_inner(request), span).await
    }
}

impl AttestationService {
    async fn attest_inner(
        &self,
        request: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::Attest, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        let token = token_array(&req.token)?;
        if !valid_purpose(&req.purpose) {
            return Err(
                NodeError::InvalidArgument("purpose must be dotted lowercase words, e.g. transit.rail".into()).into()
            );
        }
        // Two point reads from redb (microseconds, from the page cache) and one signature:
        // done inline; a hop through the blocking pool would cost more than the work.
        let attestation = (|| -> Result<pb::SignedAttestation, NodeError> {
            let now = inner.settings.clock.now();
            let digest = token_digest(&token);
            let not_known =
                || NodeError::NotFound(format!("token is not known to province {} or has expired", inner.province));
            let record = inner.store.token(&digest)?.filter(|t| t.expires_at > now).ok_or_else(not_known)?;
            let status = inner.store.status(&record.subject_ref)?.ok_or_else(not_known)?;
            inner.attest(&status, digest, record.expires_at, &req.purpose, now)
        })()?;
        Ok(Response::new(pb::AttestResponse { attestation: Some(attestation) }))
    }
}

/// `huren.v1.StatusAdmin`.
#[derive(Clone)]
pub struct StatusAdminService(pub(crate) Arc<Inner>);

#[tonic::async_trait]
impl pb::status_admin_server::StatusAdmin for StatusAdminService {
    async fn upsert_status(
        &self,
        request: Request<pb::UpsertStatusRequest>,
    ) -> Result<Response<pb::UpsertStatusResponse>, tonic::Status> {
        let inner = self.0.clone();
        let caller = authorized(&request, Call::UpsertStatus, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        let version = blocking(move || {
            let record = validate_upsert(
                &req,
                &caller,
                &inner.trust(),
                inner.settings.clock.now(),
                inner.settings.default_status_validity_seconds,
            )?;
            Ok(inner.store.upsert(&req.subject_ref, record)?)
        })
        .await?;
        Ok(Response::new(pb::UpsertStatusResponse { version }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, tonic::Status> {
        let inner = self.0.clone();
        authorized(&request, Call::IssueToken, &inner.province)?;
        inner.refuse_if_sunset()?;
        let req = request.into_inner();
        check_subject_ref(&req.subject_ref)?;
        if req.lifetime_seconds > MAX_TOKEN_LIFETIME_SECS {
            return Err(NodeError::InvalidArgument(format!(
                "lifetime_seconds must be at most {MAX_TOKEN_LIFETIME_SECS}"
            ))
            .into());
        }
        let purpose = if req.purpose.is_empty() { DEFAULT_QR_PURPOSE.to_owned() } else { req.purpose.clone() };
        if !valid_purpose(&purpose) {
            return Err(
                NodeError::InvalidArgument("purpose must be dotted lowercase words, e.g. transit.rail".into()).into()
            );
        }
        let response = blocking(move || {
            let now = inner.settings.clock.now();
            let status = inner
                .store
                .status(&req.subject_ref)?
                .ok_or_else(|| NodeError::NotFound("subject_ref has no status at this node".into()))?;
            let token = qr::new_token().map_err(|e| NodeError::Join(format!("randomness unavailable: {e}")))?;
            let lifetime =
                if req.lifetime_seconds == 0 { inner.settings.token_lifetime_seconds } else { req.lifetime_seconds };
            let expires_at = now + i64::from(lifetime);
            let digest = token_digest(&token);
            let attestation = inner.attest(&status, digest, expires_at, &purpose, now)?;
            inner.store.put_token(&digest, &TokenRecord { subject_ref: req.subject_ref.clone(), expires_at })?;
            let qr = qr::encode_qr(&pb::QrCode { attestation: Some(attestation), token: token.to_vec() });
            Ok(pb::IssueTokenResponse { token: token.to_vec(), expires_at, qr })
        })
        .await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_ids_are_recognised() {
        assert!(looks_like_personal_id("34010419900101123X"));
        assert!(looks_like_personal_id("13800138000"));
        assert!(!looks_like_personal_id("ah-subj-000001"));
        assert!(check_subject_ref("a b").is_err());
        assert!(check_subject_ref("").is_err());
    }
}
