//! `error_spike`: failed requests (AccessDenied, throttling, 401/403) in the
//! current bucket far above the key's own decayed peak — a permission probe,
//! or a key being used for something it was never granted.

use serde_json::json;

use super::{human_secs, Ctx, Report};
use crate::decode::Outcome;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, Peak};

/// The current bucket of failures and the key's learned peak.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorState {
    bucket: u32,
    count: u32,
    threshold: u32,
    peak: Peak,
}

impl ErrorState {
    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.peak.decay(factor);
    }

    /// Failures in the current bucket and its threshold.
    pub fn current(&self) -> (u32, u32) {
        (self.count, self.threshold)
    }
}

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
    let bucket = ctx.now / s.error_bucket_s;
    let st = &mut state.errors;
    if bucket > st.bucket {
        if st.count > 0 {
            let x = if st.count >= st.threshold && ctx.eligible {
                st.threshold
            } else {
                st.count
            };
            st.peak.observe(x as f32);
        }
        st.bucket = bucket;
        st.count = 0;
        st.threshold = (cfg.min_count as f32)
            .max((cfg.ratio as f32 * st.peak.value()).ceil())
            .min(u32::MAX as f32) as u32;
    }
    let before = st.count;
    st.count = st.count.saturating_add(ctx.ev.count);
    if before >= st.threshold || st.count < st.threshold || !ctx.eligible {
        return;
    }
    let (count, threshold) = (st.count, st.threshold);
    let peak = st.peak.value();
    let code = code.as_deref().unwrap_or("unspecified");
    let summary = format!(
        "{} had {count} failed requests in {} (latest error {code}), against a usual peak of {peak:.0} (threshold {threshold}).",
        ctx.who(),
        human_secs(s.error_bucket_s as u64),
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
        observed: json!({ "failures": count, "latest_error_code": code, "bucket_s": s.error_bucket_s }),
        baseline: json!({ "peak_failures_per_bucket": (peak as f64 * 10.0).round() / 10.0 }),
        threshold: json!(threshold),
    };
    ctx.emit(state, Detector::ErrorSpike, 0, report);
}
