//! `error_spike`: failed requests (AccessDenied, throttling, 401/403) in the
//! current bucket far above the key's own decayed peak — a permission probe,
//! or a key being used for something it was never granted.

use serde_json::json;

use super::{human_secs, Ctx, Report};
use crate::decode::Outcome;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;

/// Counts a failed event into its bucket and checks the bucket.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    let cfg = &s.detectors.error_spike;
    let Outcome::Failure { code } = &ctx.ev.outcome else {
        return;
    };
    if !cfg.enabled {
        return;
    }
    let bucket_s = s.error_bucket_s;
    let (rolled, _) = state
        .errors
        .roll(ctx.now / bucket_s, bucket_s, ctx.eligible);
    if rolled {
        let threshold = (cfg.min_count as f32)
            .max((cfg.ratio as f32 * state.errors.peak()).ceil())
            .min(u32::MAX as f32) as u32;
        state.errors.set_threshold(threshold);
    }
    if !state.errors.add(ctx.ev.count) || !ctx.eligible {
        return;
    }
    let (count, threshold) = state.errors.current();
    let peak = state.errors.peak();
    let code = code.as_deref().unwrap_or("unspecified");
    let summary = format!(
        "{} had {count} failed requests in {} (latest error {code}), against a usual peak of {peak:.0} (threshold {threshold}).",
        ctx.who(),
        human_secs(bucket_s as u64),
    );
    let report = Report {
        // Tenfold a key's usual failures (a key that hardly ever fails now
        // failing twenty times) is a probe; less is more likely a bad deploy.
        severity: if count as f32 >= 10.0 * peak.max(1.0) {
            Severity::High
        } else {
            Severity::Medium
        },
        summary,
        observed: json!({ "failures": count, "latest_error_code": code, "bucket_s": bucket_s }),
        baseline: json!({ "peak_failures_per_bucket": (peak as f64 * 10.0).round() / 10.0 }),
        threshold: json!(threshold),
    };
    ctx.emit(state, Detector::ErrorSpike, 0, report);
}
