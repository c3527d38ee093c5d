//! The node's requests as domain types: each wire request is checked once, on the way in
//! (`TryFrom<pb::…>`), and handlers work with values that are well-formed by construction.
//! What needs the trust list, the caller or the clock (rules, authorities, validity) is
//! checked later, in `service::validate_upsert`.

use huren_pki::attest::{valid_purpose, Status};
use huren_pki::qr::TOKEN_LEN;
use huren_proto::pb;

/// Default purpose bound into a QR's embedded attestation.
pub(crate) const DEFAULT_QR_PURPOSE: &str = "transit.general";
/// Longest token lifetime a caller may ask for.
pub(crate) const MAX_TOKEN_LIFETIME_SECS: u32 = 86_400;
/// Most entries returned by one `GetEntries` call.
pub(crate) const MAX_ENTRIES_PER_CALL: u64 = 10_000;

/// A request field the node refuses (`INVALID_REQUEST`, metadata `field`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// A token of the wrong length.
    #[error("token must be {TOKEN_LEN} bytes, got {0}")]
    TokenLength(usize),
    /// A purpose that is not dotted lowercase words.
    #[error("purpose must be dotted lowercase words, e.g. transit.rail")]
    Purpose,
    /// A subject reference of the wrong length or characters.
    #[error("subject_ref must be 1-128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'")]
    SubjectRef,
    /// A subject reference that looks like personal data (an ID or phone number).
    #[error("subject_ref looks like a resident ID or phone number; nodes hold pseudonymous references only")]
    PersonalData,
    /// No status colour, or an unknown one.
    #[error("status must be GREEN, YELLOW or RED")]
    Status,
    /// An unknown test-recency bucket.
    #[error("unknown test_recency {0}")]
    TestRecency(i32),
    /// A validity that has already ended.
    #[error("valid_until {0} is not in the future")]
    ValidUntil(i64),
    /// A GREEN status that cites a rule.
    #[error("a GREEN status cites no rule; leave rule_id empty")]
    GreenWithRule,
    /// A token lifetime over 86 400 s (one day).
    #[error("lifetime_seconds must be at most {MAX_TOKEN_LIFETIME_SECS}")]
    Lifetime,
    /// A `GetEntries` range that is reversed or too long.
    #[error("entries [start, end) must be a range of at most {MAX_ENTRIES_PER_CALL}")]
    EntriesRange,
    /// A tree size or index beyond the log.
    #[error("{0}")]
    LogRange(String),
    /// A batch with no items or more than the call allows.
    #[error("a batch holds 1 to {max} items, got {got}")]
    BatchSize {
        /// The most items the call takes.
        max: usize,
        /// How many were sent.
        got: usize,
    },
    /// A batch item without a well-formed id.
    #[error("item_id must be 1-128 printable ASCII characters")]
    ItemId,
    /// A batch item id this caller already used for a different change.
    #[error("item_id was already applied for a different change; an item id names one change")]
    ItemIdReused,
    /// A subject named by more than one item of a batch.
    #[error("subject_ref appears in more than one item of this batch; send one change per subject per batch")]
    DuplicateSubject,
    /// A batch item without its change.
    #[error("the item carries no change")]
    MissingChange,

    /// A disclosure-log window of more than a year.
    #[error("days must be at most {MAX_DISCLOSURE_DAYS} (0: {DEFAULT_DISCLOSURE_DAYS})")]
    Days,
    /// An `AttestBatch` of more tokens than allowed.
    #[error("at most {max} tokens per batch, got {0}", max = crate::service::MAX_BATCH_TOKENS)]
    AttestBatchSize(usize),
    /// A `RecordDisclosures` call with no entries or more than allowed.
    #[error("a RecordDisclosures call carries 1 to {MAX_DEFERRED_DISCLOSURES} entries, got {0}")]
    DisclosureEntries(usize),
    /// A malformed entry of a `RecordDisclosures` call: which one, which field, what is wrong.
    #[error("entries[{index}].{field} {problem}")]
    DisclosureEntry {
        /// The entry's position in the request (from 0).
        index: usize,
        /// The entry's field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl InvalidRequest {
    /// The request field at fault (`ErrorInfo` metadata `field`).
    pub fn field(&self) -> &'static str {
        match self {
            InvalidRequest::TokenLength(_) => "token",
            InvalidRequest::AttestBatchSize(_) => "tokens",
            InvalidRequest::Purpose => "purpose",
            InvalidRequest::SubjectRef | InvalidRequest::PersonalData => "subject_ref",
            InvalidRequest::Status => "status",
            InvalidRequest::TestRecency(_) => "test_recency",
            InvalidRequest::ValidUntil(_) => "valid_until",
            InvalidRequest::GreenWithRule => "rule_id",
            InvalidRequest::Lifetime => "lifetime_seconds",
            InvalidRequest::EntriesRange | InvalidRequest::LogRange(_) => "range",
            InvalidRequest::BatchSize { .. } => "items",
            InvalidRequest::ItemId | InvalidRequest::ItemIdReused => "item_id",
            InvalidRequest::DuplicateSubject => "subject_ref",
            InvalidRequest::MissingChange => "change",

            InvalidRequest::Days => "days",
            InvalidRequest::DisclosureEntries(_) => "entries",
            InvalidRequest::DisclosureEntry { field, .. } => field,
        }
    }
}

/// `Attestation/Attest`: a gateway asks about a token for a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attest {
    pub(crate) token: [u8; TOKEN_LEN],
    pub(crate) purpose: String,
}

impl TryFrom<pb::AttestRequest> for Attest {
    type Error = InvalidRequest;

    fn try_from(req: pb::AttestRequest) -> Result<Self, Self::Error> {
        let token = token(&req.token)?;
        purpose(&req.purpose)?;
        Ok(Self { token, purpose: req.purpose })
    }
}

/// Who asked for an attestation, as the gateway says from the hub's verified certificate
/// and its trust list: recorded in the subject's disclosure log. `None` from
/// [`HubContext::of`] when the request does not say (no or a malformed `hub_id`, a
/// `hub_province` that is no province code): the node then refuses the call
/// (`HUB_CONTEXT_REQUIRED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubContext {
    pub(crate) hub_id: String,
    /// Empty when the hub's registration names no province.
    pub(crate) hub_province: String,
}

impl HubContext {
    pub(crate) fn of(req: &pb::AttestRequest) -> Option<Self> {
        Self::from_parts(&req.hub_id, &req.hub_province)
    }

    /// The hub context of an `AttestBatch` (once for the whole batch).
    pub(crate) fn of_batch(req: &pb::AttestBatchRequest) -> Option<Self> {
        Self::from_parts(&req.hub_id, &req.hub_province)
    }

    fn from_parts(hub_id: &str, hub_province: &str) -> Option<Self> {
        if !huren_pki::identity::valid_name(hub_id) {
            return None;
        }
        if !hub_province.is_empty() && hub_province.parse::<huren_pki::ProvinceCode>().is_err() {
            return None;
        }
        Some(Self { hub_id: hub_id.to_owned(), hub_province: hub_province.to_owned() })
    }
}

/// Most entries one `RecordDisclosures` call may carry: 250 entries of the longest hub ids
/// and purposes (64 characters each) encode to about 46 KiB, under [`crate::MAX_MESSAGE_BYTES`].
pub const MAX_DEFERRED_DISCLOSURES: usize = 250;

/// `Attestation/RecordDisclosures`, one entry: a check a gateway answered from its cache
/// while this node could not answer, well-formed (its time is judged against the clock
/// and the retention window later, in the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeferredCheck {
    pub(crate) token_digest: [u8; 32],
    pub(crate) hub: HubContext,
    pub(crate) purpose: String,
    pub(crate) checked_at: i64,
}

/// The entries of a `RecordDisclosures` call, each checked; the first malformed one
/// refuses the call.
pub(crate) fn deferred_checks(req: pb::RecordDisclosuresRequest) -> Result<Vec<DeferredCheck>, InvalidRequest> {
    if req.entries.is_empty() || req.entries.len() > MAX_DEFERRED_DISCLOSURES {
        return Err(InvalidRequest::DisclosureEntries(req.entries.len()));
    }
    req.entries
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let bad = |field: &'static str, problem: String| InvalidRequest::DisclosureEntry { index, field, problem };
            let token_digest = <[u8; 32]>::try_from(e.token_digest.as_slice()).map_err(|_| {
                bad(
                    "token_digest",
                    format!("must be 32 bytes (the SHA-256 of the token), got {}", e.token_digest.len()),
                )
            })?;
            if !huren_pki::identity::valid_name(&e.hub_id) {
                return Err(bad("hub_id", "must be a hub's <id>: 1-64 characters of a-z, 0-9, '-', '_', '.'".into()));
            }
            if !e.hub_province.is_empty() && e.hub_province.parse::<huren_pki::ProvinceCode>().is_err() {
                return Err(bad("hub_province", "must be empty or a province code, e.g. 370000".into()));
            }
            if !valid_purpose(&e.purpose) {
                return Err(bad("purpose", "must be dotted lowercase words, e.g. transit.rail".into()));
            }
            if e.checked_at <= 0 {
                return Err(bad("checked_at", format!("must be a Unix time in seconds, got {}", e.checked_at)));
            }
            let hub = HubContext { hub_id: e.hub_id, hub_province: e.hub_province };
            Ok(DeferredCheck { token_digest, hub, purpose: e.purpose, checked_at: e.checked_at })
        })
        .collect()
}

/// Days of disclosure log `ListDisclosures` returns when asked for none.
pub(crate) const DEFAULT_DISCLOSURE_DAYS: u32 = 30;
/// Most days of disclosure log one `ListDisclosures` may ask for.
pub(crate) const MAX_DISCLOSURE_DAYS: u32 = 366;

/// `StatusAdmin/ListDisclosures`: a subject's disclosure log for the last `days` days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DisclosureQuery {
    pub(crate) subject_ref: String,
    pub(crate) days: u32,
}

impl TryFrom<pb::ListDisclosuresRequest> for DisclosureQuery {
    type Error = InvalidRequest;

    fn try_from(req: pb::ListDisclosuresRequest) -> Result<Self, Self::Error> {
        subject_ref(&req.subject_ref)?;
        if req.days > MAX_DISCLOSURE_DAYS {
            return Err(InvalidRequest::Days);
        }
        let days = if req.days == 0 { DEFAULT_DISCLOSURE_DAYS } else { req.days };
        Ok(Self { subject_ref: req.subject_ref, days })
    }
}

/// `StatusAdmin/UpsertStatus`: a well-formed status change, not yet checked against the
/// rule registry, the caller or the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusChange {
    pub(crate) subject_ref: String,
    pub(crate) status: Status,
    /// Empty for none.
    pub(crate) rule_id: String,
    /// The authority the caller claims to be (empty: none claimed).
    pub(crate) authority: String,
    /// `None`: the node's default validity.
    pub(crate) valid_until: Option<i64>,
    pub(crate) test_recency: pb::TestRecency,
}

impl TryFrom<pb::UpsertStatusRequest> for StatusChange {
    type Error = InvalidRequest;

    fn try_from(req: pb::UpsertStatusRequest) -> Result<Self, Self::Error> {
        subject_ref(&req.subject_ref)?;
        let status = Status::from_pb(req.status).ok_or(InvalidRequest::Status)?;
        let test_recency =
            pb::TestRecency::try_from(req.test_recency).map_err(|_| InvalidRequest::TestRecency(req.test_recency))?;
        Ok(Self {
            subject_ref: req.subject_ref,
            status,
            rule_id: req.rule_id,
            authority: req.authority,
            valid_until: (req.valid_until != 0).then_some(req.valid_until),
            test_recency,
        })
    }
}

/// `StatusAdmin/IssueToken`: a token for a subject, bound to a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    pub(crate) subject_ref: String,
    /// `None`: the node's default lifetime.
    pub(crate) lifetime_seconds: Option<u32>,
    /// The purpose asked, else [`DEFAULT_QR_PURPOSE`].
    pub(crate) purpose: String,
}

impl TryFrom<pb::IssueTokenRequest> for TokenRequest {
    type Error = InvalidRequest;

    fn try_from(req: pb::IssueTokenRequest) -> Result<Self, Self::Error> {
        subject_ref(&req.subject_ref)?;
        if req.lifetime_seconds > MAX_TOKEN_LIFETIME_SECS {
            return Err(InvalidRequest::Lifetime);
        }
        let purpose = if req.purpose.is_empty() { DEFAULT_QR_PURPOSE.to_owned() } else { req.purpose };
        self::purpose(&purpose)?;
        Ok(Self {
            subject_ref: req.subject_ref,
            lifetime_seconds: (req.lifetime_seconds != 0).then_some(req.lifetime_seconds),
            purpose,
        })
    }
}

/// A well-formed batch item id: 1-128 printable ASCII characters.
pub(crate) fn item_id(id: &str) -> Result<(), InvalidRequest> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
        return Err(InvalidRequest::ItemId);
    }
    Ok(())
}

/// A batch of `got` items where a call takes at most `max`.
pub(crate) fn batch_size(got: usize, max: usize) -> Result<(), InvalidRequest> {
    if got == 0 || got > max {
        return Err(InvalidRequest::BatchSize { max, got });
    }
    Ok(())
}

/// A token of the right length.
pub(crate) fn token(token: &[u8]) -> Result<[u8; TOKEN_LEN], InvalidRequest> {
    <[u8; TOKEN_LEN]>::try_from(token).map_err(|_| InvalidRequest::TokenLength(token.len()))
}

fn purpose(purpose: &str) -> Result<(), InvalidRequest> {
    if valid_purpose(purpose) {
        Ok(())
    } else {
        Err(InvalidRequest::Purpose)
    }
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

fn subject_ref(subject_ref: &str) -> Result<(), InvalidRequest> {
    let ok_chars = subject_ref.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
    if subject_ref.is_empty() || subject_ref.len() > 128 || !ok_chars {
        return Err(InvalidRequest::SubjectRef);
    }
    if looks_like_personal_id(subject_ref) {
        return Err(InvalidRequest::PersonalData);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_ids_are_recognised() {
        assert!(looks_like_personal_id("34010419900101123X"));
        assert!(looks_like_personal_id("13800138000"));
        assert!(!looks_like_personal_id("ah-subj-000001"));
        assert_eq!(subject_ref("a b"), Err(InvalidRequest::SubjectRef));
        assert_eq!(subject_ref(""), Err(InvalidRequest::SubjectRef));
        assert_eq!(subject_ref("13800138000"), Err(InvalidRequest::PersonalData));
    }

    #[test]
    fn attest_requests_need_a_token_and_a_purpose() {
        let ok = pb::AttestRequest { token: vec![7; TOKEN_LEN], purpose: "transit.rail".into(), ..Default::default() };
        assert_eq!(Attest::try_from(ok), Ok(Attest { token: [7; TOKEN_LEN], purpose: "transit.rail".into() }));
        let short = pb::AttestRequest { token: vec![7; 3], purpose: "transit.rail".into(), ..Default::default() };
        assert_eq!(Attest::try_from(short), Err(InvalidRequest::TokenLength(3)));
        let bad = pb::AttestRequest { token: vec![7; TOKEN_LEN], purpose: "Transit Rail".into(), ..Default::default() };
        let err = Attest::try_from(bad).unwrap_err();
        assert_eq!(
            (err.field(), err.to_string().as_str()),
            ("purpose", "purpose must be dotted lowercase words, e.g. transit.rail")
        );
    }

    #[test]
    fn an_attest_says_which_hub_asked() {
        let req = |hub: &str, province: &str| pb::AttestRequest {
            token: vec![7; TOKEN_LEN],
            purpose: "transit.rail".into(),
            hub_id: hub.into(),
            hub_province: province.into(),
        };
        assert_eq!(
            HubContext::of(&req("jinan-west", "370000")),
            Some(HubContext { hub_id: "jinan-west".into(), hub_province: "370000".into() })
        );
        assert!(HubContext::of(&req("jinan-west", "")).is_some());
        assert_eq!(HubContext::of(&req("", "370000")), None);
        assert_eq!(HubContext::of(&req("a/b", "")), None);
        assert_eq!(HubContext::of(&req("jinan-west", "37")), None);
    }

    #[test]
    fn deferred_checks_are_bounded_and_refused_by_entry_and_field() {
        let entry = || pb::DeferredDisclosure {
            token_digest: vec![1; 32],
            hub_id: "jinan-west".into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            checked_at: 1_800_000_000,
        };
        let req = |entries: Vec<pb::DeferredDisclosure>| pb::RecordDisclosuresRequest { entries };
        let ok = deferred_checks(req(vec![entry(), pb::DeferredDisclosure { hub_province: String::new(), ..entry() }]))
            .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            (ok[0].token_digest, ok[0].hub.hub_id.as_str(), ok[0].checked_at),
            ([1; 32], "jinan-west", 1_800_000_000)
        );
        assert_eq!(ok[1].hub.hub_province, "");

        for n in [0, MAX_DEFERRED_DISCLOSURES + 1] {
            let err = deferred_checks(req(vec![entry(); n])).unwrap_err();
            assert_eq!((err.field(), err), ("entries", InvalidRequest::DisclosureEntries(n)));
        }
        assert!(deferred_checks(req(vec![entry(); MAX_DEFERRED_DISCLOSURES])).is_ok());

        let cases = [
            (
                pb::DeferredDisclosure { token_digest: vec![1; 16], ..entry() },
                "token_digest",
                "entries[1].token_digest must be 32 bytes (the SHA-256 of the token), got 16",
            ),
            (
                pb::DeferredDisclosure { hub_id: String::new(), ..entry() },
                "hub_id",
                "entries[1].hub_id must be a hub's <id>: 1-64 characters of a-z, 0-9, '-', '_', '.'",
            ),
            (
                pb::DeferredDisclosure { hub_province: "37".into(), ..entry() },
                "hub_province",
                "entries[1].hub_province must be empty or a province code, e.g. 370000",
            ),
            (
                pb::DeferredDisclosure { purpose: "Transit".into(), ..entry() },
                "purpose",
                "entries[1].purpose must be dotted lowercase words, e.g. transit.rail",
            ),
            (
                pb::DeferredDisclosure { checked_at: 0, ..entry() },
                "checked_at",
                "entries[1].checked_at must be a Unix time in seconds, got 0",
            ),
        ];
        for (bad, field, message) in cases {
            let err = deferred_checks(req(vec![entry(), bad, entry()])).unwrap_err();
            assert_eq!((err.field(), err.to_string().as_str()), (field, message));
        }
    }

    #[test]
    fn disclosure_queries_are_bounded() {
        let req = pb::ListDisclosuresRequest { subject_ref: "ah-0001".into(), days: 0 };
        assert_eq!(DisclosureQuery::try_from(req.clone()).unwrap().days, DEFAULT_DISCLOSURE_DAYS);
        let long = pb::ListDisclosuresRequest { days: MAX_DISCLOSURE_DAYS + 1, ..req.clone() };
        assert_eq!(DisclosureQuery::try_from(long), Err(InvalidRequest::Days));
        let personal = pb::ListDisclosuresRequest { subject_ref: "13800138000".into(), ..req };
        assert_eq!(DisclosureQuery::try_from(personal), Err(InvalidRequest::PersonalData));
    }

    #[test]
    fn status_changes_are_checked_field_by_field() {
        let req = pb::UpsertStatusRequest {
            subject_ref: "ah-0001".into(),
            status: pb::HealthStatus::Red as i32,
            rule_id: "R-1".into(),
            authority: String::new(),
            valid_until: 0,
            test_recency: 0,
        };
        let change = StatusChange::try_from(req.clone()).unwrap();
        assert_eq!((change.status, change.valid_until, change.rule_id.as_str()), (Status::Red, None, "R-1"));
        let no_status = pb::UpsertStatusRequest { status: 0, ..req.clone() };
        assert_eq!(StatusChange::try_from(no_status), Err(InvalidRequest::Status));
        let recency = pb::UpsertStatusRequest { test_recency: 99, ..req.clone() };
        assert_eq!(StatusChange::try_from(recency).unwrap_err().to_string(), "unknown test_recency 99");
        let personal = pb::UpsertStatusRequest { subject_ref: "34010419900101123X".into(), ..req };
        assert_eq!(StatusChange::try_from(personal).unwrap_err().field(), "subject_ref");
    }

    #[test]
    fn token_requests_get_the_default_purpose_and_a_bounded_lifetime() {
        let req = pb::IssueTokenRequest { subject_ref: "ah-0001".into(), lifetime_seconds: 0, purpose: String::new() };
        let t = TokenRequest::try_from(req.clone()).unwrap();
        assert_eq!((t.purpose.as_str(), t.lifetime_seconds), (DEFAULT_QR_PURPOSE, None));
        let long = pb::IssueTokenRequest { lifetime_seconds: MAX_TOKEN_LIFETIME_SECS + 1, ..req.clone() };
        assert_eq!(TokenRequest::try_from(long), Err(InvalidRequest::Lifetime));
        let bad = pb::IssueTokenRequest { purpose: "x..y".into(), ..req };
        assert_eq!(TokenRequest::try_from(bad), Err(InvalidRequest::Purpose));
    }
}
