//! Per-hub limits: anti-enumeration and request rate, as pure policy data. The counting
//! happens in [`crate::shared`] (shared across replicas through Redis when available).
//!
//! Tokens carry 128 random bits, so guessing is hopeless; a hub that still produces many
//! unknown-token misses is scanning or broken: after `burst` misses within a window of
//! `burst / refill_per_sec` seconds its lookups are refused (RESOURCE_EXHAUSTED) until the
//! window passes.

use std::time::Duration;

/// How many misses a hub may produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MissPolicy {
    /// Misses allowed within a window.
    pub burst: f64,
    /// Misses per second the allowance refills by (0: the window is one hour).
    pub refill_per_sec: f64,
}

impl Default for MissPolicy {
    fn default() -> Self {
        Self { burst: 30.0, refill_per_sec: 0.5 }
    }
}

impl MissPolicy {
    /// Misses allowed per window.
    pub(crate) fn limit(&self) -> u64 {
        self.burst.max(1.0) as u64
    }

    /// The counting window.
    pub(crate) fn window(&self) -> Duration {
        let secs = if self.refill_per_sec > 0.0 { self.burst / self.refill_per_sec } else { 3600.0 };
        Duration::from_secs_f64(secs.clamp(1.0, 86_400.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_follows_burst_and_refill() {
        let p = MissPolicy::default();
        assert_eq!((p.limit(), p.window()), (30, Duration::from_secs(60)));
        let p = MissPolicy { burst: 5.0, refill_per_sec: 0.0 };
        assert_eq!(p.window(), Duration::from_secs(3600));
    }
}
