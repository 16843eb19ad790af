//! [`ManualClock`]: time that moves only when a test moves it.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::lock;
use crate::ports::Clock;

/// A clock that moves only when told: tests control time exactly.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.now) += crate::time::to_chrono(by);
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.now) = to;
    }
}

impl Default for ManualClock {
    /// A clock at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }
}
