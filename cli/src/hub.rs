//! The transport hub's client, from [`huren_client`] (re-exported for callers of
//! `huren_cli::hub`).

pub use huren_client::{rfc3339, verify_offline, HubClient, HubError, VerifiedStatus, DEFAULT_PURPOSE};
