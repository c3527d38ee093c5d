//! Huren's benchmarks: the criterion micro-benchmarks' fixtures and the whole-system
//! tools behind `huren bench`.
//!
//! - Criterion (`cargo bench -p huren-bench`, see BENCHMARKS.md), fixtures in `fixture`
//!   ([`Fixture`]): `crypto` (attestation sign and verify with ed25519-dalek — single,
//!   strict, batch — and ring), `trust` (`huren_pki::verify_attestation`, trust-list
//!   lookups, QR encode/decode), `store` (the node's redb store: point lookups, batched
//!   and single upserts).
//! - The load generator, [`lookup`] (`workload`: options, tokens, the loopback-only
//!   rule; `driver`: connections, closed and open loops, the report): a real `Lookup`
//!   (through a gateway) or `Attest` (straight to a node, or through a proxy) per
//!   request over mutual TLS, latencies in HDR histograms (`measure`).
//! - Seeding a node (`huren bench seed`) runs on the batched import of `huren admin
//!   import` (in `huren-cli`), the same path a province backend takes.
//! - [`store`](fn@store): the node store on its own — bulk ingest, updates, single
//!   upserts, lookups, file size, memory.
//! - [`flood`]: the handshake flood — idle connections from one address and a trickled
//!   ClientHello held against a server while legitimate connect + call latencies are
//!   measured ([`flood::handshake_flood`]).
//! - [`report`](fn@report): a `deploy/bench/run.sh` results folder summarised into
//!   `results.json` and `results.md`.
//!
//! Targets are refused unless they are loopback addresses: these tools only ever load
//! servers on the machine they run on. Errors are [`BenchError`]s; a
//! [`BenchError::Usage`] is the caller's mistake.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod error;
mod fixture;
pub mod flood;
mod measure;
mod report;
mod store;
mod workload;

pub use driver::{lookup, LookupReport};
pub use error::{BenchError, Result};
pub use fixture::{payload, Fixture, PROVINCES, RULE};
pub use report::report;
pub use store::{store, StoreEngine, StoreOptions, StoreReport};
pub use workload::{loopback, parse_duration, LookupOptions, Rpc, TlsFiles};
