//! `[alerts]`: how findings become alerts and where they go. Suppression
//! rules, redaction, and the sinks, each with its own queue, timeout, retry
//! policy and routing (each sink's keys are its own file's: `sink/`).

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sink::check::{check_positive, check_url};
pub use super::sink::config::{SinkConfig, SinkKind};
pub use super::sink::{
    signing_key, standard_webhook, AlertmanagerConfig, FileSinkConfig, KafkaSinkConfig,
    PagerDutyConfig, SigningKey, SlackConfig, SplunkHecConfig, StdoutSinkConfig, WebhookConfig,
};
use keywatch_core::engine::Detector;
use keywatch_core::types::{invalid, Cidr, ConfigError, HumanDuration};

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// JSON Lines file that keeps every alert a sink could not deliver, with
    /// the sink, the reason and the attempts made.
    pub dead_letter_path: PathBuf,
    /// On shutdown, sinks keep delivering what is queued for this long; what
    /// is left then goes to the dead-letter file.
    pub drain_timeout: HumanDuration,
    /// Alert ids each sink remembers as delivered (or on their way), so a
    /// finding found again after a replay is not delivered twice. 0 turns
    /// this off.
    pub remember_ids: usize,
    /// Where people reach keywatch's HTTP API; messages link to
    /// `{public_url}/api/v1/findings/{id}` and `{public_url}/api/v1/keys/{key_id}`.
    pub public_url: String,
    /// What is removed from alerts before they leave the process.
    pub redact: RedactConfig,
    /// Findings matching one of these rules are not alerted.
    pub suppress: Vec<Suppression>,
    /// Where alerts go. None: findings are only counted.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            // Beside the working directory, like a log; set an absolute path in production.
            dead_letter_path: PathBuf::from("keywatch-dead-letter.jsonl"),
            // Well inside Kubernetes' 30s grace period, with room for the
            // source to commit after the alerts are out.
            drain_timeout: HumanDuration::secs(10),
            // 100k ids is a day of a very noisy fleet, at ~85 bytes each (benches/alerts.rs):
            // under 9 MB per sink.
            remember_ids: 100_000,
            // The address `keywatch demo` and the default `run` serve the API on.
            public_url: "http://127.0.0.1:9464".to_owned(),
            redact: RedactConfig::default(),
            suppress: Vec::new(),
            sinks: Vec::new(),
        }
    }
}

/// `[alerts.redact]`: what of the sample event leaves the process. Values
/// that look like secrets (AWS secret keys, bearer tokens, passwords in URLs,
/// private keys, JWTs, well-known token formats) are always masked, wherever
/// they appear in an alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactConfig {
    /// Sample fields removed from alerts (`principal`, `source`, `user_agent`,
    /// `action`, `error_code`, `region`, ...).
    pub drop: Vec<String>,
    /// Sample fields kept but replaced by `[redacted]`.
    pub mask: Vec<String>,
    /// More patterns (regular expressions) whose matches are masked in every
    /// string of an alert.
    pub patterns: Vec<String>,
}

/// Fields of a sample event that `drop` and `mask` may name.
pub const SAMPLE_FIELDS: [&str; 10] = [
    "time",
    "key_id",
    "principal",
    "source",
    "user_agent",
    "action",
    "outcome",
    "error_code",
    "region",
    "count",
];

/// One suppression rule: a finding matching every condition given is not
/// alerted. At least one condition is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Key ids, as a glob (`*` any run, `?` one character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Principals, as a glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// One detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
    /// Findings whose tripping event came from this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_network: Option<Cidr>,
    /// The rule stops applying at this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Why the rule exists, for whoever finds it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Suppression {
    /// Checks the rule on its own; `key` is the dotted path for messages.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.key.is_none()
            && self.principal.is_none()
            && self.detector.is_none()
            && self.source_network.is_none()
        {
            return Err(invalid(
                key,
                "{}",
                "needs at least one of key, principal, detector, source_network (an empty rule would mute everything)",
            ));
        }
        for (field, glob) in [("key", &self.key), ("principal", &self.principal)] {
            let Some(glob) = glob.as_deref() else {
                continue;
            };
            if glob.trim().is_empty() {
                return Err(invalid(
                    &format!("{key}.{field}"),
                    "\"\"",
                    "must not be empty; leave it out to match any",
                ));
            }
            if glob.chars().count() > MAX_GLOB_CHARS {
                return Err(invalid(
                    &format!("{key}.{field}"),
                    format!("\"{}…\"", glob.chars().take(32).collect::<String>()),
                    format!(
                        "is {} characters; a glob may have at most {MAX_GLOB_CHARS}",
                        glob.chars().count()
                    ),
                ));
            }
            // Only wildcards with a `*` among them: every id (of a few
            // characters or more) matches, so the rule mutes as much as an
            // empty one would.
            if glob.contains('*') && glob.chars().all(|c| c == '*' || c == '?') {
                return Err(invalid(
                    &format!("{key}.{field}"),
                    format!("{glob:?}"),
                    format!("matches every {field}; name the ones to mute, or leave it out to match any"),
                ));
            }
        }
        Ok(())
    }
}

/// Longest key or principal glob in a suppression rule: ids are far shorter,
/// and a rule is matched against every finding.
pub const MAX_GLOB_CHARS: usize = 256;

/// A point in time, written RFC 3339 (`"2026-03-01T00:00:00Z"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch.
    pub epoch_ms: i64,
}

impl Timestamp {
    /// Now, by the wall clock.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// `d` after this time.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp {
            epoch_ms: self
                .epoch_ms
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let epoch_ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        Timestamp { epoch_ms }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&keywatch_core::decode::time::format_rfc3339(self.epoch_ms))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Timestamp {
                epoch_ms: t.timestamp_millis(),
            })
            .map_err(|e| format!("invalid time {s:?} ({e}); write e.g. \"2026-03-01T00:00:00Z\""))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl AlertsConfig {
    /// Cross-field checks; each error names the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("alerts.drain_timeout", self.drain_timeout)?;
        check_url("alerts.public_url", &self.public_url)?;
        if !self.sinks.is_empty() && self.dead_letter_path.as_os_str().is_empty() {
            return Err(invalid(
                "alerts.dead_letter_path",
                "\"\"",
                "must name a file when sinks are configured: undeliverable alerts are kept there",
            ));
        }
        for (list, key) in [(&self.redact.drop, "drop"), (&self.redact.mask, "mask")] {
            for (i, field) in list.iter().enumerate() {
                if !SAMPLE_FIELDS.contains(&field.as_str()) {
                    return Err(invalid(
                        &format!("alerts.redact.{key}[{i}]"),
                        format!("{field:?}"),
                        format!("not a sample field; one of {}", SAMPLE_FIELDS.join(", ")),
                    ));
                }
            }
        }
        for (i, pattern) in self.redact.patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(invalid(
                    &format!("alerts.redact.patterns[{i}]"),
                    format!("{pattern:?}"),
                    format!("not a regular expression: {e}"),
                ));
            }
        }
        for (i, rule) in self.suppress.iter().enumerate() {
            rule.validate(&format!("alerts.suppress[{i}]"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let at = format!("alerts.sinks[{i}]");
            if !names.insert(sink.name()) {
                return Err(invalid(
                    &format!("{at}.name"),
                    format!("{:?}", sink.name()),
                    "another sink has this name; give each sink of a type a distinct `name`",
                ));
            }
            sink.validate(&at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywatch_core::engine::Severity;

    fn parse(toml_text: &str) -> Result<AlertsConfig, String> {
        let cfg: AlertsConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn sinks_read_flat_with_shared_and_own_keys() {
        std::env::set_var("KEYWATCH_TEST_HOOK_SECRET", "whsec_c2VjcmV0");
        let cfg = parse(
            r#"
[[sinks]]
type = "webhook"
name = "secops"
url = "https://hooks.example.com/keywatch"
secret = "env:KEYWATCH_TEST_HOOK_SECRET"
min_severity = "medium"
timeout = "3s"
headers = { Authorization = "Bearer abc" }

[[sinks]]
type = "stdout"
pretty = true
"#,
        )
        .unwrap();
        assert_eq!(cfg.sinks.len(), 2);
        let hook = &cfg.sinks[0];
        assert_eq!(hook.name(), "secops");
        assert_eq!(hook.min_severity, Severity::Medium);
        assert_eq!(hook.timeout, HumanDuration::secs(3));
        assert_eq!(
            hook.max_retries,
            crate::alert::sink::config::default_max_retries(),
            "shared keys default"
        );
        let SinkKind::Webhook(w) = &hook.kind else {
            panic!("{:?}", hook.kind)
        };
        assert_eq!(w.secret.as_ref().unwrap().expose(), "whsec_c2VjcmV0");
        assert_eq!(cfg.sinks[1].name(), "stdout");
        assert_eq!(
            cfg.sinks[1].kind,
            SinkKind::Stdout(StdoutSinkConfig { pretty: true })
        );
    }

    #[test]
    fn unknown_keys_in_a_sink_are_refused() {
        let err = parse("[[sinks]]\ntype = \"webhook\"\nurl = \"http://h/\"\nurll = \"x\"\n")
            .unwrap_err();
        assert!(err.contains("urll"), "{err}");
        let err = parse("[[sinks]]\ntype = \"smoke_signal\"\n").unwrap_err();
        assert!(err.contains("smoke_signal"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let err = parse("[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://h/x\"\n").unwrap_err();
        assert!(
            err.contains("alerts.sinks[0].url") && err.contains("ftp://h/x"),
            "{err}"
        );
        let err = parse(
            "[[sinks]]\ntype = \"file\"\npath = \"a\"\n[[sinks]]\ntype = \"file\"\npath = \"b\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("alerts.sinks[1].name") && err.contains("file"),
            "{err}"
        );
        let err = parse(
            "[[sinks]]\ntype = \"stdout\"\nbackoff_initial = \"10s\"\nbackoff_max = \"1s\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("alerts.sinks[0].backoff_max") && err.contains("1s"),
            "{err}"
        );
        let err = parse("[redact]\ndrop = [\"password\"]\n").unwrap_err();
        assert!(
            err.contains("alerts.redact.drop[0]") && err.contains("password"),
            "{err}"
        );
        let err = parse("[redact]\npatterns = [\"(unclosed\"]\n").unwrap_err();
        assert!(
            err.contains("alerts.redact.patterns[0]") && err.contains("(unclosed"),
            "{err}"
        );
        let err = parse("[[suppress]]\nreason = \"all quiet\"\n").unwrap_err();
        assert!(err.contains("alerts.suppress[0]"), "{err}");
        let err = parse("[[suppress]]\nkey = \"AKIA*\"\nexpires = \"tomorrow\"\n").unwrap_err();
        assert!(err.contains("tomorrow"), "{err}");
        let err = parse("[[suppress]]\nkey = \"*\"\n").unwrap_err();
        assert!(
            err.contains("alerts.suppress[0].key") && err.contains("\"*\""),
            "{err}"
        );
        let err =
            parse("[[suppress]]\nprincipal = \"?**\"\ndetector = \"new_source\"\n").unwrap_err();
        assert!(err.contains("alerts.suppress[0].principal"), "{err}");
        let long = "A".repeat(MAX_GLOB_CHARS + 1);
        let err = parse(&format!("[[suppress]]\nkey = \"{long}\"\n")).unwrap_err();
        assert!(
            err.contains("alerts.suppress[0].key") && err.contains("at most 256"),
            "{err}"
        );
        assert!(parse("[[suppress]]\nkey = \"AKIA?*\"\n").is_ok());
    }

    #[test]
    fn secret_urls_are_named_not_shown() {
        let err = parse("[[sinks]]\ntype = \"slack\"\nurl = \"not a url T0KEN\"\n").unwrap_err();
        assert!(err.contains("alerts.sinks[0].url"), "{err}");
        assert!(!err.contains("T0KEN"), "{err}");
    }

    #[test]
    fn sinks_load_through_the_file_and_environment_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keywatch.toml");
        std::fs::write(
            &path,
            r#"
[alerts]
dead_letter_path = "/var/lib/keywatch/dead-letter.jsonl"

[[alerts.sinks]]
type = "pagerduty"
routing_key = "R0UTINGKEY"
resolve_after = "90m"
max_retries = 3
detectors = ["new_source", "dormant_revival"]

[[alerts.suppress]]
key = "AKIACI*"
reason = "CI keys rotate daily"
"#,
        )
        .unwrap();
        let env = [(
            "KEYWATCH__ALERTS__DRAIN_TIMEOUT".to_owned(),
            "3s".to_owned(),
        )];
        let cfg = crate::config::Config::load_with_env(Some(&path), env).unwrap();
        let alerts = &cfg.alerts;
        assert_eq!(alerts.drain_timeout, HumanDuration::secs(3));
        let sink = &alerts.sinks[0];
        assert_eq!(sink.max_retries, 3);
        assert_eq!(
            sink.detectors,
            [Detector::NewSource, Detector::DormantRevival]
        );
        let SinkKind::PagerDuty(pd) = &sink.kind else {
            panic!("{:?}", sink.kind)
        };
        assert_eq!(pd.resolve_after, HumanDuration::secs(5400));
        assert_eq!(pd.url, "https://events.pagerduty.com");
        assert_eq!(alerts.suppress[0].key.as_deref(), Some("AKIACI*"));
        let shown = cfg.to_toml();
        assert!(!shown.contains("R0UTINGKEY"), "{shown}");
        assert!(shown.contains("pagerduty"), "{shown}");
    }

    #[test]
    fn suppression_expiry_reads_rfc3339() {
        let cfg = parse(
            "[[suppress]]\nkey = \"AKIA*\"\ndetector = \"new_source\"\nsource_network = \"10.0.0.0/8\"\nexpires = \"2026-03-01T00:00:00Z\"\n",
        )
        .unwrap();
        let rule = &cfg.suppress[0];
        assert_eq!(rule.expires.unwrap().epoch_ms, 1_772_323_200_000);
        assert_eq!(rule.detector, Some(Detector::NewSource));
    }
}
