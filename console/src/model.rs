//! What the console shows, as plain data: filled in by [`crate::collect`], rendered by
//! [`crate::render`] (HTML) and by `huren pki status` / `pki list` (text, JSON). Nothing
//! here can hold a token, a subject reference or a payload: only province codes, key ids,
//! serials, counts, labels and times.

use serde::Serialize;

/// Seconds in a day, for "days left".
pub const DAY: i64 = 86_400;

/// Days left until `not_after` at `now`, rounded down (negative once past).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(DAY)
}

/// The whole picture at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was collected, Unix seconds.
    pub generated_at: i64,
    /// The gateway asked, and what it said.
    pub gateway: GatewayView,
    /// The trust list the picture is checked against (the gateway's, or the PKI
    /// directory's when the gateway cannot be reached); `None` when neither is at hand.
    pub trust: Option<TrustSummary>,
    /// One tile per province of the trust list.
    pub provinces: Vec<ProvinceView>,
    /// Attestation keys, soonest expiry first.
    pub keys: Vec<KeyRow>,
    /// Certificates (province CAs; with a PKI directory also the root and issued leaves),
    /// soonest expiry first.
    pub certs: Vec<CertRow>,
    /// Lookups and policy violations from the gateway's metrics.
    pub traffic: Traffic,
    /// Receipts collected at a sunset (when the list orders one).
    pub sunset: Option<SunsetView>,
}

/// The gateway and the trust list it serves.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayView {
    /// `host:port` of its mTLS port.
    pub address: String,
    /// Sequence of the trust list it serves, when it answered.
    pub sequence: Option<u64>,
    /// Why it could not be asked, if so.
    pub error: Option<String>,
}

/// The trust list in a few fields.
#[derive(Debug, Clone, Serialize)]
pub struct TrustSummary {
    /// Its sequence.
    pub sequence: u64,
    /// When it was signed, Unix seconds.
    pub issued_at: i64,
    /// When a newer one is due, Unix seconds.
    pub next_update: i64,
    /// Past `next_update` (stale, still in force).
    pub stale: bool,
    /// Where it came from: `gateway` or `pki-dir`.
    pub source: String,
    /// Registered hubs.
    pub hubs: usize,
    /// Registered rules.
    pub rules: usize,
    /// Revoked serials.
    pub revoked: usize,
}

/// How a node answered the gRPC health check over mTLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Health {
    /// `SERVING`.
    Serving,
    /// It answered, but not `SERVING` (the status it gave).
    NotServing(String),
    /// No answer, or a refused handshake (why).
    Unreachable(String),
    /// The trust list gives it no endpoint.
    NoEndpoint,
}

impl Health {
    /// A short word for it.
    pub fn word(&self) -> &'static str {
        match self {
            Health::Serving => "serving",
            Health::NotServing(_) => "not serving",
            Health::Unreachable(_) => "unreachable",
            Health::NoEndpoint => "no endpoint",
        }
    }
}

/// A gateway circuit breaker's state (`huren_gateway_breaker_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    /// Calls go through.
    Closed,
    /// Failing fast.
    Open,
    /// One trial call allowed.
    HalfOpen,
}

impl Breaker {
    /// From the gauge's value (0 closed, 1 open, 2 half-open).
    pub fn from_gauge(v: f64) -> Option<Self> {
        match v as i64 {
            0 => Some(Breaker::Closed),
            1 => Some(Breaker::Open),
            2 => Some(Breaker::HalfOpen),
            _ => None,
        }
    }
    /// A short word for it.
    pub fn word(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::Open => "open",
            Breaker::HalfOpen => "half-open",
        }
    }
}

/// The tile colour of a province.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tile {
    /// Serving, holding the current list, breaker closed.
    Ok,
    /// Serving but behind on the trust list, or its breaker is not closed, or not known.
    Warn,
    /// Not serving or unreachable.
    Down,
}

/// One province: its tile.
#[derive(Debug, Clone, Serialize)]
pub struct ProvinceView {
    /// GB/T 2260 code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// The node endpoint checked.
    pub endpoint: Option<String>,
    /// The node's health.
    pub health: Health,
    /// Trust-list sequence the node holds (from its metrics, when the console knows its
    /// admin address).
    pub sequence_held: Option<u64>,
    /// The gateway's breaker for it.
    pub breaker: Option<Breaker>,
    /// The tile's colour.
    pub tile: Tile,
}

impl ProvinceView {
    /// The colour from health, sequence held against the list's, and breaker.
    pub fn tile_for(health: &Health, held: Option<u64>, current: Option<u64>, breaker: Option<Breaker>) -> Tile {
        match health {
            Health::Serving => {
                let behind = matches!((held, current), (Some(h), Some(c)) if h < c);
                if behind || matches!(breaker, Some(Breaker::Open | Breaker::HalfOpen)) {
                    Tile::Warn
                } else {
                    Tile::Ok
                }
            }
            _ => Tile::Down,
        }
    }
}

/// An attestation key and its expiry.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    /// Its province.
    pub province: String,
    /// Key id, hex.
    pub kid: String,
    /// published, active, retired, revoked.
    pub status: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whole days left.
    pub days_left: i64,
}

/// A certificate and its expiry.
#[derive(Debug, Clone, Serialize)]
pub struct CertRow {
    /// What it is: `root`, `province-ca 340000`, `hub-sd-jinan` (the issued folder's name).
    pub what: String,
    /// Serial, canonical hex.
    pub serial: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whole days left.
    pub days_left: i64,
    /// Revoked by the trust list.
    pub revoked: bool,
}

/// Counts of lookups by province pair and outcome, and of violations by province and reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    /// Seconds the counts cover (up to an hour; less while the console has not watched the
    /// gateway that long).
    pub window_seconds: i64,
    /// `huren_gateway_lookups_total` increases.
    pub lookups: Vec<LookupCount>,
    /// `huren_gateway_policy_violations_total` increases.
    pub violations: Vec<ViolationCount>,
    /// Why the metrics could not be read, if so (or that no metrics address was given).
    pub error: Option<String>,
}

/// Lookups from one province to another with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupCount {
    /// Where the hub checks travellers (`unknown` when not registered).
    pub from: String,
    /// The province asked.
    pub province: String,
    /// The outcome label.
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// Policy violations of one province for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationCount {
    /// The province whose node answered.
    pub province: String,
    /// The `policyReason` label.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// The sunset and the receipts handed in.
#[derive(Debug, Clone, Serialize)]
pub struct SunsetView {
    /// When the federation ends (or ended), Unix seconds.
    pub effective_at: i64,
    /// Already in force.
    pub in_force: bool,
    /// The coordinator's reason.
    pub reason: String,
    /// One row per province of the list.
    pub receipts: Vec<ReceiptRow>,
    /// Why the receipts could not be listed, if so.
    pub error: Option<String>,
}

/// A province's sunset receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRow {
    /// The province.
    pub province: String,
    /// What the gateway holds for it.
    pub state: ReceiptState,
}

/// What was collected for one province.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiptState {
    /// A sunset receipt that verifies.
    Verified {
        /// When the node purged, Unix seconds.
        time: i64,
        /// Records deleted, all kinds.
        deleted: u64,
    },
    /// A receipt that does not verify (why).
    Invalid {
        /// The verifier's reason.
        error: String,
    },
    /// None handed in yet.
    Missing,
}

/// Non-green changes per rule and authority of one province (the `audit stats` view).
#[derive(Debug, Clone, Serialize)]
pub struct ProvinceStats {
    /// The province.
    pub province: String,
    /// Its verified log's statistics, or why they could not be had.
    pub stats: Result<huren_client::Stats, String>,
    /// Log size the statistics were computed over.
    pub tree_size: u64,
}

/// Hubs ranked per province by the travellers of that province they checked (each node's
/// `Transparency/GetHubAggregates`, the `huren audit hubs` view). Aggregates carry hub ids,
/// hours, purposes and counts only: no subject identity exists in them to show.
#[derive(Debug, Clone, Serialize)]
pub struct HubsView {
    /// When it was collected, Unix seconds.
    pub generated_at: i64,
    /// Start of the window ranked, Unix seconds (the window ends at `generated_at`).
    pub since: i64,
    /// A hub is flagged above its baseline when its busiest hour exceeds this many times
    /// its median hour...
    pub factor: f64,
    /// ... with at least this many distinct subjects.
    pub min_subjects: u64,
    /// Sequence of the trust list whose registrations the hubs are checked against.
    pub sequence: Option<u64>,
    /// Why nothing could be collected (no trust list), if so.
    pub error: Option<String>,
    /// One entry per province of the trust list, by code.
    pub provinces: Vec<ProvinceHubs>,
}

/// The hubs that checked one province's travellers, or why they are not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvinceHubs {
    /// The province whose node was asked.
    pub province: String,
    /// Its name.
    pub name: String,
    /// What the node said.
    pub state: HubsState,
}

impl ProvinceHubs {
    /// Flagged hubs and all hubs ranked, when the node answered.
    pub fn flagged(&self) -> Option<(usize, usize)> {
        match &self.state {
            HubsState::Ranked { hubs, .. } => Some((hubs.iter().filter(|h| !h.flags.is_empty()).count(), hubs.len())),
            _ => None,
        }
    }
}

/// One province's ranking, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HubsState {
    /// The node answered: its hubs, most distinct subjects first, with their flags.
    Ranked {
        /// The ranking ([`huren_client::rank_hubs`]).
        hubs: Vec<huren_client::HubRank>,
        /// Checks the node could not record in disclosure logs (should be 0).
        disclosures_dropped: u64,
    },
    /// The node was not asked: the console's identity may not read aggregates.
    NotAsked {
        /// Why, in words.
        reason: String,
    },
    /// The node was asked and did not answer, or refused.
    Failed {
        /// What went wrong.
        error: String,
    },
}
