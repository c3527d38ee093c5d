//! The gateway's gRPC services: `Lookup` (hubs) and `TrustRegistry` (everyone).
//! Domain errors become `tonic::Status` in one place, [`GatewayError`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_pki::attest::valid_purpose;
use huren_pki::qr::TOKEN_LEN;
use huren_pki::{unix_now, Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::live::{LiveTrust, OfferError};
use huren_runtime::tls::{self, ExpectedPeer, TlsIdentity};
use pb::attestation_client::AttestationClient;
use prost::Message as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Response};

use crate::authz::{authorize, Call};
use crate::breaker::Breakers;
use crate::capture::CaptureSink;
use crate::limits::MissPolicy;
use crate::metrics::Metrics;
use crate::receipts::ReceiptStore;
use crate::retry::{retryable, RetryBudget};
use crate::shared::{cache_key, Shared};
use tower::limit::ConcurrencyLimit;
use tower::retry::budget::{Budget as _, TpsBudget};

/// Failures of a gateway call, each mapped to one gRPC status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(tonic::Status),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The home province knows the token but holds no current status for it (it lapsed
    /// and must be re-assessed there). Not a miss: it does not count toward the hub's
    /// anti-enumeration throttle.
    #[error("{0}")]
    NoCurrentStatus(String),
    /// The home province answered with something the federation must not pass on.
    #[error("attestation from province {province} refused: {reason}")]
    PolicyViolation { province: ProvinceCode, reason: String, label: &'static str },
}

impl GatewayError {
    /// Outcome label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(_) => "unauthenticated",
            GatewayError::PermissionDenied(_) => "permission_denied",
            GatewayError::InvalidArgument(_) => "invalid_argument",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::DeadlineExceeded(_) => "deadline_exceeded",
            GatewayError::ResourceExhausted(_) => "throttled",
            GatewayError::NoCurrentStatus(_) => "no_current_status",
            GatewayError::PolicyViolation { .. } => "policy_violation",
        }
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::Unauthenticated(s) => s,
            GatewayError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            GatewayError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            GatewayError::NotFound(_) => tonic::Status::not_found(message),
            GatewayError::Unavailable(_) => tonic::Status::unavailable(message),
            GatewayError::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            GatewayError::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            GatewayError::NoCurrentStatus(_) => tonic::Status::failed_precondition(message),
            GatewayError::PolicyViolation { .. } => tonic::Status::failed_precondition(message),
        }
    }
}

/// A province's node endpoints, in the trust list's order, one client each.
struct Route {
    endpoints: Vec<String>,
    clients: Vec<AttestationClient<ConcurrencyLimit<Channel>>>,
    /// The province's retry budget (every lookup deposits, every retry withdraws).
    budget: TpsBudget,
    /// The endpoint that answered last: lookups go there first, so a dead endpoint costs
    /// one retry, not one per lookup.
    preferred: AtomicUsize,
}

impl Route {
    /// The endpoint index for attempt `attempt` (0 = first): the one that answered last,
    /// then the next listed, so a retry goes to another endpoint when there is one.
    fn endpoint(&self, attempt: usize) -> usize {
        (self.preferred.load(Ordering::Relaxed) + attempt) % self.clients.len()
    }
}

/// Attempts per lookup at most: the first, and one retry after a failure a retry can cure.
const ATTEMPTS: usize = 2;

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
    misses: MissPolicy,
    hub_rate_per_sec: u64,
    node_concurrency: usize,
    retry_budget: RetryBudget,
    cache: bool,
    cache_fresh_seconds: i64,
    pub shared: Arc<Shared>,
    pub breakers: Arc<Breakers>,
    pub metrics: Metrics,
    capture: Option<Arc<dyn CaptureSink>>,
    pub receipts: ReceiptStore,
    clock: huren_runtime::clock::Clock,
    pub sunset_purged: tokio::sync::watch::Sender<bool>,
}

impl State {
    pub fn new(
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
            breakers: Arc::new(Breakers::new(settings.breaker)),
            metrics,
            capture: settings.capture.clone(),
            receipts,
            clock: settings.clock.clone(),
            sunset_purged: tokio::sync::watch::channel(false).0,
        }
    }

    fn capture(&self, rpc: &str, direction: &str, message: &impl prost::Message) {
        if let Some(sink) = &self.capture {
            sink.record(rpc, direction, &message.encode_to_vec());
        }
    }

    pub fn trust(&self) -> Arc<TrustList> {
        self.trust.current()
    }

    pub fn clock_now(&self) -> i64 {
        self.clock.now()
    }

    /// The deadline for a call to `code`'s node: its override, else the default.
    fn node_timeout_for(&self, code: &ProvinceCode) -> Duration {
        self.province_timeouts.get(code.as_str()).copied().unwrap_or(self.node_timeout)
    }

    /// The client for a province's node under the trust list in force.
    fn route(&self, trust: &TrustList, code: &ProvinceCode) -> Result<Arc<Route>, GatewayError> {
        let entry = trust
            .province(code)
            .ok_or_else(|| GatewayError::NotFound(format!("province {code} is not in the trust list")))?;
        if entry.endpoints.is_empty() {
            return Err(GatewayError::Unavailable(format!("province {code} lists no node endpoint")));
        }
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.sequence != trust.sequence() {
            *routes = Routes { sequence: trust.sequence(), by_province: HashMap::new() };
        }
        if let Some(route) = routes.by_province.get(code).filter(|r| r.endpoints == entry.endpoints) {
            return Ok(route.clone());
        }
        let expected = ExpectedPeer::Exactly(Identity::new(trust.trust_domain(), Role::Node(code.clone())));
        let config = tls::client_config(&self.tls, expected, self.trust.revocations())
            .map_err(|e| GatewayError::Unavailable(format!("cannot build TLS client for province {code}: {e}")))?;
        let mut clients = Vec::with_capacity(entry.endpoints.len());
        for endpoint in &entry.endpoints {
            let channel = tls::channel(endpoint, config.clone(), self.connect_timeout)
                .map_err(|e| GatewayError::Unavailable(format!("province {code}: {e}")))?;
            // Bounded in-flight calls per endpoint: a slow province queues its own lookups only.
            clients.push(AttestationClient::new(ConcurrencyLimit::new(channel, self.node_concurrency)));
        }
        let route = Arc::new(Route {
            endpoints: entry.endpoints.clone(),
            clients,
            budget: self.retry_budget.start(),
            preferred: AtomicUsize::new(0),
        });
        routes.by_province.insert(code.clone(), route.clone());
        Ok(route)
    }
}

fn authorized<T>(request: &Request<T>, call: Call) -> Result<Identity, GatewayError> {
    let caller = tls::peer(request).map_err(GatewayError::Unauthenticated)?;
    authorize(call, &caller).map_err(GatewayError::PermissionDenied)?;
    Ok(caller)
}

/// Maps a node's answer to what the hub sees.
fn node_failure(code: &ProvinceCode, status: tonic::Status) -> GatewayError {
    match status.code() {
        Code::NotFound => GatewayError::NotFound(format!("token is not known to province {code} or has expired")),
        // The node's only FAILED_PRECONDITION on Attest: a lapsed status with no exit rule.
        // The gateway words it itself, so nothing a node writes reaches the hub here.
        Code::FailedPrecondition => GatewayError::NoCurrentStatus(format!(
            "province {code} holds no current status for this token (it lapsed); the province must re-assess \
             the traveller; retrying will not help"
        )),
        // The gateway checked the hub's input before asking, so this is a fault between the
        // gateway and the node. The node's own words are not passed on (a node must not be
        // able to send a hub anything but a signed minimal attestation).
        Code::InvalidArgument => GatewayError::Unavailable(format!(
            "province {code} node refused the gateway's request as malformed (INVALID_ARGUMENT); \
             the federation operators are alerted by the logs; retrying will not help"
        )),
        Code::DeadlineExceeded | Code::Cancelled => GatewayError::DeadlineExceeded(format!(
            "province {code} node did not answer in time; retrying is safe (a lookup changes nothing)"
        )),
        _ => match transport_cause(&status) {
            // Our own client's words (refused connection, TLS alert, revoked certificate).
            Some(cause) => GatewayError::Unavailable(format!(
                "province {code} node unreachable: {cause}; retrying is safe (a lookup changes nothing)"
            )),
            None => GatewayError::Unavailable(format!(
                "province {code} node answered {:?}; retrying is safe (a lookup changes nothing)",
                status.code()
            )),
        },
    }
}

/// The cause of a failure of the gateway's own connection to a node, if that is what
/// `status` is (its source chain holds a transport error); `None` for a node's answer.
fn transport_cause(status: &tonic::Status) -> Option<String> {
    let mut source = std::error::Error::source(status);
    let mut transport = false;
    let mut innermost = None;
    while let Some(e) = source {
        transport |= e.downcast_ref::<tonic::transport::Error>().is_some();
        innermost = Some(e.to_string());
        source = e.source();
    }
    transport.then(|| innermost.unwrap_or_else(|| "transport error".to_owned()))
}

/// `huren.v1.Lookup`.
#[derive(Clone)]
pub struct LookupService(pub(crate) Arc<State>);

fn hub_id(caller: &Identity) -> &str {
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
        let code: ProvinceCode = req.province.parse().map_err(|e| GatewayError::InvalidArgument(format!("{e}")))?;
        if req.token.len() != TOKEN_LEN {
            return Err(GatewayError::InvalidArgument(format!(
                "token must be {TOKEN_LEN} bytes, got {}",
                req.token.len()
            )));
        }
        if !valid_purpose(&req.purpose) {
            return Err(GatewayError::InvalidArgument(
                "purpose must be dotted lowercase words, e.g. transit.highway".into(),
            ));
        }
        if let Some(sunset) = trust.sunset_in_force(state.clock.now()) {
            return Err(GatewayError::Unavailable(format!(
                "federation sunset since {}: {}; lookups are no longer routed",
                sunset.effective_at, sunset.reason
            )));
        }
        // Purpose binding: the hub's registration says which purposes it may declare.
        match trust.hub_purposes(hub) {
            None => {
                return Err(GatewayError::PermissionDenied(format!("hub {hub} is not registered in the trust list")))
            }
            Some(purposes) if !purposes.iter().any(|p| p == &req.purpose) => {
                return Err(GatewayError::PermissionDenied(format!(
                    "hub {hub} is not registered for purpose {}; registered: {}",
                    req.purpose,
                    purposes.join(", ")
                )))
            }
            Some(_) => {}
        }
        if state.hub_rate_per_sec > 0
            && state.shared.incr("rate", hub, std::time::Duration::from_secs(1)).await > state.hub_rate_per_sec
        {
            return Err(GatewayError::ResourceExhausted(format!(
                "hub {hub} exceeds its request rate of {}/s; retry later",
                state.hub_rate_per_sec
            )));
        }
        if state.shared.count("miss", hub, state.misses.window()).await >= state.misses.limit() {
            return Err(GatewayError::ResourceExhausted(format!(
                "hub {hub} is throttled: too many lookups of unknown tokens; retry later"
            )));
        }
        let now = unix_now();
        let key = cache_key(state.shared.prefix(), code.as_str(), &req.purpose, &req.token);
        // A cached attestation still valid now (re-verified on every use: a key revoked
        // since it was cached fails here), and whether it is fresh enough to serve without
        // asking the node.
        let mut cached = None;
        if state.cache {
            if let Some(bytes) = state.shared.cache_get(&key).await {
                cached = pb::SignedAttestation::decode(bytes.as_slice()).ok().and_then(|signed| {
                    check(&trust, &signed, &code, &req, now).ok().map(|attestation| (signed, attestation.issued_at))
                });
            }
            if let Some((signed, issued_at)) = &cached {
                if now.saturating_sub(*issued_at) < state.cache_fresh_seconds {
                    state.metrics.cache("hit");
                    return Ok(self.answer(signed.clone()));
                }
            }
        }
        match self.ask_node(&trust, &code, &req, hub, &key, now).await {
            Ok(signed) => {
                if state.cache {
                    state.metrics.cache(if cached.is_some() { "revalidated" } else { "miss" });
                }
                Ok(self.answer(signed))
            }
            // Stale-if-error: the province cannot answer now, and what it signed earlier is
            // still valid and within the retention cap (the cache holds nothing longer).
            Err(e @ (GatewayError::Unavailable(_) | GatewayError::DeadlineExceeded(_))) => match cached {
                Some((signed, _)) => {
                    state.metrics.cache("stale");
                    // Per lookup, so debug: during an outage the `stale` cache metric is the signal.
                    tracing::debug!(province = %code, outcome = e.outcome(), "province failing: served a cached attestation still valid");
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
        trust: &TrustList,
        code: &ProvinceCode,
        req: &pb::LookupRequest,
        hub: &str,
        key: &str,
        now: i64,
    ) -> Result<pb::SignedAttestation, GatewayError> {
        let state = &self.0;
        if let Err(wait) = state.breakers.allow(code.as_str(), std::time::Instant::now()) {
            return Err(GatewayError::Unavailable(format!(
                "province {code} is failing: circuit open for another {} ms; retry later",
                wait.as_millis()
            )));
        }
        let route = match state.route(trust, code) {
            Ok(route) => route,
            Err(e) => {
                state.breakers.record(code.as_str(), true, std::time::Instant::now());
                return Err(e);
            }
        };
        let attest = pb::AttestRequest { token: req.token.clone(), purpose: req.purpose.clone() };
        // One deadline for the lookup, retry included; it covers the wait for a slot under
        // the province's concurrency limit too.
        let deadline = tokio::time::Instant::now() + state.node_timeout_for(code);
        let mut attempt = 0;
        let outcome = loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break None;
            }
            state.capture("Attest", "gateway->node", &attest);
            let mut call = Request::new(attest.clone());
            call.set_timeout(remaining);
            huren_runtime::tracectx::inject(&mut call);
            let endpoint = route.endpoint(attempt);
            let mut client = route.clients[endpoint].clone();
            if attempt == 0 {
                route.budget.deposit();
            }
            match tokio::time::timeout_at(deadline, client.attest(call)).await {
                Ok(Err(status))
                    if attempt + 1 < ATTEMPTS
                        && retryable(status.code(), transport_cause(&status).is_some())
                        && route.budget.withdraw() =>
                {
                    attempt += 1;
                    state.metrics.retry(code.as_str());
                    // Per lookup, so debug: `huren_gateway_node_retries_total` is the signal.
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
                    break Some(result);
                }
                Err(_) => break None,
            }
        };
        // A node that answers (even "not found") is healthy; silence and transport errors are not.
        let healthy = matches!(&outcome, Some(Ok(_)))
            || matches!(&outcome, Some(Err(s)) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument | Code::PermissionDenied));
        state.breakers.record(code.as_str(), healthy, std::time::Instant::now());
        let answer = match outcome {
            Some(Ok(answer)) => answer.into_inner(),
            Some(Err(status)) => {
                let failure = node_failure(code, status);
                if matches!(failure, GatewayError::NotFound(_))
                    && state.shared.incr("miss", hub, state.misses.window()).await == state.misses.limit()
                {
                    tracing::warn!(%hub, "hub throttled after too many unknown-token lookups");
                    state.metrics.throttled(hub);
                }
                return Err(failure);
            }
            None => {
                return Err(GatewayError::DeadlineExceeded(format!(
                    "province {code} node did not answer in time; retrying is safe (a lookup changes nothing)"
                )))
            }
        };
        state.capture("Attest", "node->gateway", &answer);
        let violation = |reason: String, label: &'static str| {
            state.metrics.violation(code.as_str(), label);
            // No token, subject or payload content here: province and reason only.
            tracing::warn!(province = %code, reason = label, "policy violation: attestation refused");
            GatewayError::PolicyViolation { province: code.clone(), reason, label }
        };
        let signed =
            answer.attestation.ok_or_else(|| violation("node answered without an attestation".into(), "empty"))?;
        let attestation = check(trust, &signed, code, req, now).map_err(|(reason, label)| violation(reason, label))?;
        if state.cache {
            // Never longer than the attestation itself, nor than the retention policy allows.
            let ttl = (attestation.expires_at - now).min(trust.retention().cache_max).max(0);
            state.shared.cache_put(key, &signed.encode_to_vec(), std::time::Duration::from_secs(ttl as u64)).await;
        }
        Ok(signed)
    }
}

/// Everything the gateway checks on an attestation before passing it on: the one verifier,
/// bound to the province routed to, the hub's token and the purpose asked.
fn check(
    trust: &TrustList,
    signed: &pb::SignedAttestation,
    code: &ProvinceCode,
    req: &pb::LookupRequest,
    now: i64,
) -> Result<huren_pki::attest::Attestation, (String, &'static str)> {
    let expected = huren_pki::Expected::lookup(code, &req.token, &req.purpose);
    huren_pki::verify_attestation(trust, signed, &expected, now).map_err(|e| (e.to_string(), e.reason()))
}

#[tonic::async_trait]
impl pb::lookup_server::Lookup for LookupService {
    async fn lookup(&self, request: Request<pb::LookupRequest>) -> Result<Response<pb::LookupResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let province = request.get_ref().province.clone();
        let province = if province.parse::<ProvinceCode>().is_ok() { province } else { "invalid".into() };
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
        let from = from.as_ref().map_or("unknown", ProvinceCode::as_str);
        span.record("from", from);
        span.record("outcome", outcome);
        self.0.metrics.lookup(from, &province, outcome, started.elapsed().as_secs_f64());
        Ok(Response::new(result?))
    }
}

/// `huren.v1.TrustRegistry`.
#[derive(Clone)]
pub struct TrustRegistryService(pub(crate) Arc<State>);

type TrustListStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SignedTrustList, tonic::Status>> + Send>>;

fn upload_refused(e: OfferError) -> tonic::Status {
    match e {
        OfferError::Invalid(e) => tonic::Status::invalid_argument(format!("trust list refused: {e}")),
        OfferError::Rollback { .. } | OfferError::TrustDomain { .. } => {
            tonic::Status::failed_precondition(format!("trust list refused: {e}"))
        }
        OfferError::Persist(e) => {
            tracing::error!(error = %e, "cannot persist uploaded trust list");
            tonic::Status::unavailable(format!("trust list not taken (gateway storage failure); retry is safe: {e}"))
        }
        other => tonic::Status::invalid_argument(format!("trust list refused: {other}")),
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
        let mut last = request.into_inner().known_sequence;
        let updates = tokio_stream::wrappers::WatchStream::new(self.0.trust.subscribe());
        let stream = tokio_stream::StreamExt::filter_map(updates, move |list| {
            (list.sequence() > last).then(|| {
                last = list.sequence();
                Ok(list.signed().clone())
            })
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
            return Err(tonic::Status::permission_denied("only province nodes hand in deletion receipts"));
        };
        let signed = request.into_inner();
        let receipt = self
            .0
            .trust()
            .verify_receipt(&signed)
            .map_err(|e| tonic::Status::invalid_argument(format!("deletion receipt refused: {e}")))?;
        if receipt.province != province.as_str() {
            return Err(tonic::Status::permission_denied(format!(
                "node of province {province} cannot hand in a receipt for province {}",
                receipt.province
            )));
        }
        self.0.receipts.add(province.as_str(), signed).map_err(|e| {
            tracing::error!(error = %e, "cannot persist deletion receipt");
            tonic::Status::unavailable(format!("receipt not kept (gateway storage failure); retry is safe: {e}"))
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
        let sequence = self.0.trust.offer(signed.clone()).map_err(upload_refused)?;
        self.0.shared.publish_trust_list(&signed).await;
        tracing::info!(%caller, sequence, "trust list uploaded");
        Ok(Response::new(pb::UploadTrustListResponse { sequence }))
    }
}
