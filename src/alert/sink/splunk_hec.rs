//! `splunk_hec`: the alert as a Splunk HTTP Event Collector event, `POST`ed
//! to `{url}/services/collector/event` with `Authorization: Splunk <token>`
//! and the body `{"time", "host", "source", "sourcetype", "index", "event"}`,
//! `event` being the alert in the sink's `format`.
//!
//! With `acknowledgements = true` (the HEC token has indexer
//! acknowledgement on) every request names this sink's channel
//! (`X-Splunk-Request-Channel`), HEC answers with an `ackId`, and the
//! delivery is done only once `{url}/services/collector/ack` says that id
//! was indexed; an ack still pending when the attempt's `timeout` runs out
//! fails the attempt, which is retried like any other (at least once: the
//! event's `id` lets a search de-duplicate). Statuses, retries, `Retry-After`
//! and dead letters are the webhook sink's (`send` and the worker).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::check::{check_positive, check_url};
use super::{http_client, send, DeliveryError, Sink, SinkSetup};
use crate::alert::format::AlertFormat;
use crate::alert::shape::{EncodedAlert, Kind};
use crate::secret::Secret;
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// `type = "splunk_hec"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// The collector's base URL (`https://splunk.example.com:8088`); events
    /// go to `{url}/services/collector/event`.
    pub url: String,
    /// The HEC token, best given as `env:NAME` or `file:PATH`; never printed.
    pub token: Secret,
    /// Index to write to; none: the token's default index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Event `source`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Event `sourcetype`; none: by the sink's `format`, `keywatch:alert`
    /// (`keywatch:incident` for incident events), `ocsf:detection_finding`
    /// (`ocsf:incident_finding`) or `keywatch:ecs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Event `host`; none: left to HEC (the sender's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Wait for indexer acknowledgement of every event (the token must have
    /// it enabled).
    #[serde(default)]
    pub acknowledgements: bool,
    /// How often a pending acknowledgement is asked for.
    #[serde(default = "default_ack_poll_interval")]
    pub ack_poll_interval: HumanDuration,
}

fn default_source() -> String {
    "keywatch".to_owned()
}

/// Splunk's own guidance polls acknowledgements every few seconds at most;
/// 1s keeps a delivery's latency low without flooding the collector.
fn default_ack_poll_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

impl SplunkHecConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_url(&format!("{at}.url"), &self.url)?;
        if self.token.expose().trim().is_empty() {
            return Err(invalid(&format!("{at}.token"), "\"\"", "must not be empty"));
        }
        if HeaderValue::from_str(&format!("Splunk {}", self.token.expose())).is_err() {
            return Err(invalid(
                &format!("{at}.token"),
                &self.token,
                "not a valid header value (control characters or non-ASCII)",
            ));
        }
        check_positive(&format!("{at}.ack_poll_interval"), self.ack_poll_interval)
    }
}

/// Sends alerts to one HTTP Event Collector.
pub struct SplunkHecSink {
    client: reqwest::Client,
    event_url: reqwest::Url,
    ack_url: reqwest::Url,
    headers: HeaderMap,
    fields: serde_json::Map<String, serde_json::Value>,
    format: AlertFormat,
    channel: Option<String>,
    poll: Duration,
}

impl SplunkHecSink {
    /// From `type = "splunk_hec"` (validated with the configuration).
    pub fn new(cfg: &SplunkHecConfig, setup: &SinkSetup<'_>) -> anyhow::Result<SplunkHecSink> {
        let base = reqwest::Url::parse(&cfg.url)?;
        let under = |path: &str| -> anyhow::Result<reqwest::Url> {
            let mut url = base.clone();
            url.path_segments_mut()
                .map_err(|()| anyhow::anyhow!("`url` cannot be a base"))?
                .pop_if_empty()
                .extend(path.split('/'));
            Ok(url)
        };
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", cfg.token.expose()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let channel = cfg.acknowledgements.then(channel_id);
        if let Some(c) = &channel {
            headers.insert("x-splunk-request-channel", HeaderValue::from_str(c)?);
        }
        let format = setup.cfg.format;
        let mut fields = serde_json::Map::new();
        fields.insert("source".into(), cfg.source.clone().into());
        if let Some(sourcetype) = &cfg.sourcetype {
            fields.insert("sourcetype".into(), sourcetype.clone().into());
        }
        if let Some(index) = &cfg.index {
            fields.insert("index".into(), index.clone().into());
        }
        if let Some(host) = &cfg.host {
            fields.insert("host".into(), host.clone().into());
        }
        Ok(SplunkHecSink {
            client: http_client(setup.cfg.timeout.0)?,
            event_url: under("services/collector/event")?,
            ack_url: under("services/collector/ack")?,
            headers,
            fields,
            format,
            channel,
            poll: cfg.ack_poll_interval.0,
        })
    }

    /// Asks until HEC says `ack` was indexed; the worker's timeout ends a
    /// wait that lasts too long.
    async fn acknowledged(&self, ack: u64) -> Result<(), DeliveryError> {
        loop {
            let response = send(
                self.client
                    .post(self.ack_url.clone())
                    .headers(self.headers.clone())
                    .json(&serde_json::json!({ "acks": [ack] })),
            )
            .await?;
            let answer: AckAnswer = response
                .json()
                .await
                .map_err(|e| DeliveryError::Request(format!("acknowledgement answer: {e}")))?;
            if answer.acks.get(&ack.to_string()).copied().unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// A channel id: a UUID, as HEC requires, random per process.
fn channel_id() -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::from_entropy();
    let (a, b): (u64, u64) = (rng.gen(), rng.gen());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff,
    )
}

/// HEC's answer to an event: `{"text":"Success","code":0,"ackId":7}`.
#[derive(Deserialize)]
struct EventAnswer {
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

/// HEC's answer to an acknowledgement query: `{"acks":{"7":true}}`.
/// The `sourcetype` of a record when the sink names none: by its format
/// and whether it is a finding or an incident event.
fn sourcetype(format: AlertFormat, kind: Kind) -> &'static str {
    match (format, kind) {
        (AlertFormat::Keywatch, Kind::Finding) => "keywatch:alert",
        (AlertFormat::Keywatch, Kind::Incident) => "keywatch:incident",
        (AlertFormat::Ocsf, Kind::Finding) => "ocsf:detection_finding",
        (AlertFormat::Ocsf, Kind::Incident) => "ocsf:incident_finding",
        (AlertFormat::Ecs, _) => "keywatch:ecs",
    }
}

#[derive(Deserialize)]
struct AckAnswer {
    acks: std::collections::HashMap<String, bool>,
}

impl Sink for SplunkHecSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let mut body = self.fields.clone();
        if !body.contains_key("sourcetype") {
            body.insert(
                "sourcetype".into(),
                sourcetype(self.format, alert.kind()).into(),
            );
        }
        if let Some(ms) = alert.event_time_ms() {
            body.insert("time".into(), serde_json::json!(ms as f64 / 1000.0));
        }
        body.insert("event".into(), self.format.value(alert));
        let response = send(
            self.client
                .post(self.event_url.clone())
                .headers(self.headers.clone())
                .json(&body),
        )
        .await?;
        if self.channel.is_none() {
            return Ok(());
        }
        let answer: EventAnswer = response
            .json()
            .await
            .map_err(|e| DeliveryError::Request(format!("HEC answer: {e}")))?;
        match answer.ack_id {
            Some(ack) => self.acknowledged(ack).await,
            None => Err(DeliveryError::Request(
                "HEC gave no ackId: is indexer acknowledgement on for this token?".into(),
            )),
        }
    }
}
