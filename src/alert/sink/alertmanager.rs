//! `alertmanager`: `POST /api/v2/alerts`, as Alertmanager clients should.
//! Labels identify the alert (`alertname`, `detector`, `severity`, `key_id`,
//! `team` when the inventory knows it, and `incident_id` when incidents are
//! on: a route grouping by it makes one incident one notification);
//! annotations carry the summary and evidence. An alert stays active for `active_for` after its last
//! finding: until then it is re-sent every `resend_interval` with `endsAt`
//! four intervals ahead (as Prometheus does), so Alertmanager keeps it
//! firing; then it is sent once more with `endsAt` in the past, resolved.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::check::{check_positive, check_url};
use super::{http_client, send, DeliveryError, Links, Sink, SinkSetup};
use crate::alert::shape::{Alert, EncodedAlert};
use crate::alert::worker::SinkMetrics;
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// `type = "alertmanager"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL; alerts go to `{url}/api/v2/alerts`.
    pub url: String,
    /// Active alerts are re-sent this often, with `endsAt` four intervals
    /// ahead (as Prometheus does), so Alertmanager keeps them firing.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: HumanDuration,
    /// An alert stays active this long after its last finding, then is sent
    /// resolved.
    #[serde(default = "default_active_for")]
    pub active_for: HumanDuration,
}

/// Prometheus' default `--rules.alert.resend-delay`.
fn default_resend_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

/// The engine's default cooldown: the finding is "active" until the engine
/// would raise it again.
fn default_active_for() -> HumanDuration {
    HumanDuration::secs(3600)
}

impl AlertmanagerConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_url(&format!("{at}.url"), &self.url)?;
        check_positive(&format!("{at}.resend_interval"), self.resend_interval)?;
        check_positive(&format!("{at}.active_for"), self.active_for)?;
        if self.active_for < self.resend_interval {
            return Err(invalid(
                &format!("{at}.active_for"),
                self.active_for,
                format!(
                    "must be at least {at}.resend_interval ({})",
                    self.resend_interval
                ),
            ));
        }
        Ok(())
    }
}

/// The `alertname` label of every alert keywatch sends.
pub const ALERTNAME: &str = "KeywatchFinding";

type Labels = BTreeMap<&'static str, String>;

/// One element of the v2 API's `postableAlerts`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Postable {
    labels: Labels,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
}

/// An alert Alertmanager should consider firing.
struct Active {
    alert: Postable,
    /// Wall-clock end of the active period (for `endsAt`).
    until_wall: DateTime<Utc>,
    /// Monotonic end of the active period (for the decision).
    until: Instant,
}

/// Sends alerts to one Alertmanager.
pub struct AlertmanagerSink {
    client: reqwest::Client,
    url: reqwest::Url,
    resend_interval: Duration,
    active_for: Duration,
    active: Mutex<BTreeMap<Labels, Active>>,
    links: Links,
    metrics: Arc<SinkMetrics>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `d` after `t`, saturating at the end of time.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl AlertmanagerSink {
    /// From `type = "alertmanager"`.
    pub fn new(
        cfg: &AlertmanagerConfig,
        setup: &SinkSetup<'_>,
    ) -> anyhow::Result<AlertmanagerSink> {
        let mut url = reqwest::Url::parse(&cfg.url)?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v2", "alerts"]);
        }
        Ok(AlertmanagerSink {
            client: http_client(setup.cfg.timeout.0)?,
            url,
            resend_interval: cfg.resend_interval.0,
            active_for: cfg.active_for.0,
            active: Mutex::new(BTreeMap::new()),
            links: setup.links.clone(),
            metrics: setup.metrics.clone(),
        })
    }

    fn labels(alert: &Alert) -> Labels {
        let mut labels = Labels::from([
            ("alertname", ALERTNAME.to_owned()),
            ("detector", alert.detector.as_str().to_owned()),
            ("severity", alert.severity.as_str().to_owned()),
            ("key_id", alert.key_id.clone()),
        ]);
        if let Some(team) = &alert.team {
            labels.insert("team", team.clone());
        }
        if let Some(incident) = &alert.incident_id {
            labels.insert("incident_id", incident.clone());
        }
        labels
    }

    fn postable(&self, alert: &Alert, starts_at: Option<String>) -> Postable {
        let mut annotations = BTreeMap::from([
            ("summary", alert.summary.clone()),
            (
                "evidence",
                serde_json::to_string(&alert.evidence).unwrap_or_default(),
            ),
            ("finding_id", alert.id.clone()),
            ("observed_at", alert.observed_at.clone()),
        ]);
        for (name, value) in [("principal", &alert.principal), ("owner", &alert.owner)] {
            if let Some(v) = value {
                annotations.insert(name, v.clone());
            }
        }
        Postable {
            labels: Self::labels(alert),
            annotations,
            starts_at: starts_at.unwrap_or_else(|| rfc3339(Utc::now())),
            ends_at: String::new(),
            generator_url: self.links.finding(alert),
        }
    }

    /// `endsAt` for a firing alert: four re-send intervals ahead, never
    /// past the end of its active period.
    fn firing_until(&self, now: DateTime<Utc>, until: DateTime<Utc>) -> String {
        rfc3339(later(now, self.resend_interval.saturating_mul(4)).min(until))
    }

    async fn post(&self, alerts: &[Postable]) -> Result<(), DeliveryError> {
        send(self.client.post(self.url.clone()).json(alerts))
            .await
            .map(drop)
    }
}

impl Sink for AlertmanagerSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let alert = &alert.decode();
        let labels = Self::labels(alert);
        let starts_at = {
            let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active.get(&labels).map(|a| a.alert.starts_at.clone())
        };
        let now = Utc::now();
        let until_wall = later(now, self.active_for);
        let mut postable = self.postable(alert, starts_at);
        postable.ends_at = self.firing_until(now, until_wall);
        self.post(std::slice::from_ref(&postable)).await?;
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                labels,
                Active {
                    alert: postable,
                    until_wall,
                    until: Instant::now() + self.active_for,
                },
            );
        Ok(())
    }

    fn follow_up_every(&self) -> Option<Duration> {
        Some(self.resend_interval)
    }

    /// Re-sends every active alert in one request; those past their active
    /// period go out resolved and are forgotten once Alertmanager has them.
    async fn follow_up(&self) {
        let now = Instant::now();
        let wall = Utc::now();
        let (batch, ended): (Vec<Postable>, Vec<Labels>) = {
            let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if active.is_empty() {
                return;
            }
            let mut ended = Vec::new();
            let batch = active
                .iter()
                .map(|(labels, a)| {
                    let mut p = a.alert.clone();
                    if a.until <= now {
                        ended.push(labels.clone());
                        p.ends_at = rfc3339(a.until_wall.min(wall));
                    } else {
                        p.ends_at = self.firing_until(wall, a.until_wall);
                    }
                    p
                })
                .collect();
            (batch, ended)
        };
        if let Err(e) = self.post(&batch).await {
            self.metrics.failure(e.reason());
            tracing::warn!(sink = %self.metrics.name, alerts = batch.len(), error = %e, "Alertmanager re-send failed; trying again next round");
            return;
        }
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        for labels in ended {
            // Unless a new finding re-activated it meanwhile.
            if active.get(&labels).is_some_and(|a| a.until <= now) {
                active.remove(&labels);
            }
        }
    }
}
