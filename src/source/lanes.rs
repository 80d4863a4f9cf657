//! Apply lanes: how the Kafka source uses more than one core without giving
//! up per-partition order or at-least-once offsets.
//!
//! With `kafka.apply_threads` above 1 the polling thread applies nothing: it
//! polls and hands each message to the lane of its partition, a thread fed
//! through a bounded queue. Every partition is applied on exactly one lane,
//! in offset order. A key's events are on one partition, so each key is
//! applied by one thread, in order; the engine is shared (it is built for
//! that).
//!
//! librdkafka hands over a partition's fetched records together (up to
//! `max.partition.fetch.bytes`, about a thousand CloudTrail records), so
//! partitions arrive in runs. Were the polling thread a lane itself, every
//! run of its own partitions would leave the other lanes to starve behind
//! it (measured: two lanes applied no faster than one). A dispatcher that
//! only polls keeps every lane fed, and each lane's queue holds a few runs.
//!
//! Messages are handed over in batches (a futex wake per message would cost
//! more than the message): the polling thread fills a lane's batch while
//! messages are ready, and sends it when it is full or the consumer has
//! nothing more at once ([`Lanes::flush`]). A message is "in flight" from
//! the moment it is queued until its lane has applied it. The polling thread
//! stores the offsets of applied messages ([`Lanes::take_applied`]) and,
//! before anything that needs every polled message applied (a rebalance
//! callback, the shutdown commit and final snapshot), sends what is queued
//! and waits for the lanes to drain. librdkafka runs the rebalance callbacks
//! inside `poll`, on the polling thread, which then dispatches nothing: the
//! callbacks see what a single thread would have left them.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::dead_letter::{DeadLetter, Origin};
use crate::checkpoint::Origins;
use keywatch_core::pipeline::{Pipeline, Verdict};

/// Messages per hand-over.
const BATCH: usize = 64;
/// Bytes per hand-over: a batch of large messages is sent sooner, so what
/// a lane's queue holds stays bounded by bytes as well as by messages (4 MB
/// a lane, past messages larger than this). 64 CloudTrail records fit.
const BATCH_BYTES: usize = 64 << 10;
/// Emptied batches kept for reuse, across all lanes.
const SPARE: usize = 16;
/// Batches a lane may have queued: a few partition runs (4k messages, a few
/// MB of CloudTrail), so a lane works through one while the polling thread
/// fills another's queue; a drain is still quick (tens of milliseconds).
const QUEUE: usize = 64;

/// A polled message, as the polling thread hands it to [`Lanes::send`]
/// (borrowed from librdkafka's buffer until it is copied into a batch).
pub struct Polled<'a> {
    /// The message payload.
    pub payload: &'a [u8],
    /// The message key (for the dead letter).
    pub key: Option<&'a [u8]>,
    /// Topic-partition number.
    pub origin: u16,
    /// Partition (for the dead letter).
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// When it was polled, for a message sampled for the processing latency.
    pub arrived: Option<Instant>,
}

/// Messages for one lane, copied out of librdkafka's buffers into one
/// buffer: one allocation per hand-over rather than one per message.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    jobs: Vec<Job>,
}

/// One message of a [`Batch`]: where its payload and key sit in the batch's
/// bytes, and what the pipeline and the dead letter need.
struct Job {
    payload: Range<usize>,
    key: Option<Range<usize>>,
    origin: u16,
    partition: i32,
    offset: i64,
    arrived: Option<Instant>,
}

impl Batch {
    fn push(&mut self, m: &Polled<'_>) {
        if self.jobs.capacity() == 0 {
            self.jobs.reserve(BATCH);
            self.bytes.reserve(BATCH_BYTES);
        }
        let mut copy = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let payload = copy(m.payload);
        let key = m.key.map(copy);
        self.jobs.push(Job {
            payload,
            key,
            origin: m.origin,
            partition: m.partition,
            offset: m.offset,
            arrived: m.arrived,
        });
    }

    fn full(&self) -> bool {
        self.jobs.len() >= BATCH || self.bytes.len() >= BATCH_BYTES
    }

    /// Empties an applied batch for reuse; `None` when one large message
    /// grew its buffer past what is worth keeping.
    fn recycled(mut self) -> Option<Batch> {
        if self.bytes.capacity() > 2 * BATCH_BYTES {
            return None;
        }
        self.bytes.clear();
        self.jobs.clear();
        Some(self)
    }
}

#[derive(Default)]
struct Pending {
    in_flight: usize,
    /// Applied (origin, offset), in each origin's order.
    applied: Vec<(u16, i64)>,
    /// Applied batches, emptied, for the polling thread to fill again: their
    /// buffers are reused rather than freed by one thread and allocated by
    /// another (which glibc answers with heap trims and madvise calls).
    spare: Vec<Batch>,
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

/// The apply threads and their queues.
pub struct Lanes {
    senders: Vec<SyncSender<Batch>>,
    /// The batch being filled per lane; only the polling thread touches it
    /// (the lock is never contended).
    filling: Vec<Mutex<Batch>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Lanes {
    /// Starts one thread per pipeline: lanes 0, 1, … of `pipelines.len()`.
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
                    .name(format!("kafka-apply-{i}"))
                    .spawn(move || run_lane(pipeline, rx, &shared, dl.as_deref(), &origins))?,
            );
            senders.push(tx);
        }
        Ok(Lanes {
            filling: senders.iter().map(|_| Mutex::default()).collect(),
            senders,
            threads,
            shared,
        })
    }

    /// The lane that applies `origin`'s messages.
    fn lane_of(&self, origin: u16) -> usize {
        origin as usize % self.senders.len()
    }

    /// Copies `message` into the batch for its partition's lane; a full
    /// batch is sent at once (blocking while that lane's queue is full).
    pub fn send(&self, message: &Polled<'_>) {
        let lane = self.lane_of(message.origin);
        let full = {
            let mut batch = lock(&self.filling[lane]);
            batch.push(message);
            batch.full()
        };
        if full {
            self.send_batch(lane);
        }
    }

    /// Sends every partly filled batch: the consumer has nothing more ready.
    pub fn flush(&self) {
        for lane in 0..self.senders.len() {
            self.send_batch(lane);
        }
    }

    fn send_batch(&self, lane: usize) {
        let mut filling = lock(&self.filling[lane]);
        if filling.jobs.is_empty() {
            return;
        }
        let n = filling.jobs.len();
        let batch = {
            let mut p = self.shared.lock();
            p.in_flight += n;
            std::mem::replace(&mut *filling, p.spare.pop().unwrap_or_default())
        };
        drop(filling);
        if self.senders[lane].send(batch).is_err() {
            // The lane's thread is gone (it panicked): nothing will apply
            // these messages, and their offsets are never stored.
            self.shared.lock().in_flight -= n;
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
    /// with `drain`, first sends what is queued and waits until none is in
    /// flight.
    pub fn take_applied(&self, drain: bool) -> Vec<(u16, i64)> {
        if drain {
            self.flush();
        }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_lane(
    mut pipeline: Pipeline,
    rx: Receiver<Batch>,
    shared: &Shared,
    dead_letter: Option<&DeadLetter>,
    origins: &Origins,
) {
    // What a batch applied, one buffer for all of them (as batches are reused).
    let mut applied = Vec::with_capacity(BATCH);
    while let Ok(batch) = rx.recv() {
        applied.clear();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for job in &batch.jobs {
                let payload = &batch.bytes[job.payload.clone()];
                let verdict =
                    pipeline.apply_at(payload, job.arrived, Some((job.origin, job.offset)));
                if let (Verdict::DeadLetter { reason, invalid }, Some(dl)) = (verdict, dead_letter)
                {
                    if let Some((topic, _)) = origins.get(job.origin) {
                        let origin = Origin {
                            topic: &topic,
                            partition: job.partition,
                            offset: job.offset,
                        };
                        let key = job.key.clone().map(|k| &batch.bytes[k]);
                        dl.send(key, payload, reason, invalid, &origin);
                    }
                }
                applied.push((job.origin, job.offset));
            }
        }));
        let mut p = shared.lock();
        // What a panic left unapplied is never stored: it is read again by
        // whoever owns the partition next. The source stops (see `failed`).
        p.in_flight -= batch.jobs.len();
        p.applied.extend_from_slice(&applied);
        if p.spare.len() < SPARE {
            p.spare.extend(batch.recycled());
        }
        let failed = outcome.is_err();
        if failed {
            shared
                .failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if p.in_flight == 0 || failed {
            shared.drained.notify_all();
        }
        if failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Entity};
    use keywatch_core::engine::Engine;
    use keywatch_core::metrics::Metrics;

    /// Every message handed over is applied once, each partition's in offset
    /// order, with its own bytes: batches cut by count and by size, buffers
    /// reused, and a message far larger than a batch in between.
    #[test]
    fn every_message_is_applied_once_in_partition_order() {
        let cfg = Config::default();
        let engine = Engine::new(&cfg);
        let metrics = Arc::new(Metrics::new());
        let pipelines = (0..2)
            .map(|_| Pipeline::new(&cfg, engine.clone(), metrics.clone(), Arc::new(|_| {})))
            .collect::<anyhow::Result<Vec<_>>>()
            .unwrap();
        let lanes = Lanes::start(pipelines, None, Arc::new(Origins::default())).unwrap();
        let (origins, per_origin) = (3u16, 400i64);
        let mut applied = Vec::new();
        for offset in 0..per_origin {
            for origin in 1..=origins {
                // Every 97th message carries a large field: it is a batch on
                // its own, and its buffer is not kept for reuse.
                let pad = if offset % 97 == 0 { 3 * BATCH_BYTES } else { 0 };
                let payload = format!(
                    r#"{{"time":"2026-01-05T00:{:02}:{:02}Z","key_id":"AKIA{origin}X{}","source":"10.0.{origin}.1","action":"s3:GetObject","note":"{}"}}"#,
                    offset / 60,
                    offset % 60,
                    offset % 7,
                    "x".repeat(pad),
                );
                lanes.send(&Polled {
                    payload: payload.as_bytes(),
                    key: Some(b"k"),
                    origin,
                    partition: origin as i32,
                    offset,
                    arrived: None,
                });
            }
            if offset % 50 == 0 {
                applied.extend(lanes.take_applied(false));
            }
        }
        applied.extend(lanes.take_applied(true));
        assert_eq!(applied.len(), (origins as i64 * per_origin) as usize);
        for origin in 1..=origins {
            let offsets: Vec<i64> = applied
                .iter()
                .filter(|a| a.0 == origin)
                .map(|a| a.1)
                .collect();
            assert_eq!(
                offsets,
                (0..per_origin).collect::<Vec<_>>(),
                "origin {origin}"
            );
        }
        // Each message reached the engine intact: 7 keys per partition, and
        // every one was an event (none cut short or run into another).
        assert_eq!(engine.key_count(Entity::KeyId), 3 * 7);
        let text = metrics.render();
        assert!(
            text.contains("keywatch_events_total{outcome=\"success\"} 1200"),
            "{text}"
        );
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("keywatch_decode_errors_total{") && !l.ends_with(" 0"))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(lanes.shared.lock().spare.len() <= SPARE);
    }
}
