//! Wall-clock time as a value, so that expiry, retention and sunset can be tested on
//! simulated time instead of by waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of Unix seconds.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(huren_pki::unix_now))
    }

    /// A clock that only moves when told to, starting at `start`.
    pub fn manual(start: i64) -> (Self, ManualClock) {
        let t = Arc::new(AtomicI64::new(start));
        let read = t.clone();
        (Self(Arc::new(move || read.load(Ordering::SeqCst))), ManualClock(t))
    }

    /// The current time, Unix seconds.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

/// The handle that moves a manual clock.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Moves the clock by `seconds` (backwards if negative).
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock to `unix`, Unix seconds.
    pub fn set(&self, unix: i64) {
        self.0.store(unix, Ordering::SeqCst);
    }

    /// The time the clock shows, Unix seconds.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
