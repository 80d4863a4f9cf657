//! What happens when partitions move: librdkafka's rebalance callbacks
//! ([`SourceContext`]), run inside the poll loop's `poll`
//! ([`super::kafka`]).
//!
//! On revocation the stored offsets are committed before the partitions go.
//! With the changelog on ([`crate::changelog`]), a partition's state moves
//! with it: on assignment its state is restored and the partition replays
//! from the offset the state reflects (it is "catching up" until it reaches
//! the high watermark seen at assignment); on revocation its keys leave the
//! engine in a final snapshot before the partition is released. Without
//! it, a restored checkpoint says where each partition resumes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::lanes::Lanes;
use super::status::SourceStatus;
use crate::changelog::handoff::Owned;
use crate::changelog::Handoff;
use crate::checkpoint::{Origins, Resume};
use crate::source::start::Starts;
use crate::telemetry::RateLimited;
use keywatch_core::metrics::Metrics;

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
    pub(super) metrics: Arc<Metrics>,
    pub(super) errors: RateLimited,
    /// Where the restored checkpoint says to resume, used once per partition
    /// (without the changelog).
    pub(super) resume: Mutex<HashMap<(String, i32), i64>>,
    /// Moves partition state in and out (with the changelog; set before subscribing).
    pub(super) handoff: std::sync::OnceLock<Arc<Handoff>>,
    pub(super) origins: Arc<Origins>,
    /// Next offset per owned partition, as applied.
    pub(super) applied: Arc<Mutex<Resume>>,
    catchup: Mutex<HashMap<u16, CatchUp>>,
    /// Partitions read from an offset their state chose: the state and the
    /// read position must agree.
    pub(super) starts: Starts,
    /// The consumer is leaving the group: partitions assigned now are
    /// not read, so their state is not restored.
    pub(super) closing: AtomicBool,
    pub(super) status: Arc<SourceStatus>,
    /// The apply threads beside the polling thread (none with one lane).
    pub(super) lanes: std::sync::OnceLock<Lanes>,
    /// State is durable (checkpoints or the changelog), and the group's
    /// committed offsets run ahead of it (they follow what is applied): a
    /// partition assigned with no state anywhere is read from its earliest
    /// retained event, not from the committed offset, which may be past
    /// events no state holds (a `kill -9` before its first checkpoint).
    pub(super) replay_stateless: bool,
    /// Partitions assigned to this process at least once (their state, if
    /// any, is in the engine).
    pub(super) seen: Mutex<std::collections::HashSet<(String, i32)>>,
    /// Responses received from each broker at the previous statistics: a
    /// broker connected but stopped (a paused process, a hung disk) keeps
    /// its connection up and answers nothing.
    pub(super) broker_rx: Mutex<HashMap<i32, u64>>,
}

impl SourceContext {
    /// The callbacks of a consumer that resumes from `resume` (a restored
    /// checkpoint's offsets), numbers partitions by `origins`, records what
    /// it applied in `applied`, reports to `status`, and with
    /// `replay_stateless` reads a partition without state from its earliest
    /// event.
    pub fn new(
        metrics: Arc<Metrics>,
        resume: HashMap<(String, i32), i64>,
        origins: Arc<Origins>,
        applied: Arc<Mutex<Resume>>,
        status: Arc<SourceStatus>,
        replay_stateless: bool,
    ) -> SourceContext {
        SourceContext {
            metrics,
            errors: RateLimited::new(Duration::from_secs(10)),
            resume: Mutex::new(resume),
            handoff: std::sync::OnceLock::new(),
            origins,
            applied,
            catchup: Mutex::new(HashMap::new()),
            starts: Starts::default(),
            closing: AtomicBool::new(false),
            status,
            lanes: std::sync::OnceLock::new(),
            replay_stateless,
            seen: Mutex::new(std::collections::HashSet::new()),
            broker_rx: Mutex::new(HashMap::new()),
        }
    }
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
    pub(super) fn settle(&self, consumer: &BaseConsumer<Self>, drain: bool) {
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
    pub(super) fn caught_up(&self, origin: u16, next: i64) {
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

/// A lock that outlives a panicking holder.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                if self.closing.load(Ordering::Relaxed) =>
            {
                // Unsubscribed, committed and handed over: partitions
                // offered now are not taken. An empty assignment answers
                // the call (the close waits for one) without starting a
                // partition; a started one can still be in progress when
                // librdkafka ends the close, which it asserts against
                // (the process aborts; confluentinc/librdkafka#4792).
                let none = TopicPartitionList::new();
                let answered = if cooperative {
                    consumer.incremental_assign(&none)
                } else {
                    consumer.assign(&none)
                };
                if let Err(e) = answered {
                    tracing::debug!(error = %e, "answering an assignment while closing");
                }
                tracing::info!(
                    partitions = tpl.count(),
                    list = %partition_list(tpl),
                    "partitions offered while closing; not taken"
                );
            }
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

/// Commits the stored offsets now (a revocation, a shutdown).
pub(super) fn commit(consumer: &BaseConsumer<SourceContext>, why: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, why, "offset commit failed"),
    }
}
