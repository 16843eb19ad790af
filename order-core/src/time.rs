//! Converting between the standard library's durations and `chrono`'s.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `d` as a `chrono` duration, saturating at [`chrono::Duration::MAX`] for a span
/// `chrono` cannot hold (a configured "forever", say), so adding it to a time never
/// panics on overflow of the conversion.
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `d` after `at`, saturating at the last time `chrono` can hold: a configured or received
/// span never panics when added.
pub fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    at.checked_add_signed(to_chrono(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_chrono_cannot_hold_saturates() {
        assert_eq!(
            to_chrono(Duration::from_millis(1500)).num_milliseconds(),
            1500
        );
        assert_eq!(to_chrono(Duration::MAX), chrono::Duration::MAX);
    }

    #[test]
    fn a_time_plus_any_span_saturates_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(
            later(now, Duration::from_secs(2)),
            now + chrono::Duration::seconds(2)
        );
        for huge in [Duration::MAX, Duration::from_secs(99_999_999_999_999)] {
            assert_eq!(later(now, huge), DateTime::<Utc>::MAX_UTC);
        }
    }
}
