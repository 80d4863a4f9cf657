//! Apply shards: with `--jobs N` (N ≥ 2) the engine is fed by N threads.
//!
//! The merge still puts every event in event-time order and numbers it; each
//! event then goes to the shard of its identity (the principal's identity
//! when the event names one, else the key), so all the events of a key and
//! of its principal are applied by one thread, in the merged order, as a
//! single thread would. Findings come back numbered and are handed on in
//! that order: the caller sees the same findings in the same order as with
//! one thread. What a shard cannot see in order is the organisation-wide
//! context other shards write (the set of networks any identity used, the
//! time of the first event): an identity's new-to-the-organisation judgement
//! can differ at the margin, by the few hundred events shards run apart.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;

use xxhash_rust::xxh3::xxh3_64;

use crate::config::Entity;
use crate::decode::OwnedEvent;
use crate::engine::{principal_identity, Engine, Finding};

/// Events per hand-over: large enough that the channel costs nothing per
/// event, small enough that shards run close together in event time.
const BATCH: usize = 256;
/// Batches queued per shard before the merge waits.
const QUEUED: usize = 4;

/// Identities `max_keys` refused while applying, by hash.
#[derive(Default)]
pub(super) struct RefusedIds {
    pub keys: Vec<u64>,
    pub principals: Vec<u64>,
}

struct Done {
    shard: usize,
    /// Findings with the number of the event that raised them.
    findings: Vec<(u64, Finding)>,
    refused: RefusedIds,
}

/// The shards, their queues, and the findings waiting for their turn.
pub(super) struct Shards {
    senders: Vec<SyncSender<Vec<(u64, OwnedEvent)>>>,
    threads: Vec<JoinHandle<()>>,
    done: Receiver<Done>,
    /// The batch being filled, per shard.
    filling: Vec<Vec<(u64, OwnedEvent)>>,
    /// First event number of each batch sent and not yet applied, per shard.
    outstanding: Vec<VecDeque<u64>>,
    /// Findings applied but not yet handed on, by event number.
    waiting: BTreeMap<u64, Vec<Finding>>,
    next: u64,
    /// Identities refused since the caller last took them (their count does
    /// not depend on order).
    pub refused: RefusedIds,
}

impl Shards {
    /// `n` threads feeding `engine`.
    pub fn start(engine: &Engine, n: usize) -> std::io::Result<Shards> {
        let (done_tx, done) = channel();
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for shard in 0..n {
            let (tx, rx) = sync_channel(QUEUED);
            let (engine, done_tx) = (engine.clone(), done_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("replay-apply-{shard}"))
                    .spawn(move || run_shard(shard, &engine, &rx, &done_tx))?,
            );
            senders.push(tx);
        }
        Ok(Shards {
            senders,
            threads,
            done,
            filling: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            outstanding: (0..n).map(|_| VecDeque::new()).collect(),
            waiting: BTreeMap::new(),
            next: 0,
            refused: RefusedIds::default(),
        })
    }

    /// Queues `ev` on its identity's shard; hands on, in order, the findings
    /// that are ready.
    pub fn push(
        &mut self,
        ev: OwnedEvent,
        ready: &mut impl FnMut(Finding) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let id = ev.principal().map_or(ev.key_id(), principal_identity);
        let shard = (xxh3_64(id.as_bytes()) % self.senders.len() as u64) as usize;
        self.filling[shard].push((self.next, ev));
        self.next += 1;
        if self.filling[shard].len() >= BATCH {
            self.send(shard)?;
            self.collect(false, ready)?;
        }
        Ok(())
    }

    /// Applies everything queued and hands on every finding.
    pub fn finish(
        &mut self,
        ready: &mut impl FnMut(Finding) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for shard in 0..self.senders.len() {
            if !self.filling[shard].is_empty() {
                self.send(shard)?;
            }
        }
        self.collect(true, ready)
    }

    fn send(&mut self, shard: usize) -> anyhow::Result<()> {
        let batch = std::mem::replace(&mut self.filling[shard], Vec::with_capacity(BATCH));
        self.outstanding[shard].push_back(batch[0].0);
        self.senders[shard]
            .send(batch)
            .map_err(|_| anyhow::anyhow!("a replay apply thread stopped"))
    }

    /// Takes what the shards finished (with `all`, waits for everything
    /// sent) and hands on the findings of every event before the earliest
    /// one still queued.
    fn collect(
        &mut self,
        all: bool,
        ready: &mut impl FnMut(Finding) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        loop {
            let pending = self.outstanding.iter().any(|o| !o.is_empty());
            let done = if all && pending {
                match self
                    .done
                    .recv_timeout(std::time::Duration::from_millis(200))
                {
                    Ok(done) => Some(done),
                    // A shard that panicked never reports: stop, do not wait.
                    Err(RecvTimeoutError::Timeout)
                        if self.threads.iter().any(|t| t.is_finished()) =>
                    {
                        None
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            } else {
                self.done.try_recv().ok()
            };
            let Some(done) = done else {
                anyhow::ensure!(!(all && pending), "a replay apply thread stopped");
                break;
            };
            self.outstanding[done.shard].pop_front();
            self.refused.keys.extend(done.refused.keys);
            self.refused.principals.extend(done.refused.principals);
            for (seq, f) in done.findings {
                self.waiting.entry(seq).or_default().push(f);
            }
        }
        // Every event numbered below this is applied.
        let applied_below = (0..self.senders.len())
            .filter_map(|s| {
                let queued = self.outstanding[s].front().copied();
                let filling = self.filling[s].first().map(|e| e.0);
                queued.min(filling).or(queued).or(filling)
            })
            .min()
            .unwrap_or(self.next);
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() >= applied_below {
                break;
            }
            for f in entry.remove() {
                ready(f)?;
            }
        }
        Ok(())
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run_shard(
    shard: usize,
    engine: &Engine,
    rx: &Receiver<Vec<(u64, OwnedEvent)>>,
    done: &Sender<Done>,
) {
    let stats = engine.stats();
    let mut out = Vec::new();
    while let Ok(batch) = rx.recv() {
        let mut d = Done {
            shard,
            findings: Vec::new(),
            refused: RefusedIds::default(),
        };
        for (seq, owned) in batch {
            let ev = owned.event();
            let rejected = stats.keys_rejected.load(Ordering::Relaxed);
            engine.process(&ev, &mut out);
            if stats.keys_rejected.load(Ordering::Relaxed) != rejected {
                let untracked = |entity, id: &str| engine.with_key(entity, id, |_| ()).is_none();
                if untracked(Entity::KeyId, &ev.key_id) {
                    d.refused.keys.push(xxh3_64(ev.key_id.as_bytes()));
                }
                if let Some(p) = ev.principal.as_deref().map(principal_identity) {
                    if untracked(Entity::Principal, p) {
                        d.refused.principals.push(xxh3_64(p.as_bytes()));
                    }
                }
            }
            d.findings.extend(out.drain(..).map(|f| (seq, f)));
        }
        if done.send(d).is_err() {
            return;
        }
    }
}
