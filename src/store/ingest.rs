//! The findings of every instance in every instance's store: each instance
//! reads `store.findings_topic` (the topic its Kafka alert sink writes, so
//! every instance's findings are there) and stores the findings it does not
//! have, so its console and `/api/v1/findings` list all of them.
//!
//! - No consumer group: every instance reads every partition (a group would
//!   share them out). The position reached is kept in the store, in the
//!   transaction that stores the findings before it, so a restart (or a
//!   `kill -9`) resumes where the store is, and a partition never read
//!   starts from the beginning of what the topic retains.
//! - Idempotent by finding id: a finding whose id is stored is left as it
//!   is. This instance's own findings are queued for the store before
//!   their alert is even sent, so their copy from the topic is always
//!   behind them in the writer's queue and changes nothing.
//! - A `confirmed` verdict re-sends a finding at `critical` under the id
//!   `ID-confirmed`: that copy is not stored as a finding of its own.
//! - An incident event (`"type": "incident"`) stores its incident, the
//!   newest revision winning, so every console lists the same incidents.
//! - A message that is not an alert is counted
//!   (`keywatch_store_ingest_rejected_total{reason}`), logged and skipped.
//!
//! What the topic carries is what the sink sends: findings a suppression or
//! the cooldown held back, or below the sink's `min_severity`, stay in the
//! store of the instance that raised them only. The alert's strings went
//! through `alerts.redact`: a masked field reads masked here too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{FindingsStore, Ingested};
use crate::alert::{Alert, IncidentAlert};
use crate::config::{Entity, KafkaSinkConfig};
use keywatch_core::decode::EventSample;
use keywatch_core::engine::Finding;

/// The suffix of a `confirmed` verdict's re-sent copy of a finding.
pub const CONFIRMED_SUFFIX: &str = "-confirmed";

/// How often the topic's partitions are looked up again (the topic may not
/// exist yet when the instance starts, or may grow).
const METADATA_EVERY: Duration = Duration::from_secs(5);

/// Why a message is not a finding.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// No payload.
    #[error("the message is empty")]
    Empty,
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, not an alert.
    #[error("not a keywatch alert: {0}")]
    NotAnAlert(serde_json::Error),
}

impl Rejected {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Empty => "empty",
            Rejected::NotJson(_) => "not_json",
            Rejected::NotAnAlert(_) => "not_an_alert",
        }
    }
}

/// The incident of an incident event as the Kafka sink wrote it; `None`
/// for anything else.
pub fn incident_of(payload: Option<&[u8]>) -> Option<keywatch_core::incident::Incident> {
    let event: IncidentAlert = serde_json::from_slice(payload?).ok()?;
    Some(event.incident())
}

/// Reads an alert as the Kafka sink wrote it back into a finding, with the
/// team it names.
pub fn finding_of(payload: Option<&[u8]>) -> Result<(Finding, Option<String>), Rejected> {
    let payload = payload.filter(|p| !p.is_empty()).ok_or(Rejected::Empty)?;
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(Rejected::NotJson)?;
    let alert: Alert = serde_json::from_value(value).map_err(Rejected::NotAnAlert)?;
    let sample = sample_of(&alert);
    Ok((
        Finding {
            id: alert.id,
            detector: alert.detector,
            severity: alert.severity,
            // The alert does not say which identity's baseline it is; an
            // `expected` verdict on a key teaches its tracked principal too
            // (`Engine::teach`), so the key is the safe subject.
            entity: Entity::KeyId,
            key_id: alert.key_id,
            principal: alert.principal,
            observed_at: alert.observed_at,
            summary: alert.summary,
            evidence: alert.evidence,
            sample,
            folded: None,
            origin: 0,
        },
        alert.team,
    ))
}

/// The alert's redacted sample as an event sample; fields the redaction
/// dropped are filled from the alert (time, key) or left empty.
fn sample_of(alert: &Alert) -> EventSample {
    let text = |name: &str| {
        alert
            .sample
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    EventSample {
        time: text("time").unwrap_or_else(|| alert.observed_at.clone()),
        key_id: text("key_id").unwrap_or_else(|| alert.key_id.clone()),
        principal: text("principal"),
        source: text("source"),
        user_agent: text("user_agent"),
        action: text("action"),
        outcome: text("outcome").unwrap_or_else(|| "success".into()),
        error_code: text("error_code"),
        region: text("region"),
        count: alert
            .sample
            .get("count")
            .and_then(|v| v.as_u64())
            .map_or(1, |c| c.min(u64::from(u32::MAX)) as u32),
    }
}

/// Starts the reader of `topic` (on the brokers of the Kafka sink `sink`)
/// feeding `store`, until `stop`.
pub fn start(
    sink: &KafkaSinkConfig,
    topic: &str,
    store: FindingsStore,
    stop: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    // The sink's connection settings are this client's too; its producer
    // tuning is not (librdkafka would warn about each such property).
    let reader: BaseConsumer = crate::kafka::for_sink(
        sink.cluster(),
        crate::kafka::Role::Reader,
        &[],
        &[
            ("client.id", "keywatch-findings-reader".into()),
            // Needed by librdkafka for a consumer, never joined: partitions
            // are assigned, not subscribed, and offsets live in the store.
            ("group.id", "keywatch-findings-reader".into()),
            ("enable.auto.offset.store", "false".into()),
            ("fetch.wait.max.ms", "100".into()),
        ],
    )
    .create()
    .context("creating the reader of store.findings_topic")?;
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name("findings-reader".into())
        .spawn(move || Reader::new(reader, topic, store).run(&stop))
        .context("starting the reader of store.findings_topic")
}

struct Reader {
    consumer: BaseConsumer,
    topic: String,
    store: FindingsStore,
    partitions: usize,
}

impl Reader {
    fn new(consumer: BaseConsumer, topic: String, store: FindingsStore) -> Reader {
        Reader {
            consumer,
            topic,
            store,
            partitions: 0,
        }
    }

    fn run(mut self, stop: &CancellationToken) {
        let mut looked = None::<Instant>;
        while !stop.is_cancelled() {
            if looked.is_none_or(|t| t.elapsed() >= METADATA_EVERY) {
                looked = Some(Instant::now());
                self.assign_new_partitions();
            }
            if self.partitions == 0 {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let Some(msg) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, topic = %self.topic, "store.findings_topic");
                    continue;
                }
            };
            let item = self.read(&msg);
            if !self.store.ingest(item) {
                return;
            }
        }
    }

    /// Assigns every partition of the topic, each from where the store
    /// says it stopped, when the topic has more partitions than assigned.
    fn assign_new_partitions(&mut self) {
        let count = match self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(5))
        {
            Ok(m) => m
                .topics()
                .iter()
                .find(|t| t.name() == self.topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len()),
            Err(e) => {
                tracing::debug!(error = %e, topic = %self.topic, "store.findings_topic metadata");
                0
            }
        };
        if count <= self.partitions {
            return;
        }
        let resume: HashMap<i32, i64> = match self.store.ingest_offsets(&self.topic) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read where store.findings_topic was left; retrying");
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..count as i32 {
            let offset = resume
                .get(&p)
                .map_or(Offset::Beginning, |&next| Offset::Offset(next));
            if let Err(e) = tpl.add_partition_offset(&self.topic, p, offset) {
                tracing::warn!(error = %e, partition = p, "store.findings_topic");
                return;
            }
        }
        match self.consumer.assign(&tpl) {
            Ok(()) => {
                tracing::info!(topic = %self.topic, partitions = count, "reading the findings of every instance");
                self.partitions = count;
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %self.topic, "could not assign store.findings_topic")
            }
        }
    }

    fn read(&self, msg: &rdkafka::message::BorrowedMessage<'_>) -> Ingested {
        let now = chrono::Utc::now().timestamp_millis();
        let stored_ms = msg
            .timestamp()
            .to_millis()
            .filter(|&t| t > 0)
            .unwrap_or(now);
        let mut item = Ingested {
            finding: None,
            incident: None,
            team: None,
            stored_ms,
            topic: self.topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let metrics = self.store.metrics();
        if let Some(incident) = incident_of(msg.payload()) {
            metrics
                .store_ingested
                .with_label_values(&["incident"])
                .inc();
            item.incident = Some(incident);
            return item;
        }
        match finding_of(msg.payload()) {
            Ok((f, _)) if f.id.ends_with(CONFIRMED_SUFFIX) => {
                metrics
                    .store_ingested
                    .with_label_values(&["renotification"])
                    .inc();
            }
            Ok(_) if stored_ms < now - self.store.max_age_ms() => {
                metrics.store_ingested.with_label_values(&["expired"]).inc();
            }
            Ok((f, team)) => {
                item.finding = Some(f);
                item.team = team;
            }
            Err(e) => {
                metrics
                    .store_ingest_rejected
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(
                    topic = %self.topic,
                    partition = msg.partition(),
                    offset = msg.offset(),
                    error = %e,
                    "a message on store.findings_topic is not a keywatch finding; skipped"
                );
            }
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_reads_back_as_its_finding_and_bad_messages_say_why() {
        let alert = serde_json::json!({
            "id": "f00d", "detector": "new_source", "severity": "high",
            "key_id": "AKIA1", "principal": "alice", "owner": "bob", "team": "blue",
            "observed_at": "2026-11-30T00:00:00.000Z", "summary": "used from a new network",
            "evidence": {"observed": {"source": "198.51.100.7"}, "baseline": [], "threshold": null,
                         "eligibility": {"learned_for_s": 1, "events_learned": 2, "active_days": 3}},
            "sample": {"time": "2026-11-30T00:00:00.000Z", "key_id": "AKIA1",
                       "source": "198.51.100.7", "outcome": "success", "count": 1}
        });
        let (f, team) = finding_of(Some(alert.to_string().as_bytes())).unwrap();
        assert_eq!(f.id, "f00d");
        assert_eq!(f.sample.source.as_deref(), Some("198.51.100.7"));
        assert_eq!(team.as_deref(), Some("blue"));
        // What an `expected` verdict teaches comes from the sample.
        assert!(crate::feedback::lesson_of(&f).is_some());

        let reason = |p: &[u8]| finding_of(Some(p)).unwrap_err().to_string();
        assert_eq!(finding_of(None).unwrap_err().reason(), "empty");
        assert!(reason(b"{not json").starts_with("not JSON"));
        let e = reason(br#"{"id": "x"}"#);
        assert!(
            e.starts_with("not a keywatch alert") && e.contains("detector"),
            "{e}"
        );
    }
}
