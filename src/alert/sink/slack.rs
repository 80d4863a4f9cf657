//! `slack`: an incoming-webhook message a person reads at a glance —
//! severity, key, owner, what happened, the evidence, and links to the
//! finding and the key in keywatch's API. Slack allows about one message a
//! second per webhook and answers 429 with `Retry-After` beyond that; the
//! worker paces requests and honours the header.
//!
//! With incidents on, the sink is sent incidents, not findings: one message
//! when an incident opens (or first reaches the sink's severity), at most
//! one update per `update_interval` while it grows (the latest state; one
//! held back goes out once the interval has passed), and one when it
//! resolves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::check::{check_url, LONGEST};
use super::{http_client, send, DeliveryError, Links, Sink, SinkSetup};
use crate::alert::shape::{Alert, EncodedAlert, IncidentAlert};
use crate::secret::Secret;
use keywatch_core::engine::Severity;
use keywatch_core::incident::{Change, Step};
use keywatch_core::types::{invalid, ConfigError, HumanDuration};
use tokio::time::Instant;

/// `type = "slack"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (it is the credential: give it as `env:` or `file:`).
    pub url: Secret,
    /// Least time between two messages.
    #[serde(default = "default_slack_interval")]
    pub min_interval: HumanDuration,
    /// Least time between two messages about one incident while it grows.
    #[serde(default = "default_update_interval")]
    pub update_interval: HumanDuration,
}

/// Slack allows one message per second per incoming webhook.
fn default_slack_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

/// A quarter of an hour: the demo's attacks last up to an hour, so a
/// channel sees an incident open, grow three or four times and resolve.
fn default_update_interval() -> HumanDuration {
    HumanDuration::secs(900)
}

impl SlackConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.min_interval > LONGEST {
            return Err(invalid(
                &format!("{at}.min_interval"),
                self.min_interval,
                "must be at most 30d",
            ));
        }
        if self.update_interval > LONGEST {
            return Err(invalid(
                &format!("{at}.update_interval"),
                self.update_interval,
                "must be at most 30d",
            ));
        }
        // The URL is a secret: name the key, never the value.
        if let Err(e) = check_url(&format!("{at}.url"), self.url.expose()) {
            let reason = match e {
                ConfigError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(invalid(&format!("{at}.url"), &self.url, reason));
        }
        Ok(())
    }
}

/// Posts alerts to one Slack incoming webhook.
pub struct SlackSink {
    client: reqwest::Client,
    url: reqwest::Url,
    min_interval: Duration,
    update_interval: Duration,
    links: Links,
    /// Incidents messaged and not resolved, by id.
    threads: Mutex<HashMap<String, Thread>>,
}

/// One incident's messages.
struct Thread {
    /// When the last one went out.
    last: Instant,
    /// The newest change not sent yet (inside the update interval).
    held: Option<IncidentAlert>,
}

impl SlackSink {
    /// From `type = "slack"`.
    pub fn new(cfg: &SlackConfig, setup: &SinkSetup<'_>) -> anyhow::Result<SlackSink> {
        Ok(SlackSink {
            client: http_client(setup.cfg.timeout.0)?,
            url: reqwest::Url::parse(cfg.url.expose())
                .map_err(|e| anyhow::anyhow!("`url` is not a URL: {e}"))?,
            min_interval: cfg.min_interval.0,
            update_interval: cfg.update_interval.0,
            links: setup.links.clone(),
            threads: Mutex::new(HashMap::new()),
        })
    }

    async fn post(&self, message: &Value) -> Result<(), DeliveryError> {
        send(self.client.post(self.url.clone()).json(message))
            .await
            .map(drop)
    }

    /// One incident event: sent, or held until the update interval passes.
    /// The incident's slot is taken before the request, so deliveries
    /// running side by side (`concurrency`) never both open it.
    async fn incident(&self, incident: IncidentAlert) -> Result<(), DeliveryError> {
        let now = Instant::now();
        let first = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            match threads.get_mut(&incident.incident_id) {
                Some(_) if incident.event == Change::Resolved => false,
                Some(t) if now.duration_since(t.last) < self.update_interval => {
                    t.held = Some(incident);
                    return Ok(());
                }
                Some(t) => {
                    t.last = now;
                    t.held = None;
                    false
                }
                None => {
                    threads.insert(
                        incident.incident_id.clone(),
                        Thread {
                            last: now,
                            held: None,
                        },
                    );
                    true
                }
            }
        };
        let sent = self
            .post(&incident_message(&incident, first, &self.links))
            .await;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        match sent {
            // Not opened after all: the retry opens it.
            Err(e) if first => {
                threads.remove(&incident.incident_id);
                Err(e)
            }
            Err(e) => Err(e),
            Ok(()) => {
                if incident.event == Change::Resolved {
                    threads.remove(&incident.incident_id);
                }
                Ok(())
            }
        }
    }
}

impl Sink for SlackSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        if let Some(incident) = alert.decode_incident() {
            return self.incident(incident).await;
        }
        self.post(&message(&alert.decode(), &self.links)).await
    }

    fn min_interval(&self) -> Duration {
        self.min_interval
    }

    fn follow_up_every(&self) -> Option<Duration> {
        Some((self.update_interval / 10).clamp(Duration::from_millis(50), Duration::from_secs(30)))
    }

    /// Sends the held update of every incident whose interval has passed,
    /// paced by `min_interval`; one that fails stays held for the next round.
    async fn follow_up(&self) {
        let now = Instant::now();
        let due: Vec<IncidentAlert> = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            threads
                .values_mut()
                .filter(|t| now.duration_since(t.last) >= self.update_interval)
                .filter_map(|t| t.held.take())
                .collect()
        };
        for incident in due {
            tokio::time::sleep(self.min_interval).await;
            let result = self
                .post(&incident_message(&incident, false, &self.links))
                .await;
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            let Some(thread) = threads.get_mut(&incident.incident_id) else {
                continue;
            };
            match result {
                Ok(()) => thread.last = Instant::now(),
                Err(e) => {
                    tracing::warn!(incident = %incident.incident_id, error = %e, "Slack incident update failed; trying again next round");
                    thread.held.get_or_insert(incident);
                }
            }
        }
    }
}

fn icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        Severity::Low => ":large_yellow_circle:",
        Severity::Info => ":large_blue_circle:",
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; text blocks take at most
/// 3000 characters.
fn text(s: &str, max_chars: usize) -> String {
    let escaped = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    truncate(&escaped, max_chars)
}

/// The Block Kit message for `alert`, with a plain `text` for notifications.
pub fn message(alert: &Alert, links: &Links) -> Value {
    let severity = alert.severity.as_str().to_uppercase();
    let owner = match (&alert.owner, &alert.team) {
        (Some(o), Some(t)) => format!("{o} ({t})"),
        (Some(o), None) => o.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => "unknown".to_owned(),
    };
    let compact = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let evidence = format!(
        "observed:  {}\nbaseline:  {}\nthreshold: {}",
        compact(&alert.evidence.observed),
        compact(&alert.evidence.baseline),
        compact(&alert.evidence.threshold),
    );
    json!({
        "text": text(&format!("{} {severity} {} on {}: {}", icon(alert.severity), alert.detector, alert.key_id, alert.summary), 2900),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": format!("{severity} · {} · {}", alert.detector, truncate(&alert.key_id, 100))},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("{} {}", icon(alert.severity), text(&alert.summary, 2900))},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": format!("*Key*\n`{}`", text(&alert.key_id, 500))},
                    {"type": "mrkdwn", "text": format!("*Principal*\n{}", text(alert.principal.as_deref().unwrap_or("unknown"), 500))},
                    {"type": "mrkdwn", "text": format!("*Owner*\n{}", text(&owner, 500))},
                    {"type": "mrkdwn", "text": format!("*Observed*\n{}", text(&alert.observed_at, 100))},
                ],
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*Evidence*\n```{}```", text(&evidence, 2800))},
            },
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": format!("<{}|Finding {}> · <{}|Key history> · keywatch", links.finding(alert), alert.id, links.key(alert)),
                }],
            },
        ],
    })
}

/// The Block Kit message for an incident event: `first` when this is the
/// first message about it (an update is then worded as an opening).
pub fn incident_message(incident: &IncidentAlert, first: bool, links: &Links) -> Value {
    let severity = incident.severity.as_str().to_uppercase();
    let what = match incident.event {
        Change::Resolved => "resolved",
        _ if first => "opened",
        Change::Escalated => "escalated",
        _ => "updated",
    };
    let owner = match (&incident.owner, &incident.team) {
        (Some(o), Some(t)) => format!("{o} ({t})"),
        (Some(o), None) => o.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => "unknown".to_owned(),
    };
    let chain: Vec<_> = incident.tactics.iter().map(|t| t.text()).collect();
    let timeline: Vec<String> = incident.timeline.iter().take(15).map(Step::line).collect();
    let link = links.incident(&incident.incident_id);
    json!({
        "text": text(&format!("{} {severity} incident {what} on {}: {}", icon(incident.severity), incident.identity, incident.summary), 2900),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": format!("{severity} · incident {what} · {}", truncate(&incident.identity, 100))},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("{} {}", icon(incident.severity), text(&incident.summary, 2900))},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": format!("*Keys*\n`{}`", text(&incident.key_ids.join(", "), 500))},
                    {"type": "mrkdwn", "text": format!("*Owner*\n{}", text(&owner, 500))},
                    {"type": "mrkdwn", "text": format!("*Tactics*\n{}", text(if chain.is_empty() { "none mapped".to_owned() } else { chain.join(" → ") }.as_str(), 500))},
                    {"type": "mrkdwn", "text": format!("*Seen*\n{} → {}", text(&incident.first_seen, 100), text(&incident.last_seen, 100))},
                ],
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*Timeline* ({} findings)\n```{}```", incident.findings, text(&timeline.join("\n"), 2700))},
            },
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": format!("<{link}|Incident {}> · keywatch", incident.incident_id),
                }],
            },
        ],
    })
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
