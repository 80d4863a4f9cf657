//! `rate_spike`: requests in the current bucket far above the key's own peak.
//!
//! The baseline is an envelope, not a mean: the key's decayed peak bucket,
//! overall and (once the key has the volume) per hour of day. A bucket alerts
//! when it exceeds `ratio` × the peak for its hour (±1 hour, which absorbs
//! DST and jitter) *and* the key's peak over all hours, and `min_count`.
//! So busy days, quiet nights, CI bursts at their usual times and slow growth
//! stay under the line, while a burst many times anything the key has done
//! recently crosses it — and alerts as soon as it does, not at bucket end.
//! Peaks are learned from finished hours only (see [`BucketCounter`]).
//!
//! [`BucketCounter`]: crate::engine::baseline::BucketCounter

use serde_json::json;

use super::{human_secs, Ctx, Report};
use crate::engine::baseline::HourlyPeaks;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, Secs};

/// `(peak for the hour of t, peak overall)`; hour-of-day peaks are used only
/// once they have had a learning period of their own.
fn expected(state: &KeyState, t: Secs, learning_s: u32) -> (f32, f32) {
    let overall = state.rate.peak();
    let hourly = match &state.rate_hours {
        Some(h) if t.saturating_sub(h.since) >= learning_s => h.around(t),
        _ => overall,
    };
    (hourly, overall)
}

/// Counts the event into its bucket and checks the bucket.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    let cfg = &s.detectors.rate_spike;
    if !cfg.enabled {
        return;
    }
    let bucket_s = s.rate_bucket_s;
    let (rolled, learned) = state.rate.roll(ctx.now / bucket_s, bucket_s, ctx.eligible);
    if let Some(l) = learned {
        match &mut state.rate_hours {
            Some(h) => h.learn(l),
            // Hour-of-day peaks pay off once ratio x a quiet hour could
            // undercut min_count; below that the floor decides anyway.
            None if state.rate.peak() * cfg.ratio as f32 >= cfg.min_count as f32 => {
                let mut h = Box::new(HourlyPeaks::new(ctx.now));
                h.learn(l);
                state.rate_hours = Some(h);
            }
            None => {}
        }
    }
    if rolled {
        let (hourly, overall) = expected(state, ctx.now, s.learning_s);
        let threshold = (cfg.min_count as f32)
            .max((cfg.ratio as f32 * hourly).ceil())
            .max(overall.ceil())
            .min(u32::MAX as f32) as u32;
        state.rate.set_threshold(threshold);
    }
    if !state.rate.add(ctx.ev.count) || !ctx.eligible {
        return;
    }
    let (count, threshold) = state.rate.current();
    let start = state.rate.bucket_start(bucket_s);
    let (hourly, overall) = expected(state, start, s.learning_s);
    let times = count as f32 / hourly.max(1.0);
    let start_text = crate::decode::time::format_rfc3339(start as i64 * 1000);
    let summary = format!(
        "{} made {count} requests in the {} starting {start_text}, {times:.0}x its usual peak of {hourly:.0} for this time of day (threshold {threshold}).",
        ctx.who(),
        human_secs(bucket_s as u64),
    );
    let report = Report {
        severity: if times >= 10.0 {
            Severity::High
        } else {
            Severity::Medium
        },
        summary,
        observed: json!({ "requests": count, "bucket_start": start_text, "bucket_s": bucket_s }),
        baseline: json!({
            "peak_for_hour": round1(hourly),
            "peak_overall": round1(overall),
            "hour_of_day_baseline": state.rate_hours.is_some(),
        }),
        threshold: json!(threshold),
    };
    ctx.emit(state, Detector::RateSpike, 0, report);
}

fn round1(x: f32) -> f64 {
    (x as f64 * 10.0).round() / 10.0
}
