//! `scope_violation`: a key calling an action outside the `allowed_actions`
//! patterns of its inventory entry. A call the provider refused is one step
//! less severe (the enforcement worked, but someone tried); an admin key's is
//! critical all the same.
//!
//! Every use also records which allowed patterns it matched, whether or not
//! the detector is on, so `keywatch review` can list patterns a key never
//! uses (least-privilege candidates).

use serde_json::json;

use super::super::{Ctx, Report};
use super::{listing, one_lower, owned_by, severity, KeyUsage};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::inventory::KeyEntry;

/// Matches the event's action against the allowed patterns.
pub fn check(
    state: &mut KeyState,
    ctx: &mut Ctx<'_, '_>,
    entry: &KeyEntry,
    usage: &mut KeyUsage,
    enabled: bool,
) {
    let (Some(patterns), Some((namespace, action))) =
        (&entry.allowed_actions, ctx.ev.action_parts())
    else {
        return;
    };
    let mut allowed = false;
    for p in patterns.iter().filter(|p| p.matches(namespace, action)) {
        allowed = true;
        let id = p.id();
        if !usage.patterns_used.contains(&id) {
            usage.patterns_used.push(id);
        }
    }
    if allowed || !enabled {
        return;
    }
    let base = if ctx.ev.is_failure() {
        one_lower(Severity::High)
    } else {
        Severity::High
    };
    let shown = ctx.ev.action_display().unwrap_or_default();
    let allowed: Vec<&str> = patterns.iter().map(|p| p.as_str()).collect();
    let summary = format!(
        "{}, {}, called {shown}{}, outside its allowed actions ({}).",
        ctx.who(),
        owned_by(entry),
        if ctx.ev.is_failure() {
            " (refused)"
        } else {
            ""
        },
        allowed.join(", "),
    );
    let report = Report {
        severity: severity(base, entry),
        summary,
        observed: json!({ "action": shown, "failed": ctx.ev.is_failure() }),
        baseline: listing(entry),
        threshold: json!({ "allowed_actions": allowed }),
    };
    ctx.emit(state, Detector::ScopeViolation, 0, report);
}
