//! `unknown_key`: a key the inventory does not list — a shadow copy made
//! while debugging, a key created outside the process, a key from another
//! account. Reported once per key: the news is that the key exists; how it
//! goes on being used is in `keywatch review`. A key that is listed later and
//! then removed from the inventory again is reported again.

use serde_json::json;

use super::super::{Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;

/// Reports the key unless it was reported before.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let id = Detector::UnknownKey as u8;
    if state.cooling(id, 0, ctx.now) {
        return;
    }
    let summary = format!(
        "{} is not in the inventory: no one is on record as owning it.",
        ctx.who()
    );
    let report = Report {
        severity: Severity::Medium,
        summary,
        observed: json!({ "key_id": ctx.ev.key_id, "listed": false }),
        baseline: json!({ "uses_seen_before": state.events }),
        threshold: json!({ "rule": "every key in use is listed in the inventory" }),
    };
    let before = ctx.out.len();
    ctx.emit(state, Detector::UnknownKey, 0, report);
    if ctx.out.len() > before {
        // A cooldown that never ends: reported once for as long as the key
        // stays unlisted. Kept with the key's other cooldowns, so it costs the
        // key state nothing and moves with it.
        state.cool(id, 0, ctx.now, u32::MAX);
    }
}

/// Forgets the report of a key that is now listed.
pub fn forget(state: &mut KeyState) {
    state.uncool(Detector::UnknownKey as u8);
}
