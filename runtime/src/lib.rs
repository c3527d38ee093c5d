//! Huren's server runtime: everything a node or gateway needs around the trust core to
//! run as a server — and a client needs to reach one.
//!
//! Layout:
//! - [`tls`]: rustls server/client configurations with client-certificate authentication,
//!   identity-checking server verification, revocation, peer authentication, the TLS
//!   accept loop and the mTLS connector.
//! - [`handshake`]: admission of TLS handshakes (per-source cap, eviction of the oldest
//!   when all slots are taken, a deadline that shrinks as they run out).
//! - [`serve`]: the one server builder node and gateway both use (TLS accept loop, health,
//!   reflection, message-size caps, the oversize layer, graceful shutdown).
//! - [`config`]: the one configuration loader (TOML file, then `HUREN_<ROLE>_*` environment
//!   overrides, paths resolved against the file's folder, one `ConfigError`; secret values
//!   never echoed).
//! - [`error`]: what node and gateway share about failing — typed refusals sent as
//!   `google.rpc.ErrorInfo` (domain `huren.gov`) and `RetryInfo`, the callers' identity
//!   check, and why a server could not start.
//! - [`live`]: the trust list as a live, persisted value, and the follower that keeps it in
//!   step with a gateway's `Watch` stream.
//! - [`gateways`]: the `gateway` setting — one gateway endpoint or several replicas.
//! - [`expiry`]: certificate, key and trust-list expiry warnings and gauges.
//! - [`oversize`]: the tower layer that answers oversized requests with RESOURCE_EXHAUSTED.
//! - [`tracectx`]: W3C trace context through gRPC metadata.
//! - [`clock`]: wall-clock time as a value, so tests move time instead of waiting.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod clock;
pub mod config;
pub mod error;
pub mod expiry;
pub mod gateways;
pub mod handshake;
pub mod live;
pub mod oversize;
pub mod serve;
pub mod tls;
pub mod tracectx;
