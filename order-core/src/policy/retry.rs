//! Retry with exponential backoff and full jitter.
//!
//! The delay before retry `n` (0 for the first retry) is `rand(0, min(cap, base * 2^n))`,
//! which spreads retries of many orders over time instead of sending them in waves.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::payment::{GatewayError, RetryClass};

/// Settings that cannot make a retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    /// `max_attempts` was 0.
    #[error("at least one attempt must be allowed")]
    NoAttempts,
    /// `cap` was below `base`.
    #[error("the backoff cap must be at least the base delay")]
    CapBelowBase,
}

/// How often and how late failed payments are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: NonZeroU32,
    base: Duration,
    cap: Duration,
}

/// Whether an order may already have been charged by an attempt whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeHistory {
    /// Every earlier attempt ended with a definite answer: nothing was captured.
    Resolved,
    /// An earlier attempt timed out, or a worker died holding the order: a capture may have
    /// happened, and only the gateway (asked again with the same key) can say.
    Unresolved,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop: the order's payment has failed.
    GiveUp,
}

impl RetryPolicy {
    /// The original service's defaults: 3 attempts, 1 s base delay; backoff capped at 60 s.
    pub const DEFAULT: Self = Self {
        max_attempts: NonZeroU32::new(3).expect("3 is not zero"),
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };

    /// A policy of at most `max_attempts` attempts, delays from `base` doubling up to `cap`.
    pub fn new(max_attempts: u32, base: Duration, cap: Duration) -> Result<Self, RetryPolicyError> {
        let max_attempts = NonZeroU32::new(max_attempts).ok_or(RetryPolicyError::NoAttempts)?;
        if cap < base {
            return Err(RetryPolicyError::CapBelowBase);
        }
        Ok(Self {
            max_attempts,
            base,
            cap,
        })
    }

    /// Most attempts made at one order.
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts.get()
    }

    /// `min(cap, base * 2^retry)`: the most the delay before retry `retry` can be.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delay before retry `retry` for a uniform random `draw` in `[0, 1]` (clamped).
    pub fn delay(&self, retry: u32, draw: f64) -> Duration {
        self.ceiling(retry).mul_f64(draw.clamp(0.0, 1.0))
    }

    /// What to do after attempt number `attempts_made` (1-based) failed with `error`, given
    /// the order's `history`.
    ///
    /// A decline is final. A gateway that did not process the charge is retried until
    /// `max_attempts`. A timeout, or any failure after one, is retried with the same key even
    /// past `max_attempts`: the charge may have been captured, so the order must not be
    /// failed until the gateway says what happened.
    pub fn decide(
        &self,
        attempts_made: u32,
        error: &GatewayError,
        history: ChargeHistory,
        draw: f64,
    ) -> RetryDecision {
        let retry = attempts_made.saturating_sub(1);
        let class = match (error.retry_class(), history) {
            (RetryClass::Retryable, ChargeHistory::Unresolved) => RetryClass::Ambiguous,
            (class, _) => class,
        };
        match class {
            RetryClass::Final => RetryDecision::GiveUp,
            RetryClass::Retryable if attempts_made >= self.max_attempts() => RetryDecision::GiveUp,
            RetryClass::Retryable | RetryClass::Ambiguous => {
                RetryDecision::RetryAfter(self.delay(retry, draw))
            }
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::DeclineReason;
    use proptest::prelude::*;

    #[test]
    fn declines_are_never_retried_and_failures_stop_at_the_limit() {
        let p = RetryPolicy::DEFAULT;
        let declined = GatewayError::Declined(DeclineReason::InsufficientFunds);
        let down = GatewayError::Unavailable("503".into());
        let timeout = GatewayError::Timeout("slow".into());
        assert_eq!(
            p.decide(1, &declined, ChargeHistory::Resolved, 0.5),
            RetryDecision::GiveUp
        );
        assert!(matches!(
            p.decide(2, &down, ChargeHistory::Resolved, 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(3, &down, ChargeHistory::Resolved, 0.5),
            RetryDecision::GiveUp
        );
        assert!(matches!(
            p.decide(3, &timeout, ChargeHistory::Resolved, 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert!(
            matches!(
                p.decide(3, &down, ChargeHistory::Unresolved, 0.5),
                RetryDecision::RetryAfter(_)
            ),
            "after a timeout, even a clean failure cannot end the order"
        );
        assert_eq!(
            p.decide(3, &declined, ChargeHistory::Unresolved, 0.5),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn the_ceiling_doubles_then_stays_at_the_cap() {
        let p = RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let ceilings: Vec<_> = (0..6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert_eq!(
            RetryPolicy::new(0, Duration::ZERO, Duration::ZERO),
            Err(RetryPolicyError::NoAttempts)
        );
        assert_eq!(
            RetryPolicy::new(1, Duration::from_secs(2), Duration::from_secs(1)),
            Err(RetryPolicyError::CapBelowBase)
        );
    }

    proptest! {
        #[test]
        fn backoff_delays_stay_within_zero_and_the_capped_exponential(
            base_ms in 0u64..10_000,
            extra_cap_ms in 0u64..100_000,
            retry in 0u32..80,
            draw in -1.0f64..2.0,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = base + Duration::from_millis(extra_cap_ms);
            let p = RetryPolicy::new(3, base, cap).unwrap();
            let delay = p.delay(retry, draw);
            let bound = u128::from(base_ms) * 2u128.pow(retry.min(100));
            let bound = Duration::from_millis(u64::try_from(bound.min(u128::from(u64::MAX))).unwrap()).min(cap);
            prop_assert!(delay <= bound, "{delay:?} > {bound:?}");
        }
    }
}
