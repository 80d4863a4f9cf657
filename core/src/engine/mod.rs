//! The engine: one map entry per tracked identity holding every detector's
//! state, fed one event at a time, in event time.
//!
//! [`Engine`] is a cheap-to-clone handle; several threads may feed it
//! (keys are partitioned, so one key's events arrive on one thread in order).
//! Memory is bounded: at most `max_keys` identities per kind, at most
//! `max_sources_per_key` / `max_values_per_key` / `max_user_agents_per_key`
//! remembered values each, with
//! counters when a bound is hit.
//!
//! With an inventory ([`Engine::with_inventory`]) the policy detectors
//! ([`detect::policy`]) also judge each key's use against its entry.

pub mod baseline;
pub mod config;
pub mod detect;
pub mod explain;
pub mod finding;
pub mod legacy;
pub mod net_memory;
pub mod org;
pub mod settings;
pub mod source;
pub mod state;
pub mod teach;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use dashmap::DashMap;

pub use finding::{Detector, Eligibility, Evidence, Finding, Folded, Severity};
use state::ValueKind;
pub use state::{KeyState, Position};
pub use teach::{Lesson, Teaching};

use crate::decode::{AuditEvent, Source};
use crate::inventory::InventoryHandle;
use crate::netintel::NetIntel;
use crate::types::Entity;
pub use config::{EngineConfig, Sections};
use detect::policy::{Policy, PolicyView};
use detect::{Ctx, History};
use org::OrgNetworks;
pub use settings::{Settings, Stats};

/// Boxed state: the table then holds 32-byte entries, so its spare capacity
/// (up to half the table after a resize) costs little.
type KeyMap = DashMap<CompactString, Box<KeyState>, foldhash::fast::RandomState>;

struct Tracked {
    entity: Entity,
    keys: KeyMap,
    len: AtomicUsize,
}

struct Inner {
    settings: Settings,
    tracked: Vec<Tracked>,
    stats: Stats,
    policy: Option<Policy>,
    /// Earliest event time applied (or restored): keywatch's own start in
    /// event time. An identity first seen within a learning period of it is
    /// not "new", only new to keywatch.
    epoch: AtomicU32,
    /// Networks any identity has used.
    networks: OrgNetworks,
    /// What responders taught identities is normal.
    teachings: teach::Teachings,
    /// Network intelligence, when enrichment files are configured.
    netintel: Option<NetIntel>,
}

/// A cheap-to-clone handle to the per-key store and detectors.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An empty engine for a validated configuration.
    pub fn new(cfg: &dyn Sections) -> Engine {
        Engine::build(cfg, None)
    }

    /// An empty engine that also enforces `inventory` with the policy
    /// detectors `inventory.detectors` turns on. The handle's reloads take
    /// effect on the next event; per-key state is never touched by them.
    pub fn with_inventory(cfg: &dyn Sections, inventory: InventoryHandle) -> Engine {
        let policy = Policy::new(inventory, cfg.policy_detectors().clone());
        Engine::build(cfg, Some(policy))
    }

    /// An empty engine with an optional inventory to enforce and optional
    /// network intelligence to enrich sources with (see [`crate::netintel`]).
    pub fn with_parts(
        cfg: &dyn Sections,
        inventory: Option<InventoryHandle>,
        netintel: Option<NetIntel>,
    ) -> Engine {
        let policy = inventory.map(|inv| Policy::new(inv, cfg.policy_detectors().clone()));
        Engine::build_with(cfg, policy, netintel)
    }

    fn build(cfg: &dyn Sections, policy: Option<Policy>) -> Engine {
        Engine::build_with(cfg, policy, None)
    }

    fn build_with(
        cfg: &dyn Sections,
        policy: Option<Policy>,
        netintel: Option<NetIntel>,
    ) -> Engine {
        let settings = Settings::from_config(cfg);
        let tracked = settings
            .entities
            .iter()
            .map(|&entity| Tracked {
                entity,
                // 256 shards: a snapshot read-locks ~4k keys at a time at a million keys.
                keys: KeyMap::with_hasher_and_shard_amount(Default::default(), 256),
                len: AtomicUsize::new(0),
            })
            .collect();
        Engine {
            inner: Arc::new(Inner {
                settings,
                tracked,
                stats: Stats::default(),
                policy,
                epoch: AtomicU32::new(u32::MAX),
                networks: OrgNetworks::new(org::MAX_NETWORKS),
                teachings: teach::Teachings::default(),
                netintel,
            }),
        }
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The network intelligence in use, if any.
    pub fn netintel(&self) -> Option<&NetIntel> {
        self.inner.netintel.as_ref()
    }

    /// The inventory policy enforced, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.inner.policy.as_ref()
    }

    /// Applies one event to every tracked identity it names, appending any
    /// findings to `out`.
    pub fn process(&self, ev: &AuditEvent<'_>, out: &mut Vec<Finding>) {
        self.process_at(ev, None, out);
    }

    /// As [`Engine::process`], for an event at a source position. A key
    /// that already applied this position (or a later one of the same
    /// partition) skips it: after a restore, the events replayed from the
    /// checkpoint's offsets reach each key exactly once.
    pub fn process_at(&self, ev: &AuditEvent<'_>, at: Option<Position>, out: &mut Vec<Finding>) {
        let inner = &*self.inner;
        let settings = &inner.settings;
        let now = (ev.time_ms / 1000).clamp(0, u32::MAX as i64) as u32;
        if ev.count == 0 {
            // A usage record of no use: valid, counted, and nothing to learn.
            inner.stats.events.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if now < inner.epoch.load(Ordering::Relaxed) {
            inner.epoch.fetch_min(now, Ordering::Relaxed);
        }
        // Identities first seen this long after keywatch's own first event
        // are new to the organisation, not only to keywatch.
        let new_after = inner
            .epoch
            .load(Ordering::Relaxed)
            .saturating_add(settings.learning_s);
        let allowlisted = settings.allowlisted(ev.source.as_ref());
        let inventory = inner.policy.as_ref().map(|p| (p, p.inventory().snapshot()));
        let principal = ev.principal.as_deref().map(principal_identity);
        let tables = match (&inner.netintel, &ev.source) {
            (Some(n), Some(Source::Ip(_))) => Some(n.snapshot()),
            _ => None,
        };
        let user_agent = detect::new_user_agent::of_event(ev);
        let event_start = out.len();
        let mut key_end = out.len();
        let mut key_folded = 0u32;
        for tracked in &inner.tracked {
            let subject = match tracked.entity {
                Entity::KeyId => &*ev.key_id,
                Entity::Principal => match principal {
                    Some(p) => p,
                    None => continue,
                },
            };
            let mut ctx = Ctx {
                settings,
                stats: &inner.stats,
                entity: tracked.entity,
                subject,
                ev,
                user_agent,
                now,
                day: 0,
                eligibility: Eligibility {
                    learned_for_s: 0,
                    events_learned: 0,
                    active_days: 0,
                },
                eligible: false,
                learned_at: u32::MAX,
                allowlisted,
                history: History {
                    new_after,
                    holder_has_history: false,
                    org: &inner.networks,
                },
                taught: &inner.teachings,
                policy: match (&inventory, tracked.entity) {
                    (Some((policy, inventory)), Entity::KeyId) => Some(PolicyView {
                        policy,
                        entry: inventory.get(subject),
                    }),
                    _ => None,
                },
                netintel: tables.as_deref().map(|t| &**t),
                out,
                // The principal says only what its key did not (see `Ctx::quiet`).
                key_found: event_start..key_end,
                key_folded,
                firsts: Default::default(),
            };
            if let Some(mut state) = tracked.keys.get_mut(subject) {
                if self.already_applied(tracked.entity, subject, &state, at) {
                    continue;
                }
                if tracked.entity == Entity::KeyId && settings.still_learning(&state, now) {
                    ctx.history.holder_has_history = self.has_history(principal, new_after);
                }
                detect::observe(&mut state, &mut ctx);
                key_folded |= ctx.key_folded;
                if let Some(at) = at {
                    match tracked.entity {
                        Entity::KeyId => state.set_applied(at),
                        Entity::Principal => state.set_applied_across(at),
                    }
                }
            } else if tracked.len.load(Ordering::Relaxed) >= settings.max_keys {
                let refused = inner.stats.keys_rejected.fetch_add(1, Ordering::Relaxed) + 1;
                // Loud, never flooding: at the 1st, 2nd, 4th, 8th ... refusal.
                if refused.is_power_of_two() {
                    tracing::warn!(
                        entity = tracked.entity.as_str(),
                        key = subject,
                        max_keys = settings.max_keys,
                        events_refused = refused,
                        "engine.max_keys reached: events of identities not yet tracked are not watched (raise engine.max_keys, or look for a flood of made-up keys)"
                    );
                }
                continue;
            } else {
                if tracked.entity == Entity::KeyId {
                    ctx.history.holder_has_history = self.has_history(principal, new_after);
                }
                let mut state = match tracked.keys.entry(CompactString::from(subject)) {
                    // Another thread added it meanwhile (its events come on
                    // two partitions): judged as any known key's.
                    dashmap::Entry::Occupied(o) => {
                        let state = o.into_ref();
                        if self.already_applied(tracked.entity, subject, &state, at) {
                            continue;
                        }
                        state
                    }
                    dashmap::Entry::Vacant(v) => {
                        tracked.len.fetch_add(1, Ordering::Relaxed);
                        v.insert(Box::new(KeyState::new(now)))
                    }
                };
                detect::observe(&mut state, &mut ctx);
                key_folded |= ctx.key_folded;
                if let Some(at) = at {
                    match tracked.entity {
                        Entity::KeyId => state.set_applied(at),
                        Entity::Principal => state.set_applied_across(at),
                    }
                }
            }
            if tracked.entity == Entity::KeyId {
                key_end = out.len();
            }
        }
        if let Some(src @ Source::Ip(_)) = &ev.source {
            inner.networks.record(source::SourceId::of(src).network());
        }
        inner.stats.events.fetch_add(1, Ordering::Relaxed);
        inner
            .stats
            .watermark_ms
            .fetch_max(ev.time_ms, Ordering::Relaxed);
    }

    /// Whether `state` already holds the event at `at` (a replay after a
    /// restore or a handoff: skip it); counts a key whose event comes on
    /// another partition than its previous one.
    fn already_applied(
        &self,
        entity: Entity,
        subject: &str,
        state: &KeyState,
        at: Option<Position>,
    ) -> bool {
        let Some(at) = at else {
            return false;
        };
        if entity == Entity::Principal {
            // A principal remembers its latest event of every partition it
            // came from: a replay of any of them after a restore is not
            // counted twice.
            let done = state.applied_on(at.origin);
            if done.is_some_and(|done| at.reached_by(done)) {
                self.inner.stats.replayed.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            return false;
        }
        let Some(done) = state.applied_at() else {
            return false;
        };
        if at.reached_by(done) {
            self.inner.stats.replayed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if at.origin != done.origin {
            self.inner.stats.moved(subject, done.origin, at.origin);
        }
        false
    }

    /// Whether the principal holding a key has a history of its own to judge
    /// the key by: it is tracked and is not itself new and still learning.
    fn has_history(&self, principal: Option<&str>, new_after: u32) -> bool {
        let Some(p) = principal else {
            return false;
        };
        let settings = &self.inner.settings;
        self.inner
            .tracked
            .iter()
            .find(|t| t.entity == Entity::Principal)
            .and_then(|t| {
                t.keys
                    .get(p)
                    .map(|s| s.first_seen < new_after || !settings.still_learning(&s, s.last_seen))
            })
            .unwrap_or(false)
    }

    /// Identities tracked, per kind.
    pub fn key_count(&self, entity: Entity) -> usize {
        self.inner
            .tracked
            .iter()
            .find(|t| t.entity == entity)
            .map_or(0, |t| t.len.load(Ordering::Relaxed))
    }

    /// Reads one identity's state.
    pub fn with_key<R>(
        &self,
        entity: Entity,
        key: &str,
        f: impl FnOnce(&KeyState) -> R,
    ) -> Option<R> {
        let tracked = self.inner.tracked.iter().find(|t| t.entity == entity)?;
        tracked.keys.get(key).map(|s| f(&s))
    }

    /// Changes one identity's state, if it is tracked. The shard is locked
    /// for `f` alone: nothing awaits under it.
    fn with_key_mut(&self, entity: Entity, key: &str, f: impl FnOnce(&mut KeyState)) {
        if let Some(tracked) = self.inner.tracked.iter().find(|t| t.entity == entity) {
            if let Some(mut s) = tracked.keys.get_mut(key) {
                f(&mut s);
            }
        }
    }

    /// A key's state and baselines for people, as of the engine's watermark,
    /// with what responders taught it (`taught`).
    pub fn explain(&self, entity: Entity, key: &str) -> Option<serde_json::Value> {
        let now = (self.inner.stats.watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
        let mut out = self.with_key(entity, key, |state| {
            let mut out = explain::explain(&self.inner.settings, key, state, now);
            if let (Some(n), Some(memory), Some(obj)) = (
                &self.inner.netintel,
                state.net.as_deref(),
                out.as_object_mut(),
            ) {
                obj.insert(
                    "network".into(),
                    memory.explain(&n.snapshot(), now, self.inner.settings.forget_s),
                );
            }
            out
        })?;
        if let Some(obj) = out.as_object_mut() {
            let taught = self.inner.teachings.of(entity, key);
            obj.insert("taught".into(), serde_json::json!(taught));
        }
        Some(out)
    }

    /// The key's request rate against its baseline, for the console's chart
    /// ([`explain::rate_profile`]).
    pub fn rate_profile(&self, entity: Entity, key: &str) -> Option<serde_json::Value> {
        let now = (self.inner.stats.watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
        self.with_key(entity, key, |state| {
            explain::rate_profile(&self.inner.settings, state, now)
        })
    }

    /// Teaches an identity that what `teaching` names is normal: from now on
    /// it raises nothing. Safe beside events from any thread: a teaching is
    /// written under the lock a detector reads it under, so an event sees
    /// it entirely or not at all (applied between two events of the key, it
    /// acts from the second). A key's principal, when tracked, is taught
    /// too (its baseline would otherwise raise the same use). `false` when
    /// it was taught already (a verdict re-applied at start).
    pub fn teach(
        &self,
        entity: Entity,
        subject: &str,
        principal: Option<&str>,
        teaching: Teaching,
    ) -> bool {
        let mut added = false;
        // A verdict ends the run of the detector's findings: the next one is
        // raised, not folded into what the responder has answered.
        let detector = teaching.lesson.detector() as u8;
        if entity == Entity::KeyId {
            if let Some(p) = principal {
                if self.inner.settings.entities.contains(&Entity::Principal) {
                    let p = principal_identity(p);
                    self.with_key_mut(Entity::Principal, p, |s| s.unfold(detector));
                    added |= self
                        .inner
                        .teachings
                        .add(Entity::Principal, p, teaching.clone());
                }
            }
        }
        self.with_key_mut(entity, subject, |s| s.unfold(detector));
        added |= self.inner.teachings.add(entity, subject, teaching);
        added
    }

    /// What an identity was taught, oldest first.
    pub fn teachings(&self, entity: Entity, subject: &str) -> Vec<Teaching> {
        self.inner.teachings.of(entity, subject)
    }

    /// A copy of every key's state, taken shard by shard while events keep
    /// flowing: each shard is read-locked only while its entries are cloned.
    /// Keys carry the position of their last event, which makes the copy
    /// usable as a checkpoint without stopping the world.
    pub fn snapshot(&self, entity: Entity) -> Vec<(CompactString, KeyState)> {
        let Some(tracked) = self.inner.tracked.iter().find(|t| t.entity == entity) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(tracked.len.load(Ordering::Relaxed));
        for entry in tracked.keys.iter() {
            out.push((entry.key().clone(), (**entry.value()).clone()));
        }
        out
    }

    /// Loads restored state (before events flow). Keys past `max_keys` are
    /// counted as refused, as new keys would be.
    pub fn restore(
        &self,
        entity: Entity,
        keys: impl IntoIterator<Item = (CompactString, KeyState)>,
    ) {
        let Some(tracked) = self.inner.tracked.iter().find(|t| t.entity == entity) else {
            return;
        };
        let settings = &self.inner.settings;
        for (key, mut state) in keys {
            if tracked.len.load(Ordering::Relaxed) >= settings.max_keys {
                self.inner
                    .stats
                    .keys_rejected
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Tables past today's caps (written under larger ones, or
            // damaged) are cut to the most recently used.
            state.sources.keep_recent(settings.max_sources);
            state
                .values
                .keep_recent(ValueKind::Action, settings.max_values);
            state
                .values
                .keep_recent(ValueKind::UserAgent, settings.max_user_agents);
            let last_ms = state.last_seen as i64 * 1000;
            self.inner
                .epoch
                .fetch_min(state.first_seen, Ordering::Relaxed);
            for s in state.sources.entries() {
                if !s.id.is_named() {
                    self.inner.networks.record(s.id.network());
                }
            }
            if tracked.keys.insert(key, Box::new(state)).is_none() {
                tracked.len.fetch_add(1, Ordering::Relaxed);
            }
            self.inner
                .stats
                .watermark_ms
                .fetch_max(last_ms, Ordering::Relaxed);
        }
    }

    /// Removes and returns every identity whose latest event came from one
    /// of `origins` (their partitions went to another instance), per kind.
    pub fn extract(&self, origins: &[u16]) -> Vec<(Entity, Vec<(CompactString, KeyState)>)> {
        let mut out = Vec::with_capacity(self.inner.tracked.len());
        for tracked in &self.inner.tracked {
            let mut taken = Vec::new();
            tracked.keys.retain(|key, state| {
                let owned = state
                    .applied_at()
                    .is_some_and(|p| origins.contains(&p.origin));
                if owned {
                    taken.push((key.clone(), (**state).clone()));
                }
                !owned
            });
            tracked.len.fetch_sub(taken.len(), Ordering::Relaxed);
            out.push((tracked.entity, taken));
        }
        out
    }

    /// Visits every tracked key (for reports and summaries; takes shard read locks briefly).
    pub fn for_each_key(&self, entity: Entity, mut f: impl FnMut(&str, &KeyState)) {
        if let Some(tracked) = self.inner.tracked.iter().find(|t| t.entity == entity) {
            for entry in tracked.keys.iter() {
                f(entry.key(), entry.value());
            }
        }
    }
}

/// The identity a principal stands for. An AWS role session
/// (`arn:aws:sts::123:assumed-role/ROLE/SESSION`) is its role: every session
/// of the role shares one history, whatever its session name (an instance id,
/// a pod, a random string an attacker picks).
pub fn principal_identity(principal: &str) -> &str {
    // This runs for every event. The pattern's only slash is its last byte,
    // so its first occurrence ends at the first slash that closes one: an
    // ARN has one or two slashes, each found with `memchr`, which is cheaper
    // than setting up a substring search per call.
    const PATTERN: &[u8] = b":assumed-role/";
    let b = principal.as_bytes();
    let mut from = 0;
    let found = loop {
        match memchr::memchr(b'/', &b[from..]) {
            Some(i) => {
                let end = from + i + 1;
                if b[..end].ends_with(PATTERN) {
                    break Some(end);
                }
                from = end;
            }
            None => break None,
        }
    };
    match found {
        Some(role_start) => match memchr::memchr(b'/', &b[role_start..]) {
            Some(slash) => &principal[..role_start + slash],
            None => principal,
        },
        None => principal,
    }
}

#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod tests;
