//! `one_time_reuse`: a key marked `one_time` (a provisioning or enrolment
//! key) used again. A use is again when keywatch has seen the key before,
//! when the provider's `last_used` in the inventory is earlier than this
//! use, or when one pre-aggregated record stands for several uses.

use serde_json::json;

use super::super::{Ctx, Report};
use super::{listing, owned_by, rfc3339, severity};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::inventory::KeyEntry;

/// Checks whether a one-time key had been used before this event.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, entry: &KeyEntry) {
    if !entry.one_time {
        return;
    }
    let previous = if state.events > 0 {
        Some((state.last_seen, "traffic"))
    } else {
        entry
            .last_used
            .filter(|&t| t < ctx.now)
            .map(|t| (t, "inventory"))
    };
    if previous.is_none() && ctx.ev.count <= 1 {
        return;
    }
    let uses = state.events as u64
        + ctx.ev.count as u64
        + u64::from(previous.is_some() && state.events == 0);
    let summary = match previous {
        Some((t, _)) => format!(
            "{}, {}, is a one-time key and was used again; it was already used at {}.",
            ctx.who(),
            owned_by(entry),
            rfc3339(t),
        ),
        None => format!(
            "{}, {}, is a one-time key and one record shows {} uses.",
            ctx.who(),
            owned_by(entry),
            ctx.ev.count,
        ),
    };
    let report = Report {
        severity: severity(Severity::High, entry),
        summary,
        observed: json!({ "uses": uses }),
        baseline: json!({
            "inventory": listing(entry),
            "previous_use": previous.map(|(t, _)| rfc3339(t)),
            "previous_use_known_from": previous.map(|(_, from)| from),
        }),
        threshold: json!({ "one_time": true, "max_uses": 1 }),
    };
    ctx.emit(state, Detector::OneTimeReuse, 0, report);
}
