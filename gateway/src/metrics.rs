//! The gateway's metrics (OpenTelemetry instruments; the binary chooses the exporter, the
//! Prometheus names below are what its `/metrics` shows). Labels carry province codes, hub
//! ids, outcomes and reasons — never tokens or subjects — and every label takes values from
//! a bounded set: `province` and `from` only provinces of the trust list in force (anything
//! else is `unknown`), `hub` only hubs registered in it (an unregistered hub is refused
//! before anything is counted under its name), the other labels fixed lists.
//!
//! - `huren_gateway_lookups_total{from,province,outcome}` and
//!   `huren_gateway_lookup_duration_seconds{from,province,outcome}` (histogram, buckets
//!   [`SECONDS_BUCKETS`], 0.5 ms to 10 s): lookups by province pair — `from` the province
//!   the calling hub's registration names (`unknown` when it names none or the caller is no
//!   hub), `province` the home province asked — and `outcome` ([`OUTCOMES`]).
//! - `huren_gateway_policy_violations_total{province,reason}` ([`VIOLATION_REASONS`]).
//! - `huren_gateway_hub_throttled_total{hub,reason}`: a hub starts being throttled —
//!   `unknown_tokens` when its unknown-token misses reach the allowance, `rate_limited`
//!   when its first lookup in a one-second window goes over `hub_rate_per_sec`.
//! - `huren_gateway_cache_lookups_total{result}`, `huren_gateway_node_retries_total{province}`.
//! - `huren_gateway_breaker_transitions_total{province,to}` (`open`, `half_open`, `closed`).
//! - `huren_gateway_deferred_disclosures_dropped_total{province}`: checks answered from the
//!   cache while the home node was down that will never reach its disclosure log (the
//!   province's queue was full, the node refused them for good, the province left the trust
//!   list, the sunset; see `deferred`).
//!
//! Every counter series whose labels are known in advance is exported at 0 from the start
//! (`Metrics::prime`, again whenever a new trust list brings new provinces or hubs), so
//! `rate()` and `increase()` see the first event. Only the `from` dimension of the lookup
//! counter is primed for `unknown` alone (all pairs would be provinces² × outcomes series).
//!
//! Gauges (registered with the gateway in `lib.rs`): `huren_gateway_redis_up`,
//! `huren_gateway_breaker_state{province}` (0 closed, 1 open, 2 half-open),
//! `huren_gateway_sunset_in_force`, `huren_gateway_sunset_receipts{province}`,
//! `huren_gateway_deferred_disclosures_queued{province}` (checks waiting for their home node).

use huren_pki::{ProvinceCode, TrustList};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

/// Histogram buckets for durations in seconds: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `outcome` label of lookups.
pub const OUTCOMES: [&str; 11] = [
    "ok",
    "not_found",
    "no_current_status",
    "policy_violation",
    "throttled",
    "unavailable",
    "deadline_exceeded",
    "permission_denied",
    "invalid_argument",
    "unauthenticated",
    "failed_precondition",
];

/// The `reason` label of policy violations (the `policyReason` of `POLICY_VIOLATION`).
pub const VIOLATION_REASONS: [&str; 27] = [
    "multiple_messages",
    "empty",
    "kid_length",
    "oversized",
    "unknown_field",
    "duplicate_field",
    "malformed",
    "non_canonical",
    "purpose_not_in_policy",
    "field_not_allowed",
    "invalid_payload",
    "missing_rule",
    "unknown_province",
    "unknown_key",
    "key_revoked",
    "key_not_valid",
    "bad_signature",
    "future_dated",
    "expired",
    "lifetime_too_long",
    "outside_key_validity",
    "unregistered_rule",
    "rule_cannot_assign",
    "rule_not_for_province",
    "province_mismatch",
    "token_binding",
    "purpose_mismatch",
];

/// The `reason` label of hub throttling.
pub const THROTTLE_REASONS: [&str; 2] = ["unknown_tokens", "rate_limited"];

/// The `result` label of attestation cache uses.
pub const CACHE_RESULTS: [&str; 5] = ["hit", "miss", "revalidated", "stale", "dropped_revoked"];

/// The `to` label of breaker transitions.
pub const BREAKER_STATES: [&str; 3] = ["open", "half_open", "closed"];

/// The label value for a province code: the code when the trust list in force lists it,
/// else `unknown` (so a hub asking about made-up codes creates no series).
pub(crate) fn province_label(trust: &TrustList, code: &str) -> String {
    match code.parse::<ProvinceCode>() {
        Ok(code) if trust.province(&code).is_some() => code.to_string(),
        _ => "unknown".to_owned(),
    }
}

#[derive(Clone)]
pub(crate) struct Metrics {
    lookups: Counter<u64>,
    latency: Histogram<f64>,
    violations: Counter<u64>,
    throttled: Counter<u64>,
    cache: Counter<u64>,
    retries: Counter<u64>,
    breaker_transitions: Counter<u64>,
    deferred_dropped: Counter<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            lookups: meter
                .u64_counter("huren_gateway_lookups")
                .with_description("Lookups by province pair (from: the hub's registered province) and outcome")
                .build(),
            latency: meter
                .f64_histogram("huren_gateway_lookup_duration")
                .with_description("Lookup latency at the gateway, by province pair and outcome")
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            violations: meter
                .u64_counter("huren_gateway_policy_violations")
                .with_description("Attestations refused from a node, by province and reason")
                .build(),
            throttled: meter
                .u64_counter("huren_gateway_hub_throttled")
                .with_description(
                    "Hubs throttled: unknown_tokens when the unknown-token allowance runs out, rate_limited \
                     when a one-second window goes over hub_rate_per_sec",
                )
                .build(),
            cache: meter
                .u64_counter("huren_gateway_cache_lookups")
                .with_description(
                    "Attestation cache lookups by result (hit: served fresh from the cache; miss: none \
                     cached; revalidated: cached but aged, the node answered; stale: the node failed \
                     and a cached attestation still valid was served; dropped_revoked: a cached entry \
                     from a node whose certificate is revoked was dropped unserved, the lookup then \
                     counts as a miss too)",
                )
                .build(),
            retries: meter
                .u64_counter("huren_gateway_node_retries")
                .with_description("Node calls retried after a failure a retry can cure, by province")
                .build(),
            breaker_transitions: meter
                .u64_counter("huren_gateway_breaker_transitions")
                .with_description("Circuit breaker transitions per province, by the state entered")
                .build(),
            deferred_dropped: meter
                .u64_counter("huren_gateway_deferred_disclosures_dropped")
                .with_description(
                    "Checks answered from the cache while the home node was down that were dropped before \
                     reaching its disclosure log (queue full, refused by the node, province gone, sunset)",
                )
                .build(),
        }
    }

    /// Exports every counter series known in advance at 0: per province of `trust`, per
    /// registered hub, per label value of the fixed lists.
    pub(crate) fn prime(&self, trust: &TrustList) {
        let mut provinces: Vec<String> = trust.provinces().map(|p| p.code.to_string()).collect();
        provinces.push("unknown".into());
        for province in &provinces {
            for outcome in OUTCOMES {
                self.lookups.add(0, &lookup_labels("unknown", province, outcome));
            }
        }
        for p in trust.provinces() {
            let province = KeyValue::new("province", p.code.to_string());
            for reason in VIOLATION_REASONS {
                self.violations.add(0, &[province.clone(), KeyValue::new("reason", reason)]);
            }
            self.retries.add(0, std::slice::from_ref(&province));
            for to in BREAKER_STATES {
                self.breaker_transitions.add(0, &[province.clone(), KeyValue::new("to", to)]);
            }
            self.deferred_dropped.add(0, std::slice::from_ref(&province));
        }
        for hub in trust.raw().hubs.iter().map(|h| h.id.clone()) {
            for reason in THROTTLE_REASONS {
                self.throttled.add(0, &[KeyValue::new("hub", hub.clone()), KeyValue::new("reason", reason)]);
            }
        }
        for result in CACHE_RESULTS {
            self.cache.add(0, &[KeyValue::new("result", result)]);
        }
    }

    /// One lookup; `from` and `province` must already be bounded labels ([`province_label`]).
    pub(crate) fn lookup(&self, from: &str, province: &str, outcome: &'static str, seconds: f64) {
        let labels = lookup_labels(from, province, outcome);
        self.lookups.add(1, &labels);
        self.latency.record(seconds, &labels);
    }

    /// A refused attestation from `province`'s node (a province of the trust list: the
    /// node was routed to).
    pub(crate) fn violation(&self, province: &str, reason: &'static str) {
        self.violations.add(1, &[KeyValue::new("province", province.to_owned()), KeyValue::new("reason", reason)]);
    }

    /// One attestation cache use: `hit`, `miss`, `revalidated`, `stale` or `dropped_revoked`.
    pub(crate) fn cache(&self, result: &'static str) {
        self.cache.add(1, &[KeyValue::new("result", result)]);
    }

    pub(crate) fn retry(&self, province: &str) {
        self.retries.add(1, &[KeyValue::new("province", province.to_owned())]);
    }

    /// A registered hub starts being throttled, for `reason` ([`THROTTLE_REASONS`]).
    pub(crate) fn throttled(&self, hub: &str, reason: &'static str) {
        self.throttled.add(1, &[KeyValue::new("hub", hub.to_owned()), KeyValue::new("reason", reason)]);
    }

    /// `n` deferred disclosures for `province` (a bounded label: [`province_label`]) dropped.
    pub(crate) fn deferred_dropped(&self, province: &str, n: usize) {
        if n > 0 {
            self.deferred_dropped.add(n as u64, &[KeyValue::new("province", province.to_owned())]);
        }
    }

    /// `province`'s breaker entered state `to` ([`BREAKER_STATES`]).
    pub(crate) fn breaker_transition(&self, province: &str, to: &'static str) {
        self.breaker_transitions.add(1, &[KeyValue::new("province", province.to_owned()), KeyValue::new("to", to)]);
    }
}

fn lookup_labels(from: &str, province: &str, outcome: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("from", from.to_owned()),
        KeyValue::new("province", province.to_owned()),
        KeyValue::new("outcome", outcome),
    ]
}
