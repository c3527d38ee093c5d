//! Huren's trust core: who is who, and what may be believed. Pure: no async runtime, no
//! network, no gRPC server — it parses, signs and verifies, so it can be fuzzed and embedded
//! anywhere (the server runtime, TLS and config loading live in `huren-runtime`).
//!
//! Layout:
//! - [`identity`]: SPIFFE-style identities (`spiffe://<td>/province/<code>/node`, …) and their parsing.
//! - [`ca`]: the national root CA, province CAs and role leaf certificates (rcgen), PEM on disk.
//! - [`serial`]: certificate serials as integers, in the one canonical form every comparison uses.
//! - [`attest`]: Ed25519 attestation keys, key ids, signing attestations, tree heads and receipts.
//! - [`policy`]: the minimum-field policy, as data plus pure checks over the payload's wire fields.
//! - [`trust`]: the signed, sequenced trust list (the federation's only source of truth).
//! - [`verify`]: the one attestation verifier every party runs (gateway, offline hub, client library).
//! - [`batch`]: Ed25519 batch verification giving exactly `verify_strict`'s verdicts (the verifier's batch path).
//! - [`endpoint`]: `host:port` endpoints as the trust list writes them.
//! - [`qr`]: the `HRN1:` QR string and opaque tokens.
//! - [`registry`]: the coordinator's on-disk PKI directory and the registry the trust list is built from.
//! - [`fsio`]: durable file replacement (temporary file, fsync, rename, directory fsync).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod attest;
pub mod batch;
pub mod ca;
pub mod endpoint;
pub mod fsio;
pub mod identity;
pub mod policy;
pub mod qr;
pub mod registry;
pub mod serial;
pub mod trust;
pub mod verify;

pub use identity::{AuthorityRef, Identity, ProvinceCode, Role, DEFAULT_TRUST_DOMAIN};
pub use trust::TrustList;
pub use verify::{verify_attestation, verify_attestations, Expected, Verified, VerifyError};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
