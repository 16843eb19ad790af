//! How many `/api` requests one process takes at once: an adaptive limit that keeps the
//! requests it admits fast, and sheds the rest at once.
//!
//! A fixed bound on requests in flight keeps memory bounded but not latency: by Little's
//! law a request waits `in flight / throughput`, so 1,024 requests in flight at 3,000
//! orders/s wait a third of a second each. [`AdaptiveConcurrency`] moves the bound instead
//! (additive increase, multiplicative decrease, as TCP does): every request that completes
//! within the latency target raises the limit by `1/limit` (one per limit's worth of fast
//! requests); completions are counted in windows of [`WINDOW`], and a window in which more
//! than a tenth were slower than the target cuts the limit by a tenth. A slow request now and
//! then (a checkpoint, a pause) is not a signal; a tenth of them is the process queueing
//! more than it serves. The limit stays between a floor (so the service always makes
//! progress) and `MAX_REQUESTS_IN_FLIGHT`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The adaptive limit. Cheap to share behind an [`Arc`].
#[derive(Debug)]
pub struct AdaptiveConcurrency {
    floor: usize,
    ceiling: usize,
    target: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// Completions in the current window, and how many of them were slow.
    completed: u32,
    slow: u32,
}

/// How many completions make one window of the slow-request signal.
pub const WINDOW: u32 = 32;

/// Settings of an [`AdaptiveConcurrency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// The most requests in flight, ever (`MAX_REQUESTS_IN_FLIGHT`).
    pub ceiling: usize,
    /// The fewest the limit goes down to.
    pub floor: usize,
    /// A request slower than this (from admission to the end of the work it started) says
    /// the process is taking more than it can serve (`REQUEST_LATENCY_TARGET`).
    pub target: Duration,
}

impl ConcurrencyConfig {
    /// `ceiling` and `target`, with a floor of 8 (or the ceiling, if lower).
    pub fn new(ceiling: usize, target: Duration) -> Self {
        Self {
            ceiling,
            floor: ceiling.min(8),
            target,
        }
    }
}

impl AdaptiveConcurrency {
    /// A limit starting at the ceiling, so a fresh process admits as much as a fixed bound
    /// would; the first slow requests bring it down.
    pub fn new(config: ConcurrencyConfig) -> Self {
        let ceiling = config.ceiling.max(1);
        let floor = config.floor.clamp(1, ceiling);
        Self {
            floor,
            ceiling,
            target: config.target,
            state: Mutex::new(State {
                limit: ceiling as f64,
                in_flight: 0,
                completed: 0,
                slow: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one request, or `None` if the limit is reached (shed it). The place is
    /// given back, and the request's latency recorded, when the permit drops.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state();
        if state.in_flight as f64 >= state.limit.floor() {
            return None;
        }
        state.in_flight += 1;
        Some(Permit {
            limit: Arc::clone(self),
            admitted: Instant::now(),
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        // The limit stays within [floor, ceiling], both `usize`.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "within [floor, ceiling]"
        )]
        let limit = self.state().limit.floor() as usize;
        limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    fn release(&self, latency: Duration) {
        let mut state = self.state();
        state.in_flight -= 1;
        state.completed += 1;
        if latency <= self.target {
            state.limit = (state.limit + 1.0 / state.limit).min(self.ceiling as f64);
        } else {
            state.slow += 1;
        }
        if state.completed >= WINDOW {
            if state.slow * 10 > state.completed {
                state.limit = (state.limit * 0.9).max(self.floor as f64);
            }
            state.completed = 0;
            state.slow = 0;
        }
    }
}

/// One admitted request's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Permit {
    limit: Arc<AdaptiveConcurrency>,
    admitted: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limit.release(self.admitted.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(ceiling: usize, floor: usize) -> Arc<AdaptiveConcurrency> {
        Arc::new(AdaptiveConcurrency::new(ConcurrencyConfig {
            ceiling,
            floor,
            target: Duration::from_millis(10),
        }))
    }

    #[test]
    fn admits_up_to_the_limit_and_gives_places_back() {
        let l = limit(3, 1);
        let held: Vec<_> = (0..3).map(|_| l.try_acquire().expect("room")).collect();
        assert!(l.try_acquire().is_none(), "full");
        assert_eq!(l.in_flight(), 3);
        drop(held);
        assert_eq!(l.in_flight(), 0);
        assert!(l.try_acquire().is_some());
    }

    /// Completes one request of latency `ms` (admitting it first).
    fn complete(l: &Arc<AdaptiveConcurrency>, ms: u64) {
        std::mem::forget(l.try_acquire().expect("room"));
        l.release(Duration::from_millis(ms));
    }

    #[test]
    fn a_window_with_over_a_tenth_slow_shrinks_the_limit_down_to_the_floor() {
        let l = limit(100, 20);
        for _ in 0..WINDOW {
            complete(&l, 50);
        }
        assert_eq!(
            l.limit(),
            90,
            "one window of slow requests: one cut by a tenth"
        );
        for _ in 0..WINDOW * 100 {
            complete(&l, 50);
        }
        assert_eq!(l.limit(), 20, "never below the floor");
    }

    #[test]
    fn a_slow_request_now_and_then_is_not_a_signal() {
        let l = limit(100, 20);
        let at_start = l.limit();
        // Three slow in a window of 32 is under a tenth: no cut, however long it goes on.
        for _ in 0..100 {
            for i in 0..WINDOW {
                complete(&l, if i < 3 { 50 } else { 1 });
            }
        }
        assert_eq!(l.limit(), at_start);
        // Four in a window is over a tenth.
        for i in 0..WINDOW {
            complete(&l, if i < 4 { 50 } else { 1 });
        }
        assert_eq!(l.limit(), 90);
    }

    #[test]
    fn fast_requests_grow_the_limit_back_up_to_the_ceiling() {
        let l = limit(64, 32);
        for _ in 0..WINDOW {
            complete(&l, 50);
        }
        let low = l.limit();
        assert!(low < 64);
        // About `limit` fast completions raise it by one.
        for _ in 0..(low * 3) {
            complete(&l, 1);
        }
        assert!(l.limit() >= low + 2, "{} after {low}", l.limit());
        for _ in 0..10_000 {
            complete(&l, 1);
        }
        assert_eq!(l.limit(), 64, "never above the ceiling");
    }

    #[test]
    fn a_shrunk_limit_sheds_what_it_admitted_before() {
        let l = limit(50, 10);
        let held: Vec<_> = (0..40).map(|_| l.try_acquire().unwrap()).collect();
        for _ in 0..WINDOW {
            std::mem::forget(l.try_acquire().unwrap());
            l.release(Duration::from_millis(50));
        }
        assert_eq!(l.limit(), 45);
        let more: Vec<_> = (0..10).filter_map(|_| l.try_acquire()).collect();
        assert_eq!(more.len(), 5, "room up to the new limit only");
        drop(held);
    }
}
