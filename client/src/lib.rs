//! Huren's client library: what a transport hub or an auditor needs to talk to the
//! federation without the `huren` command line.
//!
//! - **Hubs** ([`HubClient`]): connect to a gateway over mutual TLS with a hub
//!   certificate, fetch the signed trust list, verify it against the national root, keep
//!   it (and a cache file) current and refuse an older one ([`HubError::Rollback`]); look
//!   a token up and verify the answer locally with [`huren_pki::verify_attestation`]; or
//!   check a QR offline against the list held ([`verify_offline`]). Either way the result
//!   is a [`VerifiedStatus`]. A refusal ([`HubError::Refused`]) carries the gRPC code, the
//!   message and, when the server attached a `google.rpc.ErrorInfo` in the
//!   [`ERROR_DOMAIN`], its machine-readable reason.
//! - **Auditors** ([`AuditClient`]): fetch and verify a node's signed tree heads, check
//!   RFC 9162 consistency proofs between two of them, download and recompute a whole log
//!   ([`AuditClient::fetch_verified`]), check a subject's entries and their inclusion
//!   proofs ([`verify_subject_entries`]), summarise non-green assignments ([`stats`]) and
//!   check a signed deletion receipt ([`verify_receipt`]); rank hubs by the distinct
//!   subjects they checked and flag over-checking ([`rank_hubs`], over a node's per-hub
//!   aggregates).
//!
//! A hub may list several gateway replicas ([`HubClient::connect_any`], [`Gateways`]):
//! lookups and trust-list reads fail over to the next replica when one cannot be
//! reached, never on a refusal.
//!
//! Layout: `hub` (the hub client and [`HubError`]), `failover` ([`Gateways`]), `status` ([`VerifiedStatus`]),
//! `audit` (the transparency client and [`AuditError`]), `receipt` (deletion receipts and
//! [`ReceiptError`]), `stats`, `hubs` (over-checking, pure), `disclosures` (a traveller's
//! disclosure log as people read it: [`disclosure_line`]). `examples/lookup.rs` looks one token up from the command
//! line.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod audit;
mod failover;

mod disclosures;
mod hub;
mod hubs;
mod receipt;
mod stats;
mod status;

pub use audit::{verify_subject_entries, AuditClient, AuditError};
pub use failover::{should_fail_over, split_endpoints, Gateways};

pub use disclosures::{china_minutes, disclosure_line};
pub use hub::{verify_offline, HubClient, HubError, DEFAULT_PURPOSE, ERROR_DOMAIN, MAX_BATCH_TOKENS};
pub use hubs::{rank_hubs, HubFlag, HubRank, OverCheck, DEFAULT_HUB_WINDOW};
pub use receipt::{verify_receipt, CheckedReceipt, ReceiptError};
pub use stats::{stats, LiftRow, Stats, StatsRow};
pub use status::{rfc3339, VerifiedStatus};

// The types of this crate's signatures, so that an integrator needs only this crate.
pub use huren_pki::qr::Scanned;
pub use huren_pki::{ProvinceCode, TrustList};
pub use huren_runtime::tls::TlsIdentity;
