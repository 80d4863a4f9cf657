//! Event timestamps: RFC 3339 (with or without fractions, any offset) and
//! epoch numbers in seconds, milliseconds, microseconds or nanoseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Earliest accepted event time (2000-01-01), in ms: older stamps are garbage.
const MIN_MS: i64 = 946_684_800_000;
/// Latest accepted event time (2100-01-01), in ms.
const MAX_MS: i64 = 4_102_444_800_000;

/// Parses a timestamp string into epoch milliseconds.
pub fn parse_str(raw: &str) -> Option<i64> {
    // The usual form first: it has no surrounding space and is no number.
    // Padded, it goes to chrono below, which reads it the same (tested).
    if let Some(ms) = parse_utc_z(raw.as_bytes()) {
        return in_range(ms);
    }
    let s = raw.trim();
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
        return parse_epoch(s.parse::<f64>().ok()?);
    }
    let ms = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.timestamp_millis(),
        // Some logs drop the zone ("2024-08-02T08:23:24"): read it as UTC.
        Err(_) => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc()
            .timestamp_millis(),
    };
    in_range(ms)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the form CloudTrail and most audit
/// logs write, read without chrono (it runs for every event). Anything else,
/// a leap second or an impossible date included, is `None` and left to
/// chrono, so both agree on every string this accepts.
fn parse_utc_z(s: &[u8]) -> Option<i64> {
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let (Some(b), Some(b'Z')) = (s.first_chunk::<19>(), s.last()) else {
        return None;
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    // No early exit: the compiler unrolls this into straight-line code.
    if DIGITS
        .iter()
        .fold(false, |bad, &i| bad | (b[i].wrapping_sub(b'0') > 9))
    {
        return None;
    }
    let two = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let ms = match &s[19..s.len() - 1] {
        [] => 0,
        [b'.', digits @ ..]
            if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) =>
        {
            (0..3).fold(0, |ms, i| {
                ms * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'))
            })
        }
        _ => return None,
    };
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
    // `days_from_civil`), years counted from March.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms)
}

/// Reads an epoch number, guessing the unit from its magnitude.
pub fn parse_epoch(v: f64) -> Option<i64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let ms = if v < 1e11 {
        v * 1e3
    } else if v < 1e14 {
        v
    } else if v < 1e17 {
        v / 1e3
    } else {
        v / 1e6
    };
    in_range(ms as i64)
}

fn in_range(ms: i64) -> Option<i64> {
    (MIN_MS..MAX_MS).contains(&ms).then_some(ms)
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_722_587_004_000; // 2024-08-02T08:23:24Z

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_str("2024-08-02T08:23:24Z"), Some(T));
        assert_eq!(parse_str("2024-08-02T08:23:24.250Z"), Some(T + 250));
        assert_eq!(parse_str("2024-08-02T08:23:24.123456789Z"), Some(T + 123));
        assert_eq!(parse_str("2024-08-02T10:23:24+02:00"), Some(T));
        assert_eq!(parse_str("2024-08-02T08:23:24"), Some(T));
        // Padding around any form is read through.
        assert_eq!(parse_str(" 2024-08-02T08:23:24Z\n"), Some(T));
        assert_eq!(parse_str("\t2024-08-02T08:23:24.250Z "), Some(T + 250));
        assert_eq!(parse_str(" 2024-08-02T10:23:24+02:00 "), Some(T));
    }

    #[test]
    fn the_fast_form_agrees_with_chrono() {
        let chrono = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        // Every day of 2000..2101 at a time of day that moves with it, with
        // and without fractions of every length; then near misses.
        let mut checked = 0;
        for day in 0..(101 * 366) {
            let t = 946_684_800_000i64 + day * 86_400_000 + (day * 7_919_123) % 86_400_000;
            let base = DateTime::<Utc>::from_timestamp_millis(t).unwrap();
            for form in [
                base.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                base.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                base.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
                base.format("%Y-%m-%dT%H:%M:%S.%fZ").to_string(),
                base.format("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            ] {
                assert_eq!(parse_utc_z(form.as_bytes()), chrono(&form), "{form}");
                checked += 1;
            }
        }
        assert!(checked > 180_000);
        for odd in [
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2000-02-29T23:59:59.999Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-10T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T23:59:59.Z",
            "2024-01-01T23:59:59.1234567890Z",
            "2024-01-01T23:59:59.12a4Z",
            "2024-01-01 23:59:59Z",
            "2024-01-01T23:59:59z",
            "2024-1-01T23:59:59Z",
            "+024-01-01T23:59:59Z",
        ] {
            if let Some(ms) = parse_utc_z(odd.as_bytes()) {
                assert_eq!(Some(ms), chrono(odd), "{odd}");
            }
            // Whatever path takes it, the answer is chrono's.
            assert_eq!(parse_str(odd), chrono(odd).and_then(in_range), "{odd}");
        }
        assert_eq!(
            parse_utc_z(b"2024-01-01T23:59:60Z"),
            None,
            "leap seconds: chrono"
        );
        assert_eq!(parse_utc_z(b"2023-02-29T00:00:00Z"), None);
    }

    #[test]
    fn epoch_units() {
        assert_eq!(parse_epoch(1_722_587_004.0), Some(T));
        assert_eq!(parse_epoch(1_722_587_004_000.0), Some(T));
        assert_eq!(parse_epoch(1_722_587_004_000_000.0), Some(T));
        assert_eq!(parse_epoch(1_722_587_004_000_000_000.0), Some(T));
        assert_eq!(parse_str("1722587004"), Some(T));
        assert_eq!(parse_str("1722587004.5"), Some(T + 500));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_str("yesterday"), None);
        assert_eq!(parse_str(""), None);
        assert_eq!(parse_epoch(-5.0), None);
        assert_eq!(parse_epoch(f64::NAN), None);
        assert_eq!(parse_str("1970-01-01T00:00:00Z"), None);
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_rfc3339(T + 250), "2024-08-02T08:23:24.250Z");
    }
}
