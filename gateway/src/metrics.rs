//! The gateway's metrics (OpenTelemetry instruments; the binary chooses the exporter).
//! Labels carry province codes, hub ids, outcomes and reasons — never tokens or subjects.
//!
//! Lookups (`huren_gateway_lookups_total`, `huren_gateway_lookup_duration_seconds`) are
//! labelled by province pair, `from` (the province the calling hub's registration in the
//! trust list names, `unknown` when it names none or the caller is no hub) and `province`
//! (the home province asked), and by `outcome` (`ok`, `not_found`, `no_current_status`,
//! `policy_violation`, `throttled`, `unavailable`, `deadline_exceeded`, …).
//! Gauges registered with the gateway: `huren_gateway_redis_up` and
//! `huren_gateway_breaker_state{province}` (0 closed, 1 open, 2 half-open, for every
//! province of the trust list).

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

#[derive(Clone)]
pub(crate) struct Metrics {
    lookups: Counter<u64>,
    latency: Histogram<f64>,
    violations: Counter<u64>,
    throttled: Counter<u64>,
    cache: Counter<u64>,
    retries: Counter<u64>,
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
                .with_description("Lookups by home province and outcome")
                .build(),
            latency: meter
                .f64_histogram("huren_gateway_lookup_duration")
                .with_description("Lookup latency at the gateway")
                .with_unit("s")
                .build(),
            violations: meter
                .u64_counter("huren_gateway_policy_violations")
                .with_description("Attestations refused from a node, by province and reason")
                .build(),
            throttled: meter
                .u64_counter("huren_gateway_hub_throttled")
                .with_description("Hubs throttled for too many unknown-token misses")
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
        }
    }

    pub(crate) fn lookup(&self, from: &str, province: &str, outcome: &'static str, seconds: f64) {
        let labels = [
            KeyValue::new("from", from.to_owned()),
            KeyValue::new("province", province.to_owned()),
            KeyValue::new("outcome", outcome),
        ];
        self.lookups.add(1, &labels);
        self.latency.record(seconds, &labels);
    }

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

    pub(crate) fn throttled(&self, hub: &str) {
        self.throttled.add(1, &[KeyValue::new("hub", hub.to_owned())]);
    }
}
