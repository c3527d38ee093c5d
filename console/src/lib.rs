//! The coordinator's read-only view of the federation: what it collects over mTLS and the
//! server-rendered web console (`huren console`; `huren pki status` prints the summary).
//!
//! Layout: [`model`] the picture as plain data; [`inventory`] keys and certificates with
//! their expiry (trust list, PKI directory); [`metrics`] the gateway's and nodes'
//! Prometheus endpoints and counts over the last hour; [`collect`] asking the gateway and
//! every node with the coordinator's or auditor's own identity (health over mTLS, trust
//! list, receipts, verified transparency logs, per-hub aggregates ranked and flagged as
//! `huren audit hubs` does); [`render`] the HTML pages (maud, no JavaScript); [`server`]
//! serving them on a bound listener until a shutdown future. Nothing collected or shown
//! carries a token, a subject reference or a payload (hub aggregates are counts per hub,
//! hour and purpose).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collect;
pub mod inventory;
pub mod metrics;
pub mod model;
pub mod render;
pub mod server;

pub use collect::{Console, Sources};
pub use model::Overview;
