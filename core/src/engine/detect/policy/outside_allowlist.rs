//! `outside_allowlist`: a key used from an address outside the networks its
//! inventory entry allows (`allowed_cidrs`). Named sources (`AWS Internal`,
//! a provider service acting for the key) are not addresses and are not
//! judged; neither are events without a source.

use serde_json::json;

use super::super::{Ctx, Report};
use super::{listing, owned_by, severity};
use crate::decode::Source;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::inventory::KeyEntry;

/// Checks the event's source address against the allowed networks.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, entry: &KeyEntry) {
    let (Some(nets), Some(Source::Ip(ip))) = (&entry.allowed_cidrs, &ctx.ev.source) else {
        return;
    };
    if entry.allows_source(*ip) {
        return;
    }
    let allowed: Vec<String> = nets.iter().map(ToString::to_string).collect();
    let summary = format!(
        "{}, {}, was used from {ip}, outside its allowed networks ({}).",
        ctx.who(),
        owned_by(entry),
        allowed.join(", "),
    );
    let report = Report {
        severity: severity(Severity::High, entry),
        summary,
        observed: json!({ "source": ip.to_string() }),
        baseline: listing(entry),
        threshold: json!({ "allowed_cidrs": allowed }),
    };
    ctx.emit(state, Detector::OutsideAllowlist, 0, report);
}
