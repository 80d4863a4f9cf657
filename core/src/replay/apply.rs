//! Applying events: `Apply` hands each event, in merge order, to the engine
//! (or to the shard threads with `--jobs` 2 or more), passes the findings
//! on, and counts what the summary reports, including the identities
//! `max_keys` refused.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::config::Entity;
use crate::engine::{principal_identity, Engine, Finding};

use super::input::FileFailure;
use super::progress::Progress;
use super::report::{report_failure, Refused, Summary};
use super::shards::Shards;
use super::window::Held;

/// Distinct refused identities counted exactly, per kind; past it "at least".
const MAX_REFUSED_COUNTED: usize = 1 << 20;

/// Applies events to the engine in order, counting what the summary says.
pub(super) struct Apply<'a, F> {
    engine: &'a Engine,
    on_finding: F,
    found: Vec<Finding>,
    /// Latest event time applied.
    reached_ms: i64,
    refused_before: u64,
    refused_keys: HashSet<u64>,
    refused_principals: HashSet<u64>,
    progress: Progress,
    /// With `--jobs` 2 or more: the threads that apply.
    shards: Option<Shards>,
    pub(super) summary: &'a mut Summary,
}

impl<'a, F: FnMut(&Finding) -> anyhow::Result<()>> Apply<'a, F> {
    /// Ready to apply to `engine`: on this thread with one job, on `jobs`
    /// shard threads with more.
    pub(super) fn new(
        engine: &'a Engine,
        on_finding: F,
        jobs: usize,
        progress: Progress,
        summary: &'a mut Summary,
    ) -> anyhow::Result<Self> {
        Ok(Apply {
            engine,
            on_finding,
            found: Vec::new(),
            reached_ms: i64::MIN,
            refused_before: engine.stats().keys_rejected.load(Ordering::Relaxed),
            refused_keys: HashSet::new(),
            refused_principals: HashSet::new(),
            progress,
            shards: match jobs {
                0 | 1 => None,
                n => Some(Shards::start(engine, n)?),
            },
            summary,
        })
    }

    pub(super) fn apply(&mut self, h: Held) -> anyhow::Result<()> {
        self.reached_ms = self.reached_ms.max(h.time_ms);
        self.summary.span_ms = Some(match self.summary.span_ms {
            None => (h.time_ms, h.time_ms),
            Some((a, b)) => (a.min(h.time_ms), b.max(h.time_ms)),
        });
        if let Some(mut shards) = self.shards.take() {
            let pushed = shards.push(h.ev, &mut |f| self.found(&f));
            self.take_refused(&mut shards);
            self.shards = Some(shards);
            pushed?;
        } else {
            let ev = h.ev.event();
            let stats = self.engine.stats();
            let rejected = stats.keys_rejected.load(Ordering::Relaxed);
            self.engine.process(&ev, &mut self.found);
            if stats.keys_rejected.load(Ordering::Relaxed) != rejected {
                self.note_refused(&ev.key_id, ev.principal.as_deref());
            }
            let found = std::mem::take(&mut self.found);
            for f in &found {
                self.found(f)?;
            }
            self.found = found;
            self.found.clear();
        }
        self.summary.events += 1;
        if self.summary.events % 4096 == 0 {
            self.progress
                .tick(self.summary.events, Some(self.reached_ms));
        }
        Ok(())
    }

    /// Hands a finding on and counts it.
    fn found(&mut self, f: &Finding) -> anyhow::Result<()> {
        if f.folded.is_some() {
            self.summary.folded += 1;
        } else {
            *self
                .summary
                .findings
                .entry((f.detector, f.severity))
                .or_default() += 1;
        }
        (self.on_finding)(f)
    }

    /// Applies what the shards still hold (nothing to do on one thread).
    fn finish(&mut self) -> anyhow::Result<()> {
        let Some(mut shards) = self.shards.take() else {
            return Ok(());
        };
        let finished = shards.finish(&mut |f| self.found(&f));
        self.take_refused(&mut shards);
        finished
    }

    /// Applies what the shards still hold, ends the progress line and says
    /// which identities `max_keys` (the configured bound) refused.
    pub(super) fn close(mut self, max_keys: usize) -> anyhow::Result<Refused> {
        self.finish()?;
        self.progress.finish();
        Ok(Refused {
            max_keys,
            refusals: self.engine.stats().keys_rejected.load(Ordering::Relaxed)
                - self.refused_before,
            keys: self.refused_keys.len() as u64,
            principals: self.refused_principals.len() as u64,
            at_least: self.refused_keys.len() >= MAX_REFUSED_COUNTED
                || self.refused_principals.len() >= MAX_REFUSED_COUNTED,
        })
    }

    fn take_refused(&mut self, shards: &mut Shards) {
        let refused = std::mem::take(&mut shards.refused);
        for (ids, seen) in [
            (refused.keys, &mut self.refused_keys),
            (refused.principals, &mut self.refused_principals),
        ] {
            for id in ids {
                if seen.len() < MAX_REFUSED_COUNTED {
                    seen.insert(id);
                }
            }
        }
    }

    /// Which of the event's identities `max_keys` refused, counted once each.
    fn note_refused(&mut self, key_id: &str, principal: Option<&str>) {
        let hash = |s: &str| xxhash_rust::xxh3::xxh3_64(s.as_bytes());
        let untracked = |entity, id: &str| self.engine.with_key(entity, id, |_| ()).is_none();
        let key_refused = untracked(Entity::KeyId, key_id);
        let principal = principal.map(principal_identity);
        let principal_refused = principal.filter(|&p| untracked(Entity::Principal, p));
        if key_refused && self.refused_keys.len() < MAX_REFUSED_COUNTED {
            self.refused_keys.insert(hash(key_id));
        }
        if let Some(p) = principal_refused {
            if self.refused_principals.len() < MAX_REFUSED_COUNTED {
                self.refused_principals.insert(hash(p));
            }
        }
    }

    pub(super) fn fail(&mut self, name: &str, reason: String, events_before: u64) {
        let f = FileFailure {
            name: name.to_owned(),
            reason,
            events_before,
        };
        report_failure(&f);
        self.summary.failed.push(f);
    }
}
