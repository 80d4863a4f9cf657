//! `error_spike`: failed requests (AccessDenied, throttling, 401/403) in the
//! current bucket above what the key's own history expects — a permission
//! probe, or a key being used for something it was never granted. The same
//! rate model as `rate_spike` ([`RateModel`]), counting failures only; most
//! keys hardly fail, so the `min_count` floor does most of the work.
//!
//! [`RateModel`]: crate::engine::baseline::RateModel

use serde_json::json;

use super::rate_spike::{describe, severity};
use super::{Ctx, Report};
use crate::decode::Outcome;
use crate::engine::finding::Detector;
use crate::engine::state::KeyState;

/// Counts a failed event into its bucket and checks the bucket.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    let Outcome::Failure { code } = &ctx.ev.outcome else {
        return;
    };
    if !s.detectors.error_spike.enabled {
        return;
    }
    let (Some(c), _) =
        state
            .errors
            .observe(ctx.now, ctx.ev.count, &s.errors, ctx.learned_at, |_| 0)
    else {
        return;
    };
    if ctx.quiet(state, Detector::ErrorSpike, 0) {
        return;
    }
    let code = code.as_deref().unwrap_or("unspecified");
    let who = format!("{} (latest error {code})", ctx.who());
    let (summary, mut observed, baseline) =
        describe(&c, &who, "failed requests", "failures", s.errors.bucket_s);
    observed["latest_error_code"] = json!(code);
    let report = Report {
        severity: severity(&c),
        summary,
        observed,
        baseline,
        threshold: json!(c.threshold),
    };
    ctx.emit_sized(state, Detector::ErrorSpike, 0, report, c.count);
}
