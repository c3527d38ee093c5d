//! Huren's trust plumbing: who is who, and what may be believed.
//!
//! Layout:
//! - [`identity`]: SPIFFE-style identities (`spiffe://<td>/province/<code>/node`, …) and their parsing.
//! - [`ca`]: the national root CA, province CAs and role leaf certificates (rcgen), PEM on disk.
//! - [`attest`]: Ed25519 attestation keys, key ids, signing and verifying attestations.
//! - [`trust`]: the signed, sequenced trust list (the federation's only source of truth).
//! - [`qr`]: the `HRN1:` QR string and opaque tokens.
//! - [`tls`]: rustls server/client configurations with client-certificate authentication,
//!   identity-checking server verification, revocation, peer authentication and the
//!   TLS accept loop / connector used by every Huren server and client.
//! - [`registry`]: the coordinator's on-disk PKI directory and the registry the trust list is built from.
//! - [`oversize`]: the tower layer every Huren server uses to answer oversized requests with
//!   RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE), sizes kept.

#![forbid(unsafe_code)]

pub mod attest;
pub mod ca;
pub mod clock;
pub mod envcfg;
pub mod expiry;
pub mod identity;
pub mod live;
pub mod oversize;
pub mod policy;
pub mod qr;
pub mod registry;
pub mod tls;
pub mod tracectx;
pub mod trust;

pub use identity::{AuthorityRef, Identity, ProvinceCode, Role, DEFAULT_TRUST_DOMAIN};
pub use trust::TrustList;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
