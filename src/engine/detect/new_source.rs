//! `new_source`: a settled key used from a network (/24, or /64 for IPv6) it
//! has not used within `forget_after`.
//!
//! What keeps this quiet on real traffic:
//! - a new address inside a known network (DHCP churn) is not new;
//! - a new /24 next to two or more known /24s of the same /16 is churn in a
//!   provider's pool, not a new place;
//! - a key that already uses `roaming_networks` networks, or that acquired
//!   two or more networks after its first day (within `forget_after`), roams;
//! - a key with several networks, used with its usual client, whose set of
//!   networks changed in the last two weeks, is a person moving about.
//!
//! Severity follows how settled the key is: one or two networks and none new
//! for a week, used with a client the key never used, is high; a few
//! networks (or the usual client) is medium; otherwise low.

use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use super::{human_secs, Ctx, Report, DAY};
use crate::engine::finding::{Detector, Severity};
use crate::engine::source::SourceId;
use crate::engine::state::{value_hash, KeyState, SourceFacts, ValueKind};

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
    if known.networks == 0 || known.networks >= cfg.roaming_networks || known.acquired_later >= 2 {
        return;
    }
    let quiet_for = ctx.now.saturating_sub(known.newest_first_seen);
    // A new place with the key's usual client is the weaker signal (a person
    // travelling); a new place with a new client is how stolen keys look.
    let usual_client = ctx.ev.user_agent.as_deref().is_some_and(|ua| {
        let fam = super::new_user_agent::family(ua);
        state.values.knows(
            value_hash(ValueKind::UserAgent, 0, xxh3_64(fam.as_bytes())),
            ctx.now,
            forget_s,
        )
    });
    // Several networks, the usual client, and a network set that changed in
    // the last two weeks: a person moving between places, not a theft.
    if known.networks >= 2 && usual_client && quiet_for < 14 * DAY {
        return;
    }
    let severity = if id.is_named() || facts.wide_siblings == 1 {
        Severity::Low
    } else if known.networks <= 2 && quiet_for >= 7 * DAY && !usual_client {
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
        observed: json!({
            "source": source,
            "network": network,
            "same_wider_network": facts.wide_siblings > 0,
            "usual_client": usual_client,
        }),
        baseline: json!({
            "known_networks": known.networks,
            "networks": known.sample,
            "no_new_network_for_s": quiet_for,
        }),
        threshold: json!({ "forget_after_s": forget_s, "roaming_networks": cfg.roaming_networks }),
    };
    ctx.emit(state, Detector::NewSource, id.network(), report);
}
