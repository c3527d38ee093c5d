//! Why the gateway refuses a call, typed, and the one place where that becomes a
//! `tonic::Status` (`impl From<GatewayError> for tonic::Status`).
//!
//! Each [`GatewayError`] knows its [`Reason`] (and so its gRPC code), whether retrying
//! helps and after how long, its data-free metadata (province, field, purpose, policy
//! reason label, cause label — never a token, a subject reference or a payload) and its
//! metric outcome label; [`huren_runtime::error::to_status`] sends them as
//! `google.rpc.ErrorInfo` and `RetryInfo` beside the unchanged message.
//!
//! [`node_failure`] reads a node's refusal the same way: by the node's `ErrorInfo` reason,
//! and by the bare gRPC code only for a node too old to send one.

use std::time::Duration;

use huren_pki::ProvinceCode;
use huren_runtime::error::{details, to_status, CallerError, Reason, Refusal, Retry, RETRY_SOON};
use huren_runtime::live::OfferError;
use tonic::Code;

use crate::request::InvalidLookup;

/// Failures of a gateway call, each sent as one typed refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No acceptable client identity, or one that may not make this gateway call.
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// A malformed lookup.
    #[error(transparent)]
    Invalid(#[from] InvalidLookup),
    /// The calling hub is not in the trust list's hub registry.
    #[error("hub {hub} is not registered in the trust list")]
    HubNotRegistered {
        /// The hub's id.
        hub: String,
    },
    /// The calling hub declared a purpose it is not registered for.
    #[error("hub {hub} is not registered for purpose {purpose}; registered: {}", .registered.join(", "))]
    PurposeNotRegistered {
        /// The hub's id.
        hub: String,
        /// The purpose declared.
        purpose: String,
        /// The purposes the hub's registration lists.
        registered: Vec<String>,
    },
    /// The hub exceeds its request rate.
    #[error("hub {hub} exceeds its request rate of {rate_per_sec}/s; retry later")]
    RateLimited {
        /// The hub's id.
        hub: String,
        /// Its allowance.
        rate_per_sec: u64,
    },
    /// The hub produced too many unknown-token misses (anti-enumeration).
    #[error("hub {hub} is throttled: too many lookups of unknown tokens; retry later")]
    TooManyUnknownTokens {
        /// The hub's id.
        hub: String,
        /// The counting window: the throttle lifts within it.
        window: Duration,
    },
    /// A sunset order is in force: lookups are no longer routed.
    #[error("federation sunset since {effective_at}: {reason}; lookups are no longer routed")]
    Sunset {
        /// When the order took effect (Unix seconds).
        effective_at: i64,
        /// The order's reason (public, from the signed trust list).
        reason: String,
    },
    /// The province is not in the trust list.
    #[error("province {province} is not in the trust list")]
    ProvinceUnknown {
        /// The province asked.
        province: ProvinceCode,
    },
    /// The home province does not know the token, or it expired.
    #[error("token is not known to province {province} or has expired")]
    TokenUnknown {
        /// The province asked.
        province: ProvinceCode,
    },
    /// The home province knows the token but holds no current status for it (it lapsed
    /// and must be re-assessed there). Not a miss: it does not count toward the hub's
    /// anti-enumeration throttle.
    #[error(
        "province {province} holds no current status for this token (it lapsed); the province must re-assess \
         the traveller; retrying will not help"
    )]
    NoCurrentStatus {
        /// The province asked.
        province: ProvinceCode,
    },
    /// The province's node cannot be reached or failed; a retry may succeed.
    #[error("{}", unavailable(.province, .cause))]
    ProvinceUnavailable {
        /// The province asked.
        province: ProvinceCode,
        /// What failed.
        cause: UnavailableCause,
    },
    /// The province cannot be served as set up; operators must act, a retry will not help.
    #[error("{}", misconfigured(.province, .cause))]
    ProvinceMisconfigured {
        /// The province asked.
        province: ProvinceCode,
        /// What is wrong.
        cause: MisconfiguredCause,
    },
    /// The province's node did not answer within its deadline.
    #[error("province {province} node did not answer in time; retrying is safe (a lookup changes nothing)")]
    ProvinceTimeout {
        /// The province asked.
        province: ProvinceCode,
    },
    /// The home province answered with something the federation must not pass on.
    #[error("attestation from province {province} refused: {reason}")]
    PolicyViolation {
        /// The province that answered.
        province: ProvinceCode,
        /// What is wrong with the attestation.
        reason: String,
        /// The violation's label (metrics, logs, `ErrorInfo` metadata `policyReason`).
        label: &'static str,
    },
    /// An uploaded trust list was not taken (not a storage failure: see `Storage`).
    #[error("trust list refused: {0}")]
    TrustListRefused(OfferError),
    /// A handed-in deletion receipt does not verify against the trust list.
    #[error("deletion receipt refused: {0}")]
    ReceiptInvalid(String),
    /// A node handed in another province's deletion receipt.
    #[error("node of province {province} cannot hand in a receipt for province {receipt_province}")]
    ReceiptWrongProvince {
        /// The calling node's province.
        province: ProvinceCode,
        /// The province the receipt names.
        receipt_province: String,
    },
    /// The gateway's own storage failed; nothing was taken.
    #[error("{what} (gateway storage failure); retry is safe: {cause}")]
    Storage {
        /// What was not done ("trust list not taken", "receipt not kept").
        what: &'static str,
        /// The failure.
        cause: String,
    },
}

/// Why a province's node could not serve a lookup, where a retry may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableCause {
    /// The province's circuit breaker is open for this long yet.
    CircuitOpen(Duration),
    /// The gateway's connection to the node failed (refused, reset, TLS).
    Unreachable(String),
    /// The node answered with a failure that says nothing about the token.
    Answered(Code),
}

/// Why a province cannot be served as set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MisconfiguredCause {
    /// The trust list lists no node endpoint for it.
    NoEndpoint,
    /// A TLS client or channel for it cannot be built.
    Client(String),
    /// Its node refused the gateway's (already checked) request as malformed.
    RequestRefused,
}

fn unavailable(province: &ProvinceCode, cause: &UnavailableCause) -> String {
    match cause {
        UnavailableCause::CircuitOpen(wait) => {
            format!("province {province} is failing: circuit open for another {} ms; retry later", wait.as_millis())
        }
        UnavailableCause::Unreachable(cause) => {
            format!("province {province} node unreachable: {cause}; retrying is safe (a lookup changes nothing)")
        }
        UnavailableCause::Answered(code) => {
            format!("province {province} node answered {code:?}; retrying is safe (a lookup changes nothing)")
        }
    }
}

fn misconfigured(province: &ProvinceCode, cause: &MisconfiguredCause) -> String {
    match cause {
        MisconfiguredCause::NoEndpoint => format!("province {province} lists no node endpoint"),
        MisconfiguredCause::Client(e) => e.clone(),
        MisconfiguredCause::RequestRefused => format!(
            "province {province} node refused the gateway's request as malformed (INVALID_ARGUMENT); \
             the federation operators are alerted by the logs; retrying will not help"
        ),
    }
}

impl GatewayError {
    /// A lookup the province could not serve in time or at all, where a cached attestation
    /// still valid may be served instead (stale-if-error).
    pub(crate) fn province_failed(&self) -> bool {
        matches!(
            self,
            GatewayError::ProvinceUnavailable { .. }
                | GatewayError::ProvinceMisconfigured { .. }
                | GatewayError::ProvinceTimeout { .. }
        )
    }
}

impl Refusal for GatewayError {
    fn reason(&self) -> Reason {
        match self {
            GatewayError::Caller(e) => e.reason(),
            GatewayError::Invalid(_) => Reason::InvalidRequest,
            GatewayError::HubNotRegistered { .. } => Reason::HubNotRegistered,
            GatewayError::PurposeNotRegistered { .. } => Reason::PurposeNotRegistered,
            GatewayError::RateLimited { .. } => Reason::RateLimited,
            GatewayError::TooManyUnknownTokens { .. } => Reason::TooManyUnknownTokens,
            GatewayError::Sunset { .. } => Reason::Sunset,
            GatewayError::ProvinceUnknown { .. } => Reason::ProvinceUnknown,
            GatewayError::TokenUnknown { .. } => Reason::TokenUnknown,
            GatewayError::NoCurrentStatus { .. } => Reason::NoCurrentStatus,
            GatewayError::ProvinceUnavailable { .. } => Reason::ProvinceUnavailable,
            GatewayError::ProvinceMisconfigured { .. } => Reason::ProvinceMisconfigured,
            GatewayError::ProvinceTimeout { .. } => Reason::ProvinceTimeout,
            GatewayError::PolicyViolation { .. } => Reason::PolicyViolation,
            GatewayError::TrustListRefused(OfferError::Rollback { .. }) => Reason::TrustListRollback,
            GatewayError::TrustListRefused(OfferError::TrustDomain { .. }) => Reason::TrustListWrongDomain,
            GatewayError::TrustListRefused(_) => Reason::TrustListInvalid,
            GatewayError::ReceiptInvalid(_) => Reason::ReceiptInvalid,
            GatewayError::ReceiptWrongProvince { .. } => Reason::ReceiptWrongProvince,
            GatewayError::Storage { .. } => Reason::StorageFailure,
        }
    }

    fn retry(&self) -> Retry {
        match self {
            // The rate is counted over one-second windows.
            GatewayError::RateLimited { .. } => Retry::After(Duration::from_secs(1)),
            // The misses are counted over fixed windows: the throttle lifts within one.
            GatewayError::TooManyUnknownTokens { window, .. } => Retry::After(*window),
            GatewayError::ProvinceUnavailable { cause: UnavailableCause::CircuitOpen(wait), .. } if !wait.is_zero() => {
                Retry::After(*wait)
            }
            GatewayError::ProvinceUnavailable { .. }
            | GatewayError::ProvinceTimeout { .. }
            | GatewayError::Storage { .. } => Retry::After(RETRY_SOON),
            _ => Retry::No,
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        let province = |p: &ProvinceCode| ("province", p.to_string());
        match self {
            GatewayError::Caller(e) => e.metadata(),
            GatewayError::Invalid(e) => vec![("field", e.field().to_owned())],
            GatewayError::PurposeNotRegistered { purpose, .. } => vec![("purpose", purpose.clone())],
            GatewayError::ProvinceUnknown { province: p }
            | GatewayError::TokenUnknown { province: p }
            | GatewayError::NoCurrentStatus { province: p }
            | GatewayError::ProvinceTimeout { province: p }
            | GatewayError::ReceiptWrongProvince { province: p, .. } => vec![province(p)],
            GatewayError::ProvinceUnavailable { province: p, cause } => {
                let cause = match cause {
                    UnavailableCause::CircuitOpen(_) => "circuit_open",
                    UnavailableCause::Unreachable(_) => "unreachable",
                    UnavailableCause::Answered(_) => "node_failed",
                };
                vec![province(p), ("cause", cause.to_owned())]
            }
            GatewayError::ProvinceMisconfigured { province: p, cause } => {
                let cause = match cause {
                    MisconfiguredCause::NoEndpoint => "no_endpoint",
                    MisconfiguredCause::Client(_) => "client_setup",
                    MisconfiguredCause::RequestRefused => "request_refused",
                };
                vec![province(p), ("cause", cause.to_owned())]
            }
            GatewayError::PolicyViolation { province: p, label, .. } => {
                vec![province(p), ("policyReason", (*label).to_owned())]
            }
            GatewayError::TrustListRefused(OfferError::Rollback { offered, held }) => {
                vec![("offeredSequence", offered.to_string()), ("heldSequence", held.to_string())]
            }
            GatewayError::HubNotRegistered { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::TooManyUnknownTokens { .. }
            | GatewayError::Sunset { .. }
            | GatewayError::TrustListRefused(_)
            | GatewayError::ReceiptInvalid(_)
            | GatewayError::Storage { .. } => Vec::new(),
        }
    }

    /// The `outcome` label of `huren_gateway_lookups_total` (values unchanged since the
    /// errors were named after gRPC codes, so dashboards keep working).
    fn outcome(&self) -> &'static str {
        match self {
            GatewayError::Caller(e) => e.outcome(),
            GatewayError::Invalid(_) | GatewayError::ReceiptInvalid(_) => "invalid_argument",
            GatewayError::TrustListRefused(_) if self.reason() == Reason::TrustListInvalid => "invalid_argument",
            GatewayError::TrustListRefused(_) => "failed_precondition",
            GatewayError::HubNotRegistered { .. }
            | GatewayError::PurposeNotRegistered { .. }
            | GatewayError::ReceiptWrongProvince { .. } => "permission_denied",
            GatewayError::RateLimited { .. } | GatewayError::TooManyUnknownTokens { .. } => "throttled",
            GatewayError::ProvinceUnknown { .. } | GatewayError::TokenUnknown { .. } => "not_found",
            GatewayError::NoCurrentStatus { .. } => "no_current_status",
            GatewayError::Sunset { .. }
            | GatewayError::ProvinceUnavailable { .. }
            | GatewayError::ProvinceMisconfigured { .. }
            | GatewayError::Storage { .. } => "unavailable",
            GatewayError::ProvinceTimeout { .. } => "deadline_exceeded",
            GatewayError::PolicyViolation { .. } => "policy_violation",
        }
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(e: GatewayError) -> Self {
        to_status(&e)
    }
}

/// What a node's refusal of `Attest` means for the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeAnswer {
    TokenUnknown,
    NoCurrentStatus,
    /// The node refused the gateway's request as malformed.
    RequestRefused,
    /// Anything else: a failure that says nothing about the token.
    Failed,
}

/// Maps a node's refusal of `Attest` to what the hub sees. A node that sends a Huren
/// `ErrorInfo` is read by its reason; one that sends none (an older node) by its gRPC
/// code, as before reasons existed. The node's own words never reach the hub (a node must
/// not be able to send a hub anything but a signed minimal attestation): the gateway words
/// every refusal itself.
pub(crate) fn node_failure(province: &ProvinceCode, status: tonic::Status) -> GatewayError {
    let answer = match details(&status) {
        Some(details) => match details.known_reason() {
            Some(Reason::TokenUnknown) => NodeAnswer::TokenUnknown,
            Some(Reason::NoCurrentStatus) => NodeAnswer::NoCurrentStatus,
            Some(Reason::InvalidRequest | Reason::PurposeNotInPolicy) => NodeAnswer::RequestRefused,
            _ => NodeAnswer::Failed,
        },
        None => match status.code() {
            Code::NotFound => NodeAnswer::TokenUnknown,
            // An older node's only FAILED_PRECONDITION on Attest: a lapsed status with no exit rule.
            Code::FailedPrecondition => NodeAnswer::NoCurrentStatus,
            Code::InvalidArgument => NodeAnswer::RequestRefused,
            _ => NodeAnswer::Failed,
        },
    };
    let province = province.clone();
    match answer {
        NodeAnswer::TokenUnknown => GatewayError::TokenUnknown { province },
        NodeAnswer::NoCurrentStatus => GatewayError::NoCurrentStatus { province },
        // The gateway checked the hub's input before asking, so this is a fault between the
        // gateway and the node.
        NodeAnswer::RequestRefused => {
            GatewayError::ProvinceMisconfigured { province, cause: MisconfiguredCause::RequestRefused }
        }
        NodeAnswer::Failed => match status.code() {
            Code::DeadlineExceeded | Code::Cancelled => GatewayError::ProvinceTimeout { province },
            code => {
                let cause = match transport_cause(&status) {
                    // Our own client's words (refused connection, TLS alert, revoked certificate).
                    Some(cause) => UnavailableCause::Unreachable(cause),
                    None => UnavailableCause::Answered(code),
                };
                GatewayError::ProvinceUnavailable { province, cause }
            }
        },
    }
}

/// The cause of a failure of the gateway's own connection to a node, if that is what
/// `status` is (its source chain holds a transport error); `None` for a node's answer.
pub(crate) fn transport_cause(status: &tonic::Status) -> Option<String> {
    let mut source = std::error::Error::source(status);
    let mut transport = false;
    let mut innermost = None;
    while let Some(e) = source {
        transport |= e.downcast_ref::<tonic::transport::Error>().is_some();
        innermost = Some(e.to_string());
        source = e.source();
    }
    transport.then(|| innermost.unwrap_or_else(|| "transport error".to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use huren_pki::identity::InvalidProvinceCode;

    use super::*;

    fn p() -> ProvinceCode {
        "440000".parse().unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Every kind of refusal: its code, reason, retry delay, metadata and outcome label as
    /// a client and the metrics see them; and the message unchanged.
    #[test]
    fn every_variant_maps_to_its_code_reason_retry_and_outcome() {
        type Case =
            (GatewayError, Code, &'static str, Option<Duration>, Vec<(&'static str, &'static str)>, &'static str);
        let hub = || "sd-jinan-highway".to_owned();
        let cases: Vec<Case> = vec![
            (
                CallerError::Unauthenticated("no mutual-TLS peer on this connection".into()).into(),
                Code::Unauthenticated,
                "CERTIFICATE_REFUSED",
                None,
                vec![],
                "unauthenticated",
            ),
            (
                CallerError::NotAuthorized {
                    role: "node",
                    message: "Lookup/Lookup is for transport hub identities".into(),
                }
                .into(),
                Code::PermissionDenied,
                "NOT_AUTHORIZED",
                None,
                vec![("callerRole", "node")],
                "permission_denied",
            ),
            (
                InvalidLookup::Province(InvalidProvinceCode("99".into())).into(),
                Code::InvalidArgument,
                "INVALID_REQUEST",
                None,
                vec![("field", "province")],
                "invalid_argument",
            ),
            (
                GatewayError::HubNotRegistered { hub: hub() },
                Code::PermissionDenied,
                "HUB_NOT_REGISTERED",
                None,
                vec![],
                "permission_denied",
            ),
            (
                GatewayError::PurposeNotRegistered {
                    hub: hub(),
                    purpose: "transit.air".into(),
                    registered: vec!["transit.rail".into()],
                },
                Code::PermissionDenied,
                "PURPOSE_NOT_REGISTERED",
                None,
                vec![("purpose", "transit.air")],
                "permission_denied",
            ),
            (
                GatewayError::RateLimited { hub: hub(), rate_per_sec: 3 },
                Code::ResourceExhausted,
                "RATE_LIMITED",
                Some(Duration::from_secs(1)),
                vec![],
                "throttled",
            ),
            (
                GatewayError::TooManyUnknownTokens { hub: hub(), window: Duration::from_secs(60) },
                Code::ResourceExhausted,
                "TOO_MANY_UNKNOWN_TOKENS",
                Some(Duration::from_secs(60)),
                vec![],
                "throttled",
            ),
            (
                GatewayError::Sunset { effective_at: 1, reason: "over".into() },
                Code::Unavailable,
                "SUNSET",
                None,
                vec![],
                "unavailable",
            ),
            (
                GatewayError::ProvinceUnknown { province: p() },
                Code::NotFound,
                "PROVINCE_UNKNOWN",
                None,
                vec![("province", "440000")],
                "not_found",
            ),
            (
                GatewayError::TokenUnknown { province: p() },
                Code::NotFound,
                "TOKEN_UNKNOWN",
                None,
                vec![("province", "440000")],
                "not_found",
            ),
            (
                GatewayError::NoCurrentStatus { province: p() },
                Code::FailedPrecondition,
                "NO_CURRENT_STATUS",
                None,
                vec![("province", "440000")],
                "no_current_status",
            ),
            (
                GatewayError::ProvinceUnavailable {
                    province: p(),
                    cause: UnavailableCause::CircuitOpen(Duration::from_millis(4200)),
                },
                Code::Unavailable,
                "PROVINCE_UNAVAILABLE",
                Some(Duration::from_millis(4200)),
                vec![("province", "440000"), ("cause", "circuit_open")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceUnavailable {
                    province: p(),
                    cause: UnavailableCause::CircuitOpen(Duration::ZERO),
                },
                Code::Unavailable,
                "PROVINCE_UNAVAILABLE",
                Some(RETRY_SOON),
                vec![("province", "440000"), ("cause", "circuit_open")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceUnavailable {
                    province: p(),
                    cause: UnavailableCause::Unreachable("connection refused".into()),
                },
                Code::Unavailable,
                "PROVINCE_UNAVAILABLE",
                Some(RETRY_SOON),
                vec![("province", "440000"), ("cause", "unreachable")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceUnavailable { province: p(), cause: UnavailableCause::Answered(Code::Internal) },
                Code::Unavailable,
                "PROVINCE_UNAVAILABLE",
                Some(RETRY_SOON),
                vec![("province", "440000"), ("cause", "node_failed")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceMisconfigured { province: p(), cause: MisconfiguredCause::NoEndpoint },
                Code::Unavailable,
                "PROVINCE_MISCONFIGURED",
                None,
                vec![("province", "440000"), ("cause", "no_endpoint")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceMisconfigured { province: p(), cause: MisconfiguredCause::RequestRefused },
                Code::Unavailable,
                "PROVINCE_MISCONFIGURED",
                None,
                vec![("province", "440000"), ("cause", "request_refused")],
                "unavailable",
            ),
            (
                GatewayError::ProvinceTimeout { province: p() },
                Code::DeadlineExceeded,
                "PROVINCE_TIMEOUT",
                Some(RETRY_SOON),
                vec![("province", "440000")],
                "deadline_exceeded",
            ),
            (
                GatewayError::PolicyViolation {
                    province: p(),
                    reason: "field 12 outside the policy".into(),
                    label: "field",
                },
                Code::FailedPrecondition,
                "POLICY_VIOLATION",
                None,
                vec![("province", "440000"), ("policyReason", "field")],
                "policy_violation",
            ),
            (
                GatewayError::TrustListRefused(OfferError::Rollback { offered: 2, held: 3 }),
                Code::FailedPrecondition,
                "TRUST_LIST_ROLLBACK",
                None,
                vec![("offeredSequence", "2"), ("heldSequence", "3")],
                "failed_precondition",
            ),
            (
                GatewayError::TrustListRefused(OfferError::TrustDomain { offered: "a".into(), held: "b".into() }),
                Code::FailedPrecondition,
                "TRUST_LIST_WRONG_DOMAIN",
                None,
                vec![],
                "failed_precondition",
            ),
            (
                GatewayError::TrustListRefused(OfferError::Invalid(huren_pki::trust::TrustListError::BadSignature)),
                Code::InvalidArgument,
                "TRUST_LIST_INVALID",
                None,
                vec![],
                "invalid_argument",
            ),
            (
                GatewayError::ReceiptInvalid("does not verify".into()),
                Code::InvalidArgument,
                "RECEIPT_INVALID",
                None,
                vec![],
                "invalid_argument",
            ),
            (
                GatewayError::ReceiptWrongProvince { province: p(), receipt_province: "340000".into() },
                Code::PermissionDenied,
                "RECEIPT_WRONG_PROVINCE",
                None,
                vec![("province", "440000")],
                "permission_denied",
            ),
            (
                GatewayError::Storage { what: "receipt not kept", cause: "disk full".into() },
                Code::Unavailable,
                "STORAGE_FAILURE",
                Some(RETRY_SOON),
                vec![],
                "unavailable",
            ),
        ];
        for (error, code, reason, retry, metadata, outcome) in cases {
            let name = format!("{error:?}");
            let retry_helps = error.reason().retryable();
            assert_eq!((error.outcome(), error.retry().delay().is_some()), (outcome, retry_helps), "{name}");
            let text = error.to_string();
            let status = tonic::Status::from(error);
            let seen = details(&status).map(|d| (d.reason, d.retry_after, d.metadata));
            assert_eq!(seen, Some((reason.to_owned(), retry, meta(&metadata))), "{name}");
            assert_eq!((status.code(), status.message()), (code, text.as_str()), "{name}");
        }
    }

    #[test]
    fn messages_are_the_ones_hubs_know() {
        let cases = [
            (
                GatewayError::NoCurrentStatus { province: p() },
                "province 440000 holds no current status for this token (it lapsed); the province must re-assess \
                 the traveller; retrying will not help",
            ),
            (
                GatewayError::ProvinceUnavailable {
                    province: p(),
                    cause: UnavailableCause::CircuitOpen(Duration::from_millis(4200)),
                },
                "province 440000 is failing: circuit open for another 4200 ms; retry later",
            ),
            (
                GatewayError::PurposeNotRegistered {
                    hub: "rail-only".into(),
                    purpose: "transit.air".into(),
                    registered: vec!["transit.rail".into(), "venue.entry".into()],
                },
                "hub rail-only is not registered for purpose transit.air; registered: transit.rail, venue.entry",
            ),
            (
                GatewayError::TrustListRefused(OfferError::Rollback { offered: 2, held: 3 }),
                "trust list refused: trust list sequence 2 is not newer than the held sequence 3 (rollback refused)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    /// A node's refusal with `0`'s reason and code, in the node's own words.
    #[derive(Debug, thiserror::Error)]
    #[error("node words")]
    struct NodeSays(Reason);

    impl Refusal for NodeSays {
        fn reason(&self) -> Reason {
            self.0
        }
        fn retry(&self) -> Retry {
            Retry::No
        }
        fn outcome(&self) -> &'static str {
            "any"
        }
    }

    fn from_node(status: tonic::Status) -> GatewayError {
        node_failure(&p(), status)
    }

    /// A node that sends reasons is read by them, whatever the code; an older node that
    /// sends none by its code, as before.
    #[test]
    fn a_node_refusal_is_read_by_its_reason_and_by_its_code_only_without_one() {
        let with = |reason: Reason| to_status(&NodeSays(reason));
        assert!(matches!(from_node(with(Reason::TokenUnknown)), GatewayError::TokenUnknown { .. }));
        assert!(matches!(from_node(with(Reason::NoCurrentStatus)), GatewayError::NoCurrentStatus { .. }));
        // The reason decides, not the code: a FAILED_PRECONDITION for another reason is no
        // lapsed status, and a NOT_FOUND that is no unknown token is no miss.
        assert!(matches!(
            from_node(with(Reason::RuleUnknown)),
            GatewayError::ProvinceUnavailable { cause: UnavailableCause::Answered(Code::FailedPrecondition), .. }
        ));
        assert!(matches!(
            from_node(with(Reason::SubjectUnknown)),
            GatewayError::ProvinceUnavailable { cause: UnavailableCause::Answered(Code::NotFound), .. }
        ));
        assert!(matches!(
            from_node(with(Reason::PurposeNotInPolicy)),
            GatewayError::ProvinceMisconfigured { cause: MisconfiguredCause::RequestRefused, .. }
        ));
        assert!(matches!(
            from_node(with(Reason::NoSigningKey)),
            GatewayError::ProvinceUnavailable { cause: UnavailableCause::Answered(Code::Unavailable), .. }
        ));
        // An older node: the code, as before.
        assert!(matches!(from_node(tonic::Status::not_found("x")), GatewayError::TokenUnknown { .. }));
        assert!(matches!(from_node(tonic::Status::failed_precondition("x")), GatewayError::NoCurrentStatus { .. }));
        assert!(matches!(
            from_node(tonic::Status::invalid_argument("x")),
            GatewayError::ProvinceMisconfigured { cause: MisconfiguredCause::RequestRefused, .. }
        ));
        assert!(matches!(from_node(tonic::Status::deadline_exceeded("x")), GatewayError::ProvinceTimeout { .. }));
        assert!(matches!(
            from_node(tonic::Status::unavailable("x")),
            GatewayError::ProvinceUnavailable { cause: UnavailableCause::Answered(Code::Unavailable), .. }
        ));
        // Whatever the node wrote stays out of what the hub is told.
        let said = from_node(with(Reason::TokenUnknown)).to_string();
        assert!(!said.contains("node words"), "{said}");
    }
}
