//! Event timestamps: RFC 3339 (with or without fractions, any offset) and
//! epoch numbers in seconds, milliseconds, microseconds or nanoseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Earliest accepted event time (2000-01-01), in ms: older stamps are garbage.
const MIN_MS: i64 = 946_684_800_000;
/// Latest accepted event time (2100-01-01), in ms.
const MAX_MS: i64 = 4_102_444_800_000;

/// Parses a timestamp string into epoch milliseconds.
pub fn parse_str(s: &str) -> Option<i64> {
    let s = s.trim();
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
