//! What `POST /v1/check` takes and answers, as data: the request, the verified answer,
//! the failures with their HTTP codes, and when an online check falls back to offline.

use huren_client::{rfc3339, HubError, VerifiedStatus};
use serde::{Deserialize, Serialize};

/// A check request: `{"scan": "HRN1:…" | "<province>:<token>", "purpose": "transit.rail"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// What the scanner read: a QR string (`HRN1:…`) or a typed `<province>:<token>`.
    pub scan: String,
    /// Purpose of the check; the agent's `default_purpose` when absent.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// Longest purpose accepted (the trust list's are far shorter).
const MAX_PURPOSE: usize = 64;

/// A purpose is lowercase ASCII letters, digits, `.`, `_` and `-`, 1–64 of them.
pub(crate) fn valid_purpose(purpose: &str) -> Result<(), String> {
    let ok = !purpose.is_empty()
        && purpose.len() <= MAX_PURPOSE
        && purpose.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("purpose must be 1-{MAX_PURPOSE} characters of a-z, 0-9, '.', '_', '-' (e.g. transit.rail)"))
    }
}

/// Where a check was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checked {
    /// The gateway answered with the home province's fresh attestation.
    Online,
    /// No gateway answered: the QR's own attestation, against the followed trust list.
    Offline,
}

impl Checked {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Checked::Online => "online",
            Checked::Offline => "offline",
        }
    }
}

/// The 200 answer: a status the agent verified itself.
#[derive(Debug, Serialize)]
pub(crate) struct Verified {
    checked: Checked,
    status: String,
    province: String,
    province_name: String,
    purpose: String,
    issued_at: i64,
    expires_at: i64,
    valid_until: String,
    rule_id: Option<String>,
    rule_title: Option<String>,
    rule_exit_condition: Option<String>,
    trust_list_sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline_because: Option<String>,
}

impl Verified {
    pub(crate) fn new(checked: Checked, s: VerifiedStatus, offline_because: Option<String>) -> Self {
        Self {
            checked,
            valid_until: rfc3339(s.expires_at),
            status: s.status,
            province: s.province,
            province_name: s.province_name,
            purpose: s.purpose,
            issued_at: s.issued_at,
            expires_at: s.expires_at,
            rule_id: s.rule_id,
            rule_title: s.rule_title,
            rule_exit_condition: s.rule_exit_condition,
            trust_list_sequence: s.trust_list_sequence,
            offline_because,
        }
    }

    pub(crate) fn status(&self) -> &str {
        &self.status
    }

    pub(crate) fn province(&self) -> &str {
        &self.province
    }
}

/// Every answer of a check.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// 200: verified.
    Verified(Box<Verified>),
    /// 400: the request itself is malformed (`reason`: `INVALID_JSON`, `INVALID_SCAN`,
    /// `INVALID_PURPOSE`).
    BadRequest { reason: &'static str, message: String },
    /// 422: the gateway refused (with its `ErrorInfo` reason, e.g. `TOKEN_UNKNOWN`).
    Refused { reason: Option<String>, message: String },
    /// 422: an attestation came but did not verify.
    NotVerified { checked: Checked, message: String },
    /// 503: no gateway answered and the scan cannot be checked offline.
    Unavailable { message: String },
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'static str,
    reason: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checked: Option<Checked>,
}

impl Outcome {
    /// The label of the `outcome` metric and log field.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Verified(_) => "verified",
            Outcome::BadRequest { .. } => "bad_request",
            Outcome::Refused { .. } => "refused",
            Outcome::NotVerified { .. } => "not_verified",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }

    /// Where it was checked, if it got that far.
    pub(crate) fn checked(&self) -> Option<Checked> {
        match self {
            Outcome::Verified(v) => Some(v.checked),
            Outcome::Refused { .. } => Some(Checked::Online),
            Outcome::NotVerified { checked, .. } => Some(*checked),
            Outcome::BadRequest { .. } | Outcome::Unavailable { .. } => None,
        }
    }

    /// HTTP status code and JSON body.
    pub(crate) fn response(&self) -> (u16, String) {
        let failure = |code, error, reason: Option<&str>, message: &str, checked| {
            let body = Failure { error, reason, message, checked };
            (code, serde_json::to_string(&body).unwrap_or_default())
        };
        match self {
            Outcome::Verified(v) => (200, serde_json::to_string(v).unwrap_or_default()),
            Outcome::BadRequest { reason, message } => failure(400, "bad_request", Some(reason), message, None),
            Outcome::Refused { reason, message } => {
                failure(422, "refused", reason.as_deref(), message, Some(Checked::Online))
            }
            Outcome::NotVerified { checked, message } => failure(422, "not_verified", None, message, Some(*checked)),
            Outcome::Unavailable { message } => failure(503, "unavailable", Some("NO_GATEWAY"), message, None),
        }
    }
}

/// Whether an online check that failed with `error` is done offline instead: no gateway
/// answered (see [`huren_client::should_fail_over`]), or the gateway could not reach the
/// home province (`PROVINCE_UNAVAILABLE`, `PROVINCE_TIMEOUT`) — not a verdict on the
/// traveller. A refusal is the answer.
pub(crate) fn falls_back(error: &HubError) -> bool {
    huren_client::should_fail_over(error) || matches!(error.reason(), Some("PROVINCE_UNAVAILABLE" | "PROVINCE_TIMEOUT"))
}

/// Parses a request body; a malformed one is the 400 answer.
pub(crate) fn parse(body: &[u8], default_purpose: &str) -> Result<(String, String), Outcome> {
    let request: CheckRequest = serde_json::from_slice(body).map_err(|e| Outcome::BadRequest {
        reason: "INVALID_JSON",
        message: format!(
            "expected a JSON object {{\"scan\": \"HRN1:...\" or \"<province>:<token>\", \"purpose\": \"...\"}}: {}",
            json_cause(&e)
        ),
    })?;
    let purpose = request.purpose.unwrap_or_else(|| default_purpose.to_owned());
    valid_purpose(&purpose).map_err(|message| Outcome::BadRequest { reason: "INVALID_PURPOSE", message })?;
    Ok((request.scan, purpose))
}

/// What is wrong with a JSON body, without echoing any of its values.
fn json_cause(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("not valid JSON (line {}, column {})", e.line(), e.column())
        }
        // serde's data errors name fields and types; they quote a value only for a wrong
        // type, so say the type problem generically.
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("missing field") || text.starts_with("unknown field") {
                text.split(" at line").next().unwrap_or("").to_owned()
            } else {
                "\"scan\" and \"purpose\" must be strings".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_are_400_with_a_reason_and_no_echo() {
        for (body, reason) in [
            (&b"not json"[..], "INVALID_JSON"),
            (br#"{"qr": "HRN1:SECRET"}"#, "INVALID_JSON"),
            (br#"{"scan": 340000}"#, "INVALID_JSON"),
            (br#"{"scan": "x", "purpose": "Not A Purpose"}"#, "INVALID_PURPOSE"),
        ] {
            let Err(outcome) = parse(body, "transit.general") else { panic!("accepted {body:?}") };
            let (code, text) = outcome.response();
            assert_eq!(code, 400);
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["reason"], reason, "{text}");
            assert!(!text.contains("SECRET") && !text.contains("340000"), "{text}");
        }
        assert_eq!(parse(br#"{"scan": "x"}"#, "transit.rail").unwrap(), ("x".to_owned(), "transit.rail".to_owned()));
    }

    #[test]
    fn only_unanswered_checks_and_unreachable_provinces_fall_back_offline() {
        assert!(falls_back(&HubError::Connection("refused".into())));
        let refused = |reason: &str| HubError::Refused {
            code: tonic::Code::NotFound,
            message: String::new(),
            reason: Some(reason.into()),
        };
        assert!(falls_back(&refused("PROVINCE_UNAVAILABLE")));
        assert!(!falls_back(&refused("TOKEN_UNKNOWN")));
        assert!(!falls_back(&refused("HUB_NOT_REGISTERED")));
    }
}
