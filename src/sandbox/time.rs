//! Clock and the portal's date format (`YYYY-MM-DDThh:mm:ss+03:00`), without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// The sandbox portal's time zone is UTC+03:00 (a typical Moscow-time cloud portal).
const OFFSET_SECS: i64 = 3 * 3600;
const OFFSET_TEXT: &str = "+03:00";

/// Current unix time in seconds with sub-second precision.
pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Current unix time in whole seconds.
pub(crate) fn now_secs() -> i64 {
    now_unix().floor() as i64
}

/// Formats a unix timestamp in the portal's time zone, e.g. `2026-04-30T10:15:00+03:00`.
pub(crate) fn portal_datetime(unix_secs: i64) -> String {
    let local = unix_secs + OFFSET_SECS;
    let days = local.div_euclid(86_400);
    let secs_of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{OFFSET_TEXT}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a date filter value: `YYYY-MM-DD`, or that with a time
/// (`THH:MM[:SS]` or ` HH:MM[:SS]`) and an offset (`+03:00`, `Z`); without an offset the
/// portal's time zone. `None` for anything else.
pub(crate) fn parse_portal_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_at(text.len().min(10));
    let mut parts = date.split('-');
    let (year, month, day) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let (clock, offset) = match rest.strip_prefix(['T', ' ']) {
        None if rest.is_empty() => ("", None),
        None => return None,
        Some(r) => match r.find(['+', '-', 'Z']) {
            Some(i) => (&r[..i], Some(&r[i..])),
            None => (r, None),
        },
    };
    let mut secs = 0;
    if !clock.is_empty() {
        let mut hms = clock.split(':');
        let (h, m) = (num(hms.next()?)?, num(hms.next()?)?);
        let s = match hms.next() {
            Some(s) => num(s.split('.').next()?)?,
            None => 0,
        };
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + s;
    }
    let offset = match offset {
        None => OFFSET_SECS,
        Some("Z") => 0,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':')?;
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    Some(days * 86_400 + secs - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_formats_and_plain_dates() {
        for t in [0, 1_777_533_300, 951_782_400, 1_767_222_000, -1] {
            assert_eq!(parse_portal_datetime(&portal_datetime(t)), Some(t));
        }
        assert_eq!(
            parse_portal_datetime("2026-04-30T07:15:00Z"),
            Some(1_777_533_300)
        );
        assert_eq!(
            parse_portal_datetime("2026-04-30 10:15"),
            Some(1_777_533_300)
        );
        // A plain date is its midnight in the portal's zone.
        assert_eq!(
            parse_portal_datetime("2026-04-30"),
            Some(1_777_533_300 - (10 * 3600 + 15 * 60))
        );
        for bad in [
            "",
            "soon",
            "2026-13-01",
            "2026-04-30Tnoon",
            "30.04.2026",
            "2026-04-30+",
        ] {
            assert_eq!(parse_portal_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(portal_datetime(0), "1970-01-01T03:00:00+03:00");
        // 2026-04-30T07:15:00Z
        assert_eq!(portal_datetime(1_777_533_300), "2026-04-30T10:15:00+03:00");
        // Leap day and a year boundary crossing because of the offset.
        assert_eq!(portal_datetime(951_782_400), "2000-02-29T03:00:00+03:00");
        assert_eq!(portal_datetime(1_767_222_000), "2026-01-01T02:00:00+03:00");
        assert_eq!(portal_datetime(-1), "1970-01-01T02:59:59+03:00");
    }

    #[test]
    fn civil_round_trip_edges() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_573), (2026, 4, 30));
    }
}
