//! What a hub shows for a traveller: a status it verified itself, described with the
//! trust list it verified it against.

use huren_pki::attest::Attestation;
use huren_pki::TrustList;
use serde::Serialize;

/// A status the hub verified itself, with what the trust list says about it.
///
/// Serialises to the JSON object `huren hub lookup --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedStatus {
    /// Issuing province, GB/T 2260 code (`340000`).
    pub province: String,
    /// The province's name in the trust list (empty if the list has none).
    pub province_name: String,
    /// `GREEN`, `YELLOW` or `RED`.
    pub status: String,
    /// When the home node signed the attestation, Unix seconds.
    pub issued_at: i64,
    /// Until when the attestation may be relied on, Unix seconds.
    pub expires_at: i64,
    /// The purpose the attestation was issued for (bound into the signature).
    pub purpose: String,
    /// The registered rule that assigned a non-green status.
    pub rule_id: Option<String>,
    /// That rule's title, from the trust list's rule registry.
    pub rule_title: Option<String>,
    /// That rule's legal basis, from the registry.
    pub rule_legal_basis: Option<String>,
    /// How the status ends under that rule, from the registry.
    pub rule_exit_condition: Option<String>,
    /// Test-recency bucket (`WITHIN_24H`, `WITHIN_48H`, `WITHIN_72H`, `NONE`, …).
    pub test_recency: String,
    /// Sequence number of the trust list the attestation was verified against.
    pub trust_list_sequence: u64,
}

impl VerifiedStatus {
    /// Describes an attestation that already verified against `trust`.
    pub fn describe(a: &Attestation, trust: &TrustList) -> Self {
        let rule = a.rule_id.as_deref().and_then(|r| trust.rule(r));
        Self {
            province: a.province.to_string(),
            province_name: trust.province(&a.province).map(|p| p.name.clone()).unwrap_or_default(),
            status: a.status.to_string(),
            issued_at: a.issued_at,
            expires_at: a.expires_at,
            purpose: a.purpose.clone(),
            rule_id: a.rule_id.clone(),
            rule_title: rule.map(|r| r.title.clone()),
            rule_legal_basis: rule.map(|r| r.legal_basis.clone()),
            rule_exit_condition: rule.map(|r| r.exit_condition.clone()),
            test_recency: a.test_recency.as_str_name().trim_start_matches("TEST_RECENCY_").to_owned(),
            trust_list_sequence: trust.sequence(),
        }
    }

    /// One human-readable line: status, issuer, purpose, validity and, for a non-green
    /// status, the rule that assigned it.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} — issued by {} {} for {}, valid until {}",
            self.status,
            self.province,
            self.province_name,
            self.purpose,
            rfc3339(self.expires_at)
        );
        if let Some(rule) = &self.rule_id {
            s.push_str(&format!(
                "; rule {rule}: {} ({})",
                self.rule_title.as_deref().unwrap_or("?"),
                self.rule_legal_basis.as_deref().unwrap_or("")
            ));
        }
        s
    }
}

/// Unix seconds as an RFC 3339 UTC time (the number itself if out of range).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
