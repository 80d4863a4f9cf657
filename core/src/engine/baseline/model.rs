//! The rate model of one key and one kind of count: buckets counted, hours
//! closed into the seasonal baseline, and each bucket tested against it
//! (the bucket test and the sustained CUSUM).

use serde::{Deserialize, Serialize};

use crate::types::Secs;

use super::params::*;
use super::seasonal::*;
use super::stats::*;

/// Which test a bucket alerted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// One bucket above the seasonal model's upper band.
    Bucket,
    /// Sustained elevation across buckets (CUSUM).
    Sustained,
    /// Warm-up: a large multiple of the key's level so far.
    WarmUp,
    /// No baseline at all yet: only the `min_count` floor.
    NoBaseline,
}

impl Test {
    /// Name in findings.
    pub fn name(self) -> &'static str {
        match self {
            Test::Bucket => "bucket",
            Test::Sustained => "sustained",
            Test::WarmUp => "warm_up",
            Test::NoBaseline => "no_baseline",
        }
    }
}

/// Everything a finding says about a crossing.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// Count in the bucket.
    pub count: u32,
    /// The line crossed.
    pub threshold: u32,
    /// Start of the bucket.
    pub bucket_start: Secs,
    /// The test that fired.
    pub test: Test,
    /// Score in [0, 1]: one less the tail probability of what was seen.
    pub score: f64,
    /// Expected count for this bucket (seasonal), or the key's level (warm-up).
    pub expected: f32,
    /// The seasonal model's upper band for one bucket (bucket test's line).
    pub upper_band: u32,
    /// Dispersion used (residual, once the day's level is known).
    pub dispersion: f32,
    /// The day's level the hour's mean was multiplied by (1 on a usual day).
    pub day_factor: f32,
    /// Whether the model has its hour-of-week component.
    pub weekday_aware: bool,
    /// Whether the hour of the week's usual largest bucket set the expectation.
    pub from_weekly: bool,
    /// Days of hourly history of the seasonal model (0 without one).
    pub days: u16,
    /// Hour-of-day slot (UTC).
    pub hour: u8,
    /// The key's decayed peak bucket.
    pub level: f32,
    /// CUSUM value (sustained test), standard deviations.
    pub cusum: f32,
    /// Start of the buckets the CUSUM spans.
    pub span_start: Secs,
    /// Buckets it spans, the current one included.
    pub span_buckets: u32,
    /// Counts over the span, and what was expected of them.
    pub span_observed: f32,
    /// Expected over the span.
    pub span_expected: f32,
    /// The line a key used in bursts at irregular times had to cross (three
    /// times its largest usual bucket) when it was above the model's; 0 otherwise.
    pub burst_floor: u32,
    /// Whether the bucket fell on a month's end the model had not yet seen
    /// (only tenfold the hour's expectation alerts there).
    pub month_end_unseen: bool,
}

/// Counts per bucket of one key with its rate model: the current bucket,
/// the largest bucket of the current hour, the key's decayed peak bucket
/// and, for keys with the volume, the seasonal model (boxed). 24 bytes in
/// place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateModel {
    pub(super) bucket: u32,
    pub(super) count: u32,
    pub(super) threshold: u32,
    /// Largest (winsorised) finished bucket of the current hour.
    pub(super) hour_max: Half,
    /// The key's largest bucket of a finished hour (decayed peak).
    pub(super) level: Half,
    pub(super) seasonal: Option<Box<Seasonal>>,
}

impl RateModel {
    /// Counts `weight` at `now`; returns the crossing when this addition
    /// crossed the bucket's line, and whether it crossed the model's own
    /// line (reported or not: what the key's habits are made of). From
    /// `learned_at` on (the key is past learning; `Secs::MAX`: not yet) what
    /// is learned is winsorised and crossings are reported. An hour is
    /// learned as of its own time: a job's first run, in the key's
    /// learning, closes only at its next event, maybe a month later, and
    /// is still learned whole. `floor` raises the reported line (a key used
    /// in bursts at irregular times, judged by the size of its bursts).
    pub fn observe(
        &mut self,
        now: Secs,
        weight: u32,
        p: &RateParams,
        learned_at: Secs,
        floor: impl FnOnce(&RateModel) -> u32,
    ) -> (Option<Crossing>, bool) {
        let clamp = now >= learned_at;
        let bucket = now / p.bucket_s;
        if bucket > self.bucket {
            self.roll(bucket, p, learned_at);
        }
        let before = self.count;
        self.count = self.count.saturating_add(weight);
        let over_line = before < self.threshold && self.count >= self.threshold;
        if self.count < self.threshold || !clamp {
            return (None, over_line);
        }
        // Asked only in a bucket over the model's line: rare.
        let floor = floor(self);
        let line = self.threshold.max(floor);
        if before >= line || self.count < line {
            return (None, over_line);
        }
        let mut c = self.crossing(p);
        if floor > self.threshold {
            c.threshold = floor;
            c.burst_floor = floor;
        }
        (Some(c), over_line)
    }

    pub(super) fn crossing(&mut self, p: &RateParams) -> Crossing {
        let count = self.count;
        let bucket_start = self.bucket.saturating_mul(p.bucket_s);
        let level = self.level.get();
        let mut c = Crossing {
            count,
            threshold: self.threshold,
            bucket_start,
            test: Test::NoBaseline,
            score: 0.0,
            expected: level,
            upper_band: self.threshold,
            dispersion: WARMUP_PHI,
            day_factor: 1.0,
            weekday_aware: false,
            from_weekly: false,
            days: 0,
            hour: hour_of(bucket_start) as u8,
            level,
            cusum: 0.0,
            span_start: bucket_start,
            span_buckets: 1,
            span_observed: count as f32,
            span_expected: 0.0,
            burst_floor: 0,
            month_end_unseen: false,
        };
        match self.seasonal.as_deref_mut() {
            Some(s) if s.warm() => {
                c.days = s.days;
                c.expected = s.lambda;
                c.upper_band = s.band;
                let hour = self.bucket / p.buckets_per_hour();
                c.month_end_unseen = s.calendar_line(hour) > 0;
                let (base, weekly) = s.expectation(hour);
                c.dispersion = s.test_phi(hour);
                c.day_factor = s.allowance.get().exp();
                c.weekday_aware = s.weekday_aware();
                // The week's envelope set the expectation (not the day's
                // level on the mean, nor a carried-over job).
                c.from_weekly = weekly > base && weekly >= s.lambda;
                let running = s.running(count);
                if count >= s.band {
                    c.test = Test::Bucket;
                    c.score = 1.0 - upper_tail(count as f64, s.lambda as f64, c.dispersion as f64);
                } else {
                    c.test = Test::Sustained;
                    c.score = cusum_score(running);
                }
                c.cusum = running as f32;
                if s.cusum > 0.0 {
                    c.span_start = s.span_from.saturating_mul(p.bucket_s);
                    c.span_buckets = self.bucket.saturating_sub(s.span_from) + 1;
                    c.span_observed += s.span_observed;
                    c.span_expected = s.span_expected;
                }
                c.span_expected += s.lambda;
                // The alarm restarts the CUSUM; the bucket stays out of it.
                s.cusum = 0.0;
                s.alerted = self.bucket;
            }
            seasonal => {
                c.days = seasonal.map_or(0, |s| s.days);
                if level > 0.0 {
                    c.test = Test::WarmUp;
                }
                c.score = 1.0 - upper_tail(count as f64, level.max(1.0) as f64, WARMUP_PHI as f64);
            }
        }
        c.score = c.score.clamp(0.0, 1.0);
        c
    }

    /// Moves to `bucket`: the finished bucket enters the hour and the CUSUM;
    /// finished hours are learned; the new bucket's threshold is set.
    pub(super) fn roll(&mut self, bucket: u32, p: &RateParams, learned_at: Secs) {
        let bph = p.buckets_per_hour();
        if self.bucket == 0 {
            self.bucket = bucket;
            self.count = 0;
            self.set_threshold(p);
            return;
        }
        let old = self.bucket;
        let x = self.count;
        if x as f32 > self.hour_max.get() {
            self.hour_max = Half::new(x as f32);
        }
        if let Some(s) = self.seasonal.as_deref_mut() {
            s.hour_sum = s.hour_sum.saturating_add(x);
            if s.warm() && s.hour() == old / bph {
                s.finish_bucket(old, x);
                let last_of_hour = (old / bph + 1) * bph;
                s.empty_buckets(bucket.min(last_of_hour).saturating_sub(old + 1));
            }
        }
        let (old_hour, new_hour) = (old / bph, bucket / bph);
        if new_hour != old_hour {
            let sum = self.seasonal.as_deref().map_or(0, |s| s.hour_sum);
            let mean = sum as f32 / bph as f32;
            let top = self.hour_max.get();
            // What the closed hour carries into the next: its last bucket
            // (a job still running at the hour), at most what was usual
            // for its largest; nothing if it alerted or the next hour is
            // not the one after it (read before the hour is learned).
            let carry = self.seasonal.as_deref().map_or(0.0, |s| {
                let alerted = s.alerted != u32::MAX && s.alerted / bph == old_hour;
                let last = old % bph == bph - 1 && bucket == old + 1;
                if alerted || !last {
                    0.0
                } else {
                    (x as f32).min(s.usual_top(old_hour))
                }
            });
            let past_learning = |hour: u32| u64::from(hour) * 3600 >= u64::from(learned_at);
            // The hour before the new one went missing: usually busy (a
            // job's hour), all but quiet today. A job moved an hour later
            // (clocks going back for its time zone) or held up runs now,
            // at its usual size: that size is expected this whole hour.
            // (Read before the hours are learned; an hour earlier, clocks
            // going forward, is not foreseen: recurrence learns it.)
            let missed = self.seasonal.as_deref().map_or(0.0, |s| {
                let before = new_hour - 1;
                let usual = s.slots[(before % 24) as usize].mean * bph as f32;
                let seen = if before == old_hour { sum as f32 } else { 0.0 };
                if s.warm() && usual >= p.min_count as f32 && seen < MISSED_SHARE * usual {
                    s.usual_top(before)
                } else {
                    0.0
                }
            });
            self.close_hour(old_hour, mean, top, past_learning(old_hour), p);
            // Hours without a call are learned as zeros, one day of them at most.
            let quiet = (new_hour - old_hour - 1).min(23);
            for h in 1..=quiet {
                let hour = old_hour + h;
                self.close_hour(hour, 0.0, 0.0, past_learning(hour), p);
            }
            if let Some(s) = self.seasonal.as_deref_mut() {
                s.hour_sum = 0;
                s.carry_all = missed > carry;
                s.carry = Half::new(carry.max(missed));
                s.half = u32::MAX;
                if new_hour - old_hour > 1 {
                    s.cusum = 0.0;
                } else if s.warm() {
                    s.prepare(new_hour, true, p);
                    s.empty_buckets(bucket - new_hour * bph);
                }
            }
            self.hour_max = Half::default();
        }
        self.bucket = bucket;
        self.count = 0;
        self.set_threshold(p);
    }

    pub(super) fn close_hour(
        &mut self,
        hour: u32,
        mean: f32,
        top: f32,
        clamp: bool,
        p: &RateParams,
    ) {
        // Once past learning, the key's level at most triples an hour: a
        // burst does not buy the next one a tenfold warm-up line.
        // Nor does an hour that alerted teach the key's level (the size of
        // its usual bursts) more than it had: the same burst tomorrow is
        // judged by the same bar.
        let bph = p.buckets_per_hour();
        let alerted = self
            .seasonal
            .as_deref()
            .is_some_and(|s| s.alerted != u32::MAX && s.alerted / bph == hour);
        // Nor does a month's end run at last month's level: that is the
        // calendar's, not the size of the key's bursts (which, raised, would
        // let a burst three times the month-end's pass on any other day).
        let calendar = self
            .seasonal
            .as_deref()
            .is_some_and(|s| s.month_factor(hour) > 1.0);
        let top_in = if clamp && (alerted || calendar) {
            top.min(self.level.get())
        } else if clamp {
            top.min((3.0 * self.level.get()).max(1.0))
        } else {
            top
        };
        if top_in > self.level.get() {
            self.level = Half::new(top_in);
        }
        match self.seasonal.as_deref_mut() {
            Some(s) => {
                s.learn(hour, mean, top, clamp, p);
                if hour % 24 == 23 {
                    s.days = s.days.saturating_add(1);
                    if s.days >= WEEK_DAYS && s.weekly.is_none() {
                        s.weekly = Some(Box::new([Half::default(); WEEK_HOURS]));
                    }
                }
            }
            // The model pays off once a bucket reaches a quarter of the
            // floor; below that the floor decides anyway. This hour's sum
            // was not kept: its mean is at least its largest bucket's share.
            None if self.level.get() * 4.0 >= p.min_count as f32 => {
                let mut s = Box::new(Seasonal::new());
                let bph = p.buckets_per_hour() as f32;
                s.learn(hour, top / bph, top, clamp, p);
                self.seasonal = Some(s);
            }
            None => {}
        }
    }

    /// Warm-up line: `WARMUP_RATIO` x the key's level, at least `min_count`.
    pub(super) fn warmup_line(&self, p: &RateParams) -> u32 {
        (p.min_count as f32)
            .max((WARMUP_RATIO * self.level.get()).ceil())
            .min(u32::MAX as f32) as u32
    }

    pub(super) fn set_threshold(&mut self, p: &RateParams) {
        let bph = p.buckets_per_hour();
        let warmup = self.warmup_line(p);
        self.threshold = match self.seasonal.as_deref_mut() {
            Some(s) if s.warm() => {
                s.prepare(self.bucket / bph, self.bucket % bph < bph / 2, p);
                let hour = self.bucket / bph;
                s.band.min(s.sustained_line(p)).max(s.calendar_line(hour))
            }
            _ => warmup,
        };
    }

    /// Count and threshold of the current bucket.
    pub fn current(&self) -> (u32, u32) {
        (self.count, self.threshold)
    }

    /// The key's decayed peak bucket (finished hours only).
    pub fn level(&self) -> f32 {
        self.level.get()
    }

    /// The hour after `hour` (since the epoch), when it is a job's hour
    /// after a quiet one: a warm model expects at least `min_count` calls in
    /// it and fewer in `hour` (which by itself could never alert; a key
    /// busy at every hour has no such pair). The calls that show the job
    /// ran ([`MISSED_SHARE`] of its usual ones) and its usual largest
    /// bucket. A job an hour early
    /// (its time zone's clocks went forward) crosses the line in the hour
    /// before its own.
    pub fn job_after(&self, hour: u32, p: &RateParams) -> Option<(f32, f32)> {
        let s = self.seasonal.as_deref().filter(|s| s.warm())?;
        let next = hour + 1;
        let per_hour = (3600 / p.bucket_s) as f32;
        let usual = s.slots[(next % 24) as usize].mean * per_hour;
        let before = s.slots[(hour % 24) as usize].mean * per_hour;
        (usual >= p.min_count as f32 && before < p.min_count as f32)
            .then(|| (usual * MISSED_SHARE, s.usual_top(next)))
    }

    /// The seasonal model, once the key has the volume.
    pub fn seasonal(&self) -> Option<&Seasonal> {
        self.seasonal.as_deref()
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.level = Half::new(self.level.get() * factor);
        if let Some(s) = self.seasonal.as_deref_mut() {
            s.decay(factor);
        }
    }
}
