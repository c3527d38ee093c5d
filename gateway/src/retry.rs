//! When a failed call to a node is retried, as pure policy: which failures a retry can
//! cure (`retryable`), and how many retries a province's traffic may carry
//! ([`RetryBudget`], a share of its lookups plus a floor, so that a province failing part
//! of its calls is not sent a storm of repeats). A lookup changes nothing at the node,
//! so a repeat is always safe; the budget keeps it cheap. The gateway makes at most one
//! retry per lookup, within the lookup's deadline, on the province's next endpoint.

use std::time::Duration;

use tonic::Code;

/// Retries a province's lookups may carry: `ratio` of its lookups over the last
/// [`RetryBudget::WINDOW`], plus `min_per_sec` whatever the traffic. Both zero: no retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries per second allowed whatever the traffic (0 to 1000).
    pub min_per_sec: u32,
    /// Share of lookups that may be retried, 0 to 1 (0.2: one retry per five lookups).
    pub ratio: f32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self { min_per_sec: 10, ratio: 0.2 }
    }
}

impl RetryBudget {
    /// How long a lookup counts toward the budget.
    pub const WINDOW: Duration = Duration::from_secs(10);

    /// Whether the numbers are usable (what a configuration must hold).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ratio.is_finite() && (0.0..=1.0).contains(&self.ratio)) {
            return Err(format!("retry ratio must be within 0..=1, got {}", self.ratio));
        }
        if self.min_per_sec > 1_000 {
            return Err(format!("retry minimum must be within 0..=1000 per second, got {}", self.min_per_sec));
        }
        Ok(())
    }

    /// A fresh budget for one province (the tower implementation, shared by its lookups).
    pub fn start(&self) -> tower::retry::budget::TpsBudget {
        // Out-of-range numbers are refused by `validate`; clamped here so a caller that
        // skipped it gets the nearest valid budget rather than a panic.
        let ratio = if self.ratio.is_finite() { self.ratio.clamp(0.0, 1.0) } else { 0.0 };
        tower::retry::budget::TpsBudget::new(Self::WINDOW, self.min_per_sec.min(1_000), ratio)
    }
}

/// Whether a failed Attest call may be retried: the node could not be reached (the
/// connection refused, reset, the TLS handshake failing: `transport` is true) or said it
/// cannot serve now (UNAVAILABLE, e.g. draining for a restart). A missed deadline is not
/// retried (no time is left), and neither is any answer about the token itself.
pub(crate) fn retryable(code: Code, transport: bool) -> bool {
    match code {
        Code::Unavailable => true,
        Code::DeadlineExceeded | Code::Cancelled => false,
        _ => transport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::budget::Budget as _;

    #[test]
    fn only_failures_a_retry_can_cure_are_retried() {
        assert!(retryable(Code::Unavailable, false));
        assert!(retryable(Code::Unknown, true), "a broken connection");
        for code in [Code::NotFound, Code::FailedPrecondition, Code::InvalidArgument, Code::PermissionDenied] {
            assert!(!retryable(code, false), "{code:?} is an answer");
        }
        assert!(!retryable(Code::DeadlineExceeded, true) && !retryable(Code::Cancelled, true));
    }

    #[tokio::test]
    async fn the_budget_is_a_share_of_lookups_plus_a_floor() {
        // No floor, one in five: four lookups earn no retry, the fifth does, and it is spent.
        let budget = RetryBudget { min_per_sec: 0, ratio: 0.2 }.start();
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "four lookups do not earn a retry");
        budget.deposit();
        assert!(budget.withdraw(), "the fifth does");
        assert!(!budget.withdraw(), "and it is spent");
        // A floor: retries without traffic, up to min_per_sec × the window.
        let floor = RetryBudget { min_per_sec: 1, ratio: 0.0 }.start();
        let allowed = (0..100).filter(|_| floor.withdraw()).count();
        assert_eq!(allowed, RetryBudget::WINDOW.as_secs() as usize);
        // Nothing at all.
        assert!(!RetryBudget { min_per_sec: 0, ratio: 0.0 }.start().withdraw());
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        assert!(RetryBudget::default().validate().is_ok());
        assert!(RetryBudget { min_per_sec: 0, ratio: 1.5 }.validate().unwrap_err().contains("0..=1"));
        assert!(RetryBudget { min_per_sec: 0, ratio: f32::NAN }.validate().is_err());
        assert!(RetryBudget { min_per_sec: 5_000, ratio: 0.1 }.validate().unwrap_err().contains("0..=1000"));
    }
}
