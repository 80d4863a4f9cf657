//! Taking over and handing off partitions: what the source does when the
//! group assigns or revokes a partition, and what the checkpoint writer adds
//! to each checkpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compact_str::CompactString;

use super::{Changelog, PartitionState};
use crate::alert::Alerts;
use crate::checkpoint::{Checkpoint, Mirror, Origins};
use crate::config::Entity;
use keywatch_core::engine::{Engine, KeyState, Position};
use keywatch_core::metrics::Metrics;

/// How long local checkpoint sections wait for their partition after the
/// first assignment before they are dropped (another instance owns it now,
/// and the changelog has its newer state).
const PARK_GRACE: Duration = Duration::from_secs(120);

/// An owned partition and the offset its state reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Its number in this process.
    pub origin: u16,
    /// The next offset its state reflects; `None`: no state (on assignment:
    /// none was found, the group's committed offset applies; on revocation:
    /// never read, nothing to hand off).
    pub resume: Option<i64>,
}

/// Moves partition state between the engine and the changelog.
pub struct Handoff {
    changelog: Changelog,
    engine: Engine,
    origins: Arc<Origins>,
    metrics: Arc<Metrics>,
    alerts: Option<Alerts>,
    timeout: Duration,
    /// Owned partitions, each with the epoch of its latest acquisition: a
    /// checkpoint copy is only good for partitions whose epoch did not
    /// change between the offsets it took and the keys it copied.
    owned: Mutex<HashMap<u16, u64>>,
    epoch: std::sync::atomic::AtomicU64,
    parked: Mutex<Parked>,
}

#[derive(Default)]
struct Parked {
    states: HashMap<(String, i32), PartitionState>,
    expires: Option<Instant>,
}

impl Handoff {
    /// A handoff over `changelog` for `engine`'s keys.
    pub fn new(
        changelog: Changelog,
        engine: Engine,
        origins: Arc<Origins>,
        metrics: Arc<Metrics>,
        alerts: Option<Alerts>,
        timeout: Duration,
    ) -> Handoff {
        for from in ["changelog", "checkpoint", "none"] {
            metrics.state_restores.with_label_values(&[from]);
        }
        for trigger in ["periodic", "revoke"] {
            for result in ["ok", "failed"] {
                metrics
                    .state_snapshots
                    .with_label_values(&[trigger, result]);
            }
        }
        Handoff {
            changelog,
            engine,
            origins,
            metrics,
            alerts,
            timeout,
            owned: Mutex::new(HashMap::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            parked: Mutex::new(Parked::default()),
        }
    }

    /// Holds a local checkpoint's partitions until they are assigned (then
    /// the newer of it and the changelog's snapshot is loaded). Keys that
    /// came from no partition (a `replay --write-checkpoint` warm start) are
    /// loaded now.
    pub fn park(&self, cp: Checkpoint) {
        // The checkpoint numbered partitions as its writer did: map its
        // numbers back through its sections' keys.
        let mut numbered: HashMap<u16, (String, i32)> = HashMap::new();
        for s in &cp.sections {
            if let Some(p) = s.keys.iter().find_map(|(_, k)| k.applied_at()) {
                numbered.insert(p.origin, (s.topic.clone(), s.partition));
            }
        }
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        for s in cp.sections {
            match (s.topic.is_empty(), s.resume) {
                (false, Some(resume)) => {
                    parked.states.insert(
                        (s.topic.clone(), s.partition),
                        PartitionState {
                            topic: s.topic,
                            partition: s.partition,
                            resume,
                            written_at_ms: cp.written_at_ms,
                            keys: s.keys,
                            ..PartitionState::default()
                        },
                    );
                }
                _ => self.engine.restore(
                    Entity::KeyId,
                    s.keys.into_iter().map(|(k, mut st)| {
                        st.applied = 0;
                        (k, st)
                    }),
                ),
            }
        }
        let mut loose = Vec::new();
        let mut positions: HashMap<CompactString, Vec<crate::checkpoint::At>> =
            cp.principal_positions.into_iter().collect();
        for (k, st) in cp.principals {
            let home = st.applied_at().and_then(|p| numbered.get(&p.origin));
            match home.and_then(|tp| parked.states.get_mut(tp)) {
                Some(state) => {
                    let at = positions.remove(&k);
                    state.add_principal(k, st, at)
                }
                None => loose.push((k, st)),
            }
        }
        let loose = crate::checkpoint::with_positions(
            loose,
            positions.into_iter().collect(),
            &self.origins,
        );
        self.engine.restore(Entity::Principal, loose);
    }

    /// Loads the state of newly assigned partitions: the newest complete
    /// changelog snapshot or the parked local checkpoint, whichever reflects
    /// more of the partition. Blocking, bounded by `changelog.handoff_timeout`.
    pub fn acquire(&self, parts: &[(String, i32)]) -> Vec<Owned> {
        let started = Instant::now();
        let mut from_log = match self.changelog.read(parts, self.timeout) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the changelog; the partitions start from their local checkpoint or committed offsets");
                HashMap::new()
            }
        };
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        parked.expires.get_or_insert(Instant::now() + PARK_GRACE);
        let mut out = Vec::with_capacity(parts.len());
        for (topic, partition) in parts {
            let tp = (topic.clone(), *partition);
            let origin = self.origins.index(topic, *partition);
            let logged = from_log.remove(&tp);
            let local = parked.states.remove(&tp);
            let (state, from, bytes) = match (logged, local) {
                // The local checkpoint unless the changelog reflects more.
                (Some(l), Some(c)) if !l.state.newer_than(&c) => (Some(c), "checkpoint", 0),
                (Some(l), _) => (Some(l.state), "changelog", l.bytes),
                (None, Some(c)) => (Some(c), "checkpoint", 0),
                (None, None) => (None, "none", 0),
            };
            self.metrics.state_restores.with_label_values(&[from]).inc();
            self.metrics.state_restore_bytes.inc_by(bytes);
            let resume = state.as_ref().map(|s| s.resume);
            if state.is_none() {
                tracing::info!(%topic, partition, "no state for the partition in the changelog or a local checkpoint");
            }
            if let Some(state) = state {
                tracing::info!(
                    %topic,
                    partition,
                    from,
                    keys = state.keys.len(),
                    resume = state.resume,
                    "partition state restored"
                );
                self.load(origin, state);
            }
            let epoch = self
                .epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            self.owned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(origin, epoch);
            out.push(Owned {
                topic: topic.clone(),
                partition: *partition,
                origin,
                resume,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        for _ in parts {
            self.metrics.state_restore_seconds.observe(seconds);
        }
        out
    }

    fn load(&self, origin: u16, state: PartitionState) {
        let renumber = |(k, mut st): (CompactString, KeyState)| {
            match st.applied_at() {
                Some(p) => st.set_applied(Position { origin, ..p }),
                None => st.applied = 0,
            }
            (k, st)
        };
        self.engine
            .restore(Entity::KeyId, state.keys.into_iter().map(renumber));
        // Principals with positions on every partition they came from take
        // those, renumbered; the others the partition's (as before format 7).
        let placed: std::collections::HashSet<&CompactString> =
            state.principal_positions.iter().map(|(k, _)| k).collect();
        let (with, without): (Vec<_>, Vec<_>) = state
            .principals
            .into_iter()
            .partition(|(k, _)| placed.contains(k));
        self.engine.restore(
            Entity::Principal,
            crate::checkpoint::with_positions(with, state.principal_positions, &self.origins),
        );
        self.engine
            .restore(Entity::Principal, without.into_iter().map(renumber));
        if let Some(alerts) = &self.alerts {
            alerts.adopt(origin, &state.delivered);
        }
    }

    /// Hands revoked partitions off: takes their keys out of the engine and
    /// writes a final snapshot of each, tagged with its resume offset (the
    /// next offset to read), within `changelog.handoff_timeout`. Called with
    /// every fetched message applied.
    pub fn release(&self, parts: &[Owned]) {
        self.final_snapshots(parts, true);
    }

    /// Whether this instance owns the partition numbered `origin`.
    pub fn owns(&self, origin: u16) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&origin)
    }

    /// The owned partitions and their epochs, as of now (taken with the
    /// offsets a checkpoint will claim).
    pub fn epochs(&self) -> HashMap<u16, u64> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops from a checkpoint copy the partitions that were acquired or
    /// released since `at_tick` was taken with its offsets: their keys may
    /// come from another snapshot than those offsets describe.
    pub fn keep_consistent(&self, cp: &mut Checkpoint, at_tick: &HashMap<u16, u64>) {
        let now = self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        cp.sections.retain(|s| {
            if s.topic.is_empty() {
                return true;
            }
            let origin = self.origins.index(&s.topic, s.partition);
            let same = at_tick.get(&origin).is_some() && at_tick.get(&origin) == now.get(&origin);
            if !same {
                tracing::debug!(topic = %s.topic, partition = s.partition, "left out of this checkpoint: it moved while the copy was taken");
            }
            same
        });
    }

    /// Marks `parts` as no longer owned; returns their numbers.
    fn disown(&self, parts: &[Owned]) -> Vec<u16> {
        let origins: Vec<u16> = parts.iter().map(|p| p.origin).collect();
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for o in &origins {
            owned.remove(o);
        }
        origins
    }

    /// Drops lost partitions (another member took them over after this
    /// one's session lapsed): their keys leave the engine, nothing is written.
    pub fn forget(&self, parts: &[Owned]) {
        let origins = self.disown(parts);
        self.engine.extract(&origins);
        if let Some(alerts) = &self.alerts {
            for &o in &origins {
                alerts.forget_origin(o);
            }
        }
    }

    /// As [`Handoff::release`] at shutdown: the keys stay in the engine (for
    /// the final local checkpoint); nothing is owned afterwards.
    pub fn hand_over_at_shutdown(&self, parts: &[Owned]) {
        self.final_snapshots(parts, false);
    }

    fn final_snapshots(&self, parts: &[Owned], extract: bool) {
        if parts.is_empty() {
            return;
        }
        let started = Instant::now();
        let origins = self.disown(parts);
        let written_at_ms = chrono::Utc::now().timestamp_millis();
        let taken = if extract {
            self.engine.extract(&origins)
        } else {
            [Entity::KeyId, Entity::Principal]
                .into_iter()
                .map(|entity| {
                    let mut keys = self.engine.snapshot(entity);
                    keys.retain(|(_, st)| {
                        st.applied_at().is_some_and(|p| origins.contains(&p.origin))
                    });
                    (entity, keys)
                })
                .collect()
        };
        let mut states: HashMap<u16, PartitionState> = HashMap::new();
        for (entity, keys) in taken {
            for (k, st) in keys {
                let Some(o) = st.applied_at().map(|p| p.origin) else {
                    continue;
                };
                let state = states.entry(o).or_default();
                match entity {
                    Entity::KeyId => state.keys.push((k, st)),
                    Entity::Principal => {
                        let at = crate::checkpoint::named_positions(&st, &self.origins);
                        state.add_principal(k, st, (!at.is_empty()).then_some(at));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let mut state = states.remove(&part.origin).unwrap_or_default();
            if let Some(alerts) = &self.alerts {
                state.delivered = alerts.delivered(part.origin);
                alerts.forget_origin(part.origin);
            }
            let Some(resume) = part.resume else {
                continue;
            };
            state.topic = part.topic.clone();
            state.partition = part.partition;
            state.resume = resume;
            state.written_at_ms = written_at_ms;
            out.push(state);
        }
        if out.is_empty() {
            return;
        }
        let stats = self.changelog.write(&out, self.timeout);
        self.count("revoke", stats);
        tracing::info!(
            partitions = out.len(),
            keys = out.iter().map(|s| s.keys.len()).sum::<usize>(),
            bytes = stats.bytes,
            seconds = started.elapsed().as_secs_f64(),
            failed = stats.failed,
            "handed off partitions"
        );
    }

    /// The partition's high watermark (next offset to be written), if the
    /// broker answers within a few seconds.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.changelog.high_watermark(topic, partition)
    }

    /// Writes the owned partitions of a checkpoint capture to the changelog.
    pub fn write_periodic(&self, cp: Checkpoint) {
        let owned = self.epochs();
        let mut states: HashMap<u16, PartitionState> = HashMap::new();
        for s in cp.sections {
            let (false, Some(resume)) = (s.topic.is_empty(), s.resume) else {
                continue;
            };
            let origin = self.origins.index(&s.topic, s.partition);
            if !owned.contains_key(&origin) {
                continue;
            }
            states.insert(
                origin,
                PartitionState {
                    topic: s.topic,
                    partition: s.partition,
                    resume,
                    written_at_ms: cp.written_at_ms,
                    keys: s.keys,
                    principals: Vec::new(),
                    principal_positions: Vec::new(),
                    delivered: self
                        .alerts
                        .as_ref()
                        .map(|a| a.delivered(origin))
                        .unwrap_or_default(),
                },
            );
        }
        let mut positions: HashMap<CompactString, Vec<crate::checkpoint::At>> =
            cp.principal_positions.into_iter().collect();
        for (k, st) in cp.principals {
            if let Some(state) = st.applied_at().and_then(|p| states.get_mut(&p.origin)) {
                let at = positions.remove(&k);
                state.add_principal(k, st, at);
            }
        }
        let states: Vec<PartitionState> = states.into_values().collect();
        if states.is_empty() {
            return;
        }
        let stats = self.changelog.write(&states, self.timeout);
        self.count("periodic", stats);
    }

    fn count(&self, trigger: &str, stats: super::WriteStats) {
        let m = &self.metrics;
        m.state_snapshots
            .with_label_values(&[trigger, "ok"])
            .inc_by(stats.ok as u64);
        m.state_snapshots
            .with_label_values(&[trigger, "failed"])
            .inc_by(stats.failed as u64);
        m.state_snapshot_bytes.inc_by(stats.bytes);
    }

    /// Drops parked local state nobody claimed within the grace period.
    pub fn expire_parked(&self) {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        if parked.states.is_empty() || parked.expires.is_none_or(|t| Instant::now() < t) {
            return;
        }
        tracing::info!(
            partitions = parked.states.len(),
            "dropping local checkpoint state of partitions owned elsewhere"
        );
        parked.states.clear();
    }
}

/// The checkpoint writer reaches the hand-off through [`Mirror`].
impl Mirror for Handoff {
    fn epochs(&self) -> HashMap<u16, u64> {
        Handoff::epochs(self)
    }

    fn keep_consistent(&self, cp: &mut Checkpoint, at_tick: &HashMap<u16, u64>) {
        Handoff::keep_consistent(self, cp, at_tick)
    }

    fn write_periodic(&self, cp: Checkpoint) {
        Handoff::write_periodic(self, cp)
    }
}
