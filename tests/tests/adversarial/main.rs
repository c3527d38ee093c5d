//! Adversarial end-to-end suite: every attack is one row of a table, run against a real
//! federation over mutual TLS on loopback, and every row is its own test (named after
//! the row), so one failing row never hides another. Each row asserts the precise
//! refusal (gRPC code and message, TLS alert, or parse error) and that nothing changed:
//! the trust list held by the gateway and by every node (and the gateway's persisted
//! copy), every real node's signed transparency-log head (size and root), the gateway's
//! deletion receipts, and a probe lookup that keeps returning the same verified status.
//!
//! One module per family of attacks. The rows of [`transport`], [`identities`],
//! [`roles`], [`receipts`], [`authorities`], [`oversize`], [`trust_lists`] and [`qr`]
//! share one real federation; those of [`forged_attestations`] share one whose Shandong
//! node is replaced by a scripted one that forges per row. Rows sharing a federation run
//! one at a time ([`common::Shared`]). Further tests cover what does not fit a row: a
//! node impersonating another province and slowloris-style idle connections
//! ([`transport`]), a large burst of concurrent upserts ([`burst`]), and revocations —
//! which change the trust list, so they cannot be rows that leave everything unchanged: a
//! hub revoked by the serial openssl prints, a connection opened before its revocation
//! ([`transport`]), a revoked hub's open `Watch` stream and a revoked node's cached
//! attestations, in process and through Redis ([`trust_lists`]) — each in a federation of
//! its own.

mod common;

mod authorities;
mod burst;
mod forged_attestations;
mod identities;
mod oversize;
mod qr;
mod receipts;
mod roles;
mod transport;
mod trust_lists;

/// How many rows share the real federation (the last of them stops it).
const REAL_ROWS: usize = transport::ROWS.len()
    + identities::ROWS.len()
    + roles::ROWS.len()
    + receipts::ROWS.len()
    + authorities::ROWS.len()
    + oversize::ROWS.len()
    + trust_lists::ROWS.len()
    + qr::ROWS.len();

const _: () = assert!(REAL_ROWS >= 40, "the real federation's tables lost rows");
