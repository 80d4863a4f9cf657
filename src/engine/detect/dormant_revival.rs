//! `dormant_revival`: a key unused for at least `dormant_after` is used again.
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

use serde_json::{json, Value};

use super::{human_secs, Ctx, Report, DAY};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, Secs};

/// Checks the gap since the key's last use; updates the key's longest gap.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let cfg = &ctx.settings.detectors.dormant_revival;
    let gap = ctx.now.saturating_sub(state.last_seen);
    let previous_longest = state.longest_gap;
    state.longest_gap = state.longest_gap.max(gap);
    let dormant_s = ctx.settings.dormant_s;
    if !cfg.enabled || gap < dormant_s {
        return;
    }
    // A gap no longer than ~1.25x one the key already came back from is its rhythm.
    if previous_longest >= dormant_s / 2 && (gap as u64) * 4 <= previous_longest as u64 * 5 {
        return;
    }
    let one_day_history = state.last_seen.saturating_sub(state.first_seen) <= 36 * 3600;
    if one_day_history && (27 * DAY..=32 * DAY).contains(&gap) {
        return;
    }
    let last_seen = state.last_seen;
    report(
        state,
        ctx,
        gap,
        last_seen,
        json!({ "longest_previous_gap_s": previous_longest }),
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
        json!({ "last_use_known_from": "inventory" }),
    );
}

fn report(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, gap: u32, last_seen: Secs, baseline: Value) {
    let dormant_s = ctx.settings.dormant_s;
    let severity = if gap >= dormant_s.saturating_mul(3) {
        Severity::High
    } else {
        Severity::Medium
    };
    let last = crate::decode::time::format_rfc3339(last_seen as i64 * 1000);
    let summary = format!(
        "{} was used again after {} unused (dormant after {}); its last use was {last}.",
        ctx.who(),
        human_secs(gap as u64),
        human_secs(dormant_s as u64),
    );
    let report = Report {
        severity,
        summary,
        observed: json!({ "idle_s": gap, "idle_days": gap / DAY, "last_seen": last }),
        baseline,
        threshold: json!({ "dormant_after_s": dormant_s }),
    };
    ctx.emit(state, Detector::DormantRevival, 0, report);
}
