//! The dead-letter topic: messages keywatch could not use, produced unchanged
//! with headers that say why and where they came from.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::config::KafkaConfig;
use crate::kafka::{self, Role};
use keywatch_core::metrics::Metrics;

/// Counts deliveries as they are confirmed by the broker.
struct Delivery {
    metrics: Arc<Metrics>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let outcome = match result {
            Ok(_) => "produced",
            Err((e, m)) => {
                tracing::warn!(error = %e, topic = m.topic(), "dead-letter delivery failed");
                "failed"
            }
        };
        self.metrics
            .dead_letters
            .with_label_values(&[outcome])
            .inc();
    }
}

/// A producer to the dead-letter topic. Sending never blocks: a full local
/// queue is counted as `failed`.
pub struct DeadLetter {
    producer: ThreadedProducer<Delivery>,
    topic: String,
    metrics: Arc<Metrics>,
}

/// Where a dead-lettered message came from.
pub struct Origin<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

impl DeadLetter {
    /// A producer for `cfg.dead_letter_topic`, or `None` when none is configured.
    pub fn new(cfg: &KafkaConfig, metrics: Arc<Metrics>) -> anyhow::Result<Option<DeadLetter>> {
        if cfg.dead_letter_topic.is_empty() {
            return Ok(None);
        }
        let producer = kafka::client(cfg, Role::Producer, &[("linger.ms", "20".into())], &[])
            .create_with_context(Delivery {
                metrics: metrics.clone(),
            })
            .map_err(|e| anyhow::anyhow!("creating the dead-letter producer: {e}"))?;
        Ok(Some(DeadLetter {
            producer,
            topic: cfg.dead_letter_topic.clone(),
            metrics,
        }))
    }

    /// Produces `payload` (and its key) unchanged, with the reason and origin
    /// as headers.
    pub fn send(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: &str,
        invalid: u32,
        origin: &Origin<'_>,
    ) {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let invalid = invalid.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "keywatch-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "keywatch-topic",
                value: Some(origin.topic),
            })
            .insert(Header {
                key: "keywatch-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "keywatch-offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "keywatch-invalid-records",
                value: Some(&invalid),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Err((e, _)) = self.producer.send(record) {
            tracing::warn!(error = %e, "dead-letter queue full; message counted as failed");
            self.metrics
                .dead_letters
                .with_label_values(&["failed"])
                .inc();
        }
    }

    /// Waits for outstanding deliveries.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "dead-letter flush incomplete");
        }
    }
}
