//! Reading the gateway's and the nodes' Prometheus endpoints (`/metrics` on their admin
//! port) and turning counters into counts over the last hour.
//!
//! Parsing is tolerant: any sample type, names with or without `_total`, extra labels
//! (scope, build, buckets) summed away, unknown families ignored — metric names may gain
//! or lose labels without breaking the console. [`Sampler`] keeps timestamped samples of
//! the counters it needs for an hour and answers with increases (a counter that went
//! down was reset: its current value is the increase).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use http_body_util::BodyExt as _;

use crate::model::{Breaker, LookupCount, Traffic, ViolationCount};

/// The window lookups and violations are counted over.
pub const WINDOW_SECONDS: i64 = 3600;

/// Why an endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Not `http://host:port/path` or `host:port`.
    #[error("metrics address {0:?} is not http://host:port[/path]")]
    Address(String),
    /// Connecting, sending or reading failed.
    #[error("{address}: {message}")]
    Fetch {
        /// The address.
        address: String,
        /// What failed.
        message: String,
    },
}

/// One scrape: (family, labels) → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses Prometheus text exposition format.
    pub fn parse(text: &str) -> Self {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let Ok(parsed) = prometheus_parse::Scrape::parse(lines) else {
            return Self::default();
        };
        let samples = parsed
            .samples
            .into_iter()
            .filter_map(|s| {
                let (prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value)) = s.value
                else {
                    return None;
                };
                let labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                Some((s.metric, labels, value))
            })
            .collect();
        Self { samples }
    }

    /// Sums of family `name` (with or without `_total`) grouped by the values of `by`;
    /// a missing label groups as `unknown`.
    pub fn sum_by(&self, name: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let mut out = BTreeMap::new();
        for (metric, labels, value) in &self.samples {
            if metric.strip_suffix("_total").unwrap_or(metric) != base {
                continue;
            }
            let key = by.iter().map(|l| labels.get(*l).cloned().unwrap_or_else(|| "unknown".into())).collect();
            *out.entry(key).or_insert(0.0) += value;
        }
        out
    }

    /// The first value of family `name` (e.g. a gauge without labels).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|(m, _, _)| m == name).map(|(_, _, v)| *v)
    }

    /// `huren_gateway_breaker_state` by province.
    pub fn breakers(&self) -> BTreeMap<String, Breaker> {
        self.sum_by("huren_gateway_breaker_state", &["province"])
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_iter().next()?, Breaker::from_gauge(v)?)))
            .collect()
    }
}

/// The counters the traffic view needs, at one time.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counters {
    lookups: BTreeMap<Vec<String>, f64>,
    violations: BTreeMap<Vec<String>, f64>,
}

impl Counters {
    fn of(scrape: &Scrape) -> Self {
        Self {
            lookups: scrape.sum_by("huren_gateway_lookups_total", &["from", "province", "outcome"]),
            violations: scrape.sum_by("huren_gateway_policy_violations_total", &["province", "reason"]),
        }
    }
}

/// Timestamped counter samples of one gateway, for an hour.
#[derive(Debug, Default)]
pub struct Sampler {
    samples: VecDeque<(i64, Counters)>,
}

fn increase(new: &BTreeMap<Vec<String>, f64>, old: &BTreeMap<Vec<String>, f64>) -> Vec<(Vec<String>, u64)> {
    new.iter()
        .map(|(k, v)| {
            let before = old.get(k).copied().unwrap_or(0.0);
            let d = if *v >= before { v - before } else { *v };
            (k.clone(), d.round() as u64)
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

impl Sampler {
    /// Records a scrape taken at `now`; forgets samples older than the window.
    pub fn record(&mut self, now: i64, scrape: &Scrape) {
        self.samples.push_back((now, Counters::of(scrape)));
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|(t, _)| *t <= now - WINDOW_SECONDS) {
            self.samples.pop_front();
        }
    }

    /// Increases between the oldest sample within the window and the newest. With one
    /// sample only (a console that just started) there is no baseline yet: the counts
    /// are the counters themselves and the window is 0.
    pub fn traffic(&self) -> Traffic {
        let Some((t1, newest)) = self.samples.back() else {
            return Traffic::default();
        };
        let (t0, oldest) = match self.samples.iter().find(|(t, _)| *t >= t1 - WINDOW_SECONDS) {
            Some((t0, c)) if t0 < t1 => (*t0, c.clone()),
            _ => (*t1, Counters::default()),
        };
        let mut lookups: Vec<LookupCount> = increase(&newest.lookups, &oldest.lookups)
            .into_iter()
            .map(|(k, count)| LookupCount { from: k[0].clone(), province: k[1].clone(), outcome: k[2].clone(), count })
            .collect();
        lookups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.from, &a.province).cmp(&(&b.from, &b.province))));
        let mut violations: Vec<ViolationCount> = increase(&newest.violations, &oldest.violations)
            .into_iter()
            .map(|(k, count)| ViolationCount { province: k[0].clone(), reason: k[1].clone(), count })
            .collect();
        violations.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.province.cmp(&b.province)));
        Traffic { window_seconds: t1 - t0, lookups, violations, error: None }
    }
}

/// Fetches `address` (`http://host:port/path`, or `host:port` for `/metrics`) over plain
/// HTTP/1.1 — the admin port — within `timeout`.
pub async fn fetch(address: &str, timeout: Duration) -> Result<String, MetricsError> {
    let rest = address.strip_prefix("http://").unwrap_or(address);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if authority.is_empty() || address.starts_with("https://") {
        return Err(MetricsError::Address(address.to_owned()));
    }
    let fail = |message: String| MetricsError::Fetch { address: address.to_owned(), message };
    let get = async {
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = response.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, get).await.map_err(|_| fail("timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP huren_gateway_lookups_total Lookups\n\
# TYPE huren_gateway_lookups_total counter\n\
huren_gateway_lookups_total{from=\"370000\",outcome=\"ok\",province=\"340000\",otel_scope_name=\"huren-gateway\"} 5\n\
huren_gateway_lookups_total{from=\"370000\",outcome=\"ok\",province=\"340000\",otel_scope_name=\"other\"} 2\n\
huren_gateway_lookups_total{outcome=\"not_found\",province=\"440000\"} 1\n\
# TYPE huren_gateway_policy_violations_total counter\n\
huren_gateway_policy_violations_total{province=\"440000\",reason=\"bad_signature\"} 3\n\
# TYPE huren_gateway_breaker_state gauge\n\
huren_gateway_breaker_state{province=\"340000\"} 0\n\
huren_gateway_breaker_state{province=\"440000\"} 1\n\
# TYPE huren_trust_list_sequence gauge\n\
huren_trust_list_sequence 7\n";

    #[test]
    fn parses_tolerantly_and_sums_away_extra_labels() {
        let s = Scrape::parse(TEXT);
        let lookups = s.sum_by("huren_gateway_lookups_total", &["from", "province", "outcome"]);
        assert_eq!(lookups[&vec!["370000".to_owned(), "340000".into(), "ok".into()]], 7.0);
        assert_eq!(lookups[&vec!["unknown".to_owned(), "440000".into(), "not_found".into()]], 1.0);
        assert_eq!(s.value("huren_trust_list_sequence"), Some(7.0));
        let b = s.breakers();
        assert_eq!((b["340000"], b["440000"]), (Breaker::Closed, Breaker::Open));
        assert_eq!(Scrape::parse("not prometheus {{{").sum_by("x", &[]).len(), 0);
    }

    #[test]
    fn counts_are_increases_over_the_window_and_survive_resets() {
        let mut sampler = Sampler::default();
        sampler.record(1000, &Scrape::parse(TEXT));
        let first = sampler.traffic();
        assert_eq!(first.window_seconds, 0, "no baseline yet");
        assert_eq!(first.violations[0].count, 3);
        let later = TEXT.replace("} 5\n", "} 9\n").replace("\"bad_signature\"} 3", "\"bad_signature\"} 1");
        sampler.record(1600, &Scrape::parse(&later));
        let t = sampler.traffic();
        assert_eq!(t.window_seconds, 600);
        assert_eq!(t.lookups.len(), 1, "only the pair that grew: {:?}", t.lookups);
        assert_eq!((t.lookups[0].province.as_str(), t.lookups[0].count), ("340000", 4));
        assert_eq!(t.violations[0].count, 1, "a reset counter counts from 0");
        // Two hours on, the first sample has left the window.
        sampler.record(1600 + 2 * 3600, &Scrape::parse(&later));
        sampler.record(1700 + 2 * 3600, &Scrape::parse(&later));
        let t = sampler.traffic();
        assert!(t.window_seconds <= WINDOW_SECONDS && t.lookups.is_empty(), "{t:?}");
    }
}
