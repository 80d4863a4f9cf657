//! Human-readable durations in configuration: `"15m"`, `"7d"`, `"1h 30m"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written for people. Bare integers are read as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// From whole days.
    pub const fn days(d: u64) -> Self {
        HumanDuration(Duration::from_secs(d * 86_400))
    }

    /// Whole seconds, saturating at `u32::MAX` (about 136 years).
    pub fn as_secs_u32(self) -> u32 {
        self.0.as_secs().min(u32::MAX as u64) as u32
    }
}

/// The longest duration a configuration takes: past it a value is surely a
/// typo, and would overflow the clocks it is added to.
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Written as people write them in the configuration, in days at most
/// (`90d`, `1h 30m`, `250ms`): never months or years, whose lengths vary.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if secs == 0 && millis == 0 {
            return f.write_str("0s");
        }
        let parts = [
            (secs / 86_400, "d"),
            (secs / 3_600 % 24, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
            (u64::from(millis), "ms"),
        ];
        let mut first = true;
        for (n, unit) in parts {
            if n > 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{n}{unit}")?;
                first = false;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            let why = match e {
                humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
                    "a number needs a unit"
                }
                humantime::DurationError::UnknownUnit { .. } => "unknown unit",
                humantime::DurationError::NumberOverflow => "too long",
                humantime::DurationError::Empty => "empty",
                _ => "not a duration",
            };
            format!("invalid duration {s:?}: {why}; write e.g. \"90s\", \"15m\", \"7d\"")
        })?;
        if d > LONGEST {
            return Err(format!(
                "invalid duration {s:?}: longer than 100 years (36500d)"
            ));
        }
        Ok(HumanDuration(d))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"15m\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                if v > LONGEST.as_secs() {
                    return Err(E::custom(format!(
                        "invalid duration {v}: longer than 100 years (36500d)"
                    )));
                }
                Ok(HumanDuration::secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("invalid duration {v}: negative")))?;
                self.visit_u64(v)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_forms() {
        assert_eq!(
            "15m".parse::<HumanDuration>().unwrap(),
            HumanDuration::secs(900)
        );
        assert_eq!(
            "7d".parse::<HumanDuration>().unwrap(),
            HumanDuration::days(7)
        );
        assert_eq!(
            "1h 30m".parse::<HumanDuration>().unwrap(),
            HumanDuration::secs(5400)
        );
        let err = "7x".parse::<HumanDuration>().unwrap_err();
        assert!(
            err.contains("\"7x\"") && err.contains("unknown unit"),
            "{err}"
        );
        let err = "3".parse::<HumanDuration>().unwrap_err();
        assert!(
            err.contains("needs a unit") && !err.contains("3sec"),
            "one hint: {err}"
        );
    }

    #[test]
    fn round_trips_through_display() {
        let d = HumanDuration::days(30);
        assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
    }

    #[test]
    fn printed_as_written_not_in_months() {
        for written in ["90d", "1h 30m", "15m", "250ms", "7d 12h", "0s", "1d 1s"] {
            let d: HumanDuration = written.parse().unwrap();
            assert_eq!(d.to_string(), written);
        }
    }

    #[test]
    fn absurd_lengths_are_refused_not_clamped() {
        let err = "99999999999999d".parse::<HumanDuration>().unwrap_err();
        assert!(
            err.contains("99999999999999d") && err.contains("100 years"),
            "{err}"
        );
        assert!("36500d".parse::<HumanDuration>().is_ok());
    }
}
