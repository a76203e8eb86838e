//! The one wall clock of the crate: Unix time in milliseconds, whole seconds and
//! fractional seconds. Everything that stamps, expires or compares wall-clock time asks
//! here (the sandbox keeps its own: it imports nothing from the crate). A clock before
//! 1970 reads as 0; one past the range of `i64` milliseconds reads as `i64::MAX`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Unix time now, in milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Unix time now, in whole seconds.
pub fn now_s() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

/// Unix time now, in seconds with their fraction.
pub fn now_f64() -> f64 {
    since_epoch().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_readings_agree() {
        let (ms, s, f) = (now_ms(), now_s(), now_f64());
        assert!(s > 1_700_000_000, "{s}");
        assert!((ms / 1000 - s).abs() <= 1, "{ms} {s}");
        assert!((f - s as f64).abs() <= 1.0, "{f} {s}");
    }
}
