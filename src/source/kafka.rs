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
//! With the changelog on ([`crate::changelog`]), a partition's state moves
//! with it: on assignment its state is restored and the partition replays
//! from the offset the state reflects (it is "catching up" until it reaches
//! the high watermark seen at assignment); on revocation its keys leave the
//! engine in a final snapshot before the partition is released.
//!
//! Whenever the read position is set from a state (a restore, a local
//! checkpoint) or may have been reset (after a rebalance, for the partitions
//! kept), the next records are checked to really start there
//! ([`crate::source::start`]): a broker that skips inside record batches
//! cannot drop events unseen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
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
use super::lanes::{Lanes, Polled};
use crate::changelog::handoff::Owned;
use crate::changelog::{Changelog, Handoff};
use crate::checkpoint::{Checkpoint, Checkpointer, Origins, Resume};
use crate::config::KafkaConfig;
use crate::source::start::{StartCheck, Starts};
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

/// What the rest of the daemon can see of the source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Subscribed and polling.
    pub consuming: AtomicBool,
    /// Messages applied since start.
    pub messages: AtomicU64,
    /// Partitions replaying from a restored state, not yet live.
    pub catching_up: AtomicUsize,
    /// A partition was assigned since start: before, the instance waits for
    /// the group (a killed member still in it can hold them for a session
    /// timeout) and is not ready.
    pub assigned_once: AtomicBool,
    /// Since when (epoch ms) no broker has been reachable; 0: one is.
    pub brokers_down_since_ms: AtomicI64,
    /// `/readyz` fails once no broker has been reachable this long, ms
    /// (`kafka.unreachable_after`; 0: its default).
    pub unreachable_after_ms: AtomicU64,
}

impl SourceStatus {
    /// No broker has been reachable since `now_ms - since`: noted once, with
    /// a WARN line.
    fn brokers_down(&self, now_ms: i64, why: &str) {
        if self
            .brokers_down_since_ms
            .compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                why,
                "no Kafka broker reachable: consumption stalls; /readyz turns not ready after kafka.unreachable_after"
            );
        }
    }

    /// A broker is reachable again.
    fn brokers_up(&self, now_ms: i64) {
        let since = self.brokers_down_since_ms.swap(0, Ordering::Relaxed);
        if since > 0 {
            tracing::info!(
                down_s = (now_ms - since).max(0) / 1000,
                "a Kafka broker is reachable again"
            );
        }
    }
}

/// A partition replaying from its restored state.
struct CatchUp {
    topic: String,
    partition: i32,
    /// Live once the next offset to read reaches this (the high watermark
    /// at assignment).
    target: i64,
    from: i64,
    started: Instant,
}

/// librdkafka callbacks: commit on revoke, resume from the checkpoint on
/// assignment, metrics. Nothing here does more than a commit, a seek or a
/// gauge update.
pub struct SourceContext {
    metrics: Arc<Metrics>,
    errors: RateLimited,
    /// Where the restored checkpoint says to resume, used once per partition
    /// (without the changelog).
    resume: Mutex<HashMap<(String, i32), i64>>,
    /// Moves partition state in and out (with the changelog; set before subscribing).
    handoff: std::sync::OnceLock<Arc<Handoff>>,
    origins: Arc<Origins>,
    /// Next offset per owned partition, as applied.
    applied: Arc<Mutex<Resume>>,
    catchup: Mutex<HashMap<u16, CatchUp>>,
    /// Partitions read from an offset their state chose: the state and the
    /// read position must agree.
    starts: Starts,
    /// The consumer is leaving the group: partitions assigned now are
    /// not read, so their state is not restored.
    closing: AtomicBool,
    status: Arc<SourceStatus>,
    /// The apply threads beside the polling thread (none with one lane).
    lanes: std::sync::OnceLock<Lanes>,
    /// State is durable (checkpoints or the changelog), and the group's
    /// committed offsets run ahead of it (they follow what is applied): a
    /// partition assigned with no state anywhere is read from its earliest
    /// retained event, not from the committed offset, which may be past
    /// events no state holds (a `kill -9` before its first checkpoint).
    replay_stateless: bool,
    /// Partitions assigned to this process at least once (their state, if
    /// any, is in the engine).
    seen: Mutex<std::collections::HashSet<(String, i32)>>,
    /// Responses received from each broker at the previous statistics: a
    /// broker connected but stopped (a paused process, a hung disk) keeps
    /// its connection up and answers nothing.
    broker_rx: Mutex<HashMap<i32, u64>>,
}

impl SourceContext {
    /// Points newly assigned partitions at the checkpoint's offsets: the
    /// checkpoint, not the group's committed offset, is the source of truth
    /// for a restored state.
    fn resume_from_checkpoint(&self, tpl: &mut TopicPartitionList) {
        let Ok(mut resume) = self.resume.lock() else {
            return;
        };
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in assigned {
            let first_time = lock(&self.seen).insert((topic.clone(), partition));
            if first_time && !resume.contains_key(&(topic.clone(), partition)) {
                self.replay_from_earliest(tpl, &topic, partition);
            }
            if let Some(offset) = resume.remove(&(topic.clone(), partition)) {
                if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset))
                {
                    tracing::warn!(%topic, partition, error = %e, "cannot resume from the checkpoint");
                } else {
                    tracing::info!(%topic, partition, offset, "resuming from the checkpoint");
                    self.starts
                        .expect(self.origins.index(&topic, partition), offset);
                }
            }
        }
    }
}

impl SourceContext {
    /// Stores the offsets of the messages the apply threads applied; with
    /// `drain`, first waits until none is in flight (before a rebalance or
    /// the shutdown commit, which need every polled message applied).
    fn settle(&self, consumer: &BaseConsumer<Self>, drain: bool) {
        let Some(lanes) = self.lanes.get() else {
            return;
        };
        let done = lanes.take_applied(drain);
        if done.is_empty() {
            return;
        }
        self.status
            .messages
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        // The next offset per partition: each lane reports in offset order.
        let mut next: Vec<(u16, i64)> = Vec::new();
        for (origin, offset) in done {
            match next.iter_mut().find(|n| n.0 == origin) {
                Some(n) => n.1 = n.1.max(offset + 1),
                None => next.push((origin, offset + 1)),
            }
        }
        let mut tpl = TopicPartitionList::with_capacity(next.len());
        {
            let mut applied = lock(&self.applied);
            for &(origin, offset) in &next {
                applied.insert(origin, offset);
                if let Some((topic, partition)) = self.origins.get(origin) {
                    let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
                }
            }
        }
        // The effects are in the state: now the offsets may be committed.
        if let Err(e) = consumer.store_offsets(&tpl) {
            if self.errors.allow() {
                tracing::warn!(error = %e, "storing offsets");
            }
        }
        if self.status.catching_up.load(Ordering::Relaxed) > 0 {
            for (origin, offset) in next {
                self.caught_up(origin, offset);
            }
        }
    }

    /// Points a partition with no state anywhere at its earliest retained
    /// event (see [`SourceContext::replay_stateless`]).
    fn replay_from_earliest(&self, tpl: &mut TopicPartitionList, topic: &str, partition: i32) {
        if !self.replay_stateless {
            return;
        }
        match tpl.set_partition_offset(topic, partition, Offset::Beginning) {
            Ok(()) => tracing::info!(
                topic,
                partition,
                "no state for the partition in a checkpoint or the changelog: reading it from its earliest retained event (the group's committed offset may be past any state)"
            ),
            Err(e) => tracing::warn!(topic, partition, error = %e, "cannot read the partition from its earliest event"),
        }
    }

    /// Restores newly assigned partitions from the changelog (or the parked
    /// local checkpoint) and points them at the offsets their state reflects.
    fn take_over(&self, tpl: &mut TopicPartitionList) {
        let Some(handoff) = self.handoff.get() else {
            return self.resume_from_checkpoint(tpl);
        };
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .filter(|(topic, partition)| {
                // Its state is here and live: a restore would set it back.
                let owned = handoff.owns(self.origins.index(topic, *partition));
                if owned {
                    tracing::warn!(%topic, partition, "assigned a partition this instance already owns; its state stays as it is");
                }
                !owned
            })
            .collect();
        if parts.is_empty() {
            return;
        }
        for acquired in handoff.acquire(&parts) {
            let Some(resume) = acquired.resume else {
                self.replay_from_earliest(tpl, &acquired.topic, acquired.partition);
                continue;
            };
            let (topic, partition) = (&acquired.topic, acquired.partition);
            if let Err(e) = tpl.set_partition_offset(topic, partition, Offset::Offset(resume)) {
                tracing::warn!(%topic, partition, error = %e, "cannot seek to the restored state's offset");
                continue;
            }
            lock(&self.applied).insert(acquired.origin, resume);
            self.starts.expect(acquired.origin, resume);
            let target = handoff.high_watermark(topic, partition).unwrap_or(resume);
            if target > resume {
                self.metrics
                    .catchup_lag
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(target - resume);
                lock(&self.catchup).insert(
                    acquired.origin,
                    CatchUp {
                        topic: topic.clone(),
                        partition,
                        target,
                        from: resume,
                        started: Instant::now(),
                    },
                );
            }
        }
        self.status
            .catching_up
            .store(lock(&self.catchup).len(), Ordering::Relaxed);
    }

    /// Hands revoked partitions off: a final snapshot of each, and their
    /// keys leave the engine. Every fetched message is applied by now.
    fn hand_off(&self, tpl: &TopicPartitionList, lost: bool) {
        let Some(handoff) = self.handoff.get() else {
            return;
        };
        let parts: Vec<Owned> = {
            let mut applied = lock(&self.applied);
            let mut catchup = lock(&self.catchup);
            tpl.elements()
                .iter()
                .map(|e| {
                    let origin = self.origins.index(e.topic(), e.partition());
                    self.starts.forget(origin);
                    if catchup.remove(&origin).is_some() {
                        let _ = self
                            .metrics
                            .catchup_lag
                            .remove_label_values(&[e.topic(), &e.partition().to_string()]);
                    }
                    Owned {
                        topic: e.topic().to_owned(),
                        partition: e.partition(),
                        origin,
                        resume: applied.remove(&origin),
                    }
                })
                .collect()
        };
        self.status
            .catching_up
            .store(lock(&self.catchup).len(), Ordering::Relaxed);
        if lost {
            // The session lapsed: another member owns these partitions
            // already and continues from the changelog. Drop the keys, write
            // nothing.
            tracing::warn!(
                partitions = parts.len(),
                "partitions lost (the group moved on without this member); their state continues on the new owner"
            );
            handoff.forget(&parts);
        } else {
            handoff.release(&parts);
        }
    }

    /// After a rebalance librdkafka may fetch a partition it kept again from
    /// the last record the application took: its next record is checked
    /// like a restored partition's first (see [`crate::source::start`]).
    /// Partitions just assigned (`new`) start where their own state says.
    fn recheck_kept(&self, consumer: &BaseConsumer<Self>, new: Option<&TopicPartitionList>) {
        // Nothing is read after the close; and see `post_rebalance`.
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        let Ok(assigned) = consumer.assignment() else {
            return;
        };
        let applied = lock(&self.applied);
        for e in assigned.elements() {
            if new.is_some_and(|n| n.find_partition(e.topic(), e.partition()).is_some()) {
                continue;
            }
            let origin = self.origins.index(e.topic(), e.partition());
            if let Some(&next) = applied.get(&origin) {
                self.starts.expect_unless_pending(origin, next);
            }
        }
    }

    /// Marks a catching-up partition live once it reached its target.
    fn caught_up(&self, origin: u16, next: i64) {
        let mut catchup = lock(&self.catchup);
        let Some(c) = catchup.get(&origin) else {
            return;
        };
        let partition = c.partition.to_string();
        if next < c.target {
            self.metrics
                .catchup_lag
                .with_label_values(&[&c.topic, &partition])
                .set(c.target - next);
            return;
        }
        let _ = self
            .metrics
            .catchup_lag
            .remove_label_values(&[&c.topic, &partition]);
        tracing::info!(
            topic = %c.topic,
            partition = c.partition,
            replayed = next - c.from,
            seconds = c.started.elapsed().as_secs_f64(),
            "partition caught up; live"
        );
        catchup.remove(&origin);
        self.status
            .catching_up
            .store(catchup.len(), Ordering::Relaxed);
    }
}

impl SourceContext {
    /// Newly assigned partitions whose start (the restored state's offset,
    /// or the group's committed one) is below the broker's earliest retained
    /// record: the records in between were deleted before keywatch applied
    /// them. That loss is reported (a warning naming the partition and the
    /// range, and `keywatch_source_offsets_lost_total`), and the partition
    /// is read from the earliest record the broker still has, whatever
    /// `auto.offset.reset` says.
    fn skip_deleted(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        const ASK: Duration = Duration::from_secs(5);
        let mut starts: Vec<(String, i32, Option<i64>)> = tpl
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.topic().to_owned(), e.partition(), at)
            })
            .collect();
        if starts.iter().any(|(_, _, at)| at.is_none()) {
            // Partitions that start where the group left them.
            let mut ask = TopicPartitionList::new();
            for (topic, partition, at) in &starts {
                if at.is_none() {
                    ask.add_partition(topic, *partition);
                }
            }
            match consumer.committed_offsets(ask, ASK) {
                Ok(committed) => {
                    for (topic, partition, at) in &mut starts {
                        if at.is_none() {
                            if let Some(Offset::Offset(o)) = committed
                                .find_partition(topic, *partition)
                                .map(|e| e.offset())
                            {
                                *at = Some(o);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the committed offsets to check them against retention")
                }
            }
        }
        for (topic, partition, at) in starts {
            let Some(at) = at else { continue };
            let low = match consumer.fetch_watermarks(&topic, partition, ASK) {
                Ok((low, _)) => low,
                Err(e) => {
                    tracing::debug!(%topic, partition, error = %e, "cannot read the partition's earliest offset");
                    continue;
                }
            };
            if low <= at {
                continue;
            }
            let lost = low - at;
            self.metrics
                .source_offsets_lost
                .with_label_values(&[&topic, &partition.to_string()])
                .inc_by(lost as u64);
            tracing::warn!(
                %topic,
                partition,
                from = at,
                to = low - 1,
                records = lost,
                "records were deleted by the broker before keywatch applied them (retention ran past the offset to resume from); reading from the earliest record the broker still has"
            );
            if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(low)) {
                tracing::warn!(%topic, partition, error = %e, "cannot point the partition at its earliest offset");
                continue;
            }
            let origin = self.origins.index(&topic, partition);
            let mut applied = lock(&self.applied);
            if let Some(next) = applied.get_mut(&origin) {
                *next = low;
            }
            drop(applied);
            if self.starts.is_pending(origin) {
                self.starts.expect(origin, low);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Bootstrap and learned brokers alike: one connection up and
        // answering is enough. A consumer's fetches are answered within
        // fetch.wait.max.ms even when idle, so a broker up with requests
        // waiting and no response since the last statistics has stalled.
        let brokers = stats.brokers.values().filter(|b| b.nodeid >= 0);
        let (mut any, mut up, mut answering) = (false, false, false);
        {
            let mut seen = lock(&self.broker_rx);
            for b in brokers {
                any = true;
                if b.state == "UP" {
                    up = true;
                    let before = seen.insert(b.nodeid, b.rx);
                    answering |= before != Some(b.rx) || b.waitresp_cnt == 0;
                }
            }
        }
        if answering {
            self.status.brokers_up(now_ms);
        } else if up {
            self.status.brokers_down(
                now_ms,
                "brokers connected but not answering (paused or overloaded)",
            );
        } else if any {
            self.status
                .brokers_down(now_ms, "no broker connection is up");
        }
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
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.status
                .brokers_down(chrono::Utc::now().timestamp_millis(), reason);
        }
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
        // What the apply threads hold is applied (and its offset stored)
        // before partitions move, as on a single thread.
        self.settle(consumer, true);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.take_over(tpl);
                self.skip_deleted(consumer, tpl);
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
                self.recheck_kept(consumer, Some(tpl));
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
                self.recheck_kept(consumer, None);
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
            // hand the state off and commit before the partitions go to
            // another member.
            let lost = consumer.assignment_lost();
            self.hand_off(tpl, lost);
            if !lost {
                commit(consumer, "revoke");
            }
            tracing::info!(
                partitions = tpl.count(),
                list = %partition_list(tpl),
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Asking librdkafka for the assignment while the consumer closes can
        // deadlock it (the close waits on this callback, the query on the
        // close): a closing consumer owns nothing.
        let owned = if self.closing.load(Ordering::Relaxed) {
            0
        } else {
            consumer.assignment().map(|a| a.count()).unwrap_or(0)
        };
        self.metrics.partitions_owned.set(owned as i64);
        if owned > 0 {
            self.status.assigned_once.store(true, Ordering::Relaxed);
        }
        self.metrics.consumer_lag.reset();
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(
                assigned = tpl.count(),
                owned,
                list = %partition_list(tpl),
                "partitions assigned"
            ),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// `topic/partition` of each element, comma-separated, for logs.
fn partition_list(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
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
            .create_with_context(SourceContext {
                metrics: metrics.clone(),
                errors: RateLimited::new(Duration::from_secs(10)),
                resume: Mutex::new(durable.resume),
                handoff: std::sync::OnceLock::new(),
                origins: durable.origins.clone(),
                applied: applied.clone(),
                catchup: Mutex::new(HashMap::new()),
                starts: Starts::default(),
                closing: AtomicBool::new(false),
                status: status.clone(),
                lanes: std::sync::OnceLock::new(),
                replay_stateless: (durable.checkpointer.is_some() || durable.changelog.is_some())
                    && !cfg
                        .properties
                        .get("auto.offset.reset")
                        .is_some_and(|v| matches!(v.as_str(), "latest" | "largest" | "end")),
                seen: Mutex::new(std::collections::HashSet::new()),
                broker_rx: Mutex::new(HashMap::new()),
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

    /// Polls and applies until `shutdown`, then commits and leaves the
    /// group. Blocking: run it on its own thread.
    pub fn run(mut self, shutdown: &CancellationToken) {
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
