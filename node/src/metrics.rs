//! The node's request and store metrics (OpenTelemetry instruments; the binary exports
//! them on the admin port's `/metrics`). Labels: `province` (this node's own), `outcome`
//! (`ok`, or the refusal's `ErrorInfo` reason in lower case, e.g. `token_unknown`),
//! `status` (`green`, `yellow`, `red`, `unknown` for a request naming none) and `kind` —
//! never a subject, token or payload.
//!
//! - `huren_node_attestations_total{province,outcome}` and
//!   `huren_node_attestation_duration_seconds` (histogram, 0.5 ms to 10 s): `Attest` calls.
//! - `huren_node_status_changes_total{province,status,outcome}` and
//!   `huren_node_status_change_duration_seconds`: `UpsertStatus` calls.
//! - `huren_node_tokens_issued_total{province,outcome}` and
//!   `huren_node_token_issue_duration_seconds`: `IssueToken` calls.
//! - `huren_node_deferred_disclosures_total{province,outcome}`: entries of
//!   `RecordDisclosures` (checks a gateway answered from its cache while this node was
//!   down), by what became of them: [`DEFERRED`] (`recorded`, or why not).
//! - `huren_node_store_records{province,kind}` (gauge): records held by kind (`status`,
//!   `token`, `log_entry`, `log_hash`, `log_node`, `subject_index`), and
//!   `huren_node_log_size{province}` (gauge): entries ever appended to the transparency log
//!   (its tree size); both refreshed every [`STORE_REFRESH`] by a background task, so a
//!   scrape never waits on the store.
//!
//! Every counter series of the outcome lists below is exported at 0 from the start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::ProvinceCode;
use huren_runtime::error::Refusal as _;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

use crate::error::NodeError;

/// How often the store gauges are read from the store.
pub(crate) const STORE_REFRESH: Duration = Duration::from_secs(10);

/// Histogram buckets for durations in seconds: 0.5 ms to 10 s.
const SECONDS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Outcomes every RPC can have besides its own.
const COMMON: [&str; 7] =
    ["ok", "invalid_request", "not_authorized", "certificate_refused", "sunset", "storage_failure", "internal"];
const ATTEST: [&str; 4] = ["token_unknown", "no_current_status", "purpose_not_in_policy", "no_signing_key"];
const TOKEN: [&str; 4] = ["subject_unknown", "no_current_status", "purpose_not_in_policy", "no_signing_key"];
const STATUS_CHANGE: [&str; 9] = [
    "authority_not_caller",
    "authority_required",
    "authority_not_allowed",
    "rule_required",
    "rule_unknown",
    "rule_cannot_assign",
    "rule_not_applicable",
    "duration_exceeds_rule",
    "lift_not_allowed",
];
const STATUSES: [&str; 3] = ["green", "yellow", "red"];
/// The `outcome` label of `RecordDisclosures` entries.
pub(crate) const DEFERRED: [&str; 4] = ["recorded", "token_unknown", "too_old", "in_future"];

/// The `outcome` label of a call's result.
pub(crate) fn outcome<T>(result: &Result<T, NodeError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.reason().as_str().to_ascii_lowercase(),
    }
}

/// The `status` label of a status change request's `status` field.
pub(crate) fn status_label(status: i32) -> &'static str {
    match huren_proto::pb::HealthStatus::try_from(status) {
        Ok(huren_proto::pb::HealthStatus::Green) => "green",
        Ok(huren_proto::pb::HealthStatus::Yellow) => "yellow",
        Ok(huren_proto::pb::HealthStatus::Red) => "red",
        _ => "unknown",
    }
}

/// The node's request instruments.
#[derive(Clone)]
pub(crate) struct NodeMetrics {
    province: KeyValue,
    attestations: Counter<u64>,
    attestation_latency: Histogram<f64>,
    status_changes: Counter<u64>,
    status_change_latency: Histogram<f64>,
    tokens: Counter<u64>,
    token_latency: Histogram<f64>,
    deferred: Counter<u64>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

fn histogram(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_description(description)
        .with_unit("s")
        .with_boundaries(SECONDS_BUCKETS.to_vec())
        .build()
}

impl NodeMetrics {
    /// The instruments on `meter`, for `province`, every known series at 0.
    pub(crate) fn new(meter: &Meter, province: &ProvinceCode) -> Self {
        let m = Self {
            province: KeyValue::new("province", province.to_string()),
            attestations: meter
                .u64_counter("huren_node_attestations")
                .with_description("Attest calls (gateways asking for a signed attestation), by outcome")
                .build(),
            attestation_latency: histogram(meter, "huren_node_attestation_duration", "Attest latency at the node"),
            status_changes: meter
                .u64_counter("huren_node_status_changes")
                .with_description("UpsertStatus calls (status changes published), by status asked and outcome")
                .build(),
            status_change_latency: histogram(
                meter,
                "huren_node_status_change_duration",
                "UpsertStatus latency at the node (durable write with its log entry included)",
            ),
            tokens: meter
                .u64_counter("huren_node_tokens_issued")
                .with_description("IssueToken calls, by outcome")
                .build(),
            token_latency: histogram(meter, "huren_node_token_issue_duration", "IssueToken latency at the node"),
            deferred: meter
                .u64_counter("huren_node_deferred_disclosures")
                .with_description(
                    "Checks gateways answered from their cache while this node was down, handed in with \
                     RecordDisclosures, by outcome (recorded, token_unknown, too_old, in_future)",
                )
                .build(),
        };
        for outcome in DEFERRED {
            m.deferred.add(0, &m.labels(outcome));
        }
        for outcome in COMMON.iter().chain(&ATTEST) {
            m.attestations.add(0, &m.labels(outcome));
        }
        for outcome in COMMON.iter().chain(&TOKEN) {
            m.tokens.add(0, &m.labels(outcome));
        }
        for status in STATUSES {
            for outcome in COMMON.iter().chain(&STATUS_CHANGE) {
                m.status_changes.add(0, &m.status_labels(status, outcome));
            }
        }
        m
    }

    fn labels(&self, outcome: &str) -> [KeyValue; 2] {
        [self.province.clone(), KeyValue::new("outcome", outcome.to_owned())]
    }

    fn status_labels(&self, status: &'static str, outcome: &str) -> [KeyValue; 3] {
        [self.province.clone(), KeyValue::new("status", status), KeyValue::new("outcome", outcome.to_owned())]
    }

    pub(crate) fn attestation(&self, outcome: &str, seconds: f64) {
        let labels = self.labels(outcome);
        self.attestations.add(1, &labels);
        self.attestation_latency.record(seconds, &labels);
    }

    pub(crate) fn status_change(&self, status: &'static str, outcome: &str, seconds: f64) {
        let labels = self.status_labels(status, outcome);
        self.status_changes.add(1, &labels);
        self.status_change_latency.record(seconds, &labels);
    }

    /// The entries of one `RecordDisclosures` call, by outcome.
    pub(crate) fn deferred_disclosures(&self, counts: &huren_proto::pb::RecordDisclosuresResponse) {
        let by_outcome = [counts.recorded, counts.token_unknown, counts.too_old, counts.in_future];
        for (outcome, n) in DEFERRED.iter().zip(by_outcome) {
            if n > 0 {
                self.deferred.add(n, &self.labels(outcome));
            }
        }
    }

    pub(crate) fn token(&self, outcome: &str, seconds: f64) {
        let labels = self.labels(outcome);
        self.tokens.add(1, &labels);
        self.token_latency.record(seconds, &labels);
    }
}

/// Records held by kind, and the log's tree size.
type Sizes = (BTreeMap<&'static str, u64>, u64);

/// The store's sizes as last read (none before the first read).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreSizes(Arc<Mutex<Option<Sizes>>>);

impl StoreSizes {
    /// Registers the gauges reading these sizes on `meter`.
    pub(crate) fn register(&self, meter: &Meter, province: &ProvinceCode) {
        let (sizes, p) = (self.clone(), KeyValue::new("province", province.to_string()));
        meter
            .u64_observable_gauge("huren_node_store_records")
            .with_description("Records held in the status store, by kind (read every 10 s)")
            .with_callback(move |o| {
                if let Some((counts, _)) = &*sizes.0.lock().unwrap_or_else(|e| e.into_inner()) {
                    for (kind, n) in counts.iter().filter(|(k, _)| **k != "salt") {
                        o.observe(*n, &[p.clone(), KeyValue::new("kind", *kind)]);
                    }
                }
            })
            .build();
        let (sizes, p) = (self.clone(), KeyValue::new("province", province.to_string()));
        meter
            .u64_observable_gauge("huren_node_log_size")
            .with_description("Entries ever appended to the transparency log (its tree size; read every 10 s)")
            .with_callback(move |o| {
                if let Some((_, size)) = &*sizes.0.lock().unwrap_or_else(|e| e.into_inner()) {
                    o.observe(*size, std::slice::from_ref(&p));
                }
            })
            .build();
    }

    /// Reads the sizes from `store` (blocking).
    pub(crate) fn refresh(&self, store: &dyn crate::store::NodeStore) {
        match (store.counts(), store.log_head()) {
            (Ok(counts), Ok((size, _))) => {
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((counts, size));
            }
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "store sizes not read"),
        }
    }
}
