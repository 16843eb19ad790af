//! The limit on requests executing at once, moved by the gradient of their latency, after
//! Netflix's concurrency-limits (`GradientLimit`): the fastest windows seen are the
//! service's latency when nothing queues inside it (kept as a minimum that ages slowly
//! upwards, so a lasting change of the service is followed); a window whose average is
//! slower than that by more than the tolerance says requests are queueing somewhere inside
//! (the pool, the database), and the limit is scaled down by the ratio; otherwise it grows
//! by its square root, so it keeps probing upwards. It settles where latency starts to rise
//! with concurrency (the knee), a little above it, never below: below the knee, more
//! concurrency costs no latency, and the limit keeps growing.

use std::time::Duration;

/// How much slower than the no-load latency a window may be before the limit drops. The
/// store batches concurrent orders into one commit (group commit), so more requests at
/// once raise throughput long after they first raise latency: a tolerance of 1.25 cut the
/// limit at the first rise, to 46 to 94 on this service, where 128 and 256 executing
/// carried 1.4 and 1.8 times the orders of a closed loop of 1,024 (BENCHMARKS.md). Twice the no-load latency is
/// where it stops now.
pub const TOLERANCE: f64 = 2.0;
/// How much of each new estimate goes into the limit.
const SMOOTHING: f64 = 0.2;
/// How fast the no-load latency forgets its minimum: by this share per window.
const AGING: f64 = 1e-5;

/// The gradient limit: fed one window's average latency at a time.
#[derive(Debug, Clone)]
pub struct GradientLimit {
    limit: f64,
    floor: f64,
    ceiling: f64,
    /// The latency with nothing queued, in seconds (`None` before the first window).
    no_load: Option<f64>,
    /// Doubling each window until latency first rises (as TCP's slow start): the no-load
    /// latency is seen at a low limit first, and the knee is found in a few windows.
    slow_start: bool,
}

impl GradientLimit {
    /// A limit starting at `initial`, kept within `[floor, ceiling]`.
    pub fn new(initial: usize, floor: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        let floor = (floor.max(1) as f64).min(ceiling);
        Self {
            limit: (initial as f64).clamp(floor, ceiling),
            floor,
            ceiling,
            no_load: None,
            slow_start: true,
        }
    }

    /// The limit now (a whole number of requests, at least the floor).
    pub fn limit(&self) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "within [floor, ceiling], both usize"
        )]
        let limit = self.limit.floor() as usize;
        limit
    }

    /// One window's average latency, measured while at most `peak` requests executed at
    /// once. A window in which fewer than half the limit executed changes nothing.
    pub fn on_window(&mut self, average: Duration, peak: usize) {
        let short = average.as_secs_f64().max(1e-6);
        let no_load = self
            .no_load
            .map_or(short, |no_load| (no_load * (1.0 + AGING)).min(short));
        self.no_load = Some(no_load);
        let gradient = (TOLERANCE * no_load / short).clamp(0.5, 1.0);
        // A window that did not use half the limit says nothing about it, either way (as in
        // Gradient2): at a light load the average is above the fastest request seen, and
        // would otherwise wear the limit down to the floor before the next burst.
        if (peak as f64) < self.limit / 2.0 {
            return;
        }
        if self.slow_start && gradient >= 1.0 {
            self.limit = (self.limit * 2.0).clamp(self.floor, self.ceiling);
            return;
        }
        self.slow_start = false;
        let estimate = self.limit * gradient + self.limit.sqrt();
        let next = self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING;
        self.limit = next.clamp(self.floor, self.ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that takes `base` for up to `knee` requests at once and serves no faster
    /// beyond it: each request past the knee makes every one wait its share longer.
    fn latency(concurrency: usize, knee: usize, base: Duration) -> Duration {
        let over = concurrency.max(knee) as f64 / knee as f64;
        base.mul_f64(over)
    }

    /// Runs `windows` windows of a closed loop of `clients` against that service, each
    /// window executing `min(clients, limit)` at once.
    fn settle(limit: &mut GradientLimit, clients: usize, knee: usize, windows: usize) {
        let base = Duration::from_millis(4);
        for _ in 0..windows {
            let executing = clients.min(limit.limit());
            limit.on_window(latency(executing, knee, base), executing);
        }
    }

    #[test]
    fn the_limit_settles_near_the_knee_not_below_it() {
        for knee in [8, 32, 100] {
            // From below, as the admission queue starts it (a limit that starts far above
            // the knee never sees the no-load latency).
            for start in [1, knee / 2] {
                let mut limit = GradientLimit::new(start.max(1), 1, 4096);
                settle(&mut limit, 2048, knee, 2000);
                let settled = limit.limit();
                // Latency may reach TOLERANCE times the no-load latency: past the knee that
                // is TOLERANCE times as many at once, and the square-root probe a little more.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let most = ((TOLERANCE + 1.0) * knee as f64) as usize;
                assert!(
                    (knee..=most).contains(&settled),
                    "knee {knee}, started at {start}: settled at {settled}"
                );
            }
        }
    }

    #[test]
    fn with_few_clients_the_limit_stays_above_them_and_bounded() {
        let mut limit = GradientLimit::new(20, 1, 4096);
        settle(&mut limit, 10, 100, 1000);
        assert!(limit.limit() >= 10, "{}", limit.limit());
        assert!(
            limit.limit() <= 40,
            "no unbounded growth while app-limited: {}",
            limit.limit()
        );
    }

    #[test]
    fn a_knee_that_moves_down_brings_the_limit_down() {
        let mut limit = GradientLimit::new(64, 1, 4096);
        settle(&mut limit, 2048, 200, 1000);
        assert!(limit.limit() >= 200);
        settle(&mut limit, 2048, 20, 2000);
        assert!(
            (20..=60).contains(&limit.limit()),
            "after the knee fell to 20: {}",
            limit.limit()
        );
    }
}
