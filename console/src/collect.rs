//! Asking the federation, with the coordinator's or auditor's own mTLS identity: the
//! gateway's trust list (verified against the national root), every node's gRPC health
//! (the node must present its province's node identity), the gateway's and nodes'
//! metrics, the sunset receipts handed in (each verified as `huren audit verify-receipt`
//! does), and each node's transparency log (verified, then counted as `huren audit stats`
//! does), and each node's per-hub aggregates ranked and flagged as `huren audit hubs` does
//! (auditor identities only; kept for [`HUB_REFRESH`] so the pages refreshing every 30 s do
//! not download a week of aggregates from every node each time). Every call has a
//! deadline; whatever fails is shown as failed, never hidden.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::registry::PkiDir;
use huren_pki::{Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use tokio::task::JoinSet;

use crate::inventory;
use crate::metrics::{self, Sampler, Scrape};
use crate::model::*;

/// Where the console looks, and who it is.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The coordinator's or auditor's identity (certificate, key, national root).
    pub identity: TlsIdentity,
    /// The gateway's mTLS address, `host:port`.
    pub gateway: String,
    /// The gateway's metrics (`http://host:port/metrics` on its admin port), if known.
    pub gateway_metrics: Option<String>,
    /// Each node's metrics address by province code, where known (for the trust-list
    /// sequence it holds).
    pub node_metrics: BTreeMap<String, String>,
    /// The coordinator's PKI directory (certificates issued there, a fallback trust list).
    pub pki_dir: Option<PkiDir>,
    /// Deadline of each call.
    pub timeout: Duration,
    /// How far back the Hubs page ranks hubs ([`huren_client::DEFAULT_HUB_WINDOW`], 7
    /// days, unless told otherwise).
    pub hub_window: Duration,
}

/// How long a collected hub ranking is shown before the nodes are asked again: aggregates
/// are hourly, so a few minutes behind costs little, and a week of them from every node
/// is the console's heaviest request.
pub const HUB_REFRESH: Duration = Duration::from_secs(300);

/// The console's state: its sources, an hour of gateway counter samples and the last hub
/// ranking (counts per hub; nothing about a subject).
#[derive(Debug, Clone)]
pub struct Console {
    sources: Arc<Sources>,
    sampler: Arc<Mutex<Sampler>>,
    hubs: Arc<tokio::sync::Mutex<Option<HubsView>>>,
}

/// A short, data-free description of a failed call.
fn describe(status: &tonic::Status) -> String {
    let mut m = format!("{:?}: {}", status.code(), status.message());
    if m.len() > 160 {
        let mut end = 160;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push('…');
    }
    m
}

impl Console {
    /// A console over `sources`.
    pub fn new(sources: Sources) -> Self {
        Self { sources: Arc::new(sources), sampler: Arc::default(), hubs: Arc::default() }
    }

    /// Its sources.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    fn gateway_client(
        &self,
        revoked: Revocations,
    ) -> Result<pb::trust_registry_client::TrustRegistryClient<tonic::transport::Channel>, String> {
        let s = &self.sources;
        let config = tls::client_config(&s.identity, ExpectedPeer::AnyGateway, revoked).map_err(|e| e.to_string())?;
        let channel = tls::channel(&s.gateway, config, s.timeout).map_err(|e| e.to_string())?;
        Ok(pb::trust_registry_client::TrustRegistryClient::new(channel))
    }

    /// The trust list: the gateway's (verified against the root), else the PKI
    /// directory's; and what the gateway said.
    pub async fn trust_list(&self) -> (Option<(TrustList, &'static str)>, GatewayView) {
        let s = &self.sources;
        let mut view = GatewayView { address: s.gateway.clone(), sequence: None, error: None };
        let fetched = async {
            let mut client = self.gateway_client(Revocations::default())?;
            let signed = tokio::time::timeout(s.timeout, client.get_trust_list(pb::GetTrustListRequest {}))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| describe(&e))?
                .into_inner();
            TrustList::verify(signed, s.identity.root.as_ref()).map_err(|e| format!("its trust list is refused: {e}"))
        }
        .await;
        match fetched {
            Ok(list) => {
                view.sequence = Some(list.sequence());
                (Some((list, "gateway")), view)
            }
            Err(e) => {
                view.error = Some(e);
                let local = s
                    .pki_dir
                    .as_ref()
                    .and_then(|p| TrustList::load(&p.trust_list_path(), s.identity.root.as_ref()).ok());
                (local.map(|l| (l, "pki-dir")), view)
            }
        }
    }

    /// Scrapes the gateway's metrics into the hour of samples (the console does this
    /// every minute, and at each page).
    pub async fn sample(&self, now: i64) -> Result<Scrape, String> {
        let Some(address) = &self.sources.gateway_metrics else {
            return Err("no gateway metrics address given (--gateway-metrics)".into());
        };
        let text = metrics::fetch(address, self.sources.timeout).await.map_err(|e| e.to_string())?;
        let scrape = Scrape::parse(&text);
        self.sampler.lock().expect("sampler lock").record(now, &scrape);
        Ok(scrape)
    }

    /// The whole overview, collected now.
    pub async fn overview(&self) -> Overview {
        let now = huren_pki::unix_now();
        let s = &self.sources;
        let ((trust, gateway), scrape) = tokio::join!(self.trust_list(), self.sample(now));
        let traffic = match &scrape {
            Ok(_) => self.sampler.lock().expect("sampler lock").traffic(),
            Err(e) => Traffic { error: Some(e.clone()), ..Traffic::default() },
        };
        let breakers = scrape.as_ref().map(Scrape::breakers).unwrap_or_default();
        let Some((trust, source)) = trust else {
            return Overview {
                generated_at: now,
                gateway,
                trust: None,
                provinces: vec![],
                keys: vec![],
                certs: vec![],
                traffic,
                sunset: None,
            };
        };
        let (provinces, sunset) = tokio::join!(self.provinces(&trust, &breakers), self.sunset(&trust, now));
        Overview {
            generated_at: now,
            gateway,
            trust: Some(TrustSummary {
                sequence: trust.sequence(),
                issued_at: trust.raw().issued_at,
                next_update: trust.raw().next_update,
                stale: trust.raw().next_update < now,
                source: source.into(),
                hubs: trust.raw().hubs.len(),
                rules: trust.raw().rules.len(),
                revoked: trust.revoked_serials().len(),
            }),
            provinces,
            keys: inventory::keys(&trust, now),
            certs: inventory::certs(&trust, s.pki_dir.as_ref(), now),
            traffic,
            sunset,
        }
    }

    /// One tile per province: health over mTLS, sequence held, breaker.
    async fn provinces(&self, trust: &TrustList, breakers: &BTreeMap<String, Breaker>) -> Vec<ProvinceView> {
        let mut tasks = JoinSet::new();
        let current = trust.sequence();
        let revoked = Revocations::new(trust.revoked_serials().clone());
        let mut entries: Vec<_> = trust.provinces().cloned().collect();
        entries.sort_by(|a, b| a.code.cmp(&b.code));
        for (i, p) in entries.iter().enumerate() {
            let endpoint = p.endpoints.first().cloned();
            let identity = self.sources.identity.clone();
            let expected = Identity::new(trust.trust_domain(), Role::Node(p.code.clone()));
            let timeout = self.sources.timeout;
            let metrics = self.sources.node_metrics.get(p.code.as_str()).cloned();
            let revoked = revoked.clone();
            tasks.spawn(async move {
                let health = match &endpoint {
                    None => Health::NoEndpoint,
                    Some(e) => health(e, &identity, expected, revoked, timeout).await,
                };
                let held = match metrics {
                    Some(m) => metrics::fetch(&m, timeout)
                        .await
                        .ok()
                        .and_then(|t| Scrape::parse(&t).value("huren_trust_list_sequence"))
                        .map(|v| v as u64),
                    None => None,
                };
                (i, endpoint, health, held)
            });
        }
        let mut out: Vec<Option<ProvinceView>> = vec![None; entries.len()];
        while let Some(done) = tasks.join_next().await {
            let Ok((i, endpoint, health, held)) = done else { continue };
            let p = &entries[i];
            let breaker = breakers.get(p.code.as_str()).copied();
            out[i] = Some(ProvinceView {
                code: p.code.to_string(),
                name: p.name.clone(),
                endpoint,
                tile: ProvinceView::tile_for(&health, held, Some(current), breaker),
                health,
                sequence_held: held,
                breaker,
            });
        }
        out.into_iter().flatten().collect()
    }

    /// At a sunset: for each province, its verified sunset receipt, an invalid one, or none.
    async fn sunset(&self, trust: &TrustList, now: i64) -> Option<SunsetView> {
        let order = trust.sunset()?.clone();
        let mut view = SunsetView {
            effective_at: order.effective_at,
            in_force: order.effective_at <= now,
            reason: order.reason.clone(),
            receipts: vec![],
            error: None,
        };
        let receipts = match self.receipts(trust).await {
            Ok(r) => r,
            Err(e) => {
                view.error = Some(e);
                vec![]
            }
        };
        let mut codes: Vec<String> = trust.provinces().map(|p| p.code.to_string()).collect();
        codes.sort();
        for code in codes {
            let mine: Vec<&ReceiptState> = receipts.iter().filter(|(p, _)| *p == code).map(|(_, s)| s).collect();
            let state = mine
                .iter()
                .find(|s| matches!(s, ReceiptState::Verified { .. }))
                .or_else(|| mine.first())
                .map(|s| (*s).clone())
                .unwrap_or(ReceiptState::Missing);
            view.receipts.push(ReceiptRow { province: code, state });
        }
        Some(view)
    }

    /// Every receipt the gateway holds (`TrustRegistry/ListReceipts`), each with what
    /// verifying it against `trust` found: (province, state). Only sunset receipts count
    /// as verified for the sunset view.
    pub async fn receipts(&self, trust: &TrustList) -> Result<Vec<(String, ReceiptState)>, String> {
        Ok(self
            .fetch_receipts(trust)
            .await?
            .into_iter()
            .map(|(signed, checked)| {
                let province = receipt_province(&signed);
                let state = match checked {
                    Ok(c) if c.reason == "sunset" => {
                        ReceiptState::Verified { time: c.time, deleted: c.deleted.values().sum() }
                    }
                    Ok(c) => ReceiptState::Invalid { error: format!("a {} receipt, not a sunset receipt", c.reason) },
                    Err(e) => ReceiptState::Invalid { error: e },
                };
                (province, state)
            })
            .collect())
    }

    /// The receipts the gateway holds, each verified against `trust` as `huren audit
    /// verify-receipt` does ([`huren_client::verify_receipt`]).
    #[allow(clippy::type_complexity)]
    pub async fn fetch_receipts(
        &self,
        trust: &TrustList,
    ) -> Result<Vec<(pb::SignedDeletionReceipt, Result<huren_client::CheckedReceipt, String>)>, String> {
        let mut client = self.gateway_client(Revocations::new(trust.revoked_serials().clone()))?;
        let list = tokio::time::timeout(self.sources.timeout, client.list_receipts(pb::ListReceiptsRequest {}))
            .await
            .map_err(|_| "timed out listing receipts".to_owned())?
            .map_err(|e| describe(&e))?
            .into_inner();
        Ok(list
            .receipts
            .into_iter()
            .map(|r| {
                let checked = huren_client::verify_receipt(trust, &r, None).map_err(|e| e.to_string());
                (r, checked)
            })
            .collect())
    }

    /// Non-green changes per rule and authority for every province, from each node's
    /// verified transparency log (the `huren audit stats` view), over the whole log.
    pub async fn stats(&self) -> (Option<u64>, Vec<ProvinceStats>) {
        let (trust, _) = self.trust_list().await;
        let Some((trust, _)) = trust else { return (None, vec![]) };
        let now = huren_pki::unix_now();
        let mut tasks = JoinSet::new();
        let mut codes: Vec<ProvinceCode> = trust.provinces().map(|p| p.code.clone()).collect();
        codes.sort();
        for code in codes {
            let (identity, trust, timeout) = (self.sources.identity.clone(), trust.clone(), self.sources.timeout);
            tasks.spawn(async move {
                let run = async {
                    let mut client =
                        huren_client::AuditClient::connect(None, &code, &identity, trust).map_err(|e| e.to_string())?;
                    let (_, head) = client.tree_head().await.map_err(|e| e.to_string())?;
                    let entries = client.fetch_verified(&head).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((huren_client::stats(&entries, 0, now + 1), head.tree_size))
                };
                let result = tokio::time::timeout(timeout * 10, run).await.unwrap_or_else(|_| Err("timed out".into()));
                let tree_size = result.as_ref().map(|(_, n)| *n).unwrap_or(0);
                ProvinceStats { province: code.to_string(), stats: result.map(|(s, _)| s), tree_size }
            });
        }
        let mut out: Vec<ProvinceStats> = tasks.join_all().await;
        out.sort_by(|a, b| a.province.cmp(&b.province));
        (Some(trust.sequence()), out)
    }

    /// The hub ranking: the one collected last if it is younger than [`HUB_REFRESH`], else
    /// collected now ([`Console::collect_hubs`]). Concurrent page loads share one
    /// collection.
    pub async fn hubs(&self) -> HubsView {
        let mut held = self.hubs.lock().await;
        let now = huren_pki::unix_now();
        if let Some(view) = held.as_ref().filter(|v| now - v.generated_at < HUB_REFRESH.as_secs() as i64) {
            return view.clone();
        }
        let view = self.collect_hubs(now).await;
        *held = Some(view.clone());
        view
    }

    /// Every province's hubs, ranked and flagged as `huren audit hubs` ranks them
    /// ([`huren_client::rank_hubs`] under [`OverCheck::DEFAULT`]) over the window
    /// [`Sources::hub_window`] before `now`, names and registrations from the gateway's
    /// trust list. Only auditor identities may read aggregates
    /// (`Transparency/GetHubAggregates`): with any other identity no node is asked and
    /// each province says so.
    ///
    /// [`OverCheck::DEFAULT`]: huren_client::OverCheck::DEFAULT
    pub async fn collect_hubs(&self, now: i64) -> HubsView {
        let s = &self.sources;
        let rule = huren_client::OverCheck::DEFAULT;
        let since = now.saturating_sub(i64::try_from(s.hub_window.as_secs()).unwrap_or(i64::MAX));
        let mut view = HubsView {
            generated_at: now,
            since,
            factor: rule.factor,
            min_subjects: rule.min_subjects,
            sequence: None,
            error: None,
            provinces: vec![],
        };
        let (trust, gateway) = self.trust_list().await;
        let Some((trust, _)) = trust else {
            view.error = Some(format!(
                "no trust list to check hubs against: the gateway could not be asked ({}) and no PKI directory was given",
                gateway.error.unwrap_or_default()
            ));
            return view;
        };
        view.sequence = Some(trust.sequence());
        let mut entries: Vec<_> = trust.provinces().map(|p| (p.code.clone(), p.name.clone())).collect();
        entries.sort();
        if !matches!(s.identity.identity.role, Role::Auditor(_)) {
            let reason = format!(
                "Not asked: nodes give hub aggregates to auditor identities only, and the console runs as a {}; \
                 start it with an auditor certificate to see them.",
                s.identity.identity.role.kind()
            );
            view.provinces = entries
                .into_iter()
                .map(|(code, name)| ProvinceHubs {
                    province: code.to_string(),
                    name,
                    state: HubsState::NotAsked { reason: reason.clone() },
                })
                .collect();
            return view;
        }
        let mut tasks = JoinSet::new();
        for (i, (code, _)) in entries.iter().enumerate() {
            let (code, identity, trust, timeout) = (code.clone(), s.identity.clone(), trust.clone(), s.timeout);
            tasks.spawn(async move {
                let ask = async {
                    let mut client = huren_client::AuditClient::connect(None, &code, &identity, trust.clone())?;
                    client.hub_aggregates(since, 0).await
                };
                let state = match tokio::time::timeout(timeout, ask).await {
                    Err(_) => HubsState::Failed { error: "timed out".into() },
                    Ok(Err(huren_client::AuditError::Rpc(status))) => HubsState::Failed { error: describe(&status) },
                    Ok(Err(e)) => HubsState::Failed { error: e.to_string() },
                    Ok(Ok(response)) => HubsState::Ranked {
                        hubs: huren_client::rank_hubs(&response.aggregates, &trust, rule),
                        disclosures_dropped: response.disclosures_dropped,
                    },
                };
                (i, state)
            });
        }
        let mut states: Vec<(usize, HubsState)> = tasks.join_all().await;
        states.sort_by_key(|(i, _)| *i);
        for (i, state) in states {
            let (code, name) = &entries[i];
            view.provinces.push(ProvinceHubs { province: code.to_string(), name: name.clone(), state });
        }
        view
    }

    /// Samples the gateway's metrics every `every` until `stop` resolves, so the hour of
    /// counts is there even between page loads.
    pub async fn keep_sampling(&self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(every);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sample(huren_pki::unix_now()).await {
                        tracing::debug!(error = %e, "gateway metrics not read");
                    }
                }
            }
        }
    }
}

/// The province a (possibly invalid) receipt names; `unknown` when it does not decode.
pub fn receipt_province(signed: &pb::SignedDeletionReceipt) -> String {
    use prost::Message as _;
    pb::DeletionReceipt::decode(signed.receipt.as_slice()).map(|r| r.province).unwrap_or_else(|_| "unknown".into())
}

/// The node's `grpc.health.v1` answer for `huren.v1.Attestation`, over mTLS as the
/// console's identity, the node presenting exactly `expected`.
async fn health(
    endpoint: &str,
    identity: &TlsIdentity,
    expected: Identity,
    revoked: Revocations,
    timeout: Duration,
) -> Health {
    let config = match tls::client_config(identity, ExpectedPeer::Exactly(expected), revoked) {
        Ok(c) => c,
        Err(e) => return Health::Unreachable(e.to_string()),
    };
    let channel = match tls::channel(endpoint, config, timeout) {
        Ok(c) => c,
        Err(e) => return Health::Unreachable(e.to_string()),
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: "huren.v1.Attestation".into() };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Health::Unreachable("timed out".into()),
        Ok(Err(status)) => Health::Unreachable(describe(&status)),
        Ok(Ok(response)) => {
            use tonic_health::pb::health_check_response::ServingStatus;
            match ServingStatus::try_from(response.into_inner().status) {
                Ok(ServingStatus::Serving) => Health::Serving,
                Ok(other) => Health::NotServing(other.as_str_name().to_owned()),
                Err(_) => Health::NotServing("UNKNOWN".into()),
            }
        }
    }
}
