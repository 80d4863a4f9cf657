//! `expired_key`: a key used at or after the `expires` its inventory entry
//! gives. Either the key was never revoked (the provider still accepts it)
//! or the inventory is wrong; both need a person.

use serde_json::json;

use super::super::{human_secs, Ctx, Report};
use super::{listing, owned_by, rfc3339, severity};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::inventory::KeyEntry;

/// Checks the event's time against the key's expiry.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, entry: &KeyEntry) {
    let Some(expires) = entry.expires else {
        return;
    };
    if ctx.now < expires {
        return;
    }
    let after = ctx.now - expires;
    let summary = format!(
        "{}, {}, was used {} after it expired on {}.",
        ctx.who(),
        owned_by(entry),
        human_secs(after as u64),
        rfc3339(expires),
    );
    let report = Report {
        severity: severity(Severity::High, entry),
        summary,
        observed: json!({ "used_at": rfc3339(ctx.now), "after_expiry_s": after }),
        baseline: listing(entry),
        threshold: json!({ "expires": rfc3339(expires) }),
    };
    ctx.emit(state, Detector::ExpiredKey, 0, report);
}
