//! Writing checkpoints off the event path: the consuming thread hands over
//! the offsets it has applied; a worker thread copies the engine (shard by
//! shard, while events keep flowing) and writes the file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Checkpoint, Origins, Store};
use keywatch_core::engine::Engine;
use keywatch_core::metrics::Metrics;

/// Next offset to read per origin, as the consuming thread knows it.
pub type Resume = HashMap<u16, i64>;

/// Where a checkpoint goes beyond the local file: the changelog's hand-off,
/// seen from here only through what a checkpoint needs of it, so that the
/// checkpoint knows nothing of how partitions move between instances.
pub trait Mirror: Send + Sync {
    /// The owned partitions and their epochs, as of now (taken with the
    /// offsets a checkpoint will resume from).
    fn epochs(&self) -> HashMap<u16, u64>;
    /// Drops from `cp` the partitions that changed hands since `at_tick`
    /// was taken, so it holds only state consistent with its offsets.
    fn keep_consistent(&self, cp: &mut Checkpoint, at_tick: &HashMap<u16, u64>);
    /// Writes the checkpoint's partitions onward.
    fn write_periodic(&self, cp: Checkpoint);
}

/// A checkpoint request: the offsets, and the handoff's partition epochs
/// taken with them.
type Due = (Resume, Option<HashMap<u16, u64>>);

/// Periodic checkpoints for one consuming thread.
pub struct Checkpointer {
    tx: Option<SyncSender<Due>>,
    worker: Option<JoinHandle<()>>,
    writer: Arc<Writer>,
    interval: Duration,
    due: Instant,
}

/// What writes: shared by the worker and the final checkpoint.
struct Writer {
    /// Local checkpoint files; `None` when only the changelog is written.
    store: Option<Store>,
    /// The changelog the owned partitions' snapshots also go to.
    handoff: OnceLock<Arc<dyn Mirror>>,
    engine: Engine,
    origins: Arc<Origins>,
    metrics: Arc<Metrics>,
    last_ok_ms: Arc<AtomicI64>,
}

impl Writer {
    /// Copies and writes; `epochs` are the handoff's partition epochs taken
    /// with `resume` (`None` when nothing can move meanwhile).
    fn write(&self, resume: &Resume, epochs: Option<&HashMap<u16, u64>>) {
        let started = Instant::now();
        let mut cp = Checkpoint::capture(&self.engine, &self.origins, resume);
        if let (Some(h), Some(e)) = (self.handoff.get(), epochs) {
            h.keep_consistent(&mut cp, e);
        }
        let copied = started.elapsed();
        let keys = cp.key_count();
        if let Some(store) = &self.store {
            self.store_locally(store, &cp, started, copied, keys);
        }
        // Last, so the changelog takes the copy's keys without copying them again.
        if let Some(handoff) = self.handoff.get() {
            handoff.write_periodic(cp);
        }
    }

    fn store_locally(
        &self,
        store: &Store,
        cp: &Checkpoint,
        started: Instant,
        copied: std::time::Duration,
        keys: usize,
    ) {
        if cp
            .sections
            .iter()
            .all(|s| s.keys.is_empty() && s.resume.is_none())
        {
            // No partition's state nor offset: the instance owns none (it
            // waits for an assignment after a restart, its state parked for
            // the changelog, or the group moved them all away). There is
            // nothing to resume from this copy, and written it would rotate
            // out the last checkpoint that holds the state of partitions
            // this instance may get back.
            self.metrics.checkpoints.with_label_values(&["empty"]).inc();
            self.last_ok_ms.store(cp.written_at_ms, Ordering::Relaxed);
            tracing::debug!(
                principals = cp.principals.len(),
                "no partition owned: checkpoint not written, the previous ones stay"
            );
            return;
        }
        match store.write(cp) {
            Ok(w) => {
                self.metrics.checkpoints.with_label_values(&["ok"]).inc();
                self.metrics
                    .checkpoint_duration
                    .set(started.elapsed().as_secs_f64());
                self.metrics.checkpoint_size.set(w.bytes as i64);
                self.last_ok_ms.store(cp.written_at_ms, Ordering::Relaxed);
                tracing::debug!(
                    path = %w.path.display(),
                    keys,
                    bytes = w.bytes,
                    copy_ms = copied.as_secs_f64() * 1e3,
                    write_ms = w.duration.as_secs_f64() * 1e3,
                    "checkpoint written"
                );
            }
            Err(e) => {
                self.metrics
                    .checkpoints
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(error = %e, "checkpoint failed; the previous one stays");
            }
        }
    }
}

impl Checkpointer {
    /// Starts the worker. `last_ok_ms` is updated after every good write.
    pub fn start(
        store: Option<Store>,
        engine: Engine,
        origins: Arc<Origins>,
        metrics: Arc<Metrics>,
        interval: Duration,
        last_ok_ms: Arc<AtomicI64>,
    ) -> std::io::Result<Checkpointer> {
        let writer = Arc::new(Writer {
            store,
            handoff: OnceLock::new(),
            engine,
            origins,
            metrics,
            last_ok_ms,
        });
        // One request in flight: when the worker is still busy, skip a turn.
        let (tx, rx) = sync_channel::<Due>(1);
        let w = writer.clone();
        let worker = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for (resume, epochs) in rx {
                    w.write(&resume, epochs.as_ref());
                }
            })?;
        Ok(Checkpointer {
            tx: Some(tx),
            worker: Some(worker),
            writer,
            interval,
            due: Instant::now() + interval,
        })
    }

    /// Also writes each checkpoint's owned partitions to the changelog.
    pub fn attach(&self, handoff: Arc<dyn Mirror>) {
        let _ = self.writer.handoff.set(handoff);
    }

    /// Called by the consuming thread between messages: hands the current
    /// offsets to the worker when a checkpoint is due. Never blocks.
    pub fn tick(&mut self, applied: &Resume) {
        if Instant::now() < self.due {
            return;
        }
        self.due = Instant::now() + self.interval;
        if let Some(tx) = &self.tx {
            // The epochs are taken with the offsets, on this thread, so a
            // partition that moves before the copy is left out of it.
            let epochs = self.writer.handoff.get().map(|h| h.epochs());
            match tx.try_send((applied.clone(), epochs)) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!("the checkpoint worker stopped");
                }
            }
        }
    }

    /// Waits for the worker, then writes a final checkpoint (no events flow now).
    pub fn finish(mut self, applied: &Resume) {
        drop(self.tx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        // Nothing moves now: every owned partition is in the final copy.
        self.writer.write(applied, None);
    }
}
