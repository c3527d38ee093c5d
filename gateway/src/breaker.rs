//! Per-province circuit breakers: one dead or slow province fails fast instead of
//! tying up every lookup for it until its deadline. Pure state with explicit time.

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

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// Breakers keyed by province code.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    policy: BreakerPolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Breakers {
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Self { policy, entries: Mutex::new(HashMap::new()) }
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
                Ok(())
            }
        }
    }

    /// Records the outcome of a call that `allow` let through.
    pub(crate) fn record(&self, province: &str, success: bool, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.entry(province.to_owned()).or_default();
        e.trial_in_flight = false;
        if success {
            *e = Entry::default();
            return;
        }
        e.failures += 1;
        if e.open_until.is_some() || e.failures >= self.policy.failures {
            e.open_until = Some(now + self.policy.open_for);
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

    /// Every province's state.
    pub(crate) fn states(&self, now: Instant) -> Vec<(String, BreakerState)> {
        let keys: Vec<String> = self.entries.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        keys.into_iter()
            .map(|k| {
                let s = self.state(&k, now);
                (k, s)
            })
            .collect()
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
}
