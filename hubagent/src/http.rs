//! The running agent: start-up (identity, trust list, followers), the check itself and
//! the HTTP routes with their metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use huren_client::{verify_offline, Gateways, HubError, VerifiedStatus};
use huren_pki::qr::Scanned;
use huren_pki::{unix_now, verify_attestation, Expected, Role, TrustList};
use huren_proto::pb;
use huren_runtime::live::{self, LiveTrust, TaskGuard};
use huren_runtime::tls::{Revocations, TlsIdentity};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tokio::net::TcpListener;

use crate::check::{self, Checked, Outcome, Verified};
use crate::config::AgentConfig;

/// Largest request body accepted; a QR is a few hundred characters.
const MAX_BODY: usize = 8 * 1024;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The hub's certificate, key or root could not be loaded, or is not a hub identity.
    #[error("hub identity: {0}")]
    Identity(String),
    /// Neither the trust list cache nor any gateway gave a list that verifies.
    #[error("no trust list: {0}")]
    TrustList(String),
    /// The gateway endpoints are unusable.
    #[error(transparent)]
    Gateways(#[from] HubError),
    /// The HTTP server failed.
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
}

struct Metrics {
    registry: Registry,
    checks: IntCounterVec,
    seconds: HistogramVec,
    sequence: IntGauge,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let checks = IntCounterVec::new(
            Opts::new("huren_hub_agent_checks_total", "Checks answered, by where they were checked and outcome."),
            &["checked", "outcome"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let seconds = HistogramVec::new(
            HistogramOpts::new("huren_hub_agent_check_seconds", "Time to answer a check, by where it was checked.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["checked"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let sequence = IntGauge::new("huren_hub_agent_trust_list_sequence", "Sequence of the trust list held.")
            .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for m in [
            Box::new(checks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(seconds.clone()),
            Box::new(sequence.clone()),
        ] {
            let _ = registry.register(m);
        }
        Self { registry, checks, seconds, sequence }
    }
}

struct Inner {
    gateways: Gateways,
    live: LiveTrust,
    config: AgentConfig,
    metrics: Metrics,
    _follow: Vec<TaskGuard>,
}

/// A started agent: holds the hub's identity, follows the trust list from every gateway,
/// and answers checks. Cheap to clone.
#[derive(Clone)]
pub struct Agent(Arc<Inner>);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("gateways", &self.0.gateways).finish_non_exhaustive()
    }
}

impl Agent {
    /// Loads the hub identity, starts from the trust list cache (or, without a usable
    /// one, from the first gateway that serves a list that verifies) and follows every
    /// gateway's `Watch`. Must run inside a tokio runtime.
    pub async fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let identity = TlsIdentity::load(&config.cert, &config.key, &config.ca, &config.trust_domain)
            .map_err(|e| AgentError::Identity(e.to_string()))?;
        if !matches!(identity.identity.role, Role::Hub(_)) {
            return Err(AgentError::Identity(format!("{} is not a hub identity", identity.identity)));
        }
        let root = identity.root.to_vec();
        let cache = config.trust_list_cache.clone();
        let live = match TrustList::load(&cache, &root) {
            Ok(list) => LiveTrust::new(list, root, Some(cache)),
            Err(cache_error) => {
                let bootstrap = Gateways::connect(config.gateways(), &identity, Revocations::default())?;
                let signed = bootstrap.get_trust_list().await.map_err(|e| {
                    AgentError::TrustList(format!("cache {} unusable ({cache_error}), and {e}", cache.display()))
                })?;
                let list = TrustList::verify(signed, &root).map_err(|e| AgentError::TrustList(e.to_string()))?;
                LiveTrust::new(list, root, Some(cache))
            }
        }
        .map_err(|e| AgentError::TrustList(e.to_string()))?;
        let gateways = Gateways::connect(config.gateways(), &identity, live.revocations())?;
        let follow = live::follow_all(live.clone(), config.gateways(), &identity)
            .map_err(|e| AgentError::Gateways(HubError::from(e)))?;
        tracing::info!(
            hub = %identity.identity,
            gateways = config.gateways().len(),
            sequence = live.current().sequence(),
            "hub agent started"
        );
        Ok(Self(Arc::new(Inner { gateways, live, config, metrics: Metrics::new(), _follow: follow })))
    }

    /// The live trust list the agent checks against.
    pub fn trust(&self) -> &LiveTrust {
        &self.0.live
    }

    /// Checks a request body (`POST /v1/check`): the HTTP status code and JSON answer.
    pub async fn check(&self, body: &[u8]) -> (u16, String) {
        let started = Instant::now();
        let (outcome, purpose) = match check::parse(body, &self.0.config.default_purpose) {
            Ok((scan, purpose)) => (self.check_scan(&scan, &purpose).await, Some(purpose)),
            Err(outcome) => (outcome, None),
        };
        let elapsed = started.elapsed();
        let checked = outcome.checked().map(Checked::as_str).unwrap_or("none");
        let m = &self.0.metrics;
        m.checks.with_label_values(&[checked, outcome.label()]).inc();
        m.seconds.with_label_values(&[checked]).observe(elapsed.as_secs_f64());
        // What a check logs: never the scan or the token.
        let (status, province) = match &outcome {
            Outcome::Verified(v) => (v.status(), v.province()),
            _ => ("", ""),
        };
        let reason = match &outcome {
            Outcome::BadRequest { reason, .. } => *reason,
            Outcome::Refused { reason, .. } => reason.as_deref().unwrap_or(""),
            _ => "",
        };
        tracing::info!(
            checked,
            outcome = outcome.label(),
            status,
            province,
            reason,
            purpose = purpose.as_deref().unwrap_or(""),
            micros = elapsed.as_micros() as u64,
            "check"
        );
        outcome.response()
    }

    async fn check_scan(&self, scan: &str, purpose: &str) -> Outcome {
        let scanned = match Scanned::parse(scan) {
            Ok(s) => s,
            Err(e) => return Outcome::BadRequest { reason: "INVALID_SCAN", message: e.to_string() },
        };
        let request = pb::LookupRequest {
            province: scanned.province().to_string(),
            token: scanned.token().to_vec(),
            purpose: purpose.to_owned(),
        };
        let online = tokio::time::timeout(self.0.config.online_timeout(), self.0.gateways.lookup(request)).await;
        let why_offline = match online {
            Ok(Ok(response)) => return self.verify_online(&scanned, purpose, response),
            Ok(Err(e)) if check::falls_back(&e) => match e.reason() {
                Some(reason) => format!("the gateway could not reach the home province ({reason})"),
                None => "no gateway answered".to_owned(),
            },
            Ok(Err(e)) => return Outcome::Refused { reason: e.reason().map(str::to_owned), message: e.to_string() },
            Err(_) => format!("no gateway answered within {} ms", self.0.config.online_timeout_ms),
        };
        if !matches!(scanned, Scanned::Qr { .. }) {
            return Outcome::Unavailable {
                message: format!(
                    "{why_offline}, and a typed <province>:<token> carries no attestation to check offline: scan the QR"
                ),
            };
        }
        let trust = self.0.live.current();
        match verify_offline(&trust, scan, unix_now()) {
            Ok(status) => Outcome::Verified(Box::new(Verified::new(Checked::Offline, status, Some(why_offline)))),
            Err(e) => Outcome::NotVerified { checked: Checked::Offline, message: e.to_string() },
        }
    }

    fn verify_online(&self, scanned: &Scanned, purpose: &str, response: pb::LookupResponse) -> Outcome {
        let Some(signed) = response.attestation else {
            return Outcome::NotVerified { checked: Checked::Online, message: HubError::Empty.to_string() };
        };
        let trust = self.0.live.current();
        let expected = Expected::lookup(scanned.province(), scanned.token(), purpose);
        match verify_attestation(&trust, &signed, &expected, unix_now()) {
            Ok(a) => {
                Outcome::Verified(Box::new(Verified::new(Checked::Online, VerifiedStatus::describe(&a, &trust), None)))
            }
            Err(e) => Outcome::NotVerified { checked: Checked::Online, message: HubError::from(e).to_string() },
        }
    }

    /// `GET /healthz`: the agent is up and holds a trust list (stale or not: it keeps
    /// checking on the last good copy).
    pub fn health(&self) -> String {
        let trust = self.0.live.current();
        let stale = trust.raw().next_update < unix_now();
        serde_json::json!({
            "status": "ok",
            "trust_list_sequence": trust.sequence(),
            "trust_list_stale": stale,
            "gateways": self.0.config.gateways().len(),
        })
        .to_string()
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> String {
        let m = &self.0.metrics;
        m.sequence.set(i64::try_from(self.0.live.current().sequence()).unwrap_or(i64::MAX));
        prometheus::TextEncoder::new().encode_to_string(&m.registry.gather()).unwrap_or_default()
    }

    /// Serves the HTTP API on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let app = axum::Router::new()
            .route("/v1/check", post(check_route))
            .route("/healthz", get(|State(agent): State<Agent>| async move { json(200, agent.health()) }))
            .route(
                "/metrics",
                get(|State(agent): State<Agent>| async move {
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], agent.metrics()).into_response()
                }),
            )
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self);
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}

async fn check_route(State(agent): State<Agent>, body: Bytes) -> Response {
    let (code, body) = agent.check(&body).await;
    json(code, body)
}

fn json(code: u16, body: String) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
