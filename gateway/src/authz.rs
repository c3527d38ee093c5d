//! Who may call what on the gateway: pure data and a pure check.

use huren_pki::{Identity, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Lookup,
    GetTrustList,
    WatchTrustList,
    UploadTrustList,
    SubmitReceipt,
    ListReceipts,
}

/// Hubs look up statuses; coordinators upload trust lists; every federation identity
/// may read and watch the trust list.
pub(crate) fn authorize(call: Call, caller: &Identity) -> Result<(), String> {
    match (call, &caller.role) {
        (Call::Lookup, Role::Hub(_))
        | (Call::UploadTrustList, Role::Coordinator(_))
        | (Call::SubmitReceipt, Role::Node(_))
        | (Call::ListReceipts, Role::Coordinator(_) | Role::Auditor(_))
        | (Call::GetTrustList | Call::WatchTrustList, _) => Ok(()),
        (Call::Lookup, role) => Err(format!(
            "Lookup/Lookup is for transport hub identities; caller {caller} ({}) may not call it",
            role.kind()
        )),
        (Call::SubmitReceipt, role) => Err(format!(
            "TrustRegistry/SubmitReceipt is for province node identities; caller {caller} ({}) may not call it",
            role.kind()
        )),
        (Call::ListReceipts, role) => Err(format!(
            "TrustRegistry/ListReceipts is for coordinators and auditors; caller {caller} ({}) may not call it",
            role.kind()
        )),
        (Call::UploadTrustList, role) => Err(format!(
            "TrustRegistry/Upload is for coordinator identities; caller {caller} ({}) may not call it",
            role.kind()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let hub: Identity = "spiffe://huren.gov/hub/h".parse().unwrap();
        let node: Identity = "spiffe://huren.gov/province/340000/node".parse().unwrap();
        let coordinator: Identity = "spiffe://huren.gov/coordinator/c".parse().unwrap();
        assert!(authorize(Call::Lookup, &hub).is_ok());
        assert!(authorize(Call::Lookup, &node).is_err());
        assert!(authorize(Call::Lookup, &coordinator).is_err());
        assert!(authorize(Call::GetTrustList, &node).is_ok());
        assert!(authorize(Call::WatchTrustList, &hub).is_ok());
        assert!(authorize(Call::UploadTrustList, &coordinator).is_ok());
        assert!(authorize(Call::UploadTrustList, &hub).is_err());
        assert!(authorize(Call::UploadTrustList, &node).is_err());
    }
}
