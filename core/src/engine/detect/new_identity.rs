//! `new_identity_sensitive_action`: an identity with no history at all (a
//! new key whose principal is new too, or a key with no principal) mints
//! credentials, changes permissions or reads secrets from its first event.
//!
//! The other novelty detectors wait for a learning period; an attacker who
//! creates a user and uses its fresh key straight away would walk through
//! it. "No history" is judged against keywatch's own watch: an identity
//! first seen within a learning period of keywatch's first event is only new
//! to keywatch, not to the organisation, and stays quiet. A new key of a
//! principal that does have a history is judged through that principal
//! (`new_action` on the principal's baseline) and is left to it.
//!
//! High when the network is one no identity in the organisation has used,
//! medium otherwise (a new deployment role reading its secret from the usual
//! egress is the common benign case).

use serde_json::json;

use super::{sensitive, Ctx, Report};
use crate::decode::Source;
use crate::engine::finding::{Detector, Severity};
use crate::engine::source::SourceId;
use crate::engine::state::KeyState;
use crate::types::Entity;

/// Checks a sensitive call by an identity without history.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    if !ctx.settings.detectors.new_identity_sensitive_action.enabled || ctx.eligible {
        return;
    }
    let h = &ctx.history;
    if state.first_seen < h.new_after || (ctx.entity == Entity::KeyId && h.holder_has_history) {
        return;
    }
    let Some((service, action)) = ctx.ev.action_parts() else {
        return;
    };
    let Some(category) = sensitive::category(service, action) else {
        return;
    };
    let network = match &ctx.ev.source {
        Some(src @ Source::Ip(_)) => Some(SourceId::of(src)),
        _ => None,
    };
    let org_knows = network.is_none_or(|id| h.org.knows(id.network()));
    let shown = ctx.ev.action_display().unwrap_or_default();
    let source = ctx.source_text();
    let age_s = ctx.now.saturating_sub(state.first_seen);
    let summary =
        format!(
        "{} called {shown} ({}) {} after its first use, with no history to judge it by; from {}{}.",
        ctx.who(),
        category.text(),
        super::human_secs(age_s as u64),
        if source.is_empty() { "an unknown source" } else { &source },
        if org_knows { "" } else { ", a network no identity in the organisation has used" },
    );
    let report = Report {
        severity: if org_knows {
            Severity::Medium
        } else {
            Severity::High
        },
        summary,
        observed: json!({
            "action": shown,
            "category": category,
            "source": source,
            "network": network.map(|n| n.network_display()),
            "network_seen_in_organisation": org_knows,
        }),
        baseline: json!({
            "identity_first_seen_s_ago": age_s,
            "events_before": state.events,
            "principal_has_history": h.holder_has_history,
        }),
        threshold: json!({ "sensitive_actions": sensitive::names() }),
    };
    ctx.emit(state, Detector::NewIdentitySensitiveAction, 0, report);
}
