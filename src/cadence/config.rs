//! `[review]`: when the daemon makes the key review on its own, and where
//! it delivers it.

use std::fmt;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::alert::config::{KafkaSinkConfig, WebhookConfig};
use crate::secret::Secret;
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// `[review]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// How often: a duration (`"30d"`, `"7d"`, at least `1s`) or a calendar
    /// cadence: `"monthly"` (the 1st of each month, 00:00 UTC) or `"weekly"`
    /// (Mondays, 00:00 UTC). Unset: the daemon makes no review on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<Cadence>,
    /// Where each review goes (`[[review.deliver]]`, `type` = `slack`,
    /// `webhook`, `kafka` or `file`).
    pub deliver: Vec<Delivery>,
    /// Time for one delivery attempt.
    pub timeout: HumanDuration,
}

/// Ten seconds, as the alert sinks' default.
fn default_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            every: None,
            deliver: Vec::new(),
            timeout: default_timeout(),
        }
    }
}

/// One `[[review.deliver]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delivery {
    /// A summary to a Slack incoming webhook.
    Slack(SlackDelivery),
    /// The review JSON POSTed, signed per Standard Webhooks like the alert webhook.
    Webhook(WebhookConfig),
    /// The review JSON produced to a Kafka topic (record key `review`).
    Kafka(KafkaSinkConfig),
    /// The review as Markdown, written to a file (replaced at each review).
    File(FileDelivery),
}

impl Delivery {
    /// Name in the metric and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Delivery::Slack(_) => "slack",
            Delivery::Webhook(_) => "webhook",
            Delivery::Kafka(_) => "kafka",
            Delivery::File(_) => "file",
        }
    }
}

/// `type = "slack"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackDelivery {
    /// The incoming-webhook URL (it is the credential: give it as `env:` or `file:`).
    pub url: Secret,
}

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDelivery {
    /// The Markdown file.
    pub path: std::path::PathBuf,
}

/// When reviews are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// A fixed interval from the previous review.
    Every(Duration),
    /// Mondays, 00:00 UTC.
    Weekly,
    /// The 1st of each month, 00:00 UTC.
    Monthly,
}

impl Cadence {
    /// The first review time after `t` (Unix seconds).
    pub fn next_after(self, t: i64) -> i64 {
        match self {
            Cadence::Every(d) => t + d.as_secs() as i64,
            Cadence::Weekly => {
                let day = t.div_euclid(86_400);
                // 1970-01-01 was a Thursday: Mondays are days ≡ 4 (mod 7).
                let next_monday = day + 1 + (4 - (day + 1)).rem_euclid(7);
                next_monday * 86_400
            }
            Cadence::Monthly => {
                let now = Utc.timestamp_opt(t, 0).single().unwrap_or_default();
                let (y, m) = if now.month() == 12 {
                    (now.year() + 1, 1)
                } else {
                    (now.year(), now.month() + 1)
                };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                    .single()
                    .map_or(t + 31 * 86_400, |d| d.timestamp())
            }
        }
    }

    /// The longest time between two reviews, seconds (for the overdue rule).
    pub fn longest_secs(self) -> u64 {
        match self {
            Cadence::Every(d) => d.as_secs(),
            Cadence::Weekly => 7 * 86_400,
            Cadence::Monthly => 31 * 86_400,
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
            Cadence::Weekly => f.write_str("weekly"),
            Cadence::Monthly => f.write_str("monthly"),
        }
    }
}

impl std::str::FromStr for Cadence {
    type Err = String;

    fn from_str(s: &str) -> Result<Cadence, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "monthly" => Ok(Cadence::Monthly),
            "weekly" => Ok(Cadence::Weekly),
            other => humantime::parse_duration(other)
                .map(Cadence::Every)
                .map_err(|e| {
                    format!("{other:?} is neither a duration ({e}) nor \"monthly\" or \"weekly\"")
                }),
        }
    }
}

impl Serialize for Cadence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Cadence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ReviewConfig {
    /// Checks each value; `has_inventory`: `inventory.path` is set.
    pub fn validate(&self, has_inventory: bool) -> Result<(), ConfigError> {
        let Some(every) = self.every else {
            if !self.deliver.is_empty() {
                return Err(invalid(
                    "review.every",
                    "(unset)",
                    "is needed for [[review.deliver]]: deliveries follow the cadence",
                ));
            }
            return Ok(());
        };
        if let Cadence::Every(d) = every {
            if d < Duration::from_secs(1) {
                return Err(invalid("review.every", every, "must be at least 1s"));
            }
        }
        if !has_inventory {
            return Err(invalid(
                "review.every",
                every,
                "needs an inventory (inventory.path): the review is of the inventory's keys",
            ));
        }
        if self.timeout.0 < Duration::from_millis(100) {
            return Err(invalid(
                "review.timeout",
                self.timeout,
                "must be at least 100ms",
            ));
        }
        for (i, d) in self.deliver.iter().enumerate() {
            let at = format!("review.deliver[{i}]");
            match d {
                Delivery::Webhook(w) => w.validate(&at)?,
                Delivery::Kafka(k) => k.validate(&at)?,
                Delivery::Slack(s) => {
                    if !s.url.expose().starts_with("http") {
                        return Err(invalid(
                            &format!("{at}.url"),
                            &s.url,
                            "must be an http(s) URL (a Slack incoming webhook)",
                        ));
                    }
                }
                Delivery::File(f) => {
                    if f.path.as_os_str().is_empty() {
                        return Err(invalid(&format!("{at}.path"), "\"\"", "is required"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_cadences_land_on_their_day() {
        // 2026-01-15T12:00:00Z, a Thursday.
        let t = 1_768_478_400;
        assert_eq!(Cadence::Monthly.next_after(t), 1_769_904_000); // 2026-02-01
        assert_eq!(Cadence::Weekly.next_after(t), 1_768_780_800); // Monday 2026-01-19
                                                                  // December rolls over to the next year.
        assert_eq!(Cadence::Monthly.next_after(1_797_033_600), 1_798_761_600); // 2026-12-12 → 2027-01-01
        assert_eq!(
            Cadence::Every(Duration::from_secs(60)).next_after(t),
            t + 60
        );
        assert_eq!("monthly".parse::<Cadence>(), Ok(Cadence::Monthly));
        assert_eq!(
            "30d".parse::<Cadence>(),
            Ok(Cadence::Every(Duration::from_secs(30 * 86_400)))
        );
        assert!("fortnightly"
            .parse::<Cadence>()
            .unwrap_err()
            .contains("monthly"));
    }

    #[test]
    fn validation_names_key_and_value() {
        let cfg = ReviewConfig {
            every: Some(Cadence::Every(Duration::from_millis(10))),
            ..Default::default()
        };
        let err = cfg.validate(true).unwrap_err().to_string();
        assert!(
            err.contains("review.every") && err.contains("10ms"),
            "{err}"
        );
        let cfg = ReviewConfig {
            every: Some(Cadence::Monthly),
            ..Default::default()
        };
        let err = cfg.validate(false).unwrap_err().to_string();
        assert!(err.contains("inventory.path"), "{err}");
        assert!(cfg.validate(true).is_ok());
    }
}
