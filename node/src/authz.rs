//! Who may call what on a node: pure data and a pure check, applied in one place.

use huren_pki::{Identity, ProvinceCode, Role};

/// The node's RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Attest,
    /// Attestation: checks a gateway answered from its cache while this node was down.
    RecordDisclosures,
    UpsertStatus,
    IssueToken,
    /// Transparency: the signed tree head.
    TreeHead,
    /// Transparency: proofs and entries.
    LogRead,
    /// Transparency: a subject's own entries (through a token).
    SubjectEntries,
    /// StatusAdmin: a subject's disclosure log (the province's app backend).
    ListDisclosures,
    /// Transparency: per-hub aggregates of checks.
    HubAggregates,
}

impl Call {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Call::Attest => "Attestation/Attest",
            Call::RecordDisclosures => "Attestation/RecordDisclosures",
            Call::UpsertStatus => "StatusAdmin/UpsertStatus",
            Call::IssueToken => "StatusAdmin/IssueToken",
            Call::TreeHead => "Transparency/GetTreeHead",
            Call::LogRead => "Transparency proofs and entries",
            Call::SubjectEntries => "Transparency/GetSubjectEntries",
            Call::ListDisclosures => "StatusAdmin/ListDisclosures",
            Call::HubAggregates => "Transparency/GetHubAggregates",
        }
    }
}

/// Gateways may ask for attestations (and hand in the checks they answered from their
/// cache while this node was down); only this province's admin identity may issue
/// tokens, and only it or one of this province's authorities may change statuses (which
/// statuses, under which rule, is checked against the rule registry in
/// `service::validate_upsert`). Everything else is refused.
pub(crate) fn authorize(call: Call, caller: &Identity, own: &ProvinceCode) -> Result<(), String> {
    let allowed = match (call, &caller.role) {
        (Call::Attest | Call::RecordDisclosures, Role::Gateway(_)) => true,
        (Call::UpsertStatus | Call::IssueToken, Role::Admin(p)) => p == own,
        (Call::UpsertStatus, Role::Authority { province, .. }) => province == own,
        (Call::TreeHead, Role::Auditor(_) | Role::Coordinator(_) | Role::Gateway(_)) => true,
        (Call::TreeHead | Call::SubjectEntries, Role::Admin(p)) => p == own,
        (Call::LogRead, Role::Auditor(_) | Role::Coordinator(_)) => true,
        (Call::SubjectEntries, Role::Auditor(_)) => true,
        // A subject's disclosures never leave the province: its own admin only.
        (Call::ListDisclosures, Role::Admin(p)) => p == own,
        (Call::HubAggregates, Role::Auditor(_)) => true,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let who = match call {
        Call::Attest | Call::RecordDisclosures => "gateway identities".to_owned(),
        Call::UpsertStatus => format!("the admin and authority identities of province {own}"),
        Call::IssueToken => format!("the admin identity of province {own}"),
        Call::TreeHead => format!("auditors, coordinators, gateways and the admin of province {own}"),
        Call::LogRead => "auditors and coordinators".to_owned(),
        Call::SubjectEntries => format!("auditors and the admin of province {own}"),
        Call::ListDisclosures => format!("the admin identity of province {own}"),
        Call::HubAggregates => "auditors".to_owned(),
    };
    Err(format!("{} is for {who}; caller {caller} ({}) may not call it", call.name(), caller.role.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uri: &str) -> Identity {
        uri.parse().unwrap()
    }

    #[test]
    fn table() {
        let own: ProvinceCode = "340000".parse().unwrap();
        let cases = [
            (Call::Attest, "spiffe://huren.gov/gateway/g1", true),
            (Call::Attest, "spiffe://huren.gov/hub/h1", false),
            (Call::Attest, "spiffe://huren.gov/province/340000/admin", false),
            (Call::Attest, "spiffe://huren.gov/province/340000/node", false),
            (Call::RecordDisclosures, "spiffe://huren.gov/gateway/g1", true),
            (Call::RecordDisclosures, "spiffe://huren.gov/hub/h1", false),
            (Call::RecordDisclosures, "spiffe://huren.gov/province/340000/admin", false),
            (Call::RecordDisclosures, "spiffe://huren.gov/auditor/a", false),
            (Call::UpsertStatus, "spiffe://huren.gov/province/340000/admin", true),
            (Call::UpsertStatus, "spiffe://huren.gov/province/440000/admin", false),
            (Call::UpsertStatus, "spiffe://huren.gov/gateway/g1", false),
            (Call::UpsertStatus, "spiffe://huren.gov/province/340000/authority/hefei-cdc", true),
            (Call::UpsertStatus, "spiffe://huren.gov/province/440000/authority/hefei-cdc", false),
            (Call::IssueToken, "spiffe://huren.gov/province/340000/authority/hefei-cdc", false),
            (Call::IssueToken, "spiffe://huren.gov/province/340000/admin", true),
            (Call::IssueToken, "spiffe://huren.gov/coordinator/c", false),
            (Call::TreeHead, "spiffe://huren.gov/auditor/a", true),
            (Call::TreeHead, "spiffe://huren.gov/hub/h", false),
            (Call::LogRead, "spiffe://huren.gov/auditor/a", true),
            (Call::LogRead, "spiffe://huren.gov/province/340000/admin", false),
            (Call::SubjectEntries, "spiffe://huren.gov/province/340000/admin", true),
            (Call::SubjectEntries, "spiffe://huren.gov/province/440000/admin", false),
            (Call::SubjectEntries, "spiffe://huren.gov/gateway/g", false),
            (Call::ListDisclosures, "spiffe://huren.gov/province/340000/admin", true),
            (Call::ListDisclosures, "spiffe://huren.gov/province/440000/admin", false),
            (Call::ListDisclosures, "spiffe://huren.gov/hub/h", false),
            (Call::ListDisclosures, "spiffe://huren.gov/gateway/g", false),
            (Call::ListDisclosures, "spiffe://huren.gov/auditor/a", false),
            (Call::ListDisclosures, "spiffe://huren.gov/province/340000/authority/hefei-cdc", false),
            (Call::HubAggregates, "spiffe://huren.gov/auditor/a", true),
            (Call::HubAggregates, "spiffe://huren.gov/hub/h", false),
            (Call::HubAggregates, "spiffe://huren.gov/province/340000/admin", false),
        ];
        for (call, caller, ok) in cases {
            assert_eq!(authorize(call, &id(caller), &own).is_ok(), ok, "{call:?} by {caller}");
        }
    }
}
