//! One `[[alerts.sinks]]` table: `type` picks the kind, the keys every sink
//! shares (routing, queue, retries) sit beside the kind's own keys, which
//! each sink's file defines and checks.

use serde::{Deserialize, Serialize};

use super::alertmanager::AlertmanagerConfig;
use super::check::check_positive;
use super::file::{FileSinkConfig, StdoutSinkConfig};
use super::kafka::KafkaSinkConfig;
use super::pagerduty::PagerDutyConfig;
use super::slack::SlackConfig;
use super::splunk_hec::SplunkHecConfig;
use super::webhook::WebhookConfig;
use crate::alert::format::AlertFormat;
use keywatch_core::engine::{Detector, Severity};
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// One `[[alerts.sinks]]`: what every sink has, plus its kind's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkConfig {
    /// The kind of sink (`type`) and its own keys. Unknown keys are refused
    /// by the kind's table: `deny_unknown_fields` cannot sit beside `flatten`.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// The schema the alert is written in, for sinks that carry it as JSON
    /// (`webhook`, `splunk_hec`, `kafka`, `file`, `stdout`): `keywatch` (the alert as
    /// documented), `ocsf` (an OCSF Detection Finding) or `ecs` (Elastic
    /// Common Schema).
    #[serde(default)]
    pub format: AlertFormat,
    /// Name in metrics, logs and the dead-letter file; defaults to the type.
    /// Must be unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only alerts at least this severe.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Only these detectors; empty: all.
    #[serde(default)]
    pub detectors: Vec<Detector>,
    /// Only alerts whose key's owner is in one of these teams (from the
    /// inventory); empty: all alerts, owned or not.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Alerts waiting for this sink; past it new alerts go to the dead-letter file.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Deliveries in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// One delivery attempt may take this long.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after the first, for failures worth retrying (timeouts,
    /// connection errors, 5xx, 429).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry, with jitter.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: HumanDuration,
    /// Longest wait between retries (a `Retry-After` may ask for longer).
    #[serde(default = "default_backoff_max")]
    pub backoff_max: HumanDuration,
    /// An alert not delivered this long after it was raised is given up and
    /// dead-lettered: a page about last night is noise.
    #[serde(default = "default_max_delivery_age")]
    pub max_delivery_age: HumanDuration,
}

fn default_min_severity() -> Severity {
    Severity::Info
}

/// 10k alerts is hours of a noisy fleet's findings; queued, an alert takes
/// ~1.3 KB (benches/alerts.rs), so a full queue ~13 MB.
fn default_queue_capacity() -> usize {
    10_000
}

/// A few requests in flight hide a receiver's latency without flooding it.
fn default_concurrency() -> usize {
    4
}

/// Webhook receivers are expected to answer within seconds (Slack: 3s,
/// Standard Webhooks: 15s); 10s tolerates a slow one.
fn default_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// With 1s doubling to 60s, eight retries cover about five minutes: a
/// receiver restart or a short outage.
pub(crate) fn default_max_retries() -> u32 {
    8
}

fn default_backoff_initial() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_backoff_max() -> HumanDuration {
    HumanDuration::secs(60)
}

/// One hour: the engine's default cooldown; a newer finding is on its way by then.
fn default_max_delivery_age() -> HumanDuration {
    HumanDuration::secs(3600)
}

impl SinkConfig {
    /// A sink of this kind with every shared key at its default.
    pub fn new(kind: SinkKind) -> SinkConfig {
        SinkConfig {
            kind,
            format: AlertFormat::default(),
            name: None,
            min_severity: default_min_severity(),
            detectors: Vec::new(),
            teams: Vec::new(),
            queue_capacity: default_queue_capacity(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            max_delivery_age: default_max_delivery_age(),
        }
    }

    /// The name in metrics and logs: `name`, else the type.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.type_name())
    }

    /// What this sink is sent when incidents are on (`incidents`) or off.
    /// The paging sinks notify per incident: PagerDuty and Slack get the
    /// incident's events instead of its findings, Alertmanager its findings
    /// labelled with `incident_id` (its route groups them into one
    /// notification). The JSON sinks get both, in their `format`
    /// (an OCSF Incident Finding, an ECS alert document).
    pub fn takes(&self, incidents: bool) -> Takes {
        let (findings, incidents) = match &self.kind {
            _ if !incidents => (true, false),
            SinkKind::Slack(_) | SinkKind::PagerDuty(_) => (false, true),
            SinkKind::Alertmanager(_) => (true, false),
            _ => (true, true),
        };
        Takes {
            findings,
            incidents,
        }
    }
}

/// What a sink is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takes {
    /// Each finding's alert.
    pub findings: bool,
    /// Incident events (`opened`, `updated`, `escalated`, `resolved`).
    pub incidents: bool,
}

/// The kind of a sink, by its `type` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    /// A JSON POST of the alert, signed per the Standard Webhooks spec.
    Webhook(WebhookConfig),
    /// Splunk's HTTP Event Collector, with indexer acknowledgement if asked.
    SplunkHec(SplunkHecConfig),
    /// A Slack incoming webhook: a message a person reads at a glance.
    Slack(SlackConfig),
    /// PagerDuty Events API v2: trigger, then resolve after a quiet period.
    #[serde(rename = "pagerduty")]
    PagerDuty(PagerDutyConfig),
    /// Alertmanager's `POST /api/v2/alerts`, re-sent while active.
    Alertmanager(AlertmanagerConfig),
    /// A Kafka topic; the message key is the key id.
    Kafka(KafkaSinkConfig),
    /// Appended to a JSON Lines file.
    File(FileSinkConfig),
    /// Standard output: JSON Lines, or a readable block per alert.
    Stdout(StdoutSinkConfig),
}

impl SinkKind {
    /// The `type` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Webhook(_) => "webhook",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Slack(_) => "slack",
            SinkKind::PagerDuty(_) => "pagerduty",
            SinkKind::Alertmanager(_) => "alertmanager",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
        }
    }
}

impl SinkConfig {
    /// The keys every sink shares, then its kind's own.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid(&format!("{at}.name"), "\"\"", "must not be empty"));
        }
        if self.queue_capacity == 0 {
            return Err(invalid(
                &format!("{at}.queue_capacity"),
                0,
                "must be at least 1",
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(invalid(
                &format!("{at}.concurrency"),
                self.concurrency,
                "must be between 1 and 256",
            ));
        }
        for (key, d) in [
            ("timeout", self.timeout),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("max_delivery_age", self.max_delivery_age),
        ] {
            check_positive(&format!("{at}.{key}"), d)?;
        }
        if self.backoff_max < self.backoff_initial {
            return Err(invalid(
                &format!("{at}.backoff_max"),
                self.backoff_max,
                format!(
                    "must be at least {at}.backoff_initial ({})",
                    self.backoff_initial
                ),
            ));
        }
        if self.max_delivery_age < self.timeout {
            return Err(invalid(
                &format!("{at}.max_delivery_age"),
                self.max_delivery_age,
                format!(
                    "must be at least {at}.timeout ({}), or no attempt can finish",
                    self.timeout
                ),
            ));
        }
        let carries_json = match &self.kind {
            SinkKind::Slack(_) | SinkKind::PagerDuty(_) | SinkKind::Alertmanager(_) => false,
            SinkKind::Stdout(s) => !s.pretty,
            _ => true,
        };
        if self.format != AlertFormat::Keywatch && !carries_json {
            return Err(invalid(
                &format!("{at}.format"),
                format!("\"{}\"", self.format.as_str()),
                format!(
                    "a `{}` sink does not carry the alert as JSON; only webhook, splunk_hec, kafka, file and stdout (not pretty) take a format",
                    self.kind.type_name()
                ),
            ));
        }
        match &self.kind {
            SinkKind::Webhook(w) => w.validate(at),
            SinkKind::SplunkHec(h) => h.validate(at),
            SinkKind::Slack(s) => s.validate(at),
            SinkKind::PagerDuty(p) => p.validate(at),
            SinkKind::Alertmanager(a) => a.validate(at),
            SinkKind::Kafka(k) => k.validate(at),
            SinkKind::File(f) => f.validate(at),
            SinkKind::Stdout(_) => Ok(()),
        }
    }
}
