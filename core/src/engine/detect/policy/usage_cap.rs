//! `usage_cap`: a key used more than its inventory `usage_cap` (`COUNT/WINDOW`)
//! within one window. Windows are fixed and aligned to the Unix epoch (a
//! `1d` cap is per UTC day), so a replay counts exactly as the live stream
//! did. One finding per window: the first use past the cap.

use serde_json::json;

use super::super::{Ctx, Report};
use super::{listing, owned_by, rfc3339, severity, KeyUsage};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::inventory::KeyEntry;

/// Counts the use in the key's current window and reports the first use past the cap.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, entry: &KeyEntry, usage: &mut KeyUsage) {
    let Some(cap) = entry.usage_cap else {
        return;
    };
    let start = cap.window_start(ctx.now);
    if start < usage.window_start {
        // A late event from a window already closed: the current count is not its.
        return;
    }
    if start > usage.window_start {
        *usage = KeyUsage {
            window_start: start,
            window_count: 0,
            cap_reported: false,
            patterns_used: std::mem::take(&mut usage.patterns_used),
        };
    }
    usage.window_count = usage.window_count.saturating_add(ctx.ev.count);
    if usage.window_count <= cap.count || usage.cap_reported {
        return;
    }
    let summary = format!(
        "{}, {}, was used {} times in the window from {}, over its cap of {cap}.",
        ctx.who(),
        owned_by(entry),
        usage.window_count,
        rfc3339(start),
    );
    let report = Report {
        severity: severity(Severity::Medium, entry),
        summary,
        observed: json!({ "uses": usage.window_count, "window_start": rfc3339(start) }),
        baseline: listing(entry),
        threshold: json!({ "usage_cap": cap.count, "window_s": cap.window_s }),
    };
    let before = ctx.out.len();
    ctx.emit(state, Detector::UsageCap, start as u64, report);
    // Reported once per window; a use from an allowlisted network that was
    // not reported leaves the next one to report.
    usage.cap_reported = ctx.out.len() > before;
}
