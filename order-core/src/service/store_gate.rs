//! Failing fast while the store is down: a circuit breaker in front of the store's calls.
//!
//! When the store stops answering, every call would wait for its connection attempt to
//! time out. After a few such failures in a row the gate opens, and calls fail at once with
//! [`RepoError::Unavailable`] (which the API answers with `503` and `Retry-After`) until a
//! probe gets through again. Only failures that say the store is unreachable count; a
//! duplicate or a lost lease is the store working.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::policy::circuit_breaker::{BreakerConfig, CircuitBreaker, Rejection};
use crate::ports::{Clock, RepoError};

/// A circuit breaker around the store.
#[derive(Debug)]
pub struct StoreGate {
    breaker: Mutex<CircuitBreaker>,
}

/// What the gate said instead of calling a store it holds for down.
#[derive(Debug, thiserror::Error)]
#[error("the order store is not answering; not retrying it before {retry_at}")]
pub struct StoreDown {
    /// When the gate lets a probe through.
    pub retry_at: DateTime<Utc>,
}

impl StoreGate {
    /// Opens after 3 failures in a row, probes again after 1 s, one probe at a time.
    pub const DEFAULT: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(1),
        half_open_probes: 1,
        probe_wait: Duration::ZERO,
    };

    /// A gate with these settings.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            breaker: Mutex::new(CircuitBreaker::new(config)),
        }
    }

    /// Runs `call` unless the gate is open; records how it went. Time comes from `clock`:
    /// an outage counts from when a call *failed*, which can be long after it started.
    pub async fn call<T, C: Clock + ?Sized>(
        &self,
        clock: &C,
        call: impl Future<Output = Result<T, RepoError>>,
    ) -> Result<T, RepoError> {
        let permit =
            self.lock()
                .try_acquire(clock.now())
                .map_err(|Rejection { retry_at, .. }| {
                    RepoError::Unavailable(Box::new(StoreDown { retry_at }))
                })?;
        let result = call.await;
        match &result {
            Err(e) if e.is_retryable() => self.lock().on_failure(permit, clock.now()),
            _ => self.lock().on_success(permit),
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for StoreGate {
    fn default() -> Self {
        Self::new(Self::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ManualClock;

    fn down() -> Result<(), RepoError> {
        Err(RepoError::Unavailable("connection refused".into()))
    }

    #[tokio::test]
    async fn after_three_failures_calls_fail_at_once_until_a_probe_may_pass() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..3 {
            assert!(gate.call(&clock, async { down() }).await.is_err());
        }

        let called = std::cell::Cell::new(false);
        let rejected = gate
            .call(&clock, async {
                called.set(true);
                Ok(())
            })
            .await;

        assert!(!called.get(), "an open gate does not call the store");
        let Err(RepoError::Unavailable(source)) = rejected else {
            panic!("expected Unavailable, got {rejected:?}");
        };
        assert!(source.downcast_ref::<StoreDown>().is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            gate.call(&clock, async { Ok(()) }).await.is_ok(),
            "the probe passes"
        );
        assert!(
            gate.call(&clock, async { Ok(()) }).await.is_ok(),
            "and it closes"
        );
    }

    #[tokio::test]
    async fn the_outage_counts_from_when_a_slow_call_failed() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..3 {
            // Each call waits a whole connection timeout before it fails.
            let failed = gate.call(&clock, async {
                clock.advance(Duration::from_secs(1));
                down()
            });
            assert!(failed.await.is_err());
        }

        let called = std::cell::Cell::new(false);
        let next = gate.call(&clock, async {
            called.set(true);
            Ok(())
        });

        assert!(next.await.is_err());
        assert!(!called.get(), "still open: the last failure was just now");
    }

    #[tokio::test]
    async fn answers_that_are_not_outages_keep_the_gate_closed() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..10 {
            let duplicate = gate
                .call(&clock, async {
                    Err::<(), _>(RepoError::Duplicate(crate::OrderId::new()))
                })
                .await;
            assert!(matches!(duplicate, Err(RepoError::Duplicate(_))));
        }
        assert!(gate.call(&clock, async { Ok(()) }).await.is_ok());
    }
}
