//! What can go wrong in a benchmark run.

use std::path::PathBuf;
use std::time::Duration;

/// Why a benchmark did not run or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A bad option or input (a non-loopback target, an unreadable certificate, a
    /// malformed token): the caller's mistake, not the target's.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a named file, or resolving an address, failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done (`reading tokens.txt`).
        context: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] std::io::Error),
    /// The client's TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] huren_runtime::tls::TlsError),
    /// The node store failed.
    #[error(transparent)]
    Store(#[from] huren_node::store::StoreError),
    /// A call during seeding was refused.
    #[error("{rpc} refused: {code:?}: {message}")]
    Refused {
        /// The RPC (`UpsertStatus`, `IssueToken`).
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The check before measuring failed: nothing was measured.
    #[error("first request to {target} failed ({code}); check the target, the certificates and the tokens")]
    FirstRequest {
        /// The server loaded.
        target: String,
        /// How the request failed (a gRPC code name, `VerifyFailed`, `ClientTimeout`, …).
        code: String,
    },
    /// The measured phase overran its bound (duration + request timeout + 5 s).
    #[error("the run did not finish within {0:?}")]
    Overran(Duration),
    /// A subject written during the store benchmark could not be read back.
    #[error("subject {0} is missing after the load")]
    Missing(String),
    /// A results folder without any `max-*.json`.
    #[error("{}: no max-*.json results", .0.display())]
    NoResults(PathBuf),
    /// A worker task panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// A report could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// A [`BenchError::Usage`] from anything displayable.
    pub(crate) fn usage(e: impl std::fmt::Display) -> Self {
        BenchError::Usage(e.to_string())
    }

    /// An [`BenchError::Io`] saying what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |error| BenchError::Io { context, error }
    }
}

/// The result of a benchmark step.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
