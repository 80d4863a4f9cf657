//! The Kafka source: a consumer-group member that applies each message to the
//! engine in partition order, at least once.
//!
//! One thread polls and processes (with `kafka.apply_threads` above 1, it
//! only polls and hands each partition to an apply thread:
//! [`crate::source::lanes`]); every
//! polled message is applied, and its offset stored, before the next
//! rebalance callback (which librdkafka runs inside `poll`) begins. Offsets are stored only after the effect is in the state
//! (`enable.auto.offset.store=false`), committed in the background, and
//! committed synchronously when partitions are revoked and at shutdown.
//! librdkafka's bounded fetch queue is the backpressure.
//!
//! What happens when partitions move (librdkafka's rebalance callbacks) is
//! [`super::rebalance`]'s: this file is the poll loop.
//!
//! Whenever the read position is set from a state (a restore, a local
//! checkpoint) or may have been reset (after a rebalance, for the partitions
//! kept), the next records are checked to really start there
//! ([`crate::source::start`]): a broker that skips inside record batches
//! cannot drop events unseen.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset};
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetter, Origin};
use super::lanes::{Lanes, Polled};
use super::rebalance::{commit, lock, SourceContext};
pub use super::status::SourceStatus;
use crate::changelog::handoff::Owned;
use crate::changelog::{Changelog, Handoff};
use crate::checkpoint::{Checkpoint, Checkpointer, Origins, Resume};
use crate::config::KafkaConfig;
use crate::kafka::Role;
use crate::source::start::StartCheck;
use crate::telemetry::RateLimited;
use keywatch_core::metrics::Metrics;
use keywatch_core::pipeline::{Pipeline, Verdict};

/// Messages polled between two rounds of the polling thread's chores
/// (checkpoint due, housekeeping, quiet restored partitions, offsets the
/// lanes applied, shutdown): about a millisecond of messages on a busy topic.
const CHORES_EVERY: u32 = 256;

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

/// What makes the source durable: the partition numbering shared with the
/// checkpoints, where the restored checkpoint says to resume, and the
/// checkpoint writer.
#[derive(Default)]
pub struct Durable {
    /// Topic-partition numbers (shared with the restored state).
    pub origins: Arc<Origins>,
    /// Next offset per partition from the restored checkpoint.
    pub resume: HashMap<(String, i32), i64>,
    /// Periodic checkpoints (and changelog snapshots); `None` when both are off.
    pub checkpointer: Option<Checkpointer>,
    /// With the changelog on: the restored local checkpoint, held until its
    /// partitions are assigned (instead of loaded at start), and what the
    /// handoff needs.
    pub changelog: Option<ChangelogSetup>,
}

/// What the source needs to move partition state through the changelog.
pub struct ChangelogSetup {
    /// The changelog settings.
    pub cfg: crate::config::ChangelogConfig,
    /// The engine whose keys move.
    pub engine: keywatch_core::engine::Engine,
    /// The alert pipeline whose delivered ids move with them.
    pub alerts: Option<crate::alert::Alerts>,
    /// The local checkpoint restored at start, if any.
    pub parked: Option<Checkpoint>,
}

/// A subscribed consumer, ready to run.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    metrics: Arc<Metrics>,
    origins: Arc<Origins>,
    applied: Arc<Mutex<Resume>>,
    checkpointer: Option<Checkpointer>,
    pipeline: Pipeline,
    dead_letter: Option<Arc<DeadLetter>>,
    status: Arc<SourceStatus>,
    shutdown_timeout: Duration,
    /// Messages polled, for sampling the latencies.
    polled: u64,
}

impl KafkaSource {
    /// Creates the consumer, checks that the brokers answer and the topics
    /// exist (within `startup_timeout`), and subscribes. Blocking. The first
    /// pipeline is the polling thread's; each other one gets an apply thread
    /// (see [`crate::source::lanes`]), and then the polling thread applies
    /// nothing itself.
    pub fn connect(
        cfg: &KafkaConfig,
        mut pipelines: Vec<Pipeline>,
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
        let applied = Arc::new(Mutex::new(applied));
        let consumer: BaseConsumer<SourceContext> = consumer_config(cfg)
            .create_with_context(SourceContext::new(
                metrics.clone(),
                durable.resume,
                durable.origins.clone(),
                applied.clone(),
                status.clone(),
                // A partition without state is read from its earliest event
                // when anything keeps state, unless the user asked for latest.
                (durable.checkpointer.is_some() || durable.changelog.is_some())
                    && !cfg
                        .properties
                        .get("auto.offset.reset")
                        .is_some_and(|v| matches!(v.as_str(), "latest" | "largest" | "end")),
            ))
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
        if let Some(setup) = durable.changelog {
            let partitions = metadata
                .topics()
                .iter()
                .filter(|t| cfg.topics.iter().any(|x| x == t.name()))
                .map(|t| t.partitions().len() as i32)
                .max()
                .unwrap_or(1);
            let changelog = Changelog::connect(cfg, &setup.cfg, partitions)?;
            let h = Arc::new(Handoff::new(
                changelog,
                setup.engine,
                durable.origins.clone(),
                metrics.clone(),
                setup.alerts,
                setup.cfg.handoff_timeout.0,
            ));
            if let Some(cp) = setup.parked {
                h.park(cp);
            }
            if let Some(c) = &durable.checkpointer {
                c.attach(h.clone());
            }
            let _ = consumer.context().handoff.set(h);
        }
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| StartError::Subscribe {
                topics: cfg.topics.clone(),
                error,
            })?;
        let dead_letter = DeadLetter::new(cfg, metrics.clone())?.map(Arc::new);
        anyhow::ensure!(!pipelines.is_empty(), "the Kafka source needs a pipeline");
        let pipeline = pipelines.remove(0);
        if !pipelines.is_empty() {
            let lanes = Lanes::start(pipelines, dead_letter.clone(), durable.origins.clone())?;
            let _ = consumer.context().lanes.set(lanes);
        }
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
            polled: 0,
        })
    }

    /// Polls and applies until `shutdown`, then commits, hands the owned
    /// partitions' state over and unsubscribes. Blocking: run it on its own
    /// thread. When it returns nothing is left to lose; dropping the source
    /// then leaves the group, which waits on the group coordinator (a
    /// rebalance in flight can hold that for as long as its timeout).
    pub fn run(&mut self, shutdown: &CancellationToken) {
        self.status.consuming.store(true, Ordering::Relaxed);
        let poll_errors = RateLimited::new(Duration::from_secs(10));
        let mut moves = Moves::default();
        let mut housekeeping = Instant::now();
        // The chores that read the clock or take locks run between polls
        // only when the consumer had nothing ready or every CHORES_EVERY
        // messages: on a busy topic they cost a fraction of a message each.
        let mut since_chores = CHORES_EVERY;
        // A lane's batch is being filled: poll without waiting, and send it
        // as soon as nothing more is ready.
        let mut filling = false;
        loop {
            if since_chores >= CHORES_EVERY {
                since_chores = 0;
                if shutdown.is_cancelled() {
                    break;
                }
                // Checkpoints fall due whether or not messages flow (an idle
                // instance still proves it is checkpointing).
                if let Some(c) = &mut self.checkpointer {
                    c.tick(&lock(&self.applied));
                }
                if housekeeping.elapsed() >= Duration::from_secs(1) {
                    housekeeping = Instant::now();
                    moves.report(self.pipeline.engine(), &self.metrics, &self.origins);
                    if let Some(h) = self.consumer.context().handoff.get() {
                        h.expire_parked();
                    }
                }
                self.probe_quiet_starts();
                self.consumer.context().settle(&self.consumer, false);
                if self
                    .consumer
                    .context()
                    .lanes
                    .get()
                    .is_some_and(Lanes::failed)
                {
                    tracing::error!("an apply thread panicked; stopping the source (what it held is read again after the restart)");
                    break;
                }
            }
            let wait = if filling {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let msg = match self.consumer.poll(wait) {
                None => {
                    if let Some(lanes) = self.consumer.context().lanes.get() {
                        lanes.flush();
                    }
                    filling = false;
                    since_chores = CHORES_EVERY;
                    continue;
                }
                Some(Err(e)) => {
                    if poll_errors.allow() {
                        tracing::warn!(error = %e, "kafka poll error");
                    }
                    since_chores = CHORES_EVERY;
                    continue;
                }
                Some(Ok(msg)) => msg,
            };
            since_chores += 1;
            let payload = msg.payload().unwrap_or_default();
            let origin = self.origins.index(msg.topic(), msg.partition());
            if !self.read_from_state(&msg, origin) {
                continue;
            }
            // One message in eight is timed, from the broker's timestamp to
            // here and from here to applied; the rest never read the clock.
            self.polled = self.polled.wrapping_add(1);
            let arrived = (self.polled % keywatch_core::pipeline::LATENCY_SAMPLE == 0).then(|| {
                self.record_source_latency(&msg);
                Instant::now()
            });
            if let Some(lanes) = self.consumer.context().lanes.get() {
                lanes.send(&Polled {
                    payload,
                    key: msg.key(),
                    origin,
                    partition: msg.partition(),
                    offset: msg.offset(),
                    arrived,
                });
                filling = true;
                continue;
            }
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
            // The event's effect is in the state: now its offset may be committed.
            if let Err(e) = self.consumer.store_offset_from_message(&msg) {
                if poll_errors.allow() {
                    tracing::warn!(error = %e, "storing offset");
                }
            }
            lock(&self.applied).insert(origin, msg.offset() + 1);
            if self.status.catching_up.load(Ordering::Relaxed) > 0 {
                self.consumer.context().caught_up(origin, msg.offset() + 1);
            }
            self.status.messages.fetch_add(1, Ordering::Relaxed);
        }
        self.status.consuming.store(false, Ordering::Relaxed);
        self.consumer.context().settle(&self.consumer, true);
        self.consumer
            .context()
            .closing
            .store(true, Ordering::Relaxed);
        commit(&self.consumer, "shutdown");
        moves.report(self.pipeline.engine(), &self.metrics, &self.origins);
        let applied = std::mem::take(&mut *lock(&self.applied));
        if let Some(h) = self.consumer.context().handoff.get() {
            // The final snapshot of every owned partition; the keys stay for
            // the local checkpoint below, and nothing is left to hand off
            // when the group revokes the partitions as the consumer closes.
            let parts: Vec<Owned> = applied
                .iter()
                .filter_map(|(&origin, &offset)| {
                    let (topic, partition) = self.origins.get(origin)?;
                    Some(Owned {
                        topic,
                        partition,
                        origin,
                        resume: Some(offset),
                    })
                })
                .collect();
            h.hand_over_at_shutdown(&parts);
        }
        if let Some(c) = self.checkpointer.take() {
            c.finish(&applied);
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

/// Reports keys whose events arrive on more than one partition.
#[derive(Default)]
struct Moves {
    seen: u64,
    warned: Option<Instant>,
}

impl Moves {
    fn report(
        &mut self,
        engine: &keywatch_core::engine::Engine,
        metrics: &Metrics,
        origins: &Origins,
    ) {
        let stats = engine.stats();
        let now = stats.partition_moves.load(Ordering::Relaxed);
        if now == self.seen {
            return;
        }
        metrics.key_partition_moves.inc_by(now - self.seen);
        let since = now - self.seen;
        self.seen = now;
        if self
            .warned
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.warned = Some(Instant::now());
        let last = lock(&stats.last_move).clone();
        if let Some((key, from, to)) = last {
            let name = |o: u16| {
                origins
                    .get(o)
                    .map_or_else(|| format!("#{o}"), |(t, p)| format!("{t}/{p}"))
            };
            tracing::warn!(
                key_id = %key,
                from = %name(from),
                to = %name(to),
                events = since,
                "events of one key arrive on more than one partition: key messages by key id, or the key's baseline splits across instances"
            );
        }
    }
}

impl KafkaSource {
    /// Whether `msg` is to be applied: records of a restored partition
    /// before the offset its state reflects are not, and a partition whose
    /// first record came from past that offset is read again from before it
    /// (see [`crate::source::start`]).
    /// How long the message waited in the broker (its timestamp to now).
    fn record_source_latency(&self, msg: &rdkafka::message::BorrowedMessage<'_>) {
        if let Some(ms) = msg.timestamp().to_millis() {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let age_ms = now_ms - ms;
            if age_ms >= 0 {
                self.metrics
                    .source_latency
                    .record(Duration::from_millis(age_ms as u64));
            }
        }
    }

    fn read_from_state(&self, msg: &rdkafka::message::BorrowedMessage<'_>, origin: u16) -> bool {
        let (check, recovered) = self
            .consumer
            .context()
            .starts
            .check_recovered(origin, msg.offset());
        if let Some(r) = recovered {
            tracing::info!(
                topic = msg.topic(),
                partition = msg.partition(),
                from = r.from,
                records = r.records,
                "the broker had skipped part of a record batch (answered a fetch inside a batch with the next one); the records were read again"
            );
        }
        let StartCheck::SeekBack {
            to,
            expected,
            first,
        } = check
        else {
            return check == StartCheck::Apply;
        };
        tracing::debug!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            expected,
            from = to,
            first,
            "a partition was served from past its state's offset; reading it again from earlier, skipping what the state holds"
        );
        if let Err(e) = self.consumer.seek(
            msg.topic(),
            msg.partition(),
            Offset::Offset(to),
            Duration::from_secs(10),
        ) {
            tracing::error!(topic = msg.topic(), partition = msg.partition(), error = %e, "cannot seek back; the events between the state's offset and this one are not applied");
            self.consumer.context().starts.forget(origin);
            return true;
        }
        false
    }

    /// Seeks back restored partitions that showed no record at or before
    /// their state's offset for a while (a broker that answers a fetch
    /// inside the last record batch with nothing).
    fn probe_quiet_starts(&self) {
        for back in self.consumer.context().starts.quiet() {
            let Some((topic, partition)) = self.origins.get(back.origin) else {
                continue;
            };
            tracing::debug!(%topic, partition, from = back.to, expected = back.expected, "no record yet from a restored partition; reading from further back");
            if let Err(e) = self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(back.to),
                Duration::from_secs(10),
            ) {
                tracing::warn!(%topic, partition, error = %e, "cannot seek a restored partition back");
            }
        }
    }
}

/// The consumer's librdkafka configuration.
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    crate::kafka::client(
        cfg,
        Role::Source,
        &[
            ("enable.auto.commit", "true".into()),
            (
                "auto.commit.interval.ms",
                cfg.commit_interval.0.as_millis().to_string(),
            ),
            ("auto.offset.reset", "earliest".into()),
            // A rebalance moves only the partitions it must.
            ("partition.assignment.strategy", "cooperative-sticky".into()),
            // librdkafka's 500 ms default caps a consumer of a lightly filled
            // broker (tansu) at ~34k msg/s; 10 ms costs little on a busy one.
            ("fetch.wait.max.ms", "10".into()),
            ("statistics.interval.ms", "5000".into()),
        ],
        // At least once: offsets are stored only once applied.
        &[
            ("group.id", cfg.group_id.clone()),
            ("enable.auto.offset.store", "false".into()),
        ],
    )
}
