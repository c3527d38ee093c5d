//! The gateway's gRPC services: `Lookup` (hubs) and `TrustRegistry` (everyone).
//! Requests become domain types on the way in ([`crate::request`]); refusals are
//! [`GatewayError`]s, sent as typed statuses in one place ([`crate::error`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::{unix_now, Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::error::{CallerError, Refusal as _};
use huren_runtime::live::{LiveTrust, OfferError};
use huren_runtime::tls::{self, ExpectedPeer, TlsIdentity};
use prost::Message as _;
use tonic::{Code, Request, Response};

use crate::authz::{authorize, Call};
use crate::breaker::{BreakerState, Breakers};
use crate::capture::CaptureSink;
use crate::deferred::{Deferred, DeferredDisclosures, PER_PROVINCE};
use crate::error::{node_failure, transport_cause, GatewayError, MisconfiguredCause, UnavailableCause};
use crate::limits::MissPolicy;
use crate::metrics::Metrics;
use crate::node_call::{self, NodeClient};
use crate::receipts::ReceiptStore;
use crate::request::Lookup;
use crate::retry::{retryable, RetryBudget};
use crate::shared::{cache_key, CachedAttestation, Shared};
use tower::limit::ConcurrencyLimit;
use tower::retry::budget::{Budget as _, TpsBudget};

/// A province's node endpoints, in the trust list's order, one client each.
pub(crate) struct Route {
    endpoints: Vec<String>,
    pub(crate) clients: Vec<NodeClient>,
    /// Per endpoint, the serials of the node chain its connection presented: cached
    /// answers carry them, so a revoked node certificate's answers stop being served.
    pub(crate) served_by: Vec<tls::ServerSerials>,
    /// The province's retry budget (every lookup deposits, every retry withdraws).
    pub(crate) budget: TpsBudget,
    /// The endpoint that answered last: lookups go there first, so a dead endpoint costs
    /// one retry, not one per lookup.
    pub(crate) preferred: AtomicUsize,
}

impl Route {
    /// The endpoint index for attempt `attempt` (0 = first): the one that answered last,
    /// then the next listed, so a retry goes to another endpoint when there is one.
    pub(crate) fn endpoint(&self, attempt: usize) -> usize {
        (self.preferred.load(Ordering::Relaxed) + attempt) % self.clients.len()
    }
}

/// Attempts per lookup at most: the first, and one retry after a failure a retry can cure.
pub(crate) const ATTEMPTS: usize = 2;

/// Routes built for one trust-list sequence; rebuilt when the list changes so that
/// moved endpoints and revoked node certificates take effect on new connections.
#[derive(Default)]
struct Routes {
    sequence: u64,
    by_province: HashMap<ProvinceCode, Arc<Route>>,
}

/// State shared by the gateway's services.
pub(crate) struct State {
    pub trust: LiveTrust,
    /// Becomes true when the server starts shutting down, ending long-lived streams so
    /// that graceful shutdown can complete.
    pub stopping: tokio::sync::watch::Sender<bool>,
    routes: Mutex<Routes>,
    tls: Arc<TlsIdentity>,
    node_timeout: Duration,
    province_timeouts: HashMap<String, Duration>,
    connect_timeout: Duration,
    pub(crate) misses: MissPolicy,
    pub(crate) hub_rate_per_sec: u64,
    node_concurrency: usize,
    retry_budget: RetryBudget,
    pub(crate) cache: bool,
    pub(crate) cache_fresh_seconds: i64,
    pub shared: Arc<Shared>,
    pub breakers: Arc<Breakers>,
    pub metrics: Metrics,
    capture: Option<Arc<dyn CaptureSink>>,
    pub receipts: ReceiptStore,
    pub(crate) clock: huren_runtime::clock::Clock,
    pub sunset_purged: tokio::sync::watch::Sender<bool>,
    /// Checks answered from the cache while their home node was down, until it takes them.
    pub(crate) deferred: DeferredDisclosures,
    /// Verifies node answers, at once or in a collection window.
    verifier: crate::batch_verify::BatchVerifier,
}

impl State {
    pub(crate) fn new(
        trust: LiveTrust,
        tls: Arc<TlsIdentity>,
        settings: &crate::GatewaySettings,
        metrics: Metrics,
        receipts: ReceiptStore,
        shared: Arc<Shared>,
    ) -> Self {
        let (stopping, _) = tokio::sync::watch::channel(false);
        Self {
            trust,
            stopping,
            routes: Mutex::new(Routes::default()),
            tls,
            node_timeout: settings.node_timeout,
            province_timeouts: settings.province_timeouts.clone(),
            connect_timeout: settings.connect_timeout,
            misses: settings.miss_policy,
            hub_rate_per_sec: settings.hub_rate_per_sec,
            node_concurrency: settings.node_concurrency.max(1),
            retry_budget: settings.retry_budget,
            cache: settings.cache,
            cache_fresh_seconds: i64::try_from(settings.cache_fresh.as_secs()).unwrap_or(i64::MAX),
            shared,
            breakers: Arc::new(Breakers::new(settings.breaker).observed(breaker_observer(metrics.clone()))),
            metrics,
            capture: settings.capture.clone(),
            receipts,
            clock: settings.clock.clone(),
            sunset_purged: tokio::sync::watch::channel(false).0,
            deferred: DeferredDisclosures::new(PER_PROVINCE, settings.disclosure_backoff),
            verifier: crate::batch_verify::BatchVerifier::new(settings.verify_batch_window, settings.verify_batch_max),
        }
    }

    /// One call to `code`'s node over `route`, the same for `Attest` and `AttestBatch`: one
    /// deadline covers the call and its retry (and the wait for a slot under the province's
    /// concurrency limit); a retryable failure is retried once on the next endpoint while
    /// the province's retry budget allows; the endpoint that answered is preferred next
    /// time; the breaker records whether the node answered, and a node that answered gets
    /// the checks deferred for it at once. Returns the outcome (`None`: the deadline passed)
    /// and the endpoint that gave it.
    pub(crate) async fn call_node<Req, Resp, F, Fut>(
        &self,
        code: &ProvinceCode,
        route: &Route,
        rpc: &'static str,
        request: &Req,
        call: F,
    ) -> (Option<Result<Response<Resp>, tonic::Status>>, usize)
    where
        Req: prost::Message + Clone,
        F: Fn(NodeClient, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.node_timeout_for(code);
        let mut attempt = 0;
        let mut answered_by = 0;
        let outcome = loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break None;
            }
            self.capture(rpc, "gateway->node", request);
            let mut message = Request::new(request.clone());
            message.set_timeout(remaining);
            huren_runtime::tracectx::inject(&mut message);
            let endpoint = route.endpoint(attempt);
            let client = route.clients[endpoint].clone();
            if attempt == 0 {
                route.budget.deposit();
            }
            match tokio::time::timeout_at(deadline, call(client, message)).await {
                Ok(Err(status))
                    if attempt + 1 < ATTEMPTS
                        && retryable(status.code(), transport_cause(&status).is_some())
                        && route.budget.withdraw() =>
                {
                    attempt += 1;
                    self.metrics.retry(code.as_str());
                    // Per call, so debug: `huren_gateway_node_retries_total` is the signal.
                    tracing::debug!(province = %code, code = ?status.code(), "node call failed; retrying once");
                }
                Ok(result) => {
                    // An endpoint that answered (anything but a failure to serve) is kept.
                    let answered = match &result {
                        Ok(_) => true,
                        Err(status) => !retryable(status.code(), transport_cause(status).is_some()),
                    };
                    if answered {
                        route.preferred.store(endpoint, Ordering::Relaxed);
                    }
                    answered_by = endpoint;
                    break Some(result);
                }
                Err(_) => break None,
            }
        };
        // A node that answers (even "not found", or "unimplemented" from an older node asked
        // for a newer call) is healthy; silence and transport errors are not.
        let healthy = matches!(&outcome, Some(Ok(_)))
            || matches!(&outcome, Some(Err(s)) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument | Code::PermissionDenied | Code::Unimplemented));
        self.breakers.record(code.as_str(), healthy, std::time::Instant::now());
        if healthy {
            self.deferred.answered(code, tokio::time::Instant::now());
        }
        (outcome, answered_by)
    }

    pub(crate) fn capture(&self, rpc: &str, direction: &str, message: &impl prost::Message) {
        if let Some(sink) = &self.capture {
            sink.record(rpc, direction, &message.encode_to_vec());
        }
    }

    pub(crate) fn trust(&self) -> Arc<TrustList> {
        self.trust.current()
    }

    pub(crate) fn clock_now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn clock(&self) -> huren_runtime::clock::Clock {
        self.clock.clone()
    }

    /// The deadline for a call to `code`'s node: its override, else the default.
    pub(crate) fn node_timeout_for(&self, code: &ProvinceCode) -> Duration {
        self.province_timeouts.get(code.as_str()).copied().unwrap_or(self.node_timeout)
    }

    /// The client for a province's node under the trust list in force.
    pub(crate) fn route(&self, trust: &TrustList, code: &ProvinceCode) -> Result<Arc<Route>, GatewayError> {
        let entry = trust.province(code).ok_or_else(|| GatewayError::ProvinceUnknown { province: code.clone() })?;
        let misconfigured = |cause| GatewayError::ProvinceMisconfigured { province: code.clone(), cause };
        if entry.endpoints.is_empty() {
            return Err(misconfigured(MisconfiguredCause::NoEndpoint));
        }
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.sequence != trust.sequence() {
            *routes = Routes { sequence: trust.sequence(), by_province: HashMap::new() };
        }
        if let Some(route) = routes.by_province.get(code).filter(|r| r.endpoints == entry.endpoints) {
            return Ok(route.clone());
        }
        let expected = ExpectedPeer::Exactly(Identity::new(trust.trust_domain(), Role::Node(code.clone())));
        let config = tls::client_config(&self.tls, expected, self.trust.revocations()).map_err(|e| {
            misconfigured(MisconfiguredCause::Client(format!("cannot build TLS client for province {code}: {e}")))
        })?;
        let mut clients = Vec::with_capacity(entry.endpoints.len());
        let mut served_by = Vec::with_capacity(entry.endpoints.len());
        for endpoint in &entry.endpoints {
            let (channel, serials) = tls::observed_channel(endpoint, config.clone(), self.connect_timeout)
                .map_err(|e| misconfigured(MisconfiguredCause::Client(format!("province {code}: {e}"))))?;
            // Bounded in-flight calls per endpoint: a slow province queues its own lookups only.
            clients.push(NodeClient::new(ConcurrencyLimit::new(channel, self.node_concurrency)));
            served_by.push(serials);
        }
        let route = Arc::new(Route {
            endpoints: entry.endpoints.clone(),
            clients,
            served_by,
            budget: self.retry_budget.start(),
            preferred: AtomicUsize::new(0),
        });
        routes.by_province.insert(code.clone(), route.clone());
        Ok(route)
    }
}

/// Logs (at info) and counts every breaker transition.
fn breaker_observer(metrics: Metrics) -> crate::breaker::TransitionObserver {
    Box::new(move |province, to| {
        match to {
            BreakerState::Open => {
                tracing::warn!(%province, state = to.label(), "circuit breaker opened: failing fast for this province")
            }
            _ => tracing::info!(%province, state = to.label(), "circuit breaker state changed"),
        }
        metrics.breaker_transition(province, to.label());
    })
}

/// The caller of `request`, if it may make `call`.
pub(crate) fn authorized<T>(request: &Request<T>, call: Call) -> Result<Identity, GatewayError> {
    Ok(huren_runtime::error::authorized(request, |caller| authorize(call, caller))?)
}

/// `huren.v1.Lookup`.
#[derive(Clone)]
pub(crate) struct LookupService(pub(crate) Arc<State>);

pub(crate) fn hub_id(caller: &Identity) -> &str {
    match &caller.role {
        Role::Hub(id) => id,
        _ => "",
    }
}

impl LookupService {
    /// `from` is set to the province the calling hub's registration names, once the caller
    /// is authenticated (the other end of the province pair in the lookup metrics).
    async fn lookup_inner(
        &self,
        request: Request<pb::LookupRequest>,
        from: &mut Option<ProvinceCode>,
    ) -> Result<pb::LookupResponse, GatewayError> {
        let state = &self.0;
        let caller = authorized(&request, Call::Lookup)?;
        let hub = hub_id(&caller);
        let trust = state.trust();
        *from = trust.hub_province(hub).cloned();
        let req = request.into_inner();
        state.capture("Lookup", "hub->gateway", &req);
        let lookup = Lookup::try_from(req)?;
        let code = &lookup.province;
        state.admit(&trust, hub, &lookup.purpose, 1).await?;
        let now = unix_now();
        let key = cache_key(state.shared.prefix(), hub, code.as_str(), &lookup.purpose, &lookup.token);
        // A cached attestation still valid now, and whether it is fresh enough to serve
        // without asking the node. Its signature is verified once per replica (the first
        // time this replica meets those exact bytes); every hit re-checks what can change
        // against the trust list in force: a key revoked since it was cached fails here.
        // One whose node certificate (or its CA) the trust list revokes is dropped, here
        // and in Redis, and never served: not fresh, not stale-if-error.
        let mut cached = None;
        if state.cache {
            if let Some(entry) = state.shared.cache_get(&key).await.and_then(|b| CachedAttestation::decode(&*b).ok()) {
                if entry.node_serials.is_empty() || entry.node_serials.iter().any(|s| trust.is_revoked(s)) {
                    state.metrics.cache("dropped_revoked");
                    tracing::info!(province = %code, "cached attestation dropped: its node certificate is revoked");
                    state.shared.cache_delete(&key).await;
                } else {
                    cached = state.cached_verified(&trust, &key, &entry.attestation, &lookup, now);
                }
            }
            if let Some((signed, issued_at)) = &cached {
                if now.saturating_sub(*issued_at) < state.cache_fresh_seconds {
                    state.metrics.cache("hit");
                    return Ok(self.answer(pb::SignedAttestation::clone(signed)));
                }
            }
        }
        match self.ask_node(&trust, &lookup, hub, &key, now).await {
            Ok(signed) => {
                if state.cache {
                    state.metrics.cache(if cached.is_some() { "revalidated" } else { "miss" });
                }
                Ok(self.answer(signed))
            }
            // Stale-if-error: the province cannot answer now, and what it signed earlier is
            // still valid and within the retention cap (the cache holds nothing longer).
            Err(e) if e.province_failed() => match cached {
                Some((signed, _)) => {
                    let signed = pb::SignedAttestation::clone(&signed);
                    state.metrics.cache("stale");
                    // The node could not record this check: keep it for the node (the token's
                    // digest, never the token), handed in once it answers again.
                    let deferred = Deferred {
                        token_digest: huren_pki::attest::token_digest(&lookup.token),
                        hub_id: hub.to_owned(),
                        hub_province: trust.hub_province(hub).map(ToString::to_string).unwrap_or_default(),
                        purpose: lookup.purpose.clone(),
                        checked_at: state.clock_now(),
                    };
                    let dropped = state.deferred.push(code, deferred, tokio::time::Instant::now());
                    state.metrics.deferred_dropped(&crate::metrics::province_label(&trust, code.as_str()), dropped);
                    // Per lookup, so debug: during an outage the `stale` cache metric is the signal.
                    tracing::debug!(
                        province = %code,
                        outcome = e.outcome(),
                        "province failing: served a cached attestation still valid"
                    );
                    Ok(self.answer(signed))
                }
                None => {
                    if state.cache {
                        state.metrics.cache("miss");
                    }
                    Err(e)
                }
            },
            // The province has answered about this token (unknown, lapsed) or answered
            // with something refused: what was cached no longer stands.
            Err(e) => {
                if state.cache {
                    state.metrics.cache("miss");
                    if cached.is_some() {
                        state.shared.cache_delete(&key).await;
                    }
                }
                Err(e)
            }
        }
    }

    /// The hub's answer carrying `signed`.
    fn answer(&self, signed: pb::SignedAttestation) -> pb::LookupResponse {
        let response = pb::LookupResponse { attestation: Some(signed) };
        self.0.capture("Lookup", "gateway->hub", &response);
        response
    }

    /// Asks `code`'s node for an attestation answering `req` under the province's breaker,
    /// deadline and concurrency limit, retrying once where safe ([`retryable`]), checks
    /// what comes back and caches it under `key`.
    async fn ask_node(
        &self,
        trust: &Arc<TrustList>,
        lookup: &Lookup,
        hub: &str,
        key: &str,
        now: i64,
    ) -> Result<pb::SignedAttestation, GatewayError> {
        let state = &self.0;
        let code = &lookup.province;
        // Before the breaker: only provinces of the trust list get one.
        if trust.province(code).is_none() {
            return Err(GatewayError::ProvinceUnknown { province: code.clone() });
        }
        if let Err(wait) = state.breakers.allow(code.as_str(), std::time::Instant::now()) {
            return Err(GatewayError::ProvinceUnavailable {
                province: code.clone(),
                cause: UnavailableCause::CircuitOpen(wait),
            });
        }
        let route = match state.route(trust, code) {
            Ok(route) => route,
            Err(e) => {
                state.breakers.record(code.as_str(), true, std::time::Instant::now());
                return Err(e);
            }
        };
        // Who asked, for the subject's disclosure log at the home province: the hub id from
        // its verified certificate and the province its registration in the trust list
        // names — never anything the hub says about itself.
        let attest = pb::AttestRequest {
            token: lookup.token.to_vec(),
            purpose: lookup.purpose.clone(),
            hub_id: hub.to_owned(),
            hub_province: trust.hub_province(hub).map(ToString::to_string).unwrap_or_default(),
        };
        let (outcome, answered_by) = state
            .call_node(code, &route, "Attest", &attest, |mut client, call| async move {
                node_call::attest(&mut client, call).await
            })
            .await;
        let answer = match outcome {
            Some(Ok(answer)) => answer.into_inner(),
            Some(Err(status)) => {
                let failure = node_failure(code, status);
                if matches!(failure, GatewayError::TokenUnknown { .. })
                    && state.shared.incr("miss", hub, state.misses.window()).await == state.misses.limit()
                {
                    tracing::warn!(%hub, "hub throttled after too many unknown-token lookups");
                    state.metrics.throttled(hub, "unknown_tokens");
                }
                return Err(failure);
            }
            None => return Err(GatewayError::ProvinceTimeout { province: code.clone() }),
        };
        state.capture("Attest", "node->gateway", &answer.response);
        let violation = |reason: String, label: &'static str| {
            state.metrics.violation(code.as_str(), label);
            // No token, subject or payload content here: province and reason only.
            tracing::warn!(province = %code, reason = label, "policy violation: attestation refused");
            GatewayError::PolicyViolation { province: code.clone(), reason, label }
        };
        if answer.more {
            return Err(violation("node answered with more than one message".into(), "multiple_messages"));
        }
        let answer = answer.response;
        let signed =
            answer.attestation.ok_or_else(|| violation("node answered without an attestation".into(), "empty"))?;
        let verified = state
            .verifier
            .verify(trust.clone(), &signed, lookup, now)
            .await
            .map_err(|(reason, label)| violation(reason, label))?;
        // Cached with the serials of the node chain that answered (an answer whose chain is
        // unknown is not cached: it could not be dropped when that chain is revoked).
        let node_serials = route.served_by[answered_by].current();
        if state.cache && !node_serials.is_empty() {
            // Never longer than the attestation itself, nor than the retention policy allows.
            let ttl = cache_ttl(trust, &verified.attestation, now);
            let bytes = signed.encode_to_vec();
            let entry = CachedAttestation { attestation: bytes.clone(), node_serials: node_serials.to_vec() };
            state.shared.cache_put(key, &entry.encode_to_vec(), ttl).await;
            state.shared.remember_verified(key, &bytes, signed.clone(), verified, ttl);
        }
        Ok(signed)
    }
}

/// Everything the gateway checks on an attestation before passing it on: the one verifier,
/// bound to the province routed to, the hub's token and the purpose asked.
pub(crate) fn check(
    trust: &TrustList,
    signed: &pb::SignedAttestation,
    lookup: &Lookup,
    now: i64,
) -> Result<huren_pki::Verified, (String, &'static str)> {
    huren_pki::verify::verify_once(trust, signed, &expected(lookup), now).map_err(|e| (e.to_string(), e.reason()))
}

/// What a lookup binds an attestation to.
pub(crate) fn expected(lookup: &Lookup) -> huren_pki::Expected<'_> {
    huren_pki::Expected::lookup(&lookup.province, &lookup.token, &lookup.purpose)
}

/// How long a verified attestation may be cached: never longer than it is valid, nor
/// than the retention policy allows.
pub(crate) fn cache_ttl(trust: &TrustList, attestation: &huren_pki::attest::Attestation, now: i64) -> Duration {
    Duration::from_secs((attestation.expires_at - now).min(trust.retention().cache_max).max(0) as u64)
}

impl State {
    /// What a lookup (or a manifest of `tokens` lookups) must pass before any token is
    /// looked at: no sunset, the hub registered for the purpose, within its request rate
    /// (each token counts) and not throttled for unknown tokens.
    pub(crate) async fn admit(
        &self,
        trust: &TrustList,
        hub: &str,
        purpose: &str,
        tokens: u64,
    ) -> Result<(), GatewayError> {
        if let Some(sunset) = trust.sunset_in_force(self.clock.now()) {
            return Err(GatewayError::Sunset { effective_at: sunset.effective_at, reason: sunset.reason.clone() });
        }
        // Purpose binding: the hub's registration says which purposes it may declare.
        match trust.hub_purposes(hub) {
            None => return Err(GatewayError::HubNotRegistered { hub: hub.to_owned() }),
            Some(purposes) if !purposes.iter().any(|p| p == purpose) => {
                return Err(GatewayError::PurposeNotRegistered {
                    hub: hub.to_owned(),
                    purpose: purpose.to_owned(),
                    registered: purposes.to_vec(),
                })
            }
            Some(_) => {}
        }
        if self.hub_rate_per_sec > 0 {
            let count = self.shared.incr_by("rate", hub, std::time::Duration::from_secs(1), tokens).await;
            if count > self.hub_rate_per_sec {
                // Counted once per window: the call that first went over the rate.
                if count.saturating_sub(tokens) <= self.hub_rate_per_sec {
                    self.metrics.throttled(hub, "rate_limited");
                }
                return Err(GatewayError::RateLimited { hub: hub.to_owned(), rate_per_sec: self.hub_rate_per_sec });
            }
        }
        if self.shared.count("miss", hub, self.misses.window()).await >= self.misses.limit() {
            return Err(GatewayError::TooManyUnknownTokens { hub: hub.to_owned(), window: self.misses.window() });
        }
        Ok(())
    }

    /// A cached attestation (`bytes`, a `SignedAttestation`) that holds for `lookup` now,
    /// and when it was issued. Verified in full the first time this replica meets these
    /// bytes under `key`; after that only [`huren_pki::Verified::recheck`]: no signature.
    pub(crate) fn cached_verified(
        &self,
        trust: &TrustList,
        key: &str,
        bytes: &[u8],
        lookup: &Lookup,
        now: i64,
    ) -> Option<(Arc<pb::SignedAttestation>, i64)> {
        if let Some(entry) = self.shared.verified(key, bytes) {
            let issued_at = entry.verified.recheck(trust, &expected(lookup), now).ok()?.issued_at;
            return Some((entry.signed, issued_at));
        }
        let signed = pb::SignedAttestation::decode(bytes).ok()?;
        let verified = check(trust, &signed, lookup, now).ok()?;
        let issued_at = verified.attestation.issued_at;
        let ttl = cache_ttl(trust, &verified.attestation, now);
        Some((self.shared.remember_verified(key, bytes, signed, verified, ttl).signed, issued_at))
    }
}

#[tonic::async_trait]
impl pb::lookup_server::Lookup for LookupService {
    async fn lookup(&self, request: Request<pb::LookupRequest>) -> Result<Response<pb::LookupResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        // Bounded: a province of the trust list in force, else `unknown`.
        let province = crate::metrics::province_label(&self.0.trust(), &request.get_ref().province);
        let span = tracing::info_span!(
            "huren.gateway.lookup",
            from = tracing::field::Empty,
            province = %province,
            outcome = tracing::field::Empty
        );
        huren_runtime::tracectx::adopt(&span, &request);
        let mut from = None;
        let result = tracing::Instrument::instrument(self.lookup_inner(request, &mut from), span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        let from = from
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |p| crate::metrics::province_label(&self.0.trust(), p.as_str()));
        span.record("from", from.as_str());
        span.record("outcome", outcome);
        self.0.metrics.lookup(&from, &province, outcome, started.elapsed().as_secs_f64());
        Ok(Response::new(result?))
    }

    async fn lookup_batch(
        &self,
        request: Request<pb::LookupBatchRequest>,
    ) -> Result<Response<pb::LookupBatchResponse>, tonic::Status> {
        let span = tracing::info_span!(
            "huren.gateway.lookup_batch",
            from = tracing::field::Empty,
            tokens = request.get_ref().tokens.len(),
            outcome = tracing::field::Empty
        );
        huren_runtime::tracectx::adopt(&span, &request);
        let mut from = None;
        let result = tracing::Instrument::instrument(self.lookup_batch_inner(request, &mut from), span.clone()).await;
        span.record("from", from.as_ref().map_or("unknown", ProvinceCode::as_str));
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
        );
        Ok(Response::new(result?))
    }
}

/// `huren.v1.TrustRegistry`.
#[derive(Clone)]
pub(crate) struct TrustRegistryService(pub(crate) Arc<State>);

type TrustListStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SignedTrustList, tonic::Status>> + Send>>;

fn upload_refused(e: OfferError) -> GatewayError {
    match e {
        OfferError::Persist(e) => {
            tracing::error!(error = %e, "cannot persist uploaded trust list");
            GatewayError::Storage { what: "trust list not taken", cause: e.to_string() }
        }
        other => GatewayError::TrustListRefused(other),
    }
}

#[tonic::async_trait]
impl pb::trust_registry_server::TrustRegistry for TrustRegistryService {
    async fn get_trust_list(
        &self,
        request: Request<pb::GetTrustListRequest>,
    ) -> Result<Response<pb::SignedTrustList>, tonic::Status> {
        authorized(&request, Call::GetTrustList)?;
        Ok(Response::new(self.0.trust().signed().clone()))
    }

    type WatchStream = TrustListStream;

    async fn watch(
        &self,
        request: Request<pb::WatchTrustListRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        authorized(&request, Call::WatchTrustList)?;
        // The caller's chain, checked against every list as this gateway accepts it: the
        // list that revokes the caller's certificate (or its CA) is the last one it gets (a
        // revoked node learns of it, and refuses the certificates it revokes too); then the
        // stream ends with CERTIFICATE_REFUSED.
        let peer = tls::peer_info(&request);
        let last = request.into_inner().known_sequence;
        let mut updates = self.0.trust.subscribe();
        updates.mark_changed();
        let stream = futures::stream::unfold(Some((updates, last, None)), move |state| {
            let peer = peer.clone();
            async move {
                let (mut updates, mut last, revoked_by) = state?;
                let refused = |sequence: u64| {
                    tracing::info!(sequence, "trust list watch ended: the caller's certificate is revoked");
                    let refusal = CallerError::Unauthenticated(format!(
                        "client certificate refused: trust list {sequence} revokes it"
                    ));
                    Some((Err(GatewayError::from(refusal).into()), None))
                };
                if let Some(sequence) = revoked_by {
                    return refused(sequence);
                }
                loop {
                    updates.changed().await.ok()?;
                    let list = updates.borrow_and_update().clone();
                    let revoked =
                        peer.as_ref().is_none_or(|p| p.revoked() || p.serials().iter().any(|s| list.is_revoked(s)));
                    if list.sequence() > last {
                        last = list.sequence();
                        let next = revoked.then_some(last);
                        return Some((Ok(list.signed().clone()), Some((updates, last, next))));
                    }
                    if revoked {
                        return refused(list.sequence());
                    }
                }
            }
        });
        let mut stopping = self.0.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        Ok(Response::new(Box::pin(futures::StreamExt::take_until(stream, Box::pin(stopped)))))
    }

    async fn submit_receipt(
        &self,
        request: Request<pb::SignedDeletionReceipt>,
    ) -> Result<Response<pb::SubmitReceiptResponse>, tonic::Status> {
        let caller = authorized(&request, Call::SubmitReceipt)?;
        let Role::Node(province) = &caller.role else {
            let message = "only province nodes hand in deletion receipts".to_owned();
            return Err(GatewayError::from(CallerError::NotAuthorized { role: caller.role.kind(), message }).into());
        };
        let signed = request.into_inner();
        let receipt =
            self.0.trust().verify_receipt(&signed).map_err(|e| GatewayError::ReceiptInvalid(e.to_string()))?;
        if receipt.province != province.as_str() {
            return Err(GatewayError::ReceiptWrongProvince {
                province: province.clone(),
                receipt_province: receipt.province.clone(),
            }
            .into());
        }
        self.0.receipts.add(province.as_str(), signed).map_err(|e| {
            tracing::error!(error = %e, "cannot persist deletion receipt");
            GatewayError::Storage { what: "receipt not kept", cause: e.to_string() }
        })?;
        tracing::info!(%province, reason = %receipt.reason, "deletion receipt received");
        Ok(Response::new(pb::SubmitReceiptResponse {}))
    }

    async fn list_receipts(
        &self,
        request: Request<pb::ListReceiptsRequest>,
    ) -> Result<Response<pb::ListReceiptsResponse>, tonic::Status> {
        authorized(&request, Call::ListReceipts)?;
        Ok(Response::new(pb::ListReceiptsResponse { receipts: self.0.receipts.all() }))
    }

    async fn upload(
        &self,
        request: Request<pb::SignedTrustList>,
    ) -> Result<Response<pb::UploadTrustListResponse>, tonic::Status> {
        let caller = authorized(&request, Call::UploadTrustList)?;
        let signed = request.into_inner();
        let sequence = match self.0.trust.offer(signed.clone()) {
            Ok(sequence) => sequence,
            // The very list held (same sequence, same bytes): a coordinator re-uploading
            // to every replica, or retrying an upload whose answer it lost. Nothing to do;
            // a different list under the held sequence is still refused.
            Err(OfferError::Rollback { offered, held }) if offered == held && *self.0.trust().signed() == signed => {
                tracing::info!(%caller, sequence = held, "trust list re-uploaded: already held, nothing changed");
                return Ok(Response::new(pb::UploadTrustListResponse { sequence: held }));
            }
            Err(e) => return Err(upload_refused(e).into()),
        };
        self.0.shared.publish_trust_list(&signed).await;
        tracing::info!(%caller, sequence, "trust list uploaded");
        Ok(Response::new(pb::UploadTrustListResponse { sequence }))
    }
}
