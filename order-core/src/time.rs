//! Converting between the standard library's durations and `chrono`'s.

use std::time::Duration;

/// `d` as a `chrono` duration, saturating at [`chrono::Duration::MAX`] for a span
/// `chrono` cannot hold (a configured "forever", say), so adding it to a time never
/// panics on overflow of the conversion.
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
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
}
