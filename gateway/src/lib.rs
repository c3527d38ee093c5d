//! The Huren national gateway: a thin, stateless router.
//!
//! Hubs call `Lookup(province, token, purpose)` over mutual TLS. The gateway checks the
//! caller is a hub, routes to the home province's node named in the signed trust list
//! (mTLS, node identity pinned to `province/<code>/node`, per-call deadline), verifies
//! the returned attestation against the trust list (key scoped by province, signature
//! over the exact bytes, validity, token binding, purpose, registered rule) and only
//! then passes it on. Each province has its own deadline, concurrency limit and circuit
//! breaker; a call that fails in a way a retry can cure is retried once, on the next listed
//! endpoint, within the same deadline. With the cache on, attestations younger than
//! `cache_fresh` are served from it, and older ones it still holds only when the node fails
//! (stale-if-error, bounded by each attestation's expiry and the retention cap); such a check
//! is kept (the token's digest, hub, purpose, time) and handed in to the home node once it
//! answers again, for the traveller's disclosure log. It publishes the trust list it holds
//! (`TrustRegistry`) but has no key to sign one.
//!
//! Layout: `config` (`gateway.toml`: [`GatewayConfig`], its keys, defaults and checks; the
//! loader is `huren_runtime::config`), `authz` (who may call what, pure), `request` (a hub's
//! lookup as a domain type, checked once: [`InvalidLookup`]), `error` (typed refusals,
//! [`GatewayError`], the one mapping to `tonic::Status` with `google.rpc.ErrorInfo`/`RetryInfo`,
//! and how a node's refusal is read), `service` (the `Lookup` and `TrustRegistry` services,
//! routing, the attestation checks), `breaker` (per-province circuit breakers,
//! [`BreakerPolicy`]), [`retry`] (which node failures are retried and the retry budget),
//! `limits` (per-hub miss allowance, [`MissPolicy`]), [`shared`] (the cache and counters,
//! through Redis when configured), `deferred` (the checks answered from the cache while the
//! home node was down, bounded per province, and the task handing them in:
//! [`DeliveryBackoff`]), `metrics`, `receipts` (deletion receipts handed in by
//! nodes), `capture` (recording what crosses the gateway, [`CaptureSink`]), and here
//! [`Gateway`]: startup (trust list from the persisted last good copy or the bootstrap
//! file) and serving.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod authz;
mod batch_verify;
mod breaker;
mod capture;
mod config;
mod deferred;
mod error;
mod limits;
mod lookup_batch;
pub mod metrics;
mod node_call;
mod receipts;
mod request;
pub mod retry;
mod service;
pub mod shared;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use huren_pki::Role;
use huren_proto::pb;
use huren_runtime::expiry;
use huren_runtime::live::LiveTrust;
use huren_runtime::serve::Services;
use huren_runtime::tls::TlsIdentity;
use tokio::net::TcpListener;

pub use breaker::BreakerPolicy;
pub use capture::{CaptureSink, FileCapture};
pub use config::{ConfigError, GatewayConfig};
pub use deferred::DeliveryBackoff;
pub use error::{GatewayError, MisconfiguredCause, UnavailableCause};
pub use huren_runtime::error::StartError;
pub use limits::MissPolicy;
use metrics::Metrics;
pub use request::InvalidLookup;
use service::{LookupService, State, TrustRegistryService};

/// Largest gRPC message the gateway accepts on Lookup.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest trust list a coordinator may upload.
pub const MAX_TRUST_LIST_BYTES: usize = 8 * 1024 * 1024;

/// Knobs of the gateway.
#[derive(Clone)]
pub struct GatewaySettings {
    /// Deadline for one call to a province node (unless `province_timeouts` says otherwise).
    pub node_timeout: Duration,
    /// Per-province deadlines, by province code, overriding `node_timeout`.
    pub province_timeouts: std::collections::HashMap<String, Duration>,
    /// Deadline for connecting to a province node.
    pub connect_timeout: Duration,
    /// Per-hub allowance of unknown-token misses (anti-enumeration).
    pub miss_policy: MissPolicy,
    /// Where metrics go; `None` uses the global OpenTelemetry meter provider.
    pub meter: Option<opentelemetry::metrics::Meter>,
    /// Records every message crossing the gateway (proof by inspection); off by default.
    pub capture: Option<Arc<dyn CaptureSink>>,
    /// Where nodes' deletion receipts are kept (none: in memory only).
    pub receipts_dir: Option<std::path::PathBuf>,
    /// Serve repeated lookups from the attestation cache (valid signed attestations only).
    pub cache: bool,
    /// How long after its issue a cached attestation is served without asking the node.
    /// Past that, the node is asked and the cached one is served only if the node fails
    /// (stale-if-error), for as long as the cache holds it: never past the attestation's
    /// expiry nor the trust list's cache retention cap. Zero asks the node every time.
    pub cache_fresh: Duration,
    /// Redis shared by the replicas (cache, per-hub limits, trust-list fan-out); none =
    /// in-process cache and local limits.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this gateway writes.
    pub redis_prefix: String,
    /// Requests per second a hub may make (0 = unlimited).
    pub hub_rate_per_sec: u64,
    /// Per-province circuit breaker.
    pub breaker: breaker::BreakerPolicy,
    /// Calls in flight to one province at most.
    pub node_concurrency: usize,
    /// How many failed node calls may be retried, per province.
    pub retry_budget: retry::RetryBudget,
    /// Source of time (the system clock outside tests).
    pub clock: huren_runtime::clock::Clock,
    /// Limits on TLS handshakes in progress at this gateway.
    pub handshakes: huren_runtime::tls::HandshakeLimits,
    /// How the checks answered from the cache while a home node was down are handed in to
    /// it again after a failed attempt (they go at once when the node answers a lookup).
    pub disclosure_backoff: DeliveryBackoff,
    /// Collection window for verifying concurrent lookups' attestations together (zero,
    /// the default: each is verified at once). See `batch_verify`.
    pub verify_batch_window: Duration,
    /// Most attestations verified in one batch.
    pub verify_batch_max: usize,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("node_timeout", &self.node_timeout)
            .field("province_timeouts", &self.province_timeouts)
            .field("connect_timeout", &self.connect_timeout)
            .field("miss_policy", &self.miss_policy)
            .field("breaker", &self.breaker)
            .field("node_concurrency", &self.node_concurrency)
            .field("handshakes", &self.handshakes)
            .field("disclosure_backoff", &self.disclosure_backoff)
            .field("verify_batch_window", &self.verify_batch_window)
            .field("verify_batch_max", &self.verify_batch_max)
            .finish_non_exhaustive()
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_secs(2),
            province_timeouts: std::collections::HashMap::new(),
            connect_timeout: Duration::from_secs(1),
            miss_policy: MissPolicy::default(),
            meter: None,
            capture: None,
            receipts_dir: None,
            cache: false,
            cache_fresh: Duration::from_secs(10),
            redis_url: None,
            redis_prefix: "huren:".into(),
            hub_rate_per_sec: 0,
            breaker: breaker::BreakerPolicy::default(),
            node_concurrency: 256,
            retry_budget: retry::RetryBudget::default(),
            clock: huren_runtime::clock::Clock::system(),
            handshakes: huren_runtime::tls::HandshakeLimits::default(),
            disclosure_backoff: DeliveryBackoff::default(),
            verify_batch_window: Duration::ZERO,
            verify_batch_max: 64,
        }
    }
}

/// The gateway's health, for probes and dashboards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether Redis is off, up or failing.
    pub redis: shared::RedisState,
    /// Sequence of the trust list in force.
    pub trust_sequence: u64,
    /// Whether a sunset order is in force.
    pub sunset: bool,
}

impl Health {
    /// One line: "ok", or what is degraded.
    pub fn summary(&self) -> String {
        let redis = match self.redis {
            shared::RedisState::Off => "redis off (in-process cache)",
            shared::RedisState::Up => "redis up",
            shared::RedisState::Degraded => "DEGRADED: redis unavailable, in-process cache and local limits",
        };
        format!("trust list {}; {redis}{}", self.trust_sequence, if self.sunset { "; federation sunset" } else { "" })
    }
}

fn register_gauges(meter: &opentelemetry::metrics::Meter, state: &Arc<State>) {
    let (breakers, trust) = (state.breakers.clone(), state.trust.clone());
    meter
        .u64_observable_gauge("huren_gateway_breaker_state")
        .with_description("Circuit breaker per province: 0 closed, 1 open (failing fast), 2 half-open (one trial call)")
        .with_callback(move |o| {
            let now = std::time::Instant::now();
            // The provinces of the trust list in force only (a breaker of a province that
            // left the list is of no interest, and labels stay bounded).
            let provinces: Vec<String> = trust.current().provinces().map(|p| p.code.to_string()).collect();
            for province in provinces {
                let value = match breakers.state(&province, now) {
                    breaker::BreakerState::Closed => 0,
                    breaker::BreakerState::Open => 1,
                    breaker::BreakerState::HalfOpen => 2,
                };
                o.observe(value, &[opentelemetry::KeyValue::new("province", province)]);
            }
        })
        .build();
    let shared = state.shared.clone();
    meter
        .u64_observable_gauge("huren_gateway_redis_up")
        .with_description("1 when Redis answers, 0 when degraded (absent when Redis is off)")
        .with_callback(move |o| match shared.redis_state() {
            shared::RedisState::Up => o.observe(1, &[]),
            shared::RedisState::Degraded => o.observe(0, &[]),
            shared::RedisState::Off => {}
        })
        .build();
    let (trust, clock) = (state.trust.clone(), state.clock());
    meter
        .u64_observable_gauge("huren_gateway_sunset_in_force")
        .with_description("1 once the trust list's sunset order is in force (lookups refused, receipts awaited)")
        .with_callback(move |o| o.observe(u64::from(trust.current().sunset_in_force(clock.now()).is_some()), &[]))
        .build();
    let (trust, deferred) = (state.trust.clone(), state.clone());
    meter
        .u64_observable_gauge("huren_gateway_deferred_disclosures_queued")
        .with_description(
            "Checks answered from the cache while their home node was down, waiting to be handed in to it, \
             per province of the trust list",
        )
        .with_callback(move |o| {
            for p in trust.current().provinces() {
                let n = deferred.deferred.queued(&p.code) as u64;
                o.observe(n, &[opentelemetry::KeyValue::new("province", p.code.to_string())]);
            }
        })
        .build();
    let (trust, receipts) = (state.trust.clone(), state.clone());
    meter
        .u64_observable_gauge("huren_gateway_sunset_receipts")
        .with_description("Sunset deletion receipts this gateway holds, per province of the trust list")
        .with_callback(move |o| {
            let held = receipts.receipts.sunset_provinces();
            for p in trust.current().provinces() {
                let n = held.iter().filter(|h| h.as_str() == p.code.as_str()).count() as u64;
                o.observe(n, &[opentelemetry::KeyValue::new("province", p.code.to_string())]);
            }
        })
        .build();
}

/// A gateway, ready to serve.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<State>,
    tls: Arc<TlsIdentity>,
    handshakes: huren_runtime::tls::HandshakeLimits,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("identity", &self.tls.identity).finish_non_exhaustive()
    }
}

/// How often expiry warnings are logged.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

impl Gateway {
    /// Assembles a gateway from its parts. The TLS identity must be a gateway's.
    pub fn new(tls: TlsIdentity, trust: LiveTrust, settings: GatewaySettings) -> Result<Self, StartError> {
        if !matches!(tls.identity.role, Role::Gateway(_)) {
            return Err(StartError::Identity(format!(
                "certificate identity {} is not a gateway identity",
                tls.identity
            )));
        }
        let tls = Arc::new(tls);
        let meter = settings.meter.clone().unwrap_or_else(|| opentelemetry::global::meter("huren-gateway"));
        expiry::register_gauges(&meter, Some((*tls).clone()), trust.clone());
        let receipts = receipts::ReceiptStore::open(settings.receipts_dir.clone())
            .map_err(|e| StartError::Identity(format!("cannot open the receipts folder: {e}")))?;
        let shared = match &settings.redis_url {
            Some(url) => shared::Shared::with_redis(&settings.redis_prefix, url)
                .map_err(|e| StartError::Identity(format!("redis_url: {e}")))?,
            None => shared::Shared::local(&settings.redis_prefix),
        };
        let shared = Arc::new(shared.with_clock(settings.clock.clone()));
        let metrics = Metrics::new(&meter);
        metrics.prime(&trust.current());
        let state = Arc::new(State::new(trust, tls.clone(), &settings, metrics, receipts, shared));
        register_gauges(&meter, &state);
        Ok(Self { state, tls, handshakes: settings.handshakes })
    }

    /// Loads the configured identity and the newest trust list available: the persisted
    /// last good copy or the bootstrap file, whichever has the higher sequence.
    pub fn from_config(config: &GatewayConfig) -> Result<Self, StartError> {
        let tls = TlsIdentity::load(&config.cert, &config.key, &config.ca, &config.trust_domain)?;
        let trust = LiveTrust::open(tls.root.to_vec(), Some(config.persisted_trust_list()), Some(&config.trust_list))?;
        tracing::info!(sequence = trust.current().sequence(), "trust list loaded");
        Self::new(
            tls,
            trust,
            GatewaySettings {
                node_timeout: config.node_timeout(),
                province_timeouts: config.province_timeouts(),
                connect_timeout: config.connect_timeout(),
                miss_policy: config.miss_policy(),
                breaker: config.breaker_policy(),
                node_concurrency: config.node_concurrency as usize,
                retry_budget: config.retry_budget(),
                receipts_dir: Some(config.data_dir.join("receipts")),
                cache: config.cache,
                cache_fresh: Duration::from_secs(config.cache_fresh_seconds),
                redis_url: config.redis_url.clone(),
                redis_prefix: config.redis_prefix.clone(),
                hub_rate_per_sec: config.hub_rate_per_sec,
                handshakes: config.handshake_limits()?,
                verify_batch_window: Duration::from_micros(config.verify_batch_window_us),
                verify_batch_max: config.verify_batch_max as usize,
                ..GatewaySettings::default()
            },
        )
    }

    /// The live trust list this gateway serves.
    pub fn trust(&self) -> LiveTrust {
        self.state.trust.clone()
    }

    /// What `/readyz` reports: Redis state and the trust list in force.
    pub fn health(&self) -> Health {
        let trust = self.state.trust();
        Health {
            redis: self.state.shared.redis_state(),
            trust_sequence: trust.sequence(),
            sunset: trust.sunset_in_force(huren_pki::unix_now()).is_some(),
        }
    }

    /// The Redis state as it changes: `Degraded` when Redis stops answering, `Up` again
    /// once the background probe reaches it (always `Off` without Redis).
    pub fn redis_states(&self) -> tokio::sync::watch::Receiver<shared::RedisState> {
        self.state.shared.redis_states()
    }

    /// Becomes true when [`Gateway::serve`]'s shutdown future has resolved: no new
    /// connection is taken from then on, calls in flight are drained.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.stopping.subscribe()
    }

    /// Once a sunset order is in force, deletes every cached attestation and counter (in
    /// process and in Redis under this gateway's prefix).
    fn spawn_sunset_purge(&self) -> huren_runtime::live::TaskGuard {
        let state = self.state.clone();
        huren_runtime::live::TaskGuard::spawn(async move {
            let mut updates = state.trust.subscribe();
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = updates.changed() => if changed.is_err() { break },
                }
                let trust = state.trust();
                if let Some(order) = trust.sunset_in_force(state.clock_now()) {
                    let keys = state.shared.purge_all().await;
                    // The checks still waiting for their home nodes go too: nodes have deleted
                    // every disclosure log.
                    for p in trust.provinces() {
                        let n = state.deferred.forget(&p.code);
                        state.metrics.deferred_dropped(p.code.as_str(), n);
                    }
                    tracing::warn!(
                        effective_at = order.effective_at,
                        redis_keys = keys,
                        "federation sunset: gateway caches purged"
                    );
                    state.sunset_purged.send_replace(true);
                    break;
                }
            }
        })
    }

    /// Exports the counter series of new provinces and hubs at 0 as trust lists arrive.
    fn spawn_metrics_priming(&self) -> huren_runtime::live::TaskGuard {
        let state = self.state.clone();
        huren_runtime::live::TaskGuard::spawn(async move {
            let mut updates = state.trust.subscribe();
            while updates.changed().await.is_ok() {
                let trust = updates.borrow_and_update().clone();
                state.metrics.prime(&trust);
            }
        })
    }

    /// Becomes true once the gateway has purged its caches after a sunset.
    pub fn sunset_purged(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.sunset_purged.subscribe()
    }

    /// Number of deletion receipts held, as it changes.
    pub fn receipts(&self) -> tokio::sync::watch::Receiver<usize> {
        self.state.receipts.watch()
    }

    /// Sequence of the trust list in force.
    pub fn trust_sequence(&self) -> u64 {
        self.state.trust().sequence()
    }

    /// Serves `Lookup` and `TrustRegistry` over mTLS on `listener` until `shutdown`
    /// resolves, then drains in-flight calls.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let _expiry = expiry::spawn_monitor(Some((*self.tls).clone()), self.state.trust.clone(), EXPIRY_CHECK_EVERY);
        let _redis = self.state.shared.spawn(self.state.trust.clone());
        let _sweeper = self.state.shared.spawn_sweeper();
        let _sunset = self.spawn_sunset_purge();
        let _prime = self.spawn_metrics_priming();
        let _deferred = deferred::spawn_delivery(self.state.clone());
        let services = Services::new()
            .add(
                pb::lookup_server::LookupServer::new(LookupService(self.state.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add(
                pb::trust_registry_server::TrustRegistryServer::new(TrustRegistryService(self.state.clone()))
                    .max_decoding_message_size(MAX_TRUST_LIST_BYTES),
            )
            .handshake_limits(self.handshakes);
        tracing::info!(identity = %self.tls.identity, "gateway serving");
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            // Watch streams never end by themselves; end them so draining completes.
            state.stopping.send_replace(true);
        };
        services.serve(listener, &self.tls, self.state.trust.revocations(), shutdown).await?;
        Ok(())
    }
}
