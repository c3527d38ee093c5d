//! Why a node refuses a call, typed, and the one place where that becomes a
//! `tonic::Status` (`impl From<NodeError> for tonic::Status`).
//!
//! Each [`NodeError`] knows its [`Reason`] (and so its gRPC code), whether retrying helps,
//! its data-free metadata (province, field, purpose, rule id, status colour — never a token
//! or a subject reference) and its outcome label; [`huren_runtime::error::to_status`] sends
//! them as `google.rpc.ErrorInfo` and `RetryInfo` beside the unchanged message.

use huren_pki::attest::Status;
use huren_pki::{AuthorityRef, Identity, ProvinceCode};
use huren_runtime::error::{to_status, CallerError, Reason, Refusal, Retry, RETRY_SOON};

use crate::request::InvalidRequest;
use crate::store::StoreError;

/// Failures of a node call, each sent as one typed refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No acceptable client identity, or one that may not call this node RPC.
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// A malformed request field.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// A status change that the caller's identity or the rule registry does not allow.
    #[error(transparent)]
    StatusChange(#[from] StatusChangeRefused),
    /// The token is not known here or has expired.
    #[error("token is not known to {} or has expired", holder(.province.as_ref()))]
    TokenUnknown {
        /// This node's province when the message names it (`Attest`); `None`: "this node".
        province: Option<ProvinceCode>,
    },
    /// The subject's status lapsed and its rule names no status to lapse to.
    #[error("subject has no current status in province {province} (it lapsed); the province must re-assess")]
    NoCurrentStatus {
        /// This node's province.
        province: ProvinceCode,
    },
    /// `IssueToken` for a subject reference with no status here.
    #[error("subject_ref has no status at this node")]
    SubjectUnknown,
    /// The purpose is not in the trust list's field policy.
    #[error("purpose {purpose} is not in the field policy")]
    PurposeNotInPolicy {
        /// The purpose asked.
        purpose: String,
    },
    /// No held attestation key is active in the trust list, so nothing can be signed.
    #[error("{}", no_key(.province, .signing))]
    NoSigningKey {
        /// This node's province.
        province: ProvinceCode,
        /// What was to be signed.
        signing: Signing,
    },
    /// A sunset order is in force: the node serves nothing and its subject data is deleted.
    #[error("federation sunset: this node no longer serves and its subject data is deleted ({reason})")]
    Sunset {
        /// The reason the sunset order gives (public, from the signed trust list).
        reason: String,
    },
    /// The status store failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault inside the node (a task that failed, no randomness, its own data unreadable).
    #[error("{0}")]
    Internal(String),
    /// An `Attest` that does not say which hub asked: nothing is answered that cannot be
    /// recorded in the subject's disclosure log.
    #[error(
        "Attest must say which hub asked (hub_id, and hub_province if the hub has one) so the check can be \
         recorded in the subject's disclosure log; the gateway sets them from the hub's certificate"
    )]
    HubContextRequired,
}

/// What a node signs with its attestation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signing {
    /// An attestation, under the trust list of this sequence.
    Attestation {
        /// The trust list's sequence.
        trust_list: u64,
    },
    /// A deletion receipt.
    Receipt,
    /// A tree head of the transparency log.
    TreeHead,
}

fn holder(province: Option<&ProvinceCode>) -> String {
    match province {
        Some(province) => format!("province {province}"),
        None => "this node".to_owned(),
    }
}

fn no_key(province: &ProvinceCode, signing: &Signing) -> String {
    match signing {
        Signing::Attestation { trust_list } => format!(
            "this node holds no attestation key that trust list {trust_list} lists as active for province {province}"
        ),
        Signing::Receipt => format!("no active attestation key for province {province}; cannot sign a receipt"),
        Signing::TreeHead => format!("no active attestation key for province {province}"),
    }
}

/// A status change refused by who the caller is or by the rule registry
/// (`service::validate_upsert`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusChangeRefused {
    /// The request names an authority other than the caller.
    #[error("authority {claimed:?} is not the caller {caller}: the certificate says who applies a status")]
    AuthorityNotCaller {
        /// The authority the request names.
        claimed: String,
        /// The caller's identity.
        caller: Identity,
    },
    /// A non-green status without a rule.
    #[error("a {status} status must cite a registered rule (rule_id is empty)")]
    RuleRequired {
        /// The status asked.
        status: Status,
    },
    /// The rule is not in the registry.
    #[error("rule {rule_id:?} is not in the rule registry")]
    RuleUnknown {
        /// The rule cited.
        rule_id: String,
    },
    /// The rule may not assign the status.
    #[error("rule {rule_id:?} may not assign {status}")]
    RuleCannotAssign {
        /// The rule cited.
        rule_id: String,
        /// The status asked.
        status: Status,
    },
    /// A non-green status from a caller that is no authority identity (the admin).
    #[error(
        "a {status} status must be applied by an authority identity (province/<code>/authority/<name>) \
         that rule {rule_id:?} names; caller {caller} may only set GREEN"
    )]
    AuthorityRequired {
        /// The status asked.
        status: Status,
        /// The rule cited.
        rule_id: String,
        /// The caller's identity.
        caller: Identity,
    },
    /// The rule does not name the calling authority.
    #[error("authority {authority} is not allowed to apply rule {rule_id:?}")]
    AuthorityNotAllowed {
        /// The calling authority.
        authority: AuthorityRef,
        /// The rule cited.
        rule_id: String,
    },
    /// The rule sets no maximum duration, so nobody may apply it.
    #[error("rule {rule_id:?} sets no maximum duration, so it cannot be applied")]
    RuleNotApplicable {
        /// The rule cited.
        rule_id: String,
    },
    /// The requested validity is longer than the rule's maximum.
    #[error("rule {rule_id:?} allows at most {max_seconds} s; requested {requested_seconds} s")]
    DurationExceedsRule {
        /// The rule cited.
        rule_id: String,
        /// The rule's maximum duration.
        max_seconds: i64,
        /// The duration asked.
        requested_seconds: i64,
    },
    /// The change would lift a status the subject holds before it lapses, and the caller
    /// is not among the authorities its rule lets lift it (see the node's `lift` module).
    #[error(
        "the subject holds a current {status} status under rule {rule_id:?}; only {} may lift it before it \
         lapses, not {caller}",
        lifters(.may_lift)
    )]
    LiftNotAllowed {
        /// The rule the held status is under.
        rule_id: String,
        /// The held status.
        status: Status,
        /// The authorities (`<province>/<name>`) that may lift it.
        may_lift: Vec<String>,
        /// The caller's identity (boxed: the refusal stays small).
        caller: Box<Identity>,
    },
}

fn lifters(may_lift: &[String]) -> String {
    if may_lift.is_empty() {
        "no one".to_owned()
    } else {
        format!("the authorities {}", may_lift.join(", "))
    }
}

impl StatusChangeRefused {
    fn reason(&self) -> Reason {
        match self {
            StatusChangeRefused::AuthorityNotCaller { .. } => Reason::AuthorityNotCaller,
            StatusChangeRefused::RuleRequired { .. } => Reason::RuleRequired,
            StatusChangeRefused::RuleUnknown { .. } => Reason::RuleUnknown,
            StatusChangeRefused::RuleCannotAssign { .. } => Reason::RuleCannotAssign,
            StatusChangeRefused::AuthorityRequired { .. } => Reason::AuthorityRequired,
            StatusChangeRefused::AuthorityNotAllowed { .. } => Reason::AuthorityNotAllowed,
            StatusChangeRefused::RuleNotApplicable { .. } => Reason::RuleNotApplicable,
            StatusChangeRefused::DurationExceedsRule { .. } => Reason::DurationExceedsRule,
            StatusChangeRefused::LiftNotAllowed { .. } => Reason::LiftNotAllowed,
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        let rule = |r: &String| ("ruleId", r.clone());
        let status = |s: &Status| ("healthStatus", s.as_str().to_owned());
        match self {
            StatusChangeRefused::AuthorityNotCaller { .. } => Vec::new(),
            StatusChangeRefused::RuleRequired { status: s } => vec![status(s)],
            StatusChangeRefused::RuleUnknown { rule_id } | StatusChangeRefused::RuleNotApplicable { rule_id } => {
                vec![rule(rule_id)]
            }
            StatusChangeRefused::RuleCannotAssign { rule_id, status: s }
            | StatusChangeRefused::AuthorityRequired { rule_id, status: s, .. } => vec![rule(rule_id), status(s)],
            StatusChangeRefused::AuthorityNotAllowed { authority, rule_id } => {
                vec![rule(rule_id), ("authority", authority.to_string())]
            }
            StatusChangeRefused::DurationExceedsRule { rule_id, max_seconds, .. } => {
                vec![rule(rule_id), ("maxDurationSeconds", max_seconds.to_string())]
            }
            StatusChangeRefused::LiftNotAllowed { rule_id, may_lift, .. } => {
                vec![rule(rule_id), ("mayLift", may_lift.join(","))]
            }
        }
    }
}

impl Refusal for NodeError {
    fn reason(&self) -> Reason {
        match self {
            NodeError::Caller(e) => e.reason(),
            NodeError::Invalid(_) => Reason::InvalidRequest,
            NodeError::StatusChange(e) => e.reason(),
            NodeError::TokenUnknown { .. } => Reason::TokenUnknown,
            NodeError::NoCurrentStatus { .. } => Reason::NoCurrentStatus,
            NodeError::SubjectUnknown => Reason::SubjectUnknown,
            NodeError::PurposeNotInPolicy { .. } => Reason::PurposeNotInPolicy,
            NodeError::NoSigningKey { .. } => Reason::NoSigningKey,
            NodeError::Sunset { .. } => Reason::Sunset,
            NodeError::Store(_) => Reason::StorageFailure,
            NodeError::Internal(_) => Reason::Internal,
            NodeError::HubContextRequired => Reason::HubContextRequired,
        }
    }

    fn retry(&self) -> Retry {
        match self {
            NodeError::Store(_) => Retry::After(RETRY_SOON),
            // The node looks for the key file again this often (see `KEY_RESCAN_EVERY`).
            NodeError::NoSigningKey { .. } => Retry::After(crate::KEY_RESCAN_EVERY),
            _ => Retry::No,
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            NodeError::Caller(e) => e.metadata(),
            NodeError::Invalid(e) => vec![("field", e.field().to_owned())],
            NodeError::StatusChange(e) => e.metadata(),
            NodeError::TokenUnknown { province: Some(p) }
            | NodeError::NoCurrentStatus { province: p }
            | NodeError::NoSigningKey { province: p, .. } => vec![("province", p.to_string())],
            NodeError::PurposeNotInPolicy { purpose } => vec![("purpose", purpose.clone())],
            NodeError::TokenUnknown { province: None }
            | NodeError::SubjectUnknown
            | NodeError::Sunset { .. }
            | NodeError::Store(_)
            | NodeError::Internal(_)
            | NodeError::HubContextRequired => Vec::new(),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            NodeError::Caller(e) => e.outcome(),
            NodeError::Invalid(_) | NodeError::PurposeNotInPolicy { .. } => "invalid_argument",
            NodeError::StatusChange(e) if e.reason().code() == tonic::Code::PermissionDenied => "permission_denied",
            NodeError::StatusChange(_) => "failed_precondition",
            NodeError::TokenUnknown { .. } | NodeError::SubjectUnknown => "not_found",
            NodeError::NoCurrentStatus { .. } => "no_current_status",
            NodeError::NoSigningKey { .. } | NodeError::Sunset { .. } | NodeError::Store(_) => "unavailable",
            NodeError::Internal(_) => "internal",
            NodeError::HubContextRequired => "failed_precondition",
        }
    }

    fn message(&self) -> String {
        match self {
            NodeError::Store(e) => format!("node storage failure, nothing was changed; retry is safe: {e}"),
            other => other.to_string(),
        }
    }
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        match &e {
            NodeError::Store(store) => tracing::error!(error = %store, "status store failure"),
            NodeError::Internal(cause) => tracing::error!(error = %cause, "node fault"),
            _ => {}
        }
        to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use huren_runtime::error::details;
    use tonic::Code;

    use super::*;

    fn province() -> ProvinceCode {
        "340000".parse().unwrap()
    }

    fn caller() -> Identity {
        "spiffe://huren.gov/province/340000/admin".parse().unwrap()
    }

    /// Every kind of refusal: its code, reason, retry delay and metadata as a client reads
    /// them from the status; and the message unchanged.
    #[test]
    fn every_variant_maps_to_its_code_reason_and_retry() {
        let rule = || "NHC-CC-2022-9".to_owned();
        type Case = (NodeError, Code, &'static str, Option<Duration>, Vec<(&'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            (
                CallerError::Unauthenticated("client certificate refused: it has been revoked".into()).into(),
                Code::Unauthenticated,
                "CERTIFICATE_REFUSED",
                None,
                vec![],
            ),
            (
                CallerError::NotAuthorized {
                    role: "hub",
                    message: "Attestation/Attest is for gateway identities".into(),
                }
                .into(),
                Code::PermissionDenied,
                "NOT_AUTHORIZED",
                None,
                vec![("callerRole", "hub")],
            ),
            (
                InvalidRequest::TokenLength(3).into(),
                Code::InvalidArgument,
                "INVALID_REQUEST",
                None,
                vec![("field", "token")],
            ),
            (
                InvalidRequest::PersonalData.into(),
                Code::InvalidArgument,
                "INVALID_REQUEST",
                None,
                vec![("field", "subject_ref")],
            ),
            (
                StatusChangeRefused::AuthorityNotCaller { claimed: "x".into(), caller: caller() }.into(),
                Code::PermissionDenied,
                "AUTHORITY_NOT_CALLER",
                None,
                vec![],
            ),
            (
                StatusChangeRefused::RuleRequired { status: Status::Red }.into(),
                Code::FailedPrecondition,
                "RULE_REQUIRED",
                None,
                vec![("healthStatus", "RED")],
            ),
            (
                StatusChangeRefused::RuleUnknown { rule_id: rule() }.into(),
                Code::FailedPrecondition,
                "RULE_UNKNOWN",
                None,
                vec![("ruleId", "NHC-CC-2022-9")],
            ),
            (
                StatusChangeRefused::RuleCannotAssign { rule_id: rule(), status: Status::Yellow }.into(),
                Code::FailedPrecondition,
                "RULE_CANNOT_ASSIGN",
                None,
                vec![("ruleId", "NHC-CC-2022-9"), ("healthStatus", "YELLOW")],
            ),
            (
                StatusChangeRefused::AuthorityRequired { status: Status::Red, rule_id: rule(), caller: caller() }
                    .into(),
                Code::PermissionDenied,
                "AUTHORITY_REQUIRED",
                None,
                vec![("ruleId", "NHC-CC-2022-9"), ("healthStatus", "RED")],
            ),
            (
                StatusChangeRefused::AuthorityNotAllowed {
                    authority: "340000/hefei-cdc".parse().unwrap(),
                    rule_id: rule(),
                }
                .into(),
                Code::PermissionDenied,
                "AUTHORITY_NOT_ALLOWED",
                None,
                vec![("ruleId", "NHC-CC-2022-9"), ("authority", "340000/hefei-cdc")],
            ),
            (
                StatusChangeRefused::RuleNotApplicable { rule_id: rule() }.into(),
                Code::FailedPrecondition,
                "RULE_NOT_APPLICABLE",
                None,
                vec![("ruleId", "NHC-CC-2022-9")],
            ),
            (
                StatusChangeRefused::DurationExceedsRule { rule_id: rule(), max_seconds: 60, requested_seconds: 61 }
                    .into(),
                Code::FailedPrecondition,
                "DURATION_EXCEEDS_RULE",
                None,
                vec![("ruleId", "NHC-CC-2022-9"), ("maxDurationSeconds", "60")],
            ),
            (
                StatusChangeRefused::LiftNotAllowed {
                    rule_id: rule(),
                    status: Status::Red,
                    may_lift: vec!["340000/hefei-cdc".into(), "340000/bengbu-cdc".into()],
                    caller: Box::new(caller()),
                }
                .into(),
                Code::PermissionDenied,
                "LIFT_NOT_ALLOWED",
                None,
                vec![("ruleId", "NHC-CC-2022-9"), ("mayLift", "340000/hefei-cdc,340000/bengbu-cdc")],
            ),
            (
                NodeError::TokenUnknown { province: Some(province()) },
                Code::NotFound,
                "TOKEN_UNKNOWN",
                None,
                vec![("province", "340000")],
            ),
            (NodeError::TokenUnknown { province: None }, Code::NotFound, "TOKEN_UNKNOWN", None, vec![]),
            (
                NodeError::NoCurrentStatus { province: province() },
                Code::FailedPrecondition,
                "NO_CURRENT_STATUS",
                None,
                vec![("province", "340000")],
            ),
            (NodeError::SubjectUnknown, Code::NotFound, "SUBJECT_UNKNOWN", None, vec![]),
            (
                NodeError::PurposeNotInPolicy { purpose: "transit.sea".into() },
                Code::InvalidArgument,
                "PURPOSE_NOT_IN_POLICY",
                None,
                vec![("purpose", "transit.sea")],
            ),
            (
                NodeError::NoSigningKey { province: province(), signing: Signing::TreeHead },
                Code::Unavailable,
                "NO_SIGNING_KEY",
                Some(crate::KEY_RESCAN_EVERY),
                vec![("province", "340000")],
            ),
            (NodeError::Sunset { reason: "over".into() }, Code::Unavailable, "SUNSET", None, vec![]),
            (
                NodeError::Store(StoreError::Backend("disk full".into())),
                Code::Unavailable,
                "STORAGE_FAILURE",
                Some(RETRY_SOON),
                vec![],
            ),
            (NodeError::Internal("task failed".into()), Code::Internal, "INTERNAL", None, vec![]),
        ];
        for (error, code, reason, retry, metadata) in cases {
            let (name, message) = (format!("{error:?}"), error.message());
            assert_eq!(error.retry().delay().is_some(), error.reason().retryable(), "{name}");
            let sent = tonic::Status::from(error);
            let read = details(&sent).unwrap_or_else(|| panic!("{name}: no details"));
            let metadata = metadata.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            assert_eq!(
                (sent.code(), sent.message(), read.reason.as_str(), read.retry_after, read.metadata),
                (code, message.as_str(), reason, retry, metadata),
                "{name}"
            );
        }
    }

    #[test]
    fn messages_are_the_ones_clients_know() {
        let cases = [
            (
                NodeError::TokenUnknown { province: Some(province()) },
                "token is not known to province 340000 or has expired",
            ),
            (NodeError::TokenUnknown { province: None }, "token is not known to this node or has expired"),
            (
                NodeError::NoSigningKey { province: province(), signing: Signing::Attestation { trust_list: 4 } },
                "this node holds no attestation key that trust list 4 lists as active for province 340000",
            ),
            (
                NodeError::NoSigningKey { province: province(), signing: Signing::Receipt },
                "no active attestation key for province 340000; cannot sign a receipt",
            ),
            (
                NodeError::Store(StoreError::Backend("disk full".into())),
                "node storage failure, nothing was changed; retry is safe: status store: disk full",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.message(), text);
        }
    }
}
