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

/// The UTC calendar date and time of Unix seconds `secs`: year, month, day, hour, minute,
/// second (civil-from-days, H. Hinnant's algorithm; a date crate for a timestamp would be
/// heavier than these lines).
pub fn utc(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix milliseconds `ms` as an RFC 3339 UTC timestamp: `2026-12-03T09:05:07.042Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let (y, m, d, hh, mm, ss) = utc(ms.div_euclid(1000));
    let frac = ms.rem_euclid(1000);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:03}Z")
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

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_256_000_042), "2026-12-03T00:00:00.042Z");
        assert_eq!(rfc3339_ms(951_782_400_999), "2000-02-29T00:00:00.999Z");
        assert_eq!(rfc3339_ms(86_399_001), "1970-01-01T23:59:59.001Z");
    }
}
