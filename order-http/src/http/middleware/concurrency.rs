//! How many `/api` requests one process takes at once, and what it does with the rest.
//!
//! Two things, after well-known algorithms rather than an absolute latency target:
//!
//! - **How many execute at once**: a [`GradientLimit`] (Netflix's concurrency-limits),
//!   moved by the gradient of the requests' own latency, settles at the knee: the most
//!   requests at once before latency rises with concurrency. Past it, more at once only
//!   queue inside (the pool, PostgreSQL) where nobody can see or shed them.
//! - **Who waits, and who is refused**: the rest wait their turn, first come first
//!   served. A queue that stands (a closed loop of 1,024 clients keeps up to 1,024 requests
//!   here, served as fast as the process can) is no overload, and nothing is refused. A
//!   queue that *grows* is, and a closed loop cannot grow past its clients: once the
//!   requests held reach three quarters of the ceiling while the shortest wait of an
//!   interval ([`INTERVAL`], as in CoDel) is above the target
//!   ([`AdmissionConfig::target`]), and for as long as more requests arrive than start,
//!   newcomers are refused with `503` and a `Retry-After` of the
//!   queue's drain time, unless the queue is short enough to start them within the target;
//!   the queue drains to the target and stays there, so what is accepted is served fast
//!   and at full throughput. `MAX_REQUESTS_IN_FLIGHT` bounds executing and waiting
//!   requests together.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod gradient;

pub use gradient::GradientLimit;

/// How often the queue is judged, and the limit moved.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The executing limit of a fresh process: high enough that a process met by a flood
/// before it has found its limit (which stays put while the queue is judged overloaded)
/// still batches its orders into commits large enough to carry its capacity.
pub const INITIAL_LIMIT: usize = 128;

/// Settings of an [`AdmissionQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// The most requests executing and waiting, together (`MAX_REQUESTS_IN_FLIGHT`).
    pub ceiling: usize,
    /// The fewest the executing limit goes down to.
    pub floor: usize,
    /// The wait in the queue beyond which a growing queue is overload
    /// (`REQUEST_QUEUE_TARGET`).
    pub target: Duration,
}

impl AdmissionConfig {
    /// `ceiling` and `target`, with a floor of 4 (or the ceiling, if lower).
    pub fn new(ceiling: usize, target: Duration) -> Self {
        Self {
            ceiling,
            floor: ceiling.min(4),
            target,
        }
    }
}

/// The admission queue. Cheap to share behind an [`Arc`].
#[derive(Debug)]
pub struct AdmissionQueue {
    config: AdmissionConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: GradientLimit,
    executing: usize,
    waiting: VecDeque<Waiter>,
    /// Whether newcomers are being refused (the queue grows).
    overloaded: bool,
    /// Requests started per second in the last interval (at least 1).
    rate: f64,
    window: Window,
}

#[derive(Debug)]
struct Waiter {
    since: Instant,
    /// `true`: its turn; `false`: refused after all (the queue was shed).
    wake: oneshot::Sender<bool>,
}

/// What one interval saw.
#[derive(Debug)]
struct Window {
    began: Instant,
    arrived: u32,
    started: u32,
    /// The shortest wait of a request that started in it (`None`: none started).
    shortest_wait: Option<Duration>,
    completed: u32,
    latency_total: Duration,
    peak_executing: usize,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            began: now,
            arrived: 0,
            started: 0,
            shortest_wait: None,
            completed: 0,
            latency_total: Duration::ZERO,
            peak_executing: 0,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long the queue in front of it takes to drain, in whole seconds (at least 1).
    pub retry_after: u64,
}

impl AdmissionQueue {
    /// A queue whose executing limit starts at [`INITIAL_LIMIT`] (or the ceiling, if lower)
    /// and doubles each interval until latency rises: it finds the knee within a second or
    /// so, and a fresh process takes a burst without refusing it.
    pub fn new(config: AdmissionConfig) -> Self {
        let ceiling = config.ceiling.max(1);
        let floor = config.floor.clamp(1, ceiling);
        let config = AdmissionConfig {
            ceiling,
            floor,
            ..config
        };
        Self {
            config,
            state: Mutex::new(State {
                limit: GradientLimit::new(INITIAL_LIMIT, floor, ceiling),
                executing: 0,
                waiting: VecDeque::new(),
                overloaded: false,
                rate: 1.0,
                window: Window::new(Instant::now()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place to execute one request: at once if one is free, else once those ahead of it
    /// have started; or refused if the queue grows (overload) or is full. Dropping the
    /// future while it waits gives up its turn.
    pub async fn acquire(self: &Arc<Self>) -> Result<Permit, Refused> {
        let now = Instant::now();
        let woken = {
            let mut state = self.state();
            self.roll(&mut state, now);
            state.window.arrived += 1;
            if state.waiting.is_empty() && state.executing < state.limit.limit() {
                Self::start(&mut state, Duration::ZERO);
                return Ok(self.permit(now));
            }
            let queued = state.executing + state.waiting.len();
            if queued >= self.config.ceiling
                || (state.overloaded && Self::wait_estimate(&state) > self.config.target)
            {
                return Err(Refused {
                    retry_after: Self::drain_seconds(&state),
                });
            }
            let (wake, woken) = oneshot::channel();
            state.waiting.push_back(Waiter { since: now, wake });
            woken
        };
        let mut turn = Turn {
            queue: Arc::clone(self),
            woken: Some(woken),
        };
        let admitted = match turn.woken.as_mut() {
            Some(woken) => woken.await.unwrap_or(false),
            None => false,
        };
        turn.woken = None;
        if admitted {
            Ok(self.permit(Instant::now()))
        } else {
            Err(Refused { retry_after: 1 })
        }
    }

    fn permit(self: &Arc<Self>, started: Instant) -> Permit {
        Permit {
            queue: Arc::clone(self),
            started,
        }
    }

    /// Counts a request that starts after waiting `waited`.
    fn start(state: &mut State, waited: Duration) {
        state.executing += 1;
        state.window.started += 1;
        state.window.shortest_wait = Some(
            state
                .window
                .shortest_wait
                .map_or(waited, |shortest| shortest.min(waited)),
        );
        state.window.peak_executing = state.window.peak_executing.max(state.executing);
    }

    /// Starts waiting requests while the limit allows; a waiter that gave up is skipped.
    fn start_waiting(state: &mut State, now: Instant) {
        while state.executing < state.limit.limit() {
            let Some(waiter) = state.waiting.pop_front() else {
                break;
            };
            if waiter.wake.send(true).is_ok() {
                Self::start(state, now.saturating_duration_since(waiter.since));
            }
        }
    }

    /// Closes the interval if it is over: moves the limit, judges the queue.
    fn roll(&self, state: &mut State, now: Instant) {
        if now.saturating_duration_since(state.window.began) < INTERVAL {
            return;
        }
        let window = std::mem::replace(&mut state.window, Window::new(now));
        let elapsed = now.saturating_duration_since(window.began).as_secs_f64();
        state.rate = (f64::from(window.started) / elapsed).max(1.0);
        // In overload the latency says more about the work of refusing the flood (the
        // machine's cores are busy with it) than about how many execute: the limit keeps
        // the knee it found before, rather than fall to the floor and starve the service.
        if window.completed > 0 && !state.overloaded {
            let average = window.latency_total / window.completed;
            state.limit.on_window(average, window.peak_executing);
        }
        // The oldest waiter's wait counts too: if nothing started, it is the shortest.
        let oldest = state
            .waiting
            .front()
            .map(|w| now.saturating_duration_since(w.since));
        let shortest = match (window.shortest_wait, oldest) {
            (Some(started), Some(oldest)) => started.min(oldest),
            (Some(started), None) => started,
            (None, oldest) => oldest.unwrap_or_default(),
        };
        // A closed loop holds at most as many requests as it has clients, however long they
        // wait; an open load beyond capacity holds more every interval, without bound. So
        // a queue is overload once it holds three quarters of the ceiling and its
        // shortest wait (as in CoDel) is above the target.
        let held = state.executing + state.waiting.len();
        let crowded = held * 4 >= self.config.ceiling * 3;
        // Once in overload the queue is kept short, so it cannot grow: what says the
        // overload goes on is that more still arrive (refused ones included) than start.
        let pressure = window.arrived > window.started + window.started / 10 + 8;
        state.overloaded = if state.overloaded {
            pressure
        } else {
            crowded && shortest > self.config.target
        };
        if state.overloaded {
            // As CoDel drops from the head: who has waited many times the target would only
            // be served late; it is refused now, and the queue is back to the target.
            let late = self.config.target * 4;
            while state
                .waiting
                .front()
                .is_some_and(|w| now.saturating_duration_since(w.since) > late)
            {
                if let Some(waiter) = state.waiting.pop_front() {
                    let _ = waiter.wake.send(false);
                }
            }
        }
        Self::start_waiting(state, now);
        Self::report(state);
    }

    /// Sets the admission gauges, once an interval.
    #[allow(clippy::cast_precision_loss, reason = "gauges of small counts")]
    fn report(state: &State) {
        use crate::telemetry::metrics as m;
        metrics::gauge!(m::REQUESTS_EXECUTING).set(state.executing as f64);
        metrics::gauge!(m::REQUESTS_WAITING).set(state.waiting.len() as f64);
        metrics::gauge!(m::ADMISSION_LIMIT).set(state.limit.limit() as f64);
        metrics::gauge!(m::ADMISSION_OVERLOADED).set(f64::from(u8::from(state.overloaded)));
    }

    /// How long a newcomer would wait: those ahead of it over the rate requests start.
    fn wait_estimate(state: &State) -> Duration {
        Duration::from_secs_f64((state.waiting.len() + 1) as f64 / state.rate)
    }

    /// How long the queue takes to drain, in whole seconds, at least 1.
    fn drain_seconds(state: &State) -> u64 {
        let seconds = Self::wait_estimate(state).as_secs_f64();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a small positive number of seconds, capped"
        )]
        let seconds = seconds.ceil().clamp(1.0, 60.0) as u64;
        seconds
    }

    /// Gives a place back; `latency` is how long its request executed (`None`: it never
    /// did, its waiter gave up as it was woken).
    fn release(&self, latency: Option<Duration>) {
        let now = Instant::now();
        let mut state = self.state();
        state.executing -= 1;
        if let Some(latency) = latency {
            state.window.completed += 1;
            state.window.latency_total += latency;
        }
        self.roll(&mut state, now);
        Self::start_waiting(&mut state, now);
    }

    /// The executing limit now.
    pub fn limit(&self) -> usize {
        self.state().limit.limit()
    }

    /// Requests executing now.
    pub fn in_flight(&self) -> usize {
        self.state().executing
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.state().waiting.len()
    }
}

/// A request's turn while it waits: if it is dropped after being woken but before it
/// could take its place, the place is given back.
struct Turn {
    queue: Arc<AdmissionQueue>,
    woken: Option<oneshot::Receiver<bool>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(mut woken) = self.woken.take() {
            if woken.try_recv() == Ok(true) {
                self.queue.release(None);
            }
        }
    }
}

/// One admitted request's place; dropping it gives the place back and records how long
/// the request executed.
#[derive(Debug)]
pub struct Permit {
    queue: Arc<AdmissionQueue>,
    started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.queue.release(Some(self.started.elapsed()));
    }
}

#[cfg(test)]
mod tests;
