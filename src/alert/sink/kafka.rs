//! `kafka`: the alert JSON produced to a topic, keyed by the key id (one
//! key's alerts stay in order on one partition), with the alert id in a
//! `keywatch-alert-id` header for consumers that de-duplicate.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::{DeliveryError, Sink, SinkSetup};
use crate::alert::format::AlertFormat;
use crate::alert::shape::{EncodedAlert, Kind};
use crate::secret::Secret;
use keywatch_core::types::{invalid, ConfigError};

/// `type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic alerts are produced to.
    pub topic: String,
    /// librdkafka producer properties, passed as is.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are secret (`sasl.password`,
    /// `ssl.key.password`): `env:`/`file:` allowed, never printed.
    #[serde(default)]
    pub secret_properties: BTreeMap<String, Secret>,
}

impl KafkaSinkConfig {
    /// Its cluster, for the Kafka adapter.
    pub fn cluster(&self) -> crate::kafka::Cluster<'_> {
        crate::kafka::Cluster {
            brokers: &self.brokers,
            properties: &self.properties,
            secret_properties: &self.secret_properties,
        }
    }

    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid(
                &format!("{at}.brokers"),
                "\"\"",
                "must name at least one broker",
            ));
        }
        if self.topic.trim().is_empty() {
            return Err(invalid(&format!("{at}.topic"), "\"\"", "must name a topic"));
        }
        Ok(())
    }
}

/// Produces alerts to one topic.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
    format: AlertFormat,
}

impl KafkaSink {
    /// From `type = "kafka"`: creates the producer (it connects lazily).
    pub fn new(cfg: &KafkaSinkConfig, setup: &SinkSetup<'_>) -> anyhow::Result<KafkaSink> {
        let timeout = setup.cfg.timeout.0;
        let client = crate::kafka::for_sink(
            cfg.cluster(),
            crate::kafka::Role::Producer,
            &[
                // librdkafka gives up on a message when the sink's attempt
                // does, so a retry never races a late first copy.
                ("message.timeout.ms", timeout.as_millis().max(1).to_string()),
                ("client.id", "keywatch-alerts".into()),
            ],
            &[],
        );
        let producer = client.create().map_err(|e| {
            // librdkafka's message names the property, never a secret value.
            anyhow::anyhow!("creating the Kafka producer: {e}")
        })?;
        Ok(KafkaSink {
            producer,
            topic: cfg.topic.clone(),
            timeout,
            format: setup.cfg.format,
        })
    }
}

/// Errors that repeat however often the message is sent.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// `keywatch-alert-id` (the record's id), and on an incident event
/// `keywatch-record: incident`, so a reader can tell it from a finding
/// without parsing it.
fn headers(alert: &EncodedAlert) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: "keywatch-alert-id",
        value: Some(alert.id()),
    });
    match alert.kind() {
        Kind::Finding => headers,
        Kind::Incident => headers.insert(Header {
            key: "keywatch-record",
            value: Some("incident"),
        }),
    }
}

impl Sink for KafkaSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let payload = self.format.render(alert);
        let record = FutureRecord::to(&self.topic)
            .key(alert.key_id())
            .payload(payload.as_ref())
            .headers(headers(alert));
        self.producer
            .send(record, self.timeout)
            .await
            .map(drop)
            .map_err(|(e, _)| DeliveryError::Kafka {
                retryable: !permanent(&e),
                error: e.to_string(),
            })
    }
}
