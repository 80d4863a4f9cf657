//! `slack`: an incoming-webhook message a person reads at a glance —
//! severity, key, owner, what happened, the evidence, and links to the
//! finding and the key in keywatch's API. Slack allows about one message a
//! second per webhook and answers 429 with `Retry-After` beyond that; the
//! worker paces requests and honours the header.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::check::{check_url, LONGEST};
use super::{http_client, send, DeliveryError, Links, Sink, SinkSetup};
use crate::alert::shape::{Alert, EncodedAlert};
use crate::secret::Secret;
use keywatch_core::engine::Severity;
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// `type = "slack"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (it is the credential: give it as `env:` or `file:`).
    pub url: Secret,
    /// Least time between two messages.
    #[serde(default = "default_slack_interval")]
    pub min_interval: HumanDuration,
}

/// Slack allows one message per second per incoming webhook.
fn default_slack_interval() -> HumanDuration {
    HumanDuration::secs(1)
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
    links: Links,
}

impl SlackSink {
    /// From `type = "slack"`.
    pub fn new(cfg: &SlackConfig, setup: &SinkSetup<'_>) -> anyhow::Result<SlackSink> {
        Ok(SlackSink {
            client: http_client(setup.cfg.timeout.0)?,
            url: reqwest::Url::parse(cfg.url.expose())
                .map_err(|e| anyhow::anyhow!("`url` is not a URL: {e}"))?,
            min_interval: cfg.min_interval.0,
            links: setup.links.clone(),
        })
    }
}

impl Sink for SlackSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let message = message(&alert.decode(), &self.links);
        send(self.client.post(self.url.clone()).json(&message))
            .await
            .map(drop)
    }

    fn min_interval(&self) -> Duration {
        self.min_interval
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

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
