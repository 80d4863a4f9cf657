//! `new_source`: a settled key used from a network (/24, or /64 for IPv6) it
//! has not used within `forget_after`.
//!
//! What keeps this quiet on real traffic:
//! - a new address inside a known network (DHCP churn) is not new;
//! - a new /24 next to two or more known /24s of the same /16 is churn in a
//!   provider's pool, not a new place;
//! - a key that already uses `roaming_networks` networks, or found three new
//!   ones in the last week, roams by design.
//!
//! Severity follows how settled the key is: one or two networks and none new
//! for a week is high; a few networks is medium; otherwise low.

use serde_json::json;

use super::{human_secs, Ctx, Report, DAY};
use crate::engine::finding::{Detector, Severity};
use crate::engine::source::SourceId;
use crate::engine::state::{KeyState, SourceFacts};

/// Checks the event's source against the key's remembered sources.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, id: SourceId, facts: &SourceFacts) {
    let cfg = &ctx.settings.detectors.new_source;
    if !cfg.enabled || !ctx.eligible || facts.network_known {
        return;
    }
    if facts.wide_siblings >= 2 {
        return;
    }
    let forget_s = ctx.settings.forget_s;
    let known = state.sources.summary(ctx.now, forget_s, state.first_seen);
    if known.networks == 0 || known.networks >= cfg.roaming_networks || known.recently_new >= 3 {
        return;
    }
    let quiet_for = ctx.now.saturating_sub(known.newest_first_seen);
    let severity = if id.is_named() || facts.wide_siblings == 1 {
        Severity::Low
    } else if known.networks <= 2 && quiet_for >= 7 * DAY {
        Severity::High
    } else if known.networks <= 4 {
        Severity::Medium
    } else {
        Severity::Low
    };
    let source = ctx
        .ev
        .source
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let network = id.network_display();
    let summary = format!(
        "{} was used from {source} ({network}), a network it has not used in {}; it normally uses {} network{} ({}).",
        ctx.who(),
        human_secs(forget_s as u64),
        known.networks,
        if known.networks == 1 { "" } else { "s" },
        known.sample.join(", "),
    );
    let report = Report {
        severity,
        summary,
        observed: json!({ "source": source, "network": network, "same_wider_network": facts.wide_siblings > 0 }),
        baseline: json!({
            "known_networks": known.networks,
            "networks": known.sample,
            "no_new_network_for_s": quiet_for,
        }),
        threshold: json!({ "forget_after_s": forget_s, "roaming_networks": cfg.roaming_networks }),
    };
    ctx.emit(state, Detector::NewSource, id.network(), report);
}
