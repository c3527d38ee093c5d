//! A Huren province node.
//!
//! It holds the province's minimal status projection (pseudonymous subject reference →
//! colour, rule, authority, validity) in an embedded redb file (or a fjall database, or Redis) and answers over mutual
//! TLS only: gateways get signed attestations for opaque tokens (`Attestation`), the
//! province's own admin identity changes statuses and issues tokens (`StatusAdmin`).
//!
//! Layout: [`config`] (`node.toml`: the node's keys, defaults and checks; the loader is
//! `huren_runtime::config`), [`store`] (the store trait, its one transparency log over a
//! small backend trait, and its redb, fjall and Redis backends; [`redis_store`] names the latter),
//! `keys` (the attestation keys held and which one signs: [`KeyRing`]), `authz` (who may
//! call what, pure), `lift` (who may lift a held non-green status before it lapses, pure),
//! `request` (requests as domain types, checked once: [`InvalidRequest`]), `batch` (the
//! batched `PublishStatuses` and `IssueTokens`, item by item through the unary calls'
//! checks, one store transaction per batch, on threads of lower CPU priority), `priority`
//! (bulk work gives way to lookups: publishing, the fjall store's compactions), `error` (typed
//! refusals, [`NodeError`], and the one mapping to `tonic::Status` with
//! `google.rpc.ErrorInfo`/`RetryInfo`), `service` (the `Attestation` and `StatusAdmin`
//! services, [`NodeSettings`]; `Attestation/RecordDisclosures` takes the checks a gateway
//! answered from its cache while the node was down into the disclosure log), `transparency` (the status-change log's service),
//! [`retention`] (purges, the sunset, deletion receipts and their metrics), `metrics` (request
//! counters and latencies, store and log sizes), `disclosure` (the disclosure log's bounded
//! queue and batching writer, and the per-hub hourly aggregates), and here
//! [`Node`], which ties them together and serves on a bound listener until shutdown.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod authz;
mod batch;
pub mod config;
mod disclosure;
mod error;
mod keys;
mod lift;
mod metrics;
mod priority;
mod request;
pub mod retention;
mod service;
pub mod store;
mod transparency;

/// The Redis backend of the store, at its earlier path.
pub use store::redis as redis_store;

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use huren_pki::{ProvinceCode, Role};
use huren_proto::pb;
use huren_runtime::expiry;
use huren_runtime::live::{self, LiveTrust, TaskGuard};
use huren_runtime::serve::Services;
use huren_runtime::tls::{self, TlsIdentity};
use tokio::net::TcpListener;

pub use batch::{MAX_BATCH_BYTES, MAX_STATUS_ITEMS, MAX_TOKEN_ITEMS};
pub use config::{ConfigError, NodeConfig};
pub use error::{NodeError, Signing, StatusChangeRefused};
pub use huren_runtime::error::StartError;
pub use keys::{KeyError, KeyRing};
pub use request::{looks_like_personal_id, InvalidRequest, MAX_DEFERRED_DISCLOSURES};
use service::{AttestationService, Inner, StatusAdminService};
pub use service::{NodeSettings, MAX_BATCH_TOKENS};

pub use redis_store::RedisStore;
pub use store::{FjallStore, NodeStore, Store};

/// Largest gRPC message a node accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

impl From<KeyError> for StartError {
    fn from(e: KeyError) -> Self {
        StartError::Part(Box::new(e))
    }
}

impl From<store::StoreError> for StartError {
    fn from(e: store::StoreError) -> Self {
        StartError::Part(Box::new(e))
    }
}

/// A province node, ready to serve.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
    tls: Arc<TlsIdentity>,
    gateways: Vec<String>,
    meter: Option<opentelemetry::metrics::Meter>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("province", &self.inner.province).finish_non_exhaustive()
    }
}

/// How often expiry warnings are logged.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How often a node lacking the active attestation key looks for its file again.
pub const KEY_RESCAN_EVERY: Duration = Duration::from_secs(2);

impl Node {
    /// Assembles a node from its parts. The TLS identity must be this province's node.
    pub fn new(
        tls: TlsIdentity,
        keys: KeyRing,
        trust: LiveTrust,
        store: impl Into<Arc<dyn NodeStore>>,
        settings: NodeSettings,
    ) -> Result<Self, StartError> {
        let store = store.into();
        let province = match &tls.identity.role {
            Role::Node(p) => p.clone(),
            _ => {
                return Err(StartError::Identity(format!(
                    "certificate identity {} is not a province node identity",
                    tls.identity
                )))
            }
        };
        let current = trust.current();
        if current.province(&province).is_none() {
            tracing::warn!(%province, "this province is not in the trust list; gateways will not route to it");
        } else if keys.signing_key(&current, &province, settings.clock.now()).is_none() {
            tracing::warn!(%province, "no held attestation key is active in the trust list; attestations will fail");
        }
        let sunset_done = store.sunset_receipt()?.is_some();
        let (reports, _) = tokio::sync::watch::channel(retention::PurgeReport::default());
        let inner = Arc::new(Inner {
            province,
            keys,
            trust,
            store,
            settings,
            sunset: std::sync::atomic::AtomicBool::new(sunset_done),
            reports,
            metrics: std::sync::OnceLock::new(),

            disclosures: Arc::new(disclosure::Disclosures::default()),
        });
        Ok(Self { inner, tls: Arc::new(tls), gateways: Vec::new(), meter: None })
    }

    /// Records the node's metrics (purge progress, certificate, key and trust-list
    /// expiry) with `meter` instead of the global meter provider's `huren-node` meter.
    pub fn with_meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Keeps the trust list in step with the `TrustRegistry.Watch` of every gateway in
    /// `gateways` while serving (the highest sequence wins); `None` or an empty list
    /// follows none.
    pub fn following<S: Into<String>>(mut self, gateways: impl IntoIterator<Item = S>) -> Self {
        self.gateways = gateways.into_iter().map(Into::into).collect();
        self
    }

    /// Loads every part named by a config file.
    pub fn from_config(config: &NodeConfig) -> Result<Self, StartError> {
        let tls = TlsIdentity::load(&config.cert, &config.key, &config.ca, &config.trust_domain)?;
        let expected: ProvinceCode = config.province_code()?;
        if tls.identity.role != Role::Node(expected.clone()) {
            return Err(StartError::Identity(format!(
                "certificate {} is {}, but the config says province {expected}",
                config.cert.display(),
                tls.identity
            )));
        }
        let trust =
            LiveTrust::open(tls.root.to_vec(), Some(config.data_dir.join("trust-list.bin")), Some(&config.trust_list))?;
        let keys = KeyRing::load(&config.attestation_key)?;
        let store = open_store(config)?;
        let settings = NodeSettings {
            attestation_ttl_seconds: config.attestation_ttl_seconds,
            token_lifetime_seconds: config.token_lifetime_seconds,
            default_status_validity_seconds: config.default_status_validity_seconds,
            clock: huren_runtime::clock::Clock::system(),
            handshakes: config.handshake_limits()?,
            ..NodeSettings::default()
        };
        Ok(Self::new(tls, keys, trust, store, settings)?.following(config.gateways().to_vec()))
    }

    /// The province this node serves.
    pub fn province(&self) -> &ProvinceCode {
        &self.inner.province
    }

    /// The live trust list this node works with.
    pub fn trust(&self) -> LiveTrust {
        self.inner.trust.clone()
    }

    /// Rescans the key folder whenever the trust list activates a key the node does not
    /// hold, and then every [`KEY_RESCAN_EVERY`] until it does: province IT may copy the
    /// key file after the list arrives (meanwhile the retired key bridges, see `keys`).
    fn spawn_key_watcher(&self) -> TaskGuard {
        let inner = self.inner.clone();
        TaskGuard::spawn(async move {
            let mut updates = inner.trust.subscribe();
            let mut rescan = tokio::time::interval(KEY_RESCAN_EVERY);
            rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned = false;
            let mut signing = None;
            loop {
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { return },
                    _ = rescan.tick() => {}
                }
                let trust = inner.trust.current();
                // Key activation, as the node sees it: the key it signs with changes.
                let now = inner.settings.clock.now();
                let kid = inner.keys.signing_key(&trust, &inner.province, now).map(|k| k.kid().to_string());
                if kid != signing {
                    match &kid {
                        Some(kid) => tracing::info!(
                            province = %inner.province,
                            %kid,
                            previous = signing.as_deref().unwrap_or("none"),
                            trust_list = trust.sequence(),
                            "attestation key in use"
                        ),
                        None => tracing::warn!(
                            province = %inner.province,
                            trust_list = trust.sequence(),
                            "no held attestation key is active in the trust list: attestations fail"
                        ),
                    }
                    signing = kid;
                }
                if !inner.keys.lacks_active(&trust, &inner.province) {
                    warned = false;
                    continue;
                }
                match inner.keys.reload() {
                    Ok(true) => tracing::info!(kids = ?inner.keys.kids(), "attestation keys reloaded"),
                    Ok(false) if !warned => {
                        warned = true;
                        tracing::warn!(
                            "the trust list activates an attestation key this node does not hold; signing with \
                             the retired key until its file is copied into the key folder"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "attestation keys could not be reloaded"),
                }
            }
        })
    }

    /// The attestation key ids this node holds, now and on every change.
    pub fn held_keys(&self) -> tokio::sync::watch::Receiver<Vec<huren_pki::attest::Kid>> {
        self.inner.keys.subscribe()
    }

    /// One line for `/readyz`: the trust list in force and what is degraded.
    pub fn health(&self) -> String {
        self.readiness().1
    }

    /// What `/readyz` answers: serving (false once the sunset purge has run) and one
    /// line of detail. A trust list past its `next_update` is stale: the node keeps
    /// serving on it (degrade, don't stop) and says so.
    pub fn readiness(&self) -> (bool, String) {
        let trust = self.inner.trust.current();
        let sunset = self.inner.sunset.load(std::sync::atomic::Ordering::SeqCst);
        let overdue = self.inner.settings.clock.now() - trust.raw().next_update;
        let mut line = format!("province {}; trust list {}", self.inner.province, trust.sequence());
        if overdue > 0 {
            line.push_str(&format!(
                "; DEGRADED: trust list stale (next_update passed {overdue} s ago), serving on the last good copy"
            ));
        }
        if sunset {
            line.push_str("; sunset: not serving, subject data deleted");
        }
        (!sunset, line)
    }

    /// Reads the store's sizes for the metrics now and every [`metrics::STORE_REFRESH`].
    fn spawn_store_sizes(&self, sizes: metrics::StoreSizes) -> TaskGuard {
        let store = self.inner.store.clone();
        TaskGuard::spawn(async move {
            let mut tick = tokio::time::interval(metrics::STORE_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (store, sizes) = (store.clone(), sizes.clone());
                let _ = tokio::task::spawn_blocking(move || sizes.refresh(&*store)).await;
            }
        })
    }

    /// What each retention run (or the sunset) deleted, as it happens.
    pub fn purge_reports(&self) -> tokio::sync::watch::Receiver<retention::PurgeReport> {
        self.inner.reports.subscribe()
    }

    /// Runs retention on every tick and on every trust-list change; carries out a sunset
    /// order once it is in force and hands the receipt in until the gateway takes it.
    fn spawn_retention(&self, metrics: retention::PurgeMetrics) -> Result<TaskGuard, StartError> {
        let inner = self.inner.clone();
        let registries = {
            let config = tls::client_config(&self.tls, tls::ExpectedPeer::AnyGateway, inner.trust.revocations())?;
            self.gateways
                .iter()
                .map(|gateway| {
                    let channel = tls::channel(gateway, config.clone(), Duration::from_secs(3))?;
                    Ok(pb::trust_registry_client::TrustRegistryClient::new(channel))
                })
                .collect::<Result<Vec<_>, tls::TlsError>>()?
        };
        Ok(TaskGuard::spawn(async move {
            let mut tick = tokio::time::interval(inner.settings.retention_interval);
            let mut updates = inner.trust.subscribe();
            let mut handed_in = false;
            let mut sunset_announced = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = updates.changed() => if changed.is_err() { break },
                }
                let now = inner.settings.clock.now();
                let trust = inner.trust.current();
                if trust.sunset_in_force(now).is_some() || inner.sunset.load(std::sync::atomic::Ordering::SeqCst) {
                    if handed_in {
                        continue;
                    }
                    if !std::mem::replace(&mut sunset_announced, true) {
                        tracing::info!(
                            province = %inner.province,
                            effective_at = trust.sunset().map(|o| o.effective_at),
                            "federation sunset in force: refusing every call, purging all subject data"
                        );
                    }
                    let (work, m) = (inner.clone(), metrics.clone());
                    let receipt = tokio::task::spawn_blocking(move || sunset(&work, &m, now)).await;
                    let receipt = match receipt {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            metrics.failed("sunset");
                            tracing::error!(error = %e, "sunset purge failed; will retry");
                            continue;
                        }
                        Err(e) => {
                            metrics.failed("sunset");
                            tracing::error!(error = %e, "sunset task failed; will retry");
                            continue;
                        }
                    };
                    if registries.is_empty() {
                        tracing::warn!("no gateway configured: the deletion receipt stays in the store");
                        handed_in = true;
                    }
                    // The first gateway that takes it; the others get it from the
                    // coordinators' collection, not from us.
                    for mut client in registries.iter().cloned() {
                        match client.submit_receipt(receipt.clone()).await {
                            Ok(_) => {
                                tracing::info!("deletion receipt handed in to the gateway");
                                handed_in = true;
                                break;
                            }
                            Err(e) => tracing::warn!(error = %e, "gateway did not take the deletion receipt; retrying"),
                        }
                    }
                    continue;
                }
                let plan = retention::retention_plan(&trust, now);
                let (store, m) = (inner.store.clone(), metrics.clone());
                match tokio::task::spawn_blocking(move || store.purge(&plan, &mut |n| m.progress(n))).await {
                    Ok(Ok(outcome)) => {
                        let total = outcome.total();
                        let report = retention::PurgeReport { time: now, reason: "retention", deleted: outcome.counts };
                        metrics.completed(&report);
                        if total > 0 {
                            tracing::info!(deleted = ?report.deleted, "retention purge");
                        }
                        inner.reports.send_replace(report);
                    }
                    Ok(Err(e)) => {
                        metrics.failed("retention");
                        tracing::error!(error = %e, "retention purge failed")
                    }
                    Err(e) => {
                        metrics.failed("retention");
                        tracing::error!(error = %e, "retention task failed")
                    }
                }
            }
        }))
    }

    /// Serves `Attestation` and `StatusAdmin` over mTLS on `listener` until `shutdown`
    /// resolves, then drains in-flight calls and returns (releasing the store).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let follow = live::follow_all(self.inner.trust.clone(), &self.gateways, &self.tls)?;
        let meter = self
            .meter
            .clone()
            .or_else(|| self.inner.settings.meter.clone())
            .unwrap_or_else(|| opentelemetry::global::meter("huren-node"));
        expiry::register_gauges(&meter, Some((*self.tls).clone()), self.inner.trust.clone());
        let _ = self.inner.metrics.set(metrics::NodeMetrics::new(&meter, &self.inner.province));
        let sizes = metrics::StoreSizes::default();
        sizes.register(&meter, &self.inner.province);
        let _sizes = self.spawn_store_sizes(sizes);
        let metrics = retention::PurgeMetrics::new(&meter, &self.inner.province);
        let _keys = self.spawn_key_watcher();
        let _retention = self.spawn_retention(metrics)?;
        self.inner.disclosures.register_metrics(&meter, self.inner.province.as_str());
        let (stop_writer, writer_stop) = tokio::sync::watch::channel(false);
        let sunset_flag = {
            let inner = self.inner.clone();
            std::sync::Arc::new(move || inner.sunset.load(std::sync::atomic::Ordering::SeqCst))
                as std::sync::Arc<dyn Fn() -> bool + Send + Sync>
        };
        let writer = self.inner.disclosures.spawn_writer(self.inner.store.clone(), sunset_flag, writer_stop);
        let _expiry = expiry::spawn_monitor(Some((*self.tls).clone()), self.inner.trust.clone(), EXPIRY_CHECK_EVERY);
        let services = Services::new()
            .add(
                pb::attestation_server::AttestationServer::new(AttestationService(self.inner.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add(
                pb::status_admin_server::StatusAdminServer::new(StatusAdminService(self.inner.clone()))
                    .max_decoding_message_size(MAX_BATCH_BYTES),
            )
            .add(
                pb::transparency_server::TransparencyServer::new(transparency::TransparencyService(self.inner.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .handshake_limits(self.inner.settings.handshakes);
        tracing::info!(province = %self.inner.province, "node serving");
        let served = services.serve(listener, &self.tls, self.inner.trust.revocations(), shutdown).await;
        // The disclosure writer writes what is still queued, then ends.
        let _ = stop_writer.send(true);
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        served?;
        // Wait for the background tasks to end: they hold the store, which must be closed
        // (its file lock released) when `serve` returns.
        for guard in [_retention, _keys, _expiry, _sizes].into_iter().chain(follow) {
            guard.stop().await;
        }
        Ok(())
    }
}

/// Opens the status store the config names: the redb file or the fjall folder in
/// `data_dir`, or Redis.
pub fn open_store(config: &NodeConfig) -> Result<Arc<dyn NodeStore>, store::StoreError> {
    Ok(match config.store {
        config::StoreBackend::Redb => Arc::new(Store::open(&config.store_path())?),
        config::StoreBackend::Fjall => Arc::new(FjallStore::open(&config.fjall_path())?),
        config::StoreBackend::Redis => {
            let url = config.store_redis_url.as_deref().unwrap_or_default();
            Arc::new(RedisStore::open(url, &config.redis_prefix())?)
        }
    })
}

/// Purges everything (once) and returns the sunset receipt, kept in the store.
fn sunset(inner: &Inner, metrics: &retention::PurgeMetrics, now: i64) -> Result<pb::SignedDeletionReceipt, NodeError> {
    use prost::Message as _;
    if let Some(bytes) = inner.store.sunset_receipt()? {
        inner.sunset.store(true, std::sync::atomic::Ordering::SeqCst);
        return pb::SignedDeletionReceipt::decode(bytes.as_slice())
            .map_err(|e| NodeError::Store(store::StoreError::Corrupt(e.to_string())));
    }
    inner.sunset.store(true, std::sync::atomic::Ordering::SeqCst);
    // A disclosure batch being written finishes before the purge; none is written after it.
    let _writing = inner.disclosures.gate.lock().unwrap_or_else(|e| e.into_inner());
    let trust = inner.trust.current();
    let plan = store::PurgePlan { everything: true, ..Default::default() };
    let receipt = retention::purge_with_receipt(
        &*inner.store,
        &inner.keys,
        &trust,
        &inner.province,
        &plan,
        "sunset",
        now,
        &mut |n| metrics.progress(n),
    )?;
    inner.store.put_sunset_receipt(&receipt.encode_to_vec())?;
    tracing::warn!(province = %inner.province, "federation sunset: all subject data purged, receipt signed");
    let report = pb::DeletionReceipt::decode(receipt.receipt.as_slice()).unwrap_or_default();
    let report = retention::PurgeReport {
        time: now,
        reason: "sunset",
        deleted: report.counts.iter().map(|c| (kind_label(&c.kind), c.count)).collect(),
    };
    metrics.completed(&report);
    inner.reports.send_replace(report);
    Ok(receipt)
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "status" => "status",
        "token" => "token",
        "log_entry" => "log_entry",
        "disclosure" => "disclosure",
        "hub_aggregate" => "hub_aggregate",
        _ => "other",
    }
}
