//! `source_fanout`: distinct source addresses in a window far above the key's
//! own peak — a leaked key used by many hosts at once.

use serde_json::json;

use super::{human_secs, Ctx, Report};
use crate::engine::baseline::Peak;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;

/// Distinct addresses in the current window, and the key's decayed peak.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FanoutState {
    window: u32,
    distinct: u16,
    threshold: u16,
    peak: Peak,
}

impl FanoutState {
    /// The key's decayed peak of distinct sources per window.
    pub fn peak(&self) -> f32 {
        self.peak.value()
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.peak.decay(factor);
    }
}

/// Counts a first use of an address in the window and checks the count.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, first_in_window: bool) {
    let s = ctx.settings;
    let cfg = &s.detectors.source_fanout;
    if !cfg.enabled {
        return;
    }
    let window = ctx.now / s.fanout_window_s;
    let f = &mut state.fanout;
    if window != f.window {
        if f.distinct > 0 {
            let x = if ctx.eligible {
                f.distinct.min(f.threshold)
            } else {
                f.distinct
            };
            f.peak.observe(x as f32);
        }
        let peak = f.peak.value();
        f.window = window;
        f.distinct = 0;
        f.threshold = (cfg.min_sources as f32)
            .max((cfg.ratio as f32 * peak).ceil())
            .min(u16::MAX as f32) as u16;
    }
    if !first_in_window {
        return;
    }
    f.distinct = f.distinct.saturating_add(1);
    if f.distinct != f.threshold || !ctx.eligible {
        return;
    }
    let (distinct, threshold) = (f.distinct, f.threshold);
    let peak = f.peak.value();
    let window_s = s.fanout_window_s;
    let summary = format!(
        "{} was used from {distinct} distinct addresses within {}, against a usual peak of {:.0} per window (threshold {threshold}).",
        ctx.who(),
        human_secs(window_s as u64),
        peak,
    );
    let report = Report {
        severity: Severity::High,
        summary,
        observed: json!({ "distinct_sources": distinct, "window_s": window_s }),
        baseline: json!({ "peak_distinct_per_window": (peak * 10.0).round() / 10.0 }),
        threshold: json!(threshold),
    };
    ctx.emit(state, Detector::SourceFanout, 0, report);
}
