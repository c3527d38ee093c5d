//! The hub agent for gate scanners (`huren hub serve`): turnstiles and handheld scanners
//! speak HTTP, not mutual-TLS gRPC, so a long-running agent at the hub holds the hub's
//! identity, keeps the trust list current and answers a small local HTTP/JSON API.
//!
//! - `POST /v1/check` `{"scan": "HRN1:…" | "<province>:<token>", "purpose": "…"}` → the
//!   verified status, province, validity and, for a non-green status, the rule's title.
//!   Online through the gateways (the agent verifies the answer itself); offline against
//!   the followed trust list when no gateway answers (a QR only: a bare token carries no
//!   attestation). The answer says which (`"checked": "online" | "offline"`).
//! - `GET /healthz`, `GET /metrics` (Prometheus text, bounded labels).
//!
//! Tokens and scanned strings are never logged nor put in metrics: a check logs its
//! outcome, status, province and purpose only.
//!
//! Layout: `config` ([`AgentConfig`], loaded like the servers' configs), `check` (the
//! request, the answer and the online/offline decision), `http` ([`Agent`]: start-up,
//! the trust-list follower, the routes and their metrics).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod check;
mod config;
mod http;

pub use check::{CheckRequest, Checked};
pub use config::AgentConfig;
pub use http::{Agent, AgentError};
