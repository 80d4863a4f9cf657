//! `listed_source`: any use from a network on a list whose kind alerts
//! (`tor`, `threat`), learning or not: a credential has no business there.
//! Lists of kind `vpn`, `office` and `hosting` never alert by themselves.
//!
//! Severity: `high` for a threat feed, `medium` for Tor alone (GuardDuty
//! rates its Tor caller findings medium too: some teams use Tor on purpose).
//! One finding per key, list and cooldown.

use serde_json::json;

use super::{Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::netintel::config::ListKind;
use crate::netintel::{NetInfo, Tables};

/// Checks the event's source against the alerting lists.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, tables: &Tables, info: &NetInfo) {
    if !ctx.settings.detectors.listed_source.enabled {
        return;
    }
    let alerting = tables.alerting(info.lists);
    if alerting == 0 || ctx.quiet(state, Detector::ListedSource, alerting) {
        return;
    }
    let lists: Vec<_> = tables.labels(alerting).collect();
    let severity = if lists.iter().any(|l| l.kind == ListKind::Threat) {
        Severity::High
    } else {
        Severity::Medium
    };
    let names: Vec<String> = lists
        .iter()
        .map(|l| format!("{} ({})", l.label, l.kind.as_str()))
        .collect();
    let source = ctx.source_text();
    let report = Report {
        severity,
        summary: format!(
            "{} was used from {source}, listed in {}.",
            ctx.who(),
            names.join(", ")
        ),
        observed: json!({
            "source": source,
            "lists": lists.iter().map(|l| json!({"label": l.label, "kind": l.kind.as_str()})).collect::<Vec<_>>(),
        }),
        baseline: json!({
            "past_learning": ctx.eligible,
        }),
        threshold: json!({
            "alerting_kinds": ["tor", "threat"],
        }),
    };
    ctx.emit(state, Detector::ListedSource, alerting, report);
}
