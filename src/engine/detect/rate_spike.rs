//! `rate_spike`: requests in the current bucket far above the key's own peak.
//!
//! The baseline is an envelope, not a mean: the key's decayed peak bucket,
//! overall and (once the key has the volume) per hour of day. A bucket alerts
//! when it exceeds `ratio` × the peak for its hour (±1 hour, which absorbs
//! DST and jitter) *and* the key's peak over all hours, and `min_count`.
//! So busy days, quiet nights, CI bursts at their usual times and slow growth
//! stay under the line, while a burst many times anything the key has done
//! recently crosses it — and alerts as soon as it does, not at bucket end.
//!
//! A bucket that crossed the line is learned as the threshold, not its full
//! count, so an attack does not teach the baseline to accept the next one.

use serde_json::json;

use super::{human_secs, Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, Peak, Secs};

/// Hour-of-day peaks, allocated only for keys with enough volume to matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Seasonal {
    since: Secs,
    slots: [Peak; 24],
}

impl Seasonal {
    fn decay(&mut self, factor: f32) {
        for s in &mut self.slots {
            s.decay(factor);
        }
    }
}

/// The current bucket and the key's learned peaks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateState {
    bucket: u32,
    count: u32,
    threshold: u32,
    peak: Peak,
    seasonal: Option<Box<Seasonal>>,
}

impl RateState {
    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.peak.decay(factor);
        if let Some(s) = &mut self.seasonal {
            s.decay(factor);
        }
    }

    /// Requests in the current bucket.
    pub fn current(&self) -> (u32, u32) {
        (self.count, self.threshold)
    }
}

fn hour_of(t: Secs) -> usize {
    ((t / 3600) % 24) as usize
}

/// The expected peak for a bucket starting at `start`: `(peak for the hour, peak overall)`.
fn expected(st: &RateState, start: Secs, seasonal_after: u32) -> (f32, f32) {
    let overall = st.peak.value();
    let hourly = match &st.seasonal {
        Some(s) if start.saturating_sub(s.since) >= seasonal_after => {
            let h = hour_of(start);
            [(h + 23) % 24, h, (h + 1) % 24]
                .iter()
                .map(|&i| s.slots[i].value())
                .fold(0.0, f32::max)
        }
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
    let bucket = ctx.now / bucket_s;
    let st = &mut state.rate;
    if bucket > st.bucket {
        let learn = Learn {
            start: st.bucket * bucket_s,
            now: ctx.now,
            seasonal_from: cfg.min_count as f32 / cfg.ratio as f32,
            eligible: ctx.eligible,
        };
        close(st, &learn);
        let (hourly, overall) = expected(st, bucket * bucket_s, s.learning_s);
        st.bucket = bucket;
        st.count = 0;
        st.threshold = (cfg.min_count as f32)
            .max((cfg.ratio as f32 * hourly).ceil())
            .max(overall.ceil())
            .min(u32::MAX as f32) as u32;
    }
    let before = st.count;
    st.count = st.count.saturating_add(ctx.ev.count);
    // Fire once, on the event that crosses the line.
    if before >= st.threshold || st.count < st.threshold || !ctx.eligible {
        return;
    }
    let (count, threshold) = (st.count, st.threshold);
    let start = st.bucket * bucket_s;
    let (hourly, overall) = expected(st, start, s.learning_s);
    let seasonal = st.seasonal.is_some();
    let times = count as f32 / hourly.max(1.0);
    let summary = format!(
        "{} made {count} requests in the {} starting {}, {times:.0}x its usual peak of {hourly:.0} for this time of day (threshold {threshold}).",
        ctx.who(),
        human_secs(bucket_s as u64),
        crate::decode::time::format_rfc3339(start as i64 * 1000),
    );
    let severity = if times >= 10.0 {
        Severity::High
    } else {
        Severity::Medium
    };
    let report = Report {
        severity,
        summary,
        observed: json!({ "requests": count, "bucket_start": crate::decode::time::format_rfc3339(start as i64 * 1000), "bucket_s": bucket_s }),
        baseline: json!({
            "peak_for_hour": round1(hourly),
            "peak_overall": round1(overall),
            "seasonal": seasonal,
        }),
        threshold: json!(threshold),
    };
    ctx.emit(state, Detector::RateSpike, 0, report);
}

/// What closing a bucket needs to know.
struct Learn {
    start: Secs,
    now: Secs,
    seasonal_from: f32,
    eligible: bool,
}

/// Learns the closing bucket; allocates hour-of-day peaks once the key's
/// peak is high enough that `ratio` × a quiet hour could undercut `min_count`.
fn close(st: &mut RateState, l: &Learn) {
    if st.count == 0 {
        return;
    }
    let x = if st.count >= st.threshold && l.eligible {
        st.threshold
    } else {
        st.count
    } as f32;
    st.peak.observe(x);
    let hour = hour_of(l.start);
    match &mut st.seasonal {
        Some(s) => s.slots[hour].observe(x),
        None if st.peak.value() >= l.seasonal_from => {
            let mut s = Box::new(Seasonal {
                since: l.now,
                slots: [Peak::default(); 24],
            });
            s.slots[hour].observe(x);
            st.seasonal = Some(s);
        }
        None => {}
    }
}

fn round1(x: f32) -> f64 {
    (x as f64 * 10.0).round() / 10.0
}
