//! Verdicts between instances: what a verdict changed (a teaching, a
//! suppression) is published to `store.feedback_topic`, and every instance
//! reads the whole topic from its start and applies every message.
//!
//! Every instance applies every teaching rather than only the owner of the
//! key's partition: teachings are small, applying one twice changes nothing
//! (by finding id), and an instance that is assigned the partition later,
//! after a rebalance or a restore, already has them. Suppressions are global
//! rules already. The topic has one partition (verdicts are few; one order
//! for all of them) and is compacted by `finding id / kind`.

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::alert::Alerts;
use crate::config::{Entity, KafkaConfig, Suppression};
use crate::kafka::{self, Role};
use crate::store::FindingsStore;
use keywatch_core::engine::{Engine, Teaching};

/// One verdict's effect, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Feedback {
    /// An `expected` verdict's teaching.
    Teaching {
        /// The identity taught.
        entity: Entity,
        /// Its key id or principal.
        subject: String,
        /// The key's principal, taught too when tracked.
        principal: Option<String>,
        /// What was taught, by whom, from which finding.
        teaching: Teaching,
    },
    /// A `false_positive` verdict's suppression.
    Suppression {
        /// The finding it was created from.
        finding_id: String,
        /// The rule.
        rule: Suppression,
    },
}

impl Feedback {
    fn key(&self) -> String {
        match self {
            Feedback::Teaching { teaching, .. } => format!("{}/teaching", teaching.finding_id),
            Feedback::Suppression { finding_id, .. } => format!("{finding_id}/suppression"),
        }
    }
}

/// Publishes verdicts' effects.
#[derive(Clone)]
pub struct FeedbackTopic {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl FeedbackTopic {
    /// Connects, creating the topic when missing, and starts the reader
    /// that applies every message (the instance's own included: applying
    /// is idempotent) until `stop`. Blocking.
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        store: FindingsStore,
        engine: Engine,
        alerts: Alerts,
        stop: CancellationToken,
    ) -> anyhow::Result<FeedbackTopic> {
        let timeout = kafka.startup_timeout.0;
        let own = kafka::OwnTopic {
            name: topic,
            key: "store.feedback_topic",
            partitions: 1,
            replication: -1,
            otherwise: "create it yourself, compacted, or leave store.feedback_topic empty",
        };
        kafka::ensure_topic(
            &kafka::client(kafka, Role::Producer, &[], &[]),
            &own,
            timeout,
        )?;
        let producer: ThreadedProducer<DefaultProducerContext> = kafka::client(
            kafka,
            Role::Producer,
            &[],
            &[("acks", "all".into()), ("linger.ms", "0".into())],
        )
        .create()
        .context("creating the feedback producer")?;
        let reader: BaseConsumer = kafka::client(
            kafka,
            Role::Reader,
            &[],
            &[
                ("group.id", format!("{}.feedback-reader", kafka.group_id)),
                ("enable.auto.offset.store", "false".into()),
                ("fetch.wait.max.ms", "100".into()),
            ],
        )
        .create()
        .context("creating the feedback reader")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .context("assigning the feedback topic")?;
        reader
            .assign(&tpl)
            .context("assigning the feedback topic")?;
        std::thread::Builder::new()
            .name("feedback-reader".into())
            .spawn(move || read(reader, &store, &engine, &alerts, &stop))
            .context("starting the feedback reader")?;
        Ok(FeedbackTopic {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Publishes one effect and waits (up to 10 s, off the async threads:
    /// the verdict handler runs it blocking) until the broker has it, so a
    /// verdict answered is a verdict the other instances will read. A
    /// failure is logged: the verdict still acts here and is kept in this
    /// instance's store.
    pub fn publish(&self, f: &Feedback) {
        let Ok(payload) = serde_json::to_vec(f) else {
            return;
        };
        let key = f.key();
        if let Err((e, _)) = self
            .producer
            // Partition 0 whatever the topic has (a broker that creates
            // topics on first use may give it several): one order, and the
            // one partition every reader reads.
            .send(
                BaseRecord::to(&self.topic)
                    .partition(0)
                    .key(&key)
                    .payload(&payload),
            )
        {
            tracing::warn!(error = %e, topic = %self.topic, "could not publish a verdict to the feedback topic; other instances will not see it");
            return;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, topic = %self.topic, "a verdict was not confirmed by the feedback topic in 10 s");
        }
    }
}

fn read(
    reader: BaseConsumer,
    store: &FindingsStore,
    engine: &Engine,
    alerts: &Alerts,
    stop: &CancellationToken,
) {
    while !stop.is_cancelled() {
        let Some(msg) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "feedback topic");
                continue;
            }
        };
        let Some(payload) = msg.payload() else {
            continue;
        };
        match serde_json::from_slice::<Feedback>(payload) {
            Ok(f) => apply(&f, store, engine, alerts),
            Err(e) => {
                tracing::warn!(error = %e, offset = msg.offset(), "an unreadable message on the feedback topic; skipped")
            }
        }
    }
}

/// Applies one effect from the topic: idempotent.
pub fn apply(f: &Feedback, store: &FindingsStore, engine: &Engine, alerts: &Alerts) {
    match f {
        Feedback::Teaching {
            entity,
            subject,
            principal,
            teaching,
        } => {
            if engine.teach(*entity, subject, principal.as_deref(), teaching.clone()) {
                if let Err(e) = store.add_teaching(*entity, subject, principal.as_deref(), teaching)
                {
                    tracing::warn!(error = %e, "could not keep a teaching from the feedback topic");
                }
            }
        }
        Feedback::Suppression { finding_id, rule } => {
            if super::add_rule_once(alerts, rule) {
                if let Err(e) = store.add_suppression(finding_id, rule) {
                    tracing::warn!(error = %e, "could not keep a suppression from the feedback topic");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywatch_core::engine::Lesson;

    #[test]
    fn messages_read_back_as_written() {
        let f = Feedback::Teaching {
            entity: Entity::KeyId,
            subject: "AKIA1".into(),
            principal: None,
            teaching: Teaching {
                lesson: Lesson::Network {
                    source: "198.51.100.7".into(),
                },
                by: "erin".into(),
                at: "2026-11-30T00:00:00.000Z".into(),
                finding_id: "f1".into(),
            },
        };
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(
            serde_json::from_str::<Feedback>(&text).unwrap(),
            f,
            "{text}"
        );
    }
}
