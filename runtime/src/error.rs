//! Errors node and gateway share: why a server could not start ([`StartError`]), and
//! refusals as they cross the wire.
//!
//! Every refusal a Huren server sends is typed: a domain error that knows its [`Reason`]
//! (a stable, machine-readable string such as `TOKEN_UNKNOWN`, which fixes the gRPC code),
//! whether retrying helps and after how long ([`Retry`]), its data-free metadata and its
//! metric outcome label ([`Refusal`]). [`to_status`] turns one into a `tonic::Status` that
//! carries, besides the human-readable message, a `google.rpc.ErrorInfo` (reason, domain
//! [`DOMAIN`], metadata) and, where a retry helps, a `google.rpc.RetryInfo`, in the standard
//! `grpc-status-details-bin` trailer; [`details`] reads them back. A client in any language
//! acts on the reason, never on the English.
//!
//! Metadata holds province codes, purposes, rule ids, labels — never a token, a subject
//! reference or a payload.
//!
//! The callers' identity check that both servers make first is here too ([`authorized`]).

use std::collections::HashMap;
use std::time::Duration;

use huren_pki::Identity;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `google.rpc.ErrorInfo` domain of every Huren refusal.
pub const DOMAIN: &str = "huren.gov";

/// The delay suggested for a failure that a prompt retry may cure when nothing more
/// precise is known (a storage hiccup, a province node that did not answer).
pub const RETRY_SOON: Duration = Duration::from_secs(1);

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $text:literal, $code:ident, $retry:literal;)*) => {
        /// What happened, as a stable machine-readable string (`google.rpc.ErrorInfo.reason`).
        /// Each reason has one gRPC code and says whether a retry can help; the README lists
        /// them all, with the RPCs they come from and what a client should do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in the README's order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The reason string, SCREAMING_SNAKE_CASE.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }

            /// The gRPC code a refusal with this reason carries.
            pub fn code(self) -> Code {
                match self {
                    $(Reason::$variant => Code::$code,)*
                }
            }

            /// Whether retrying the same call can succeed (the refusal then carries a
            /// `RetryInfo`); `false`: the call must change, or the refusal stands.
            pub fn retryable(self) -> bool {
                match self {
                    $(Reason::$variant => $retry,)*
                }
            }

            /// The reason named by `text`, if it is one of these.
            pub fn parse(text: &str) -> Option<Reason> {
                match text {
                    $($text => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// The caller presented no acceptable client certificate (e.g. it was revoked).
    CertificateRefused = "CERTIFICATE_REFUSED", Unauthenticated, false;
    /// The caller's identity may not make this call at all.
    NotAuthorized = "NOT_AUTHORIZED", PermissionDenied, false;
    /// A request field is malformed (metadata `field`).
    InvalidRequest = "INVALID_REQUEST", InvalidArgument, false;
    /// A sunset order is in force: the federation no longer serves.
    Sunset = "SUNSET", Unavailable, false;
    /// The server's storage failed; nothing was changed.
    StorageFailure = "STORAGE_FAILURE", Unavailable, true;
    /// A fault inside the server.
    Internal = "INTERNAL", Internal, false;
    /// The token is not known to its province or has expired.
    TokenUnknown = "TOKEN_UNKNOWN", NotFound, false;
    /// The province knows the token but holds no current status for it (it lapsed).
    NoCurrentStatus = "NO_CURRENT_STATUS", FailedPrecondition, false;
    /// The subject reference has no status at this node.
    SubjectUnknown = "SUBJECT_UNKNOWN", NotFound, false;
    /// The purpose is not in the trust list's field policy.
    PurposeNotInPolicy = "PURPOSE_NOT_IN_POLICY", InvalidArgument, false;
    /// The node holds no attestation key the trust list lists as active.
    NoSigningKey = "NO_SIGNING_KEY", Unavailable, true;
    /// A status change names an authority other than the caller.
    AuthorityNotCaller = "AUTHORITY_NOT_CALLER", PermissionDenied, false;
    /// A non-green status from a caller that is no authority identity.
    AuthorityRequired = "AUTHORITY_REQUIRED", PermissionDenied, false;
    /// The cited rule does not name the calling authority.
    AuthorityNotAllowed = "AUTHORITY_NOT_ALLOWED", PermissionDenied, false;
    /// A non-green status cites no rule.
    RuleRequired = "RULE_REQUIRED", FailedPrecondition, false;
    /// The cited rule is not in the rule registry.
    RuleUnknown = "RULE_UNKNOWN", FailedPrecondition, false;
    /// The cited rule may not assign that status.
    RuleCannotAssign = "RULE_CANNOT_ASSIGN", FailedPrecondition, false;
    /// The cited rule sets no maximum duration, so nobody can apply it.
    RuleNotApplicable = "RULE_NOT_APPLICABLE", FailedPrecondition, false;
    /// The requested validity is longer than the rule allows.
    DurationExceedsRule = "DURATION_EXCEEDS_RULE", FailedPrecondition, false;
    /// The change would lift a current non-green status before it lapses, and its rule
    /// does not name the caller among those who may lift it.
    LiftNotAllowed = "LIFT_NOT_ALLOWED", PermissionDenied, false;
    /// The calling hub is not registered in the trust list.
    HubNotRegistered = "HUB_NOT_REGISTERED", PermissionDenied, false;
    /// The calling hub is not registered for the purpose it declared.
    PurposeNotRegistered = "PURPOSE_NOT_REGISTERED", PermissionDenied, false;
    /// The hub exceeds its request rate.
    RateLimited = "RATE_LIMITED", ResourceExhausted, true;
    /// The hub asked about too many unknown tokens (anti-enumeration).
    TooManyUnknownTokens = "TOO_MANY_UNKNOWN_TOKENS", ResourceExhausted, true;
    /// The province is not in the trust list.
    ProvinceUnknown = "PROVINCE_UNKNOWN", NotFound, false;
    /// The province's node cannot be reached or failed (or its circuit is open).
    ProvinceUnavailable = "PROVINCE_UNAVAILABLE", Unavailable, true;
    /// The province cannot be served as set up: no endpoint, or its node refuses the
    /// gateway's requests; operators must act.
    ProvinceMisconfigured = "PROVINCE_MISCONFIGURED", Unavailable, false;
    /// The province's node did not answer within its deadline.
    ProvinceTimeout = "PROVINCE_TIMEOUT", DeadlineExceeded, true;
    /// The province answered with an attestation the federation must not pass on.
    PolicyViolation = "POLICY_VIOLATION", FailedPrecondition, false;
    /// An uploaded trust list is malformed or not signed by the national root.
    TrustListInvalid = "TRUST_LIST_INVALID", InvalidArgument, false;
    /// An uploaded trust list is not newer than the one held.
    TrustListRollback = "TRUST_LIST_ROLLBACK", FailedPrecondition, false;
    /// An uploaded trust list is for another trust domain.
    TrustListWrongDomain = "TRUST_LIST_WRONG_DOMAIN", FailedPrecondition, false;
    /// A deletion receipt does not verify against the trust list.
    ReceiptInvalid = "RECEIPT_INVALID", InvalidArgument, false;
    /// A node handed in another province's deletion receipt.
    ReceiptWrongProvince = "RECEIPT_WRONG_PROVINCE", PermissionDenied, false;
    /// An `Attest` that does not say which hub asked (no `hub_id`): the node records every
    /// check in the subject's disclosure log and answers none it cannot record.
    HubContextRequired = "HUB_CONTEXT_REQUIRED", FailedPrecondition, false;
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether retrying the same call helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It does not: the call must change, or the refusal stands.
    No,
    /// It may, after this long (sent as `google.rpc.RetryInfo.retry_delay`).
    After(Duration),
}

impl Retry {
    /// The delay, if retrying helps.
    pub fn delay(self) -> Option<Duration> {
        match self {
            Retry::No => None,
            Retry::After(delay) => Some(delay),
        }
    }
}

/// A typed refusal: what a server's domain error says about itself on the wire.
pub trait Refusal: std::fmt::Display {
    /// What happened (fixes the gRPC code).
    fn reason(&self) -> Reason;

    /// Whether retrying helps, and after how long. Consistent with
    /// [`Reason::retryable`].
    fn retry(&self) -> Retry;

    /// Data-free facts for the client (`ErrorInfo.metadata`, lowerCamelCase keys): province
    /// codes, purposes, rule ids, labels — never a token, a subject reference or a payload.
    fn metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The `outcome` label of the server's metrics.
    fn outcome(&self) -> &'static str;

    /// The human-readable message (the `Display` text unless a refusal words it for clients).
    fn message(&self) -> String {
        self.to_string()
    }
}

/// The status `refusal` is sent as: its reason's code, its message, a `google.rpc.ErrorInfo`
/// (reason, [`DOMAIN`], metadata) and, where retrying helps, a `google.rpc.RetryInfo`.
pub fn to_status<R: Refusal + ?Sized>(refusal: &R) -> tonic::Status {
    let reason = refusal.reason();
    let metadata: HashMap<String, String> =
        refusal.metadata().into_iter().map(|(key, value)| (key.to_owned(), value)).collect();
    let mut details = ErrorDetails::with_error_info(reason.as_str(), DOMAIN, metadata);
    if let Retry::After(delay) = refusal.retry() {
        details.set_retry_info(Some(delay));
    }
    tonic::Status::with_error_details(reason.code(), refusal.message(), details)
}

/// What a Huren refusal's details say, as a client reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// `ErrorInfo.reason` as sent (a newer server may send a reason this build does not know).
    pub reason: String,
    /// `ErrorInfo.metadata`.
    pub metadata: HashMap<String, String>,
    /// `RetryInfo.retry_delay`, when the server says a retry helps.
    pub retry_after: Option<Duration>,
}

impl Details {
    /// The reason, if this build knows it.
    pub fn known_reason(&self) -> Option<Reason> {
        Reason::parse(&self.reason)
    }
}

/// The details of `status` if it carries a Huren `ErrorInfo` (domain [`DOMAIN`]); `None`
/// for a status without details (an older server, a transport failure) or from elsewhere.
pub fn details(status: &tonic::Status) -> Option<Details> {
    let all = status.check_error_details().ok()?;
    let info = all.error_info().filter(|info| info.domain == DOMAIN)?;
    Some(Details {
        reason: info.reason.clone(),
        metadata: info.metadata.clone(),
        retry_after: all.retry_info().and_then(|r| r.retry_delay),
    })
}

/// Why a caller is refused before its request is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallerError {
    /// No acceptable client identity on the connection (none, revoked, malformed).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's identity may not make this call.
    #[error("{message}")]
    NotAuthorized {
        /// The caller's role kind (`hub`, `node`, …): the only metadata sent.
        role: &'static str,
        /// Which call is for whom, and who the caller is.
        message: String,
    },
}

impl Refusal for CallerError {
    fn reason(&self) -> Reason {
        match self {
            CallerError::Unauthenticated(_) => Reason::CertificateRefused,
            CallerError::NotAuthorized { .. } => Reason::NotAuthorized,
        }
    }

    fn retry(&self) -> Retry {
        Retry::No
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            CallerError::Unauthenticated(_) => Vec::new(),
            CallerError::NotAuthorized { role, .. } => vec![("callerRole", (*role).to_owned())],
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            CallerError::Unauthenticated(_) => "unauthenticated",
            CallerError::NotAuthorized { .. } => "permission_denied",
        }
    }
}

impl From<CallerError> for tonic::Status {
    fn from(e: CallerError) -> Self {
        to_status(&e)
    }
}

/// The authenticated identity of `request`'s caller, if `allow` (the server's pure
/// authorization check, which words its refusal) lets it make the call.
pub fn authorized<T>(
    request: &tonic::Request<T>,
    allow: impl FnOnce(&Identity) -> Result<(), String>,
) -> Result<Identity, CallerError> {
    let caller = crate::tls::peer(request).map_err(|s| CallerError::Unauthenticated(s.message().to_owned()))?;
    allow(&caller).map_err(|message| CallerError::NotAuthorized { role: caller.role.kind(), message })?;
    Ok(caller)
}

/// Why a server (node or gateway) could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TLS identity or a TLS client.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The trust list.
    #[error("trust list: {0}")]
    TrustList(#[from] huren_pki::trust::TrustListError),
    /// The certificate is not the identity this server must have, or a part named by the
    /// settings cannot be opened.
    #[error("{0}")]
    Identity(String),
    /// Serving.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// A part of one server (a node's keys or store).
    #[error(transparent)]
    Part(Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("province {0} node did not answer")]
    struct Slow(&'static str);

    impl Refusal for Slow {
        fn reason(&self) -> Reason {
            Reason::ProvinceTimeout
        }
        fn retry(&self) -> Retry {
            Retry::After(Duration::from_millis(1500))
        }
        fn metadata(&self) -> Vec<(&'static str, String)> {
            vec![("province", self.0.to_owned())]
        }
        fn outcome(&self) -> &'static str {
            "deadline_exceeded"
        }
    }

    #[test]
    fn a_refusal_becomes_a_status_with_error_info_and_retry_info() {
        let status = to_status(&Slow("440000"));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(status.message(), "province 440000 node did not answer");
        let details = details(&status).expect("huren details");
        assert_eq!(details.reason, "PROVINCE_TIMEOUT");
        assert_eq!(details.known_reason(), Some(Reason::ProvinceTimeout));
        assert_eq!(details.metadata, HashMap::from([("province".to_owned(), "440000".to_owned())]));
        assert_eq!(details.retry_after, Some(Duration::from_millis(1500)));
        // The same bytes, read as any gRPC client reads them.
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("PROVINCE_TIMEOUT", DOMAIN));
    }

    #[test]
    fn a_status_without_huren_details_has_none() {
        assert_eq!(details(&tonic::Status::not_found("token is not known")), None);
        let foreign = tonic::Status::with_error_details(
            Code::NotFound,
            "x",
            ErrorDetails::with_error_info("TOKEN_UNKNOWN", "example.com", HashMap::new()),
        );
        assert_eq!(details(&foreign), None, "another domain's reasons are not ours");
    }

    #[test]
    fn caller_refusals_carry_only_the_role() {
        let e = CallerError::NotAuthorized { role: "hub", message: "Attestation/Attest is for gateways".into() };
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), Code::PermissionDenied);
        let details = details(&status).expect("details");
        assert_eq!(details.reason, "NOT_AUTHORIZED");
        assert_eq!(details.metadata, HashMap::from([("callerRole".to_owned(), "hub".to_owned())]));
        assert_eq!(details.retry_after, None);
        let status = tonic::Status::from(CallerError::Unauthenticated("client certificate refused".into()));
        assert_eq!((status.code(), details_reason(&status)), (Code::Unauthenticated, "CERTIFICATE_REFUSED".into()));
    }

    fn details_reason(status: &tonic::Status) -> String {
        details(status).map(|d| d.reason).unwrap_or_default()
    }

    #[test]
    fn reasons_are_stable_screaming_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.len() < 64 && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{text}");
            assert_eq!(Reason::parse(text), Some(*reason));
            assert_ne!(reason.code(), Code::Ok);
        }
        assert_eq!(Reason::parse("NO_SUCH_REASON"), None);
    }

    /// The README's wire rules list every reason with its code and retry advice, and the
    /// proto file names every reason next to its services.
    #[test]
    fn the_readme_and_the_proto_list_every_reason() {
        let readme = include_str!("../../README.md");
        let proto = include_str!("../../proto/proto/huren/v1/huren.proto");
        for reason in Reason::ALL {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{reason}` |")))
                .unwrap_or_else(|| panic!("README lists no row for {reason}"));
            let code = format!("{:?}", reason.code());
            let code: String = code
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                    sep.into_iter().chain(std::iter::once(c.to_ascii_uppercase()))
                })
                .collect();
            assert!(row.contains(&format!("`{code}`")), "README row of {reason} lacks its code {code}: {row}");
            let retry = if reason.retryable() { "| yes |" } else { "| no |" };
            assert!(row.contains(retry), "README row of {reason} should say {retry:?}: {row}");
            assert!(proto.contains(reason.as_str()), "the proto comments do not name {reason}");
        }
    }
}
