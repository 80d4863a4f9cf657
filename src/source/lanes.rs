//! Apply lanes: how the Kafka source uses more than one core without giving
//! up per-partition order or at-least-once offsets.
//!
//! Every partition is applied on exactly one lane, in offset order: lane 0 is
//! the polling thread itself, the others are threads fed through bounded
//! queues. A key's events are on one partition, so each key is applied by one
//! thread, in order; the engine is shared (it is built for that).
//!
//! A message handed to a lane is "in flight" until the lane has applied it.
//! The polling thread stores the offsets of applied messages
//! ([`Lanes::take_applied`]) and, before anything that needs every polled
//! message applied (a rebalance callback, the shutdown commit and final
//! snapshot), waits for the lanes to drain. librdkafka runs the rebalance
//! callbacks inside `poll`, on the polling thread, which then dispatches
//! nothing: the callbacks see what a single thread would have left them.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::dead_letter::{DeadLetter, Origin};
use crate::checkpoint::Origins;
use crate::pipeline::{Pipeline, Verdict};

/// Messages a lane may have queued: enough to ride out a slow event, small
/// enough that a drain is quick (~1k messages of work).
const QUEUE: usize = 1024;

/// A message for a lane: what the pipeline and the dead letter need, copied
/// out of librdkafka's buffer.
pub struct Job {
    /// The message payload.
    pub payload: Box<[u8]>,
    /// The message key (for the dead letter).
    pub key: Option<Box<[u8]>>,
    /// Topic-partition number.
    pub origin: u16,
    /// Partition (for the dead letter).
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// When it was polled (processing latency).
    pub arrived: Instant,
}

#[derive(Default)]
struct Pending {
    in_flight: usize,
    /// Applied (origin, offset), in each origin's order.
    applied: Vec<(u16, i64)>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    drained: Condvar,
    /// A lane's thread panicked: the source must stop, as it would if the
    /// polling thread had.
    failed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The extra lanes (the polling thread is lane 0 and not held here).
pub struct Lanes {
    senders: Vec<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Lanes {
    /// Starts one thread per pipeline: lanes 1, 2, … of `1 + pipelines.len()`.
    pub fn start(
        pipelines: Vec<Pipeline>,
        dead_letter: Option<Arc<DeadLetter>>,
        origins: Arc<Origins>,
    ) -> std::io::Result<Lanes> {
        let shared = Arc::new(Shared::default());
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for (i, pipeline) in pipelines.into_iter().enumerate() {
            let (tx, rx) = sync_channel(QUEUE);
            let (shared, dl, origins) = (shared.clone(), dead_letter.clone(), origins.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("kafka-apply-{}", i + 1))
                    .spawn(move || run_lane(pipeline, rx, &shared, dl.as_deref(), &origins))?,
            );
            senders.push(tx);
        }
        Ok(Lanes {
            senders,
            threads,
            shared,
        })
    }

    /// The lane that applies `origin`'s messages: 0 is the caller's.
    pub fn lane_of(&self, origin: u16) -> usize {
        origin as usize % (self.senders.len() + 1)
    }

    /// Hands `job` to lane `lane` (≥ 1); blocks while that lane's queue is full.
    pub fn send(&self, lane: usize, job: Job) {
        self.shared.lock().in_flight += 1;
        if self.senders[lane - 1].send(job).is_err() {
            // The lane's thread is gone (it panicked): nothing will apply
            // this message, and its offset is never stored.
            self.shared.lock().in_flight -= 1;
            tracing::error!(
                lane,
                "an apply thread stopped; its partitions are no longer applied"
            );
        }
    }

    /// Whether a lane's thread panicked (the source should stop).
    pub fn failed(&self) -> bool {
        self.shared
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The messages applied since the last call, in each origin's order;
    /// with `drain`, first waits until none is in flight.
    pub fn take_applied(&self, drain: bool) -> Vec<(u16, i64)> {
        let mut p = self.shared.lock();
        // A failed lane never drains; the source stops instead.
        while drain && p.in_flight > 0 && !self.failed() {
            p = self
                .shared
                .drained
                .wait(p)
                .unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut p.applied)
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run_lane(
    mut pipeline: Pipeline,
    rx: Receiver<Job>,
    shared: &Shared,
    dead_letter: Option<&DeadLetter>,
    origins: &Origins,
) {
    while let Ok(job) = rx.recv() {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.apply_at(&job.payload, job.arrived, Some((job.origin, job.offset)))
        }));
        let Ok(verdict) = applied else {
            // Never stored: the message is read again by whoever owns the
            // partition next. The source stops (see `failed`).
            shared
                .failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let mut p = shared.lock();
            p.in_flight -= 1;
            shared.drained.notify_all();
            return;
        };
        if let (Verdict::DeadLetter { reason, invalid }, Some(dl)) = (verdict, dead_letter) {
            if let Some((topic, _)) = origins.get(job.origin) {
                let origin = Origin {
                    topic: &topic,
                    partition: job.partition,
                    offset: job.offset,
                };
                dl.send(job.key.as_deref(), &job.payload, reason, invalid, &origin);
            }
        }
        let mut p = shared.lock();
        p.applied.push((job.origin, job.offset));
        p.in_flight -= 1;
        if p.in_flight == 0 {
            shared.drained.notify_all();
        }
    }
}
