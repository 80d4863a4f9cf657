//! The Kafka source: a consumer-group member that applies each message to the
//! engine in partition order, at least once.
//!
//! One thread polls and processes: a message is decoded and applied before the
//! next is polled, so the rebalance callbacks (which librdkafka runs inside
//! `poll`) always find every fetched message already applied and its offset
//! stored. Offsets are stored only after the effect is in the state
//! (`enable.auto.offset.store=false`), committed in the background, and
//! committed synchronously when partitions are revoked and at shutdown.
//! librdkafka's bounded fetch queue is the backpressure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetter, Origin};
use crate::checkpoint::{Checkpointer, Origins, Resume};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Verdict};
use crate::telemetry::RateLimited;

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The client could not be created (bad property).
    #[error("creating the Kafka consumer: {0}")]
    Client(KafkaError),
    /// No broker answered within `kafka.startup_timeout`.
    #[error("cannot reach Kafka at {brokers} within {timeout:?}: {error}")]
    Unreachable {
        /// The configured brokers.
        brokers: String,
        /// How long it tried.
        timeout: Duration,
        /// The client's error.
        error: KafkaError,
    },
    /// A configured topic is not on the cluster.
    #[error("topic `{topic}` does not exist on {brokers}")]
    NoTopic {
        /// The missing topic.
        topic: String,
        /// The configured brokers.
        brokers: String,
    },
    /// Subscribing failed.
    #[error("subscribing to {topics:?}: {error}")]
    Subscribe {
        /// The configured topics.
        topics: Vec<String>,
        /// The client's error.
        error: KafkaError,
    },
}

/// What the rest of the daemon can see of the source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Subscribed and polling.
    pub consuming: AtomicBool,
    /// Messages applied since start.
    pub messages: AtomicU64,
}

/// librdkafka callbacks: commit on revoke, resume from the checkpoint on
/// assignment, metrics. Nothing here does more than a commit, a seek or a
/// gauge update.
pub struct SourceContext {
    metrics: Arc<Metrics>,
    errors: RateLimited,
    /// Where the restored checkpoint says to resume, used once per partition.
    resume: Mutex<HashMap<(String, i32), i64>>,
}

impl SourceContext {
    /// Points newly assigned partitions at the checkpoint's offsets: the
    /// checkpoint, not the group's committed offset, is the source of truth
    /// for a restored state.
    fn resume_from_checkpoint(&self, tpl: &mut TopicPartitionList) {
        let Ok(mut resume) = self.resume.lock() else {
            return;
        };
        if resume.is_empty() {
            return;
        }
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in assigned {
            if let Some(offset) = resume.remove(&(topic.clone(), partition)) {
                if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset))
                {
                    tracing::warn!(%topic, partition, error = %e, "cannot resume from the checkpoint");
                } else {
                    tracing::info!(%topic, partition, offset, "resuming from the checkpoint");
                }
            }
        }
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.errors.allow() {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) && self.errors.allow()
        {
            tracing::warn!(facility = fac, "librdkafka: {log_message}");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.resume_from_checkpoint(tpl);
                let rebalance = Rebalance::Assign(tpl);
                self.pre_rebalance(consumer, &rebalance);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, "assigning partitions");
                }
                self.post_rebalance(consumer, &rebalance);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let rebalance = Rebalance::Revoke(tpl);
                self.pre_rebalance(consumer, &rebalance);
                let revoked = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = revoked {
                    tracing::error!(error = %e, "revoking partitions");
                }
                self.post_rebalance(consumer, &rebalance);
            }
            other => {
                let rebalance = Rebalance::Error(KafkaError::Rebalance(other.into()));
                self.post_rebalance(consumer, &rebalance);
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Everything polled so far is applied and its offset stored:
            // commit it before the partitions go to another member.
            commit(consumer, "revoke");
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics.partitions_owned.set(owned as i64);
        self.metrics.consumer_lag.reset();
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(assigned = tpl.count(), owned, "partitions assigned")
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

fn commit(consumer: &BaseConsumer<SourceContext>, why: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, why, "offset commit failed"),
    }
}

/// What makes the source durable: the partition numbering shared with the
/// checkpoints, where the restored checkpoint says to resume, and the
/// checkpoint writer.
#[derive(Default)]
pub struct Durable {
    /// Topic-partition numbers (shared with the restored state).
    pub origins: Arc<Origins>,
    /// Next offset per partition from the restored checkpoint.
    pub resume: HashMap<(String, i32), i64>,
    /// Periodic checkpoints; `None` when they are off.
    pub checkpointer: Option<Checkpointer>,
}

/// A subscribed consumer, ready to run.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    metrics: Arc<Metrics>,
    origins: Arc<Origins>,
    applied: Resume,
    checkpointer: Option<Checkpointer>,
    pipeline: Pipeline,
    dead_letter: Option<DeadLetter>,
    status: Arc<SourceStatus>,
    shutdown_timeout: Duration,
}

impl KafkaSource {
    /// Creates the consumer, checks that the brokers answer and the topics
    /// exist (within `startup_timeout`), and subscribes. Blocking.
    pub fn connect(
        cfg: &KafkaConfig,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        status: Arc<SourceStatus>,
        durable: Durable,
    ) -> anyhow::Result<KafkaSource> {
        // Until a partition is read again, the next checkpoint says what the
        // restored one said for it.
        let applied: Resume = durable
            .resume
            .iter()
            .map(|((topic, partition), &offset)| (durable.origins.index(topic, *partition), offset))
            .collect();
        let consumer: BaseConsumer<SourceContext> = consumer_config(cfg)
            .create_with_context(SourceContext {
                metrics: metrics.clone(),
                errors: RateLimited::new(Duration::from_secs(10)),
                resume: Mutex::new(durable.resume),
            })
            .map_err(StartError::Client)?;
        let timeout = cfg.startup_timeout.0;
        let metadata =
            consumer
                .fetch_metadata(None, timeout)
                .map_err(|error| StartError::Unreachable {
                    brokers: cfg.brokers.clone(),
                    timeout,
                    error,
                })?;
        for topic in &cfg.topics {
            let found = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
            if !found {
                return Err(StartError::NoTopic {
                    topic: topic.clone(),
                    brokers: cfg.brokers.clone(),
                }
                .into());
            }
        }
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| StartError::Subscribe {
                topics: cfg.topics.clone(),
                error,
            })?;
        let dead_letter = DeadLetter::new(cfg, metrics.clone())?;
        tracing::info!(brokers = %cfg.brokers, topics = ?cfg.topics, group = %cfg.group_id, "subscribed");
        Ok(KafkaSource {
            consumer,
            metrics,
            origins: durable.origins,
            applied,
            checkpointer: durable.checkpointer,
            pipeline,
            dead_letter,
            status,
            shutdown_timeout: cfg.shutdown_timeout.0,
        })
    }

    /// Polls and applies until `shutdown`, then commits and leaves the
    /// group. Blocking: run it on its own thread.
    pub fn run(mut self, shutdown: &CancellationToken) {
        self.status.consuming.store(true, Ordering::Relaxed);
        let poll_errors = RateLimited::new(Duration::from_secs(10));
        while !shutdown.is_cancelled() {
            // Checkpoints fall due whether or not messages flow (an idle
            // instance still proves it is checkpointing).
            if let Some(c) = &mut self.checkpointer {
                c.tick(&self.applied);
            }
            let msg = match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => {
                    if poll_errors.allow() {
                        tracing::warn!(error = %e, "kafka poll error");
                    }
                    continue;
                }
                Some(Ok(msg)) => msg,
            };
            let arrived = Instant::now();
            let payload = msg.payload().unwrap_or_default();
            let origin = self.origins.index(msg.topic(), msg.partition());
            let verdict = self
                .pipeline
                .apply_at(payload, arrived, Some((origin, msg.offset())));
            if let Verdict::DeadLetter { reason, invalid } = verdict {
                if let Some(dl) = &self.dead_letter {
                    let origin = Origin {
                        topic: msg.topic(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                    };
                    dl.send(msg.key(), payload, reason, invalid, &origin);
                }
            }
            if let Some(ms) = msg.timestamp().to_millis() {
                let age_ms = chrono::Utc::now().timestamp_millis() - ms;
                if age_ms >= 0 {
                    self.metrics
                        .source_latency
                        .record(Duration::from_millis(age_ms as u64));
                }
            }
            // The event's effect is in the state: now its offset may be committed.
            if let Err(e) = self.consumer.store_offset_from_message(&msg) {
                if poll_errors.allow() {
                    tracing::warn!(error = %e, "storing offset");
                }
            }
            self.applied.insert(origin, msg.offset() + 1);
            self.status.messages.fetch_add(1, Ordering::Relaxed);
        }
        self.status.consuming.store(false, Ordering::Relaxed);
        commit(&self.consumer, "shutdown");
        if let Some(c) = self.checkpointer.take() {
            c.finish(&self.applied);
        }
        self.consumer.unsubscribe();
        if let Some(dl) = &self.dead_letter {
            dl.flush(self.shutdown_timeout / 2);
        }
        let latency = &self.metrics.source_latency;
        tracing::info!(
            messages = self.status.messages.load(Ordering::Relaxed),
            latency_p50_ms = latency.quantile(0.5) * 1e3,
            latency_p99_ms = latency.quantile(0.99) * 1e3,
            "consumer stopped and committed"
        );
    }
}

/// The consumer's librdkafka configuration.
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in cfg.client_properties() {
        client.set(k, v);
    }
    client
        .set("group.id", &cfg.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            cfg.commit_interval.0.as_millis().to_string(),
        )
        .set("auto.offset.reset", "earliest")
        // A rebalance moves only the partitions it must.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // librdkafka's 500 ms default caps a consumer of a lightly filled
        // broker (tansu) at ~34k msg/s; 10 ms costs little on a busy one.
        .set("fetch.wait.max.ms", "10")
        .set("statistics.interval.ms", "5000");
    for (k, v) in &cfg.properties {
        client.set(k, v);
    }
    client
}
