//! Delivering: the retry schedule, the outcome of an attempt and its record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{EndpointId, EventId, EventType};

/// When failed deliveries are tried again: after each failure, the next delay of the list,
/// give or take `jitter` of it; once the list is used up, the delivery has failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// The delay after the first, second, ... failed attempt.
    pub delays: Vec<Duration>,
    /// The fraction of each delay the actual one may differ by (0 to 1).
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// The specification's example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the
    /// first attempt (eight attempts over about 27.6 hours), ±10 %.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.1,
        }
    }
}

impl RetrySchedule {
    /// When to try again after attempt number `attempt` (1-based) failed at `now`, or `None`
    /// when no attempt is left. A `retry_after` the receiver asked for is honoured when it
    /// is later than the schedule, up to the schedule's longest delay: a receiver cannot
    /// put its deliveries off for longer than the schedule would (nor, with an absurd
    /// `Retry-After`, past the end of time).
    pub fn next_attempt(
        &self,
        attempt: u32,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<DateTime<Utc>> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let base = *self.delays.get(index)?;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rng.random_range((1.0 - jitter)..=(1.0 + jitter))
        } else {
            1.0
        };
        let longest = self.delays.iter().copied().max().unwrap_or(base);
        let asked = retry_after.unwrap_or_default().min(longest);
        let delay = base.mul_f64(factor).max(asked);
        Some(
            now.checked_add_signed(crate::time::to_chrono(delay))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

/// What one attempt to deliver an event to an endpoint came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered with this status (2xx: delivered).
    Answered {
        /// The HTTP status.
        status: u16,
        /// When to try again at the earliest, from `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    TimedOut,
    /// No connection, or the request failed on the way: what went wrong.
    Failed(String),
}

impl AttemptOutcome {
    /// Whether the event was delivered.
    pub const fn delivered(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if *status >= 200 && *status < 300)
    }

    /// The error to show when nothing answered.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Answered { .. } => None,
            Self::TimedOut => Some("timed out".into()),
            Self::Failed(e) => Some(e.clone()),
        }
    }

    /// The HTTP status, if the endpoint answered.
    pub const fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::TimedOut | Self::Failed(_) => None,
        }
    }
}

/// How much of a receiver's answer is kept.
pub const RESPONSE_EXCERPT_BYTES: usize = 256;

/// The first [`RESPONSE_EXCERPT_BYTES`] of a receiver's answer, cut at a character boundary,
/// as [`printable`] text.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_EXCERPT_BYTES)]);
    printable(text.trim_end_matches('\u{fffd}'))
}

/// `text` that every store can keep and every reader can show: each control character
/// but tab, line feed and carriage return (NUL among them, which PostgreSQL's `text`
/// refuses) becomes U+FFFD.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// One attempt to deliver an event to an endpoint, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Which attempt at this event and endpoint (1-based).
    pub attempt: u32,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The status the endpoint answered, if it did.
    pub status_code: Option<u16>,
    /// What went wrong when it did not answer.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
    /// The start of the answer's body.
    pub response_excerpt: String,
    /// Whether the event was delivered by it.
    pub delivered: bool,
}
