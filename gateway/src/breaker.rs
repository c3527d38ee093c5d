//! Per-province circuit breakers: one dead or slow province fails fast instead of
//! tying up every lookup for it until its deadline. Pure state with explicit time; each
//! change of state is passed to an optional observer (the gateway logs and counts it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before one trial call is let through (half-open).
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(5) }
    }
}

/// A breaker's state, as reported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The state's label in logs and metrics: `closed`, `open`, `half_open`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Told each time a province's breaker changes state (province, the state entered).
pub(crate) type TransitionObserver = Box<dyn Fn(&str, BreakerState) + Send + Sync>;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// Breakers keyed by province code.
#[derive(Default)]
pub(crate) struct Breakers {
    policy: BreakerPolicy,
    entries: Mutex<HashMap<String, Entry>>,
    observer: Option<TransitionObserver>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Breakers {
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Self { policy, entries: Mutex::new(HashMap::new()), observer: None }
    }

    /// Tells `observer` of every transition from now on.
    pub(crate) fn observed(mut self, observer: TransitionObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn transition(&self, province: &str, to: BreakerState) {
        if let Some(observer) = &self.observer {
            observer(province, to);
        }
    }

    /// Whether a call to `province` may go ahead now; `Err(remaining)` while open.
    pub(crate) fn allow(&self, province: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.entry(province.to_owned()).or_default();
        match e.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until - now),
            Some(_) if e.trial_in_flight => Err(Duration::ZERO),
            Some(_) => {
                e.trial_in_flight = true;
                drop(entries);
                self.transition(province, BreakerState::HalfOpen);
                Ok(())
            }
        }
    }

    /// Records the outcome of a call that `allow` let through.
    pub(crate) fn record(&self, province: &str, success: bool, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.entry(province.to_owned()).or_default();
        e.trial_in_flight = false;
        let was_open = e.open_until.is_some();
        let was_half_open = e.open_until.is_some_and(|until| now >= until);
        if success {
            *e = Entry::default();
            drop(entries);
            if was_open {
                self.transition(province, BreakerState::Closed);
            }
            return;
        }
        e.failures += 1;
        if was_open || e.failures >= self.policy.failures {
            e.open_until = Some(now + self.policy.open_for);
            drop(entries);
            // A failure while open (a call that started before it opened) only extends it.
            if !was_open || was_half_open {
                self.transition(province, BreakerState::Open);
            }
        }
    }

    pub(crate) fn state(&self, province: &str, now: Instant) -> BreakerState {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(province).and_then(|e| e.open_until) {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_half_opens_and_closes() {
        let b = Breakers::new(BreakerPolicy { failures: 3, open_for: Duration::from_secs(5) });
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.allow("p", t0).is_ok());
            b.record("p", false, t0);
        }
        assert_eq!(b.state("p", t0), BreakerState::Closed);
        b.record("p", false, t0);
        assert_eq!(b.state("p", t0), BreakerState::Open);
        assert!(b.allow("p", t0 + Duration::from_secs(1)).is_err());
        assert!(b.allow("q", t0).is_ok(), "other provinces unaffected");
        let later = t0 + Duration::from_secs(6);
        assert_eq!(b.state("p", later), BreakerState::HalfOpen);
        assert!(b.allow("p", later).is_ok(), "one trial");
        assert!(b.allow("p", later).is_err(), "only one trial at a time");
        b.record("p", false, later);
        assert!(b.allow("p", later + Duration::from_secs(1)).is_err(), "failed trial reopens");
        let later = later + Duration::from_secs(6);
        assert!(b.allow("p", later).is_ok());
        b.record("p", true, later);
        assert_eq!(b.state("p", later), BreakerState::Closed);
    }

    #[test]
    fn every_transition_is_observed_once() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let b = Breakers::new(BreakerPolicy { failures: 2, open_for: Duration::from_secs(5) })
            .observed(Box::new(move |p, s| log.lock().unwrap().push((p.to_owned(), s.label()))));
        let t0 = Instant::now();
        b.record("p", false, t0);
        b.record("p", false, t0);
        b.record("p", false, t0 + Duration::from_secs(1)); // a late failure while open
        let later = t0 + Duration::from_secs(7);
        assert!(b.allow("p", later).is_ok());
        b.record("p", false, later);
        let again = later + Duration::from_secs(6);
        assert!(b.allow("p", again).is_ok());
        b.record("p", true, again);
        b.record("p", true, again);
        let got: Vec<_> = seen.lock().unwrap().iter().map(|(_, s)| *s).collect();
        assert_eq!(got, ["open", "half_open", "open", "half_open", "closed"]);
    }
}
