//! `pagerduty`: Events API v2. With incidents on, one PagerDuty incident per
//! keywatch incident: its `dedup_key` is the incident id, each change is a
//! `trigger` with that key (PagerDuty adds it to the same alert), and the
//! incident's `resolved` is a `resolve`. With incidents off, each alert is a
//! `trigger` whose `dedup_key` is the alert id (a re-sent alert never opens
//! a second incident); once a key and detector have been quiet for
//! `resolve_after`, their incidents are sent a `resolve`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::check::{check_positive, check_url};
use super::{http_client, send, DeliveryError, Links, Sink, SinkSetup};
use crate::alert::shape::{Alert, EncodedAlert, IncidentAlert};
use crate::alert::worker::SinkMetrics;
use crate::secret::Secret;
use keywatch_core::engine::{Detector, Severity};
use keywatch_core::incident::{Change, Step};
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// `type = "pagerduty"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The service's Events API v2 integration key.
    pub routing_key: Secret,
    /// Events API base URL; events go to `{url}/v2/enqueue`.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// An incident is resolved when its key and detector have raised nothing
    /// for this long.
    #[serde(default = "default_resolve_after")]
    pub resolve_after: HumanDuration,
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com".to_owned()
}

/// Two engine cooldowns (1h each by default): a misuse still going on
/// raises a new finding within one cooldown and keeps the incident open.
fn default_resolve_after() -> HumanDuration {
    HumanDuration::secs(7200)
}

impl PagerDutyConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_url(&format!("{at}.url"), &self.url)?;
        if self.routing_key.expose().trim().is_empty() {
            return Err(invalid(
                &format!("{at}.routing_key"),
                &self.routing_key,
                "must not be empty",
            ));
        }
        check_positive(&format!("{at}.resolve_after"), self.resolve_after)?;
        Ok(())
    }
}

/// Incidents opened for one key and detector.
struct Open {
    /// When the last of them was triggered.
    last: Instant,
    /// Their dedup keys, not yet resolved.
    dedup_keys: Vec<String>,
}

/// Sends alerts to one PagerDuty service.
pub struct PagerDutySink {
    client: reqwest::Client,
    enqueue: reqwest::Url,
    routing_key: Secret,
    resolve_after: Duration,
    give_up_after: Duration,
    open: Mutex<HashMap<(String, Detector), Open>>,
    links: Links,
    metrics: std::sync::Arc<SinkMetrics>,
}

impl PagerDutySink {
    /// From `type = "pagerduty"`.
    pub fn new(cfg: &PagerDutyConfig, setup: &SinkSetup<'_>) -> anyhow::Result<PagerDutySink> {
        let mut enqueue = reqwest::Url::parse(&cfg.url)?;
        if let Ok(mut path) = enqueue.path_segments_mut() {
            path.pop_if_empty().extend(["v2", "enqueue"]);
        }
        Ok(PagerDutySink {
            client: http_client(setup.cfg.timeout.0)?,
            enqueue,
            routing_key: cfg.routing_key.clone(),
            resolve_after: cfg.resolve_after.0,
            give_up_after: setup.cfg.max_delivery_age.0,
            open: Mutex::new(HashMap::new()),
            links: setup.links.clone(),
            metrics: setup.metrics.clone(),
        })
    }

    fn trigger(&self, alert: &Alert) -> Value {
        let summary: String = alert.summary.chars().take(1024).collect();
        json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": alert.id,
            "payload": {
                "summary": summary,
                "source": alert.key_id,
                "severity": severity(alert.severity),
                "timestamp": alert.observed_at,
                "component": alert.principal,
                "group": alert.team,
                "class": alert.detector,
                "custom_details": alert.evidence,
            },
            "client": "keywatch",
            "client_url": self.links.finding(alert),
            "links": [
                {"href": self.links.finding(alert), "text": "Finding in keywatch"},
                {"href": self.links.key(alert), "text": "Key history"},
            ],
        })
    }

    /// An incident's change: a `trigger` for the same `dedup_key` each time,
    /// then a `resolve`.
    fn incident_event(&self, incident: &IncidentAlert) -> Value {
        if incident.event == Change::Resolved {
            return json!({
                "routing_key": self.routing_key.expose(),
                "event_action": "resolve",
                "dedup_key": incident.incident_id,
            });
        }
        let summary: String = incident.summary.chars().take(1024).collect();
        let timeline: Vec<String> = incident.timeline.iter().take(30).map(Step::line).collect();
        let link = self.links.incident(&incident.incident_id);
        json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": incident.incident_id,
            "payload": {
                "summary": summary,
                "source": incident.identity,
                "severity": severity(incident.severity),
                "timestamp": incident.last_seen,
                "component": incident.principal,
                "group": incident.team,
                "class": if incident.attack_sequence { "attack_sequence" } else { "incident" },
                "custom_details": {
                    "event": incident.event,
                    "score": incident.score,
                    "tactics": incident.tactics,
                    "findings": incident.findings,
                    "detectors": incident.detectors,
                    "key_ids": incident.key_ids,
                    "networks": incident.networks,
                    "clients": incident.clients,
                    "actions": incident.actions,
                    "first_seen": incident.first_seen,
                    "timeline": timeline,
                },
            },
            "client": "keywatch",
            "client_url": link,
            "links": [
                {"href": link, "text": "Incident in keywatch"},
                {"href": self.links.key_id(&incident.key_id), "text": "Key history"},
            ],
        })
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), DeliveryError> {
        let event = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
        send(self.client.post(self.enqueue.clone()).json(&event))
            .await
            .map(drop)
    }
}

/// PagerDuty knows critical, error, warning and info.
fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

impl Sink for PagerDutySink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        if let Some(incident) = alert.decode_incident() {
            let event = self.incident_event(&incident);
            return send(self.client.post(self.enqueue.clone()).json(&event))
                .await
                .map(drop);
        }
        let alert = &alert.decode();
        send(
            self.client
                .post(self.enqueue.clone())
                .json(&self.trigger(alert)),
        )
        .await?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let entry = open
            .entry((alert.key_id.clone(), alert.detector))
            .or_insert_with(|| Open {
                last: Instant::now(),
                dedup_keys: Vec::new(),
            });
        entry.last = Instant::now();
        if !entry.dedup_keys.contains(&alert.id) {
            entry.dedup_keys.push(alert.id.clone());
        }
        Ok(())
    }

    fn follow_up_every(&self) -> Option<Duration> {
        Some((self.resolve_after / 10).clamp(Duration::from_millis(50), Duration::from_secs(30)))
    }

    /// Resolves the incidents of every key and detector quiet for
    /// `resolve_after`; a resolve that fails is tried again next round,
    /// until `max_delivery_age` past due.
    async fn follow_up(&self) {
        let now = Instant::now();
        let due: Vec<((String, Detector), Vec<String>, Instant)> = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.iter()
                .filter(|(_, o)| now.duration_since(o.last) >= self.resolve_after)
                .map(|(k, o)| (k.clone(), o.dedup_keys.clone(), o.last))
                .collect()
        };
        for (group, dedup_keys, last) in due {
            let mut resolved = Vec::new();
            for dedup_key in dedup_keys {
                match self.resolve(&dedup_key).await {
                    Ok(()) => resolved.push(dedup_key),
                    Err(e) => {
                        self.metrics.failure(e.reason());
                        tracing::warn!(sink = %self.metrics.name, %dedup_key, error = %e, "PagerDuty resolve failed");
                    }
                }
            }
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = open.get_mut(&group) else {
                continue;
            };
            entry.dedup_keys.retain(|k| !resolved.contains(k));
            // A trigger since `due` was taken keeps the group open.
            if entry.last != last {
                continue;
            }
            if entry.dedup_keys.is_empty() {
                open.remove(&group);
            } else if now.duration_since(last) >= self.resolve_after + self.give_up_after {
                self.metrics.failure("resolve_abandoned");
                tracing::error!(sink = %self.metrics.name, incidents = ?entry.dedup_keys, "giving up resolving PagerDuty incidents; resolve them by hand");
                open.remove(&group);
            }
        }
    }
}
