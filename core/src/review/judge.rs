//! One key judged: what traffic showed of it, where it stands against the
//! thresholds (stale, overdue, expired yet used), its findings, and its risk.

use std::collections::{BTreeMap, HashMap};

use super::input::ReviewInput;
use crate::config::Entity;
use crate::engine::detect::DAY;
use crate::engine::state::{Secs, ValueKind};
use crate::engine::{Detector, Engine, Finding, Severity};
use crate::inventory::{KeyEntry, Privilege};

/// What traffic showed of one key.
pub(super) struct Traffic {
    pub(super) first_seen: Secs,
    pub(super) last_seen: Secs,
    pub(super) uses: u64,
    pub(super) sources: usize,
    pub(super) used_actions: bool,
}

pub(super) fn traffic(engine: &Engine, key_id: &str) -> Option<Traffic> {
    engine.with_key(Entity::KeyId, key_id, |s| Traffic {
        first_seen: s.first_seen,
        last_seen: s.last_seen,
        uses: s.events as u64,
        sources: s.sources.entries().len(),
        used_actions: s.values.fresh_len(ValueKind::Action, s.last_seen, u32::MAX) > 0,
    })
}

/// One listed key judged against the thresholds.
pub(super) struct Judgement {
    pub(super) last_use: Option<(Secs, &'static str)>,
    pub(super) age_days: Option<u32>,
    pub(super) expired: bool,
    /// Days unused, and where the last use is known from.
    pub(super) stale: Option<(u32, &'static str)>,
    /// Last rotation (or creation), its basis, days since.
    pub(super) overdue: Option<(Secs, &'static str, u32)>,
    /// Days between expiry and the latest use.
    pub(super) expired_in_use: Option<u32>,
}

pub(super) fn days(s: u32) -> u32 {
    s / DAY
}

pub(super) fn judge(
    entry: &KeyEntry,
    seen: Option<&Traffic>,
    input: &ReviewInput<'_>,
) -> Judgement {
    let now = input.now;
    let t = &input.thresholds;
    let last_use = [
        seen.map(|s| (s.last_seen, "traffic")),
        entry.last_used.map(|u| (u, "inventory")),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|u| u.0);
    let expired = entry.expired_at(now);
    let idle_since = match last_use {
        Some((t, basis)) => Some((t, basis)),
        None => input
            .observed_since
            .map(|o| (entry.created.map_or(o, |c| c.max(o)), "never_seen")),
    };
    let stale = idle_since
        .map(|(since, basis)| (now.saturating_sub(since), basis))
        .filter(|&(idle, _)| !expired && !entry.disabled && idle >= t.stale_after_s)
        .map(|(idle, basis)| (days(idle), basis));
    let overdue = [
        entry.last_rotated.map(|r| (r, "last_rotated")),
        entry.created.map(|c| (c, "created")),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|(r, basis)| (r, basis, now.saturating_sub(r)))
    .filter(|&(_, _, since)| !expired && !entry.disabled && since >= t.rotation_after_s)
    .map(|(r, basis, since)| (r, basis, days(since)));
    let expired_in_use = match (entry.expires, last_use) {
        (Some(e), Some((used, _))) if expired && used >= e => Some(days(used - e)),
        _ => None,
    };
    Judgement {
        last_use,
        age_days: entry.created.map(|c| days(now.saturating_sub(c))),
        expired,
        stale,
        overdue,
        expired_in_use,
    }
}

/// Findings of one key in the period.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) total: u32,
    pub(super) by_severity: BTreeMap<Severity, u32>,
    pub(super) by_detector: BTreeMap<Detector, u32>,
}

pub(super) fn tally(findings: &[Finding]) -> HashMap<&str, Tally> {
    let mut by_key: HashMap<&str, Tally> = HashMap::new();
    for f in findings {
        let t = by_key.entry(f.key_id.as_str()).or_default();
        t.total += 1;
        *t.by_severity.entry(f.severity).or_default() += 1;
        *t.by_detector.entry(f.detector).or_default() += 1;
    }
    by_key
}

/// Risk points, and the reasons that earned them.
#[derive(Default)]
pub(super) struct Risk {
    pub(super) points: u32,
    pub(super) reasons: Vec<String>,
}

impl Risk {
    pub(super) fn add(&mut self, points: u32, reason: String) {
        self.points += points;
        self.reasons.push(format!("{reason} (+{points})"));
    }

    pub(super) fn findings(&mut self, t: &Tally) {
        let points: u32 = t
            .by_severity
            .iter()
            .map(|(s, n)| {
                n * match s {
                    Severity::Critical => 25,
                    Severity::High => 10,
                    Severity::Medium => 4,
                    Severity::Low => 1,
                    Severity::Info => 0,
                }
            })
            .sum();
        let detail: Vec<String> = t
            .by_severity
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        // One noisy key should not outrank every policy breach: findings count up to 50.
        let noun = if t.total == 1 { "finding" } else { "findings" };
        self.add(
            points.min(50),
            format!("{} {noun} ({})", t.total, detail.join(", ")),
        );
    }

    /// The score: points times the privilege factor (admin ×3, write or
    /// unstated ×2, read ×1).
    pub(super) fn score(mut self, privilege: Option<Privilege>) -> (u32, Vec<String>) {
        if self.points == 0 {
            return (0, Vec::new());
        }
        let (factor, why) = match privilege {
            Some(Privilege::Admin) => (3, "admin privilege"),
            Some(Privilege::Read) => (1, "read privilege"),
            Some(Privilege::Write) => (2, "write privilege"),
            None => (2, "privilege not stated"),
        };
        self.reasons.push(format!("×{factor} for {why}"));
        (self.points * factor, self.reasons)
    }
}
