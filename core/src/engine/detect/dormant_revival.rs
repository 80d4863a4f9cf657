//! `dormant_revival`: a key unused for at least `dormant_after` is used again.
//!
//! Beside the absolute threshold, a key is judged against its own rhythm: a
//! key used on most days whose silence lasts [`RHYTHM_FACTOR`] times its
//! longest gap so far (and at least a week) is out of its rhythm — low
//! severity, with both thresholds in the evidence. A daily key silent for 20
//! days is not dormant by the calendar, but it is not itself either.
//!
//! Keys with a rhythm of long gaps are not dormant:
//! - when the key has been idle nearly this long before and came back, the
//!   gap is its normal;
//! - a key whose whole history is one day of use, back one calendar month
//!   later, is a scheduled monthly job (its first gap is the only one it has
//!   had, so the first rule cannot know yet).
//!
//! With an inventory that gives a key's `last_used` (from the provider, e.g.
//! an IAM credential report), dormancy is known from day one: the first use
//! keywatch sees of a key whose last use was that long ago alerts too.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{human_secs, Ctx, Report, A_MONTH_LATER, DAY};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, Secs};
use crate::types::{invalid, ConfigError, HumanDuration};

/// `[detectors.dormant_revival]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DormantConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Idle this long, a key is dormant; its next use alerts (design default 30d).
    pub dormant_after: HumanDuration,
}

fn default_dormant_after() -> HumanDuration {
    HumanDuration::days(30)
}

impl Default for DormantConfig {
    fn default() -> Self {
        DormantConfig {
            enabled: true,
            dormant_after: default_dormant_after(),
        }
    }
}

impl DormantConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.dormant_after.0.as_secs() < 86_400 {
            return Err(invalid(
                &format!("{section}.dormant_after"),
                self.dormant_after,
                "must be at least 1d",
            ));
        }
        Ok(())
    }
}

/// A key silent for this many times its longest gap so far is out of its
/// rhythm: a daily key (longest gap a day, three over a long weekend) is
/// notable after one to two weeks, long before `dormant_after`.
pub const RHYTHM_FACTOR: u32 = 6;
/// ...but never before a week: a person's key idle over a holiday week is
/// not news.
pub const RHYTHM_FLOOR_S: u32 = 7 * DAY;
/// ...and only for a key with a rhythm to depart from: used on at least this
/// many days, on at least half of the days it has existed.
pub const RHYTHM_MIN_ACTIVE_DAYS: u16 = 10;

/// Checks the gap since the key's last use; updates the key's longest gap.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let cfg = &ctx.settings.detectors.dormant_revival;
    let gap = ctx.now.saturating_sub(state.last_seen);
    let previous_longest = state.longest_gap;
    state.longest_gap = state.longest_gap.max(gap);
    if !cfg.enabled {
        return;
    }
    let dormant_s = ctx.settings.dormant_s;
    // Days of use before this event's (the clock already moved to it).
    let active_days = state.active_days;
    let span_days = state.last_seen.saturating_sub(state.first_seen) / DAY + 1;
    let has_rhythm =
        active_days >= RHYTHM_MIN_ACTIVE_DAYS && u32::from(active_days) * 2 >= span_days;
    let rhythm_s = RHYTHM_FLOOR_S.max(previous_longest.saturating_mul(RHYTHM_FACTOR));
    let out_of_rhythm = has_rhythm && gap >= rhythm_s;
    if gap < dormant_s && !out_of_rhythm {
        return;
    }
    let absolute = gap >= dormant_s
        // A gap no longer than ~1.25x one the key already came back from is its rhythm.
        && !(previous_longest >= dormant_s / 2 && (gap as u64) * 4 <= previous_longest as u64 * 5)
        // A key whose whole history is one day, back a calendar month later:
        // a scheduled monthly job.
        && !(state.last_seen.saturating_sub(state.first_seen) <= 36 * 3600
            && A_MONTH_LATER.contains(&gap));
    if !absolute && !out_of_rhythm {
        return;
    }
    let last_seen = state.last_seen;
    let rule = if absolute { "dormant_after" } else { "rhythm" };
    report(
        state,
        ctx,
        gap,
        last_seen,
        rule,
        json!({
            "longest_previous_gap_s": previous_longest,
            "active_days": active_days,
            "history_days": span_days,
            "rhythm": has_rhythm,
        }),
        json!({
            "dormant_after_s": dormant_s,
            "rhythm_s": has_rhythm.then_some(rhythm_s),
            "rhythm_factor": RHYTHM_FACTOR,
        }),
    );
}

/// The first use keywatch sees of a key whose provider-reported last use
/// (`last_used` in the inventory) is at least `dormant_after` ago.
pub fn check_first_sight(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, last_used: Secs) {
    let gap = ctx.now.saturating_sub(last_used);
    if !ctx.settings.detectors.dormant_revival.enabled || gap < ctx.settings.dormant_s {
        return;
    }
    report(
        state,
        ctx,
        gap,
        last_used,
        "dormant_after",
        json!({ "last_use_known_from": "inventory" }),
        json!({ "dormant_after_s": ctx.settings.dormant_s }),
    );
}

fn report(
    state: &mut KeyState,
    ctx: &mut Ctx<'_, '_>,
    gap: u32,
    last_seen: Secs,
    rule: &str,
    baseline: Value,
    threshold: Value,
) {
    let dormant_s = ctx.settings.dormant_s;
    let severity = match rule {
        "rhythm" => Severity::Low,
        _ if gap >= dormant_s.saturating_mul(3) => Severity::High,
        _ => Severity::Medium,
    };
    let last = crate::decode::time::format_rfc3339(last_seen as i64 * 1000);
    let why = if rule == "rhythm" {
        format!(
            "{RHYTHM_FACTOR}x its longest gap before ({}), though short of dormant after {}",
            human_secs(state_longest(&baseline) as u64),
            human_secs(dormant_s as u64),
        )
    } else {
        format!("dormant after {}", human_secs(dormant_s as u64))
    };
    let summary = format!(
        "{} was used again after {} unused ({why}); its last use was {last}.",
        ctx.who(),
        human_secs(gap as u64),
    );
    let report = Report {
        severity,
        summary,
        observed: json!({ "idle_s": gap, "idle_days": gap / DAY, "last_seen": last, "rule": rule }),
        baseline,
        threshold,
    };
    ctx.emit(state, Detector::DormantRevival, 0, report);
}

fn state_longest(baseline: &Value) -> u32 {
    baseline["longest_previous_gap_s"].as_u64().unwrap_or(0) as u32
}
