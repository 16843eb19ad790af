//! Rate limits by the generic cell rate algorithm (GCRA): a token bucket kept as one number
//! per client, the *theoretical arrival time* (TAT) of its next request.
//!
//! A [`Quota`] of `rate` requests per second with a `burst` lets a quiet client send
//! `burst` requests at once, then one every `1/rate` seconds. Each allowed request pushes
//! the TAT one interval further; a request is allowed while the TAT is at most
//! `burst - 1` intervals ahead of now. [`decide`] is the whole algorithm, as a pure
//! function of the stored TAT and the time; the adapters (in memory, and a Lua script in
//! Redis doing the same arithmetic) only store the TAT.

use std::time::Duration;

/// A rate and a burst. Build with [`Quota::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    per_second: f64,
    burst: u32,
}

/// Why a [`Quota`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The rate is not a positive, finite number.
    #[error("the rate must be a positive number of requests per second")]
    Rate,
    /// The burst is zero.
    #[error("the burst must be at least 1")]
    Burst,
}

impl Quota {
    /// `per_second` requests a second on average, `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, QuotaError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(QuotaError::Rate);
        }
        if burst == 0 {
            return Err(QuotaError::Burst);
        }
        Ok(Self { per_second, burst })
    }

    /// Requests per second.
    pub const fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Requests at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Microseconds between two requests at the steady rate (at least 1).
    pub fn interval_micros(&self) -> i64 {
        // Positive and finite by construction; the cast saturates for absurdly low rates.
        #[allow(clippy::cast_possible_truncation, reason = "saturating, at least 1")]
        let micros = (1_000_000.0 / self.per_second).round() as i64;
        micros.max(1)
    }

    /// How long a full burst takes to come back, in whole seconds (at least 1): the
    /// window of the `RateLimit-Policy` header.
    pub fn window_seconds(&self) -> u64 {
        let micros = self.interval_micros().saturating_mul(i64::from(self.burst));
        u64::try_from(micros.div_euclid(1_000_000) + i64::from(micros % 1_000_000 != 0))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// What [`decide`] says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Requests the client could still send right now.
    pub remaining: u32,
    /// When denied: how long until one request is allowed again.
    pub retry_after: Duration,
    /// How long until the client's full burst is back.
    pub reset_after: Duration,
}

impl Verdict {
    /// `retry_after` in whole seconds, rounded up and never 0 (the `Retry-After` header).
    pub fn retry_after_seconds(&self) -> u64 {
        whole_seconds_up(self.retry_after).max(1)
    }

    /// `reset_after` in whole seconds, rounded up.
    pub fn reset_after_seconds(&self) -> u64 {
        whole_seconds_up(self.reset_after)
    }
}

fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn micros(d: i64) -> Duration {
    Duration::from_micros(u64::try_from(d).unwrap_or(0))
}

/// Decides one request at `now` (microseconds) for a client whose stored TAT is `tat`
/// (`None`: never seen, or expired). Returns the verdict and the TAT to store if the
/// request is allowed (`None` when it is denied: nothing changes).
pub fn decide(tat: Option<i64>, now: i64, quota: &Quota) -> (Verdict, Option<i64>) {
    let interval = quota.interval_micros();
    let tolerance = interval.saturating_mul(i64::from(quota.burst) - 1);
    let tat = tat.map_or(now, |t| t.max(now));
    let allow_at = tat - tolerance;
    if now < allow_at {
        let verdict = Verdict {
            allowed: false,
            remaining: 0,
            retry_after: micros(allow_at - now),
            reset_after: micros(tat - now),
        };
        return (verdict, None);
    }
    let new_tat = tat + interval;
    // Requests that would still fit after this one, at this instant.
    let headroom = now + tolerance - (new_tat - interval);
    let remaining = u32::try_from(headroom / interval).unwrap_or(0);
    let verdict = Verdict {
        allowed: true,
        remaining,
        retry_after: Duration::ZERO,
        reset_after: micros(new_tat - now),
    };
    (verdict, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(quota: &Quota, times: &[i64]) -> Vec<Verdict> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| {
                let (v, next) = decide(tat, now, quota);
                tat = next.or(tat);
                v
            })
            .collect()
    }

    #[test]
    fn a_quiet_client_gets_its_burst_then_one_per_interval() {
        let q = Quota::new(10.0, 3).unwrap(); // one per 100 ms, 3 at once
        let v = run(&q, &[0, 0, 0, 0]);
        assert_eq!(
            v.iter().map(|v| v.allowed).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(
            v.iter().map(|v| v.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert_eq!(v[3].retry_after, Duration::from_millis(100));
        assert_eq!(v[3].retry_after_seconds(), 1, "never 0");
        assert_eq!(v[2].reset_after, Duration::from_millis(300));
    }

    #[test]
    fn waiting_the_retry_after_is_enough_and_less_is_not() {
        let q = Quota::new(10.0, 2).unwrap();
        let v = run(&q, &[0, 0, 0, 99_999, 100_000, 100_000]);
        assert_eq!(
            v.iter().map(|v| v.allowed).collect::<Vec<_>>(),
            [true, true, false, false, true, false]
        );
    }

    #[test]
    fn the_steady_rate_is_the_quota_whatever_the_burst() {
        let q = Quota::new(50.0, 5).unwrap();
        // 10 seconds of a request every millisecond: about 50/s plus the burst get through.
        let times: Vec<i64> = (0..10_000).map(|ms| ms * 1000).collect();
        let allowed = run(&q, &times).iter().filter(|v| v.allowed).count();
        assert!((500..=506).contains(&allowed), "{allowed}");
    }

    #[test]
    fn a_long_pause_gives_back_only_the_burst() {
        let q = Quota::new(1.0, 3).unwrap();
        let mut tat = None;
        for _ in 0..3 {
            tat = decide(tat, 0, &q).1.or(tat);
        }
        let hour = 3_600_000_000;
        let allowed = (0..10)
            .filter(|_| {
                let (v, next) = decide(tat, hour, &q);
                tat = next.or(tat);
                v.allowed
            })
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn bad_quotas_are_refused_and_windows_round_up() {
        assert_eq!(Quota::new(0.0, 1), Err(QuotaError::Rate));
        assert_eq!(Quota::new(f64::NAN, 1), Err(QuotaError::Rate));
        assert_eq!(Quota::new(1.0, 0), Err(QuotaError::Burst));
        assert_eq!(Quota::new(10.0, 5).unwrap().window_seconds(), 1);
        assert_eq!(Quota::new(2.0, 5).unwrap().window_seconds(), 3);
    }
}
