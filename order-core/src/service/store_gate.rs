//! Failing fast while the store is down: a circuit breaker in front of the store's calls.
//!
//! When the store stops answering, every call would wait for its connection attempt to
//! time out. After a few such failures in a row the gate opens, and calls fail at once with
//! [`RepoError::Unavailable`] (which the API answers with `503` and `Retry-After`) until a
//! probe gets through again. Only failures that say the store is unreachable count; a
//! duplicate or a lost lease is the store working, and so is a store that is only busy: a
//! retryable failure counts only if the store's own [`ping`](crate::ports::OrderRepo::ping)
//! (which waits for none of the store's busy resources) fails too. Its verdict is kept
//! for [`StoreGate::VERDICT_KEPT`], and failures meanwhile go by it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::policy::circuit_breaker::{BreakerConfig, CircuitBreaker, Rejection};
use crate::ports::{Clock, RepoError};

/// A circuit breaker around the store.
#[derive(Debug)]
pub struct StoreGate {
    breaker: Mutex<CircuitBreaker>,
    /// The last ping's verdict (up or not) and when it was given.
    verdict: Mutex<Option<(DateTime<Utc>, bool)>>,
    /// Whether a ping is under way (one at a time).
    pinging: AtomicBool,
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

    /// How long a ping's verdict stands for the failures that follow it.
    pub const VERDICT_KEPT: Duration = Duration::from_secs(1);

    /// A gate with these settings.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            breaker: Mutex::new(CircuitBreaker::new(config)),
            verdict: Mutex::new(None),
            pinging: AtomicBool::new(false),
        }
    }

    /// Runs `call` unless the gate is open; records how it went, asking `ping` whether the
    /// store is down when the call failed in a way that could mean it. Time comes from
    /// `clock`: an outage counts from when a call *failed*, which can be long after it
    /// started.
    pub async fn call<T, C: Clock + ?Sized, P: Future<Output = Result<(), RepoError>>>(
        &self,
        clock: &C,
        call: impl Future<Output = Result<T, RepoError>>,
        ping: impl FnOnce() -> P,
    ) -> Result<T, RepoError> {
        let permit =
            self.lock()
                .try_acquire(clock.now())
                .map_err(|Rejection { retry_at, .. }| {
                    RepoError::Unavailable(Box::new(StoreDown { retry_at }))
                })?;
        let result = call.await;
        match &result {
            Err(e) if e.is_retryable() => {
                if self.store_is_up(clock, ping).await {
                    // Busy (every connection in use, say), not down: no step towards open.
                    self.lock().on_abandoned(permit);
                } else {
                    self.lock().on_failure(permit, clock.now());
                }
            }
            _ => self.lock().on_success(permit),
        }
        result
    }

    /// Whether the store is up: the last verdict while it stands, else `ping`'s. While
    /// another caller pings, the store is taken to be up (its failure counts once the
    /// verdict is in).
    async fn store_is_up<C: Clock + ?Sized, P: Future<Output = Result<(), RepoError>>>(
        &self,
        clock: &C,
        ping: impl FnOnce() -> P,
    ) -> bool {
        let now = clock.now();
        let standing = *self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, up)) = standing {
            if now.signed_duration_since(at) < crate::time::to_chrono(Self::VERDICT_KEPT) {
                return up;
            }
        }
        if self.pinging.swap(true, Ordering::AcqRel) {
            return true;
        }
        let up = ping().await.is_ok();
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some((clock.now(), up));
        self.pinging.store(false, Ordering::Release);
        up
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

    /// A ping of a store that is down.
    async fn no_answer() -> Result<(), RepoError> {
        down()
    }

    /// A ping of a store that is up.
    async fn answers() -> Result<(), RepoError> {
        Ok(())
    }

    #[tokio::test]
    async fn a_busy_store_that_still_answers_its_ping_never_opens_the_gate() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        let pings = std::cell::Cell::new(0);
        let ping = || {
            pings.set(pings.get() + 1);
            answers()
        };
        // Every call times out waiting for a connection, for minutes.
        for _ in 0..1000 {
            let busy = Err::<(), _>(RepoError::Unavailable("pool timed out".into()));
            assert!(gate.call(&clock, async { busy }, ping).await.is_err());
            clock.advance(Duration::from_millis(100));
        }
        let called = std::cell::Cell::new(false);
        let next = gate
            .call(
                &clock,
                async {
                    called.set(true);
                    Ok(())
                },
                answers,
            )
            .await;
        assert!(next.is_ok() && called.get(), "the gate stayed closed");
        assert!(
            (100..=101).contains(&pings.get()),
            "one ping per second of failures, not one per failure: {}",
            pings.get()
        );
    }

    #[tokio::test]
    async fn after_three_failures_calls_fail_at_once_until_a_probe_may_pass() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..3 {
            assert!(
                gate.call(&clock, async { down() }, no_answer)
                    .await
                    .is_err()
            );
        }

        let called = std::cell::Cell::new(false);
        let rejected = gate
            .call(
                &clock,
                async {
                    called.set(true);
                    Ok(())
                },
                no_answer,
            )
            .await;

        assert!(!called.get(), "an open gate does not call the store");
        let Err(RepoError::Unavailable(source)) = rejected else {
            panic!("expected Unavailable, got {rejected:?}");
        };
        assert!(source.downcast_ref::<StoreDown>().is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            gate.call(&clock, async { Ok(()) }, no_answer).await.is_ok(),
            "the probe passes"
        );
        assert!(
            gate.call(&clock, async { Ok(()) }, no_answer).await.is_ok(),
            "and it closes"
        );
    }

    #[tokio::test]
    async fn the_outage_counts_from_when_a_slow_call_failed() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..3 {
            // Each call waits a whole connection timeout before it fails.
            let failed = gate.call(
                &clock,
                async {
                    clock.advance(Duration::from_secs(1));
                    down()
                },
                no_answer,
            );
            assert!(failed.await.is_err());
        }

        let called = std::cell::Cell::new(false);
        let next = gate.call(
            &clock,
            async {
                called.set(true);
                Ok(())
            },
            no_answer,
        );

        assert!(next.await.is_err());
        assert!(!called.get(), "still open: the last failure was just now");
    }

    #[tokio::test]
    async fn answers_that_are_not_outages_keep_the_gate_closed() {
        let gate = StoreGate::default();
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        for _ in 0..10 {
            let duplicate = gate
                .call(
                    &clock,
                    async { Err::<(), _>(RepoError::Duplicate(crate::OrderId::new())) },
                    no_answer,
                )
                .await;
            assert!(matches!(duplicate, Err(RepoError::Duplicate(_))));
        }
        assert!(gate.call(&clock, async { Ok(()) }, no_answer).await.is_ok());
    }
}
