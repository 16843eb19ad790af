//! A circuit breaker: stop calling a failing gateway, probe it carefully, resume when healthy.
//!
//! ```text
//!          N consecutive failures              recovery timeout passed
//! Closed ---------------------------> Open ---------------------------> HalfOpen
//!   ^                                  ^                                  |  |
//!   |                                  +------- a probe fails ------------+  |
//!   +------------------------------- a probe succeeds ----------------------+
//! ```
//!
//! Half-open admits at most `half_open_probes` calls at once; the rest are rejected. Every
//! rejection says why and when to try again.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (`CIRCUIT_BREAKER_FAILURE_THRESHOLD`, 5).
    pub failure_threshold: u32,
    /// How long the breaker stays open (`CIRCUIT_BREAKER_RECOVERY_TIMEOUT`, 60 s).
    pub recovery_timeout: Duration,
    /// Calls admitted at once while half-open (1).
    pub half_open_probes: u32,
    /// How long callers turned away in half-open should wait before asking again (1 s).
    pub probe_wait: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(60),
            half_open_probes: 1,
            probe_wait: Duration::from_secs(1),
        }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; counting consecutive failures.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Calls are rejected until `until`.
    Open {
        /// When probing may start.
        until: DateTime<Utc>,
    },
    /// Up to `half_open_probes` probe calls at once decide whether to close.
    HalfOpen {
        /// Probes admitted and not yet reported.
        probes_in_flight: u32,
    },
}

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The breaker is open after consecutive failures.
    Open,
    /// The breaker is half-open and its probes are all in flight.
    ProbesInFlight,
}

/// A call turned away, and when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker rejected the call ({reason:?}); retry at {retry_at}")]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// When to ask again.
    pub retry_at: DateTime<Utc>,
}

/// Leave to make one call; report its result with [`CircuitBreaker::on_success`] or
/// [`CircuitBreaker::on_failure`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "report the call's result to the breaker"]
pub struct Permit {
    generation: u64,
    probe: bool,
}

/// The breaker: a state and the rules that move it. Pure: the caller passes `now`.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Bumped on every state change, so late reports of calls admitted under an older state
    /// do not move the new one.
    generation: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            generation: 0,
        }
    }

    /// The current state (an `Open` breaker whose time has passed still shows `Open` until
    /// the next [`CircuitBreaker::try_acquire`]).
    pub const fn state(&self) -> BreakerState {
        self.state
    }

    /// The settings.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.generation += 1;
    }

    /// Asks to make a call at `now`.
    pub fn try_acquire(&mut self, now: DateTime<Utc>) -> Result<Permit, Rejection> {
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return Err(Rejection {
                    reason: RejectReason::Open,
                    retry_at: until,
                });
            }
            self.enter(BreakerState::HalfOpen {
                probes_in_flight: 0,
            });
        }
        match &mut self.state {
            BreakerState::Closed { .. } => Ok(Permit {
                generation: self.generation,
                probe: false,
            }),
            BreakerState::HalfOpen { probes_in_flight } => {
                if *probes_in_flight >= self.config.half_open_probes {
                    return Err(Rejection {
                        reason: RejectReason::ProbesInFlight,
                        retry_at: crate::time::later(now, self.config.probe_wait),
                    });
                }
                *probes_in_flight += 1;
                Ok(Permit {
                    generation: self.generation,
                    probe: true,
                })
            }
            BreakerState::Open { .. } => unreachable!("left above"),
        }
    }

    /// Reports that the call of `permit` succeeded (or got a healthy answer such as a decline).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the permit makes each one report once"
    )]
    pub fn on_success(&mut self, permit: Permit) {
        let Permit { generation, probe } = permit;
        if generation != self.generation {
            return;
        }
        match self.state {
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
            }
            BreakerState::HalfOpen { .. } if probe => self.enter(BreakerState::Closed {
                consecutive_failures: 0,
            }),
            BreakerState::HalfOpen { .. } | BreakerState::Open { .. } => {}
        }
    }

    /// Reports that the call of `permit` failed at `now` in a way that blames the gateway.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the permit makes each one report once"
    )]
    pub fn on_failure(&mut self, permit: Permit, now: DateTime<Utc>) {
        let Permit { generation, probe } = permit;
        if generation != self.generation {
            return;
        }
        let open = BreakerState::Open {
            until: crate::time::later(now, self.config.recovery_timeout),
        };
        match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures + 1;
                if failures >= self.config.failure_threshold {
                    self.enter(open);
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            BreakerState::HalfOpen { .. } if probe => self.enter(open),
            BreakerState::HalfOpen { .. } | BreakerState::Open { .. } => {}
        }
    }

    /// Gives back a permit whose call was never made (a crash before the charge, say).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the permit makes each one report once"
    )]
    pub fn on_abandoned(&mut self, permit: Permit) {
        let Permit { generation, probe } = permit;
        if generation != self.generation {
            return;
        }
        if let BreakerState::HalfOpen { probes_in_flight } = &mut self.state {
            *probes_in_flight = probes_in_flight.saturating_sub(u32::from(probe));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(60),
            half_open_probes: 2,
            probe_wait: Duration::from_secs(1),
        })
    }

    fn fail(b: &mut CircuitBreaker, now: DateTime<Utc>) {
        let p = b.try_acquire(now).unwrap();
        b.on_failure(p, now);
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures() {
        let mut b = breaker();
        fail(&mut b, t(0));
        fail(&mut b, t(0));
        assert!(matches!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        ));
        fail(&mut b, t(1));
        assert_eq!(b.state(), BreakerState::Open { until: t(61) });
        assert_eq!(
            b.try_acquire(t(30)),
            Err(Rejection {
                reason: RejectReason::Open,
                retry_at: t(61)
            })
        );
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let mut b = breaker();
        fail(&mut b, t(0));
        fail(&mut b, t(0));
        let p = b.try_acquire(t(0)).unwrap();
        b.on_success(p);
        fail(&mut b, t(0));
        fail(&mut b, t(0));
        assert!(matches!(b.state(), BreakerState::Closed { .. }));
    }

    #[test]
    fn half_open_admits_only_the_bounded_probes_and_closes_on_success() {
        let mut b = breaker();
        for _ in 0..3 {
            fail(&mut b, t(0));
        }
        let p1 = b.try_acquire(t(60)).unwrap();
        let p2 = b.try_acquire(t(60)).unwrap();
        let third = b.try_acquire(t(60)).unwrap_err();
        assert_eq!(third.reason, RejectReason::ProbesInFlight);
        assert_eq!(third.retry_at, t(61));
        b.on_success(p1);
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        // The other probe's late failure belongs to the half-open episode: it does not count.
        b.on_failure(p2, t(60));
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn a_failed_probe_reopens_the_breaker_for_another_recovery_timeout() {
        let mut b = breaker();
        for _ in 0..3 {
            fail(&mut b, t(0));
        }
        fail(&mut b, t(70));
        assert_eq!(b.state(), BreakerState::Open { until: t(130) });
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let mut b = breaker();
        for _ in 0..3 {
            fail(&mut b, t(0));
        }
        let p1 = b.try_acquire(t(60)).unwrap();
        let _p2 = b.try_acquire(t(60)).unwrap();
        b.on_abandoned(p1);
        assert!(b.try_acquire(t(60)).is_ok());
    }
}
