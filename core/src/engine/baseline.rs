//! Baselines the spike detectors share: a decaying peak, and the rate model
//! of `rate_spike` and `error_spike` — a seasonal (hour-of-day, and once a
//! week is seen hour-of-week) expected count per bucket that an attacker
//! cannot teach.
//!
//! # The rate model
//!
//! Per key, counts per bucket (5 minutes by default). Each hour of the day
//! (UTC) has a slot learned only from *previous days*: when an hour closes,
//! its mean count per bucket and its largest bucket are folded into that
//! hour's slot, which is next read 24 hours later — today's buckets never
//! raise today's bar. What enters a slot is winsorised at the slot's upper
//! band (an hour above the band is learned as the band), unless the hour has
//! been above its band on `accept_after` days in a row: then the new level is
//! taken as it is (a new job, a new customer). Hours without calls are
//! learned as zeros, at most one day of them per gap, so an idle week counts
//! as one quiet day (decay in active days, like the peaks).
//!
//! A slot holds the mean per bucket (an EWMA over days), the envelope of its
//! largest bucket (a decayed peak, so a CI burst at 02:00 that runs one night
//! in four stays "usual" for 02:00), the day-to-day dispersion of the hour
//! (a negative-binomial `phi`: `var = mu + phi mu^2`) and its *residual*
//! dispersion: how far the hour's mean strays once the day's level is known
//! (learned against the slot's mean times that day's level; floored at
//! 0.05, never above `phi`). The hour's usual expected count per bucket is
//! `max(mean, top - 2 sqrt(top))`: the mean, or, in an hour with a usual
//! burst, the burst's level less its Poisson noise.
//!
//! **Weekdays.** Once the key has [`WEEK_DAYS`] days of hourly history, an
//! hour-of-week component is allocated (boxed, 168 two-byte envelopes): per
//! hour of the week its largest bucket, decayed x0.85 each week it comes
//! round (a big week is remembered about four weeks: the same hour of
//! successive weeks varies by a quarter, day wobble and Poisson noise
//! together, so a faster decay let one ordinary week drop the envelope
//! below the next one's), learned at hour close (an hour that alerted is
//! learned at most halfway from its expectation to the line it crossed, so
//! the same attack a week later alerts again). The expectation becomes `max(slot, weekly top - 2
//! sqrt(weekly top))`, so a batch that runs bigger on Sundays is usual on
//! Sundays only; where the week's envelope exceeds 1.5x the hour's usual,
//! the tests add its own uncertainty (one sample a week) to the dispersion.
//!
//! **The day's level.** How far the last few closed hours ran above their
//! slots (an EWMA over hours of the log ratio, within 3 day-level standard
//! deviations `3 sqrt(phi)`) multiplies the slot's mean: `lambda =
//! max(mean x exp(allowance), usual, weekly)`. A whole day running high
//! moves every bucket's expectation, instead of every band being widened by
//! the day-to-day `phi`; the tests then use only the residual dispersion, so
//! a 5x step or a 3x rise stands out on a key whose days wobble. The level is
//! measured against the means, so it scales the means only: the envelopes
//! already describe a usual busy day, and on a key that rests at weekends
//! (whose means blend both kinds of day) scaling them too would count a
//! weekday's lift twice and hide a 3x rise. **Carry-over:** a job still running
//! in the last bucket of an hour carries that bucket's level (at most the
//! hour's usual largest) into the first half of the next hour.
//!
//! Two tests, one threshold per bucket, checked as the count runs (an alert
//! fires at the crossing, not at bucket end):
//! - **bucket**: the upper tail probability of the count under a negative
//!   binomial with mean `lambda` and the residual dispersion (Poisson when
//!   it is 0) is below `p = 1 - min_score`;
//! - **sustained**: Page's one-sided CUSUM over finished buckets of the
//!   log ratio `ln((x+1)/(lambda+1))`, standardised by
//!   `sigma = sqrt(1/(lambda+1) + phi_residual)`, with slack [`CUSUM_K`],
//!   crossing its decision interval `h`, which is derived from the same `p`
//!   (Siegmund's approximation of the in-control run length, `ARL ~ 1/p`
//!   buckets). A ramp crosses it long before any single bucket is extreme.
//!
//! Both are floored at `min_count` requests in the bucket. Until the key has
//! [`WARM_DAYS`] days of hourly history (or for keys that never have the
//! volume to need it: the seasonal model is boxed and allocated only once a
//! bucket reaches a quarter of `min_count`), a conservative warm-up applies:
//! only [`WARMUP_RATIO`] x the key's level so far (its decayed peak bucket),
//! and at least `min_count`.

use serde::{Deserialize, Serialize};

use crate::types::Secs;

/// A decaying peak: the largest value observed, shrunk by a constant factor
/// on every *active* day (a day on which the key was used). Measuring decay in
/// active days keeps a dormant or weekend-idle key's baseline intact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Peak(f32);

impl Peak {
    /// The current (decayed) peak.
    pub fn value(self) -> f32 {
        self.0
    }

    /// Takes `x` into the envelope.
    pub fn observe(&mut self, x: f32) {
        self.0 = self.0.max(x);
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.0 *= factor;
    }
}

/// Slack of the CUSUM, in standard deviations: a sustained elevation of up
/// to 1.5 sigma (a busy day) never accumulates.
pub const CUSUM_K: f64 = 1.5;
/// An hour whose calls today are below this share of its usual ones went
/// missing: its usual level is accepted in the hour after it.
const MISSED_SHARE: f32 = 0.25;
/// Days of hourly history before the seasonal model is trusted.
pub const WARM_DAYS: u16 = 3;
/// Before that, a bucket alerts only at this multiple of the key's level.
pub const WARMUP_RATIO: f32 = 10.0;
/// Weight of each new day in a slot's mean and dispersion (half-life ~3
/// days: growth of a few % a day is followed with a lag of ~10 %).
const ALPHA: f32 = 0.2;
/// Weight of each new day in a slot's dispersion (slower than the mean:
/// a steadier estimate of how much whole days vary).
const ALPHA_PHI: f32 = 0.1;
/// Day-level standard deviations (of `sqrt(phi)`) the CUSUM allows when the
/// last hours ran that high: whole days that run high move every bucket of
/// the day together, which a test of independent buckets would add up.
const DAY_ALLOWANCE: f32 = 3.0;
/// Weight of the latest closed hour in the recent level (~3 hours).
const RECENT: f32 = 0.3;
/// Dispersion bounds and the prior of a new slot (a floor of 14 % day to day).
const PHI_MIN: f32 = 0.02;
const PHI_MAX: f32 = 4.0;
/// Dispersion warm-up scores are computed with (geometric: wide).
const WARMUP_PHI: f32 = 1.0;
const PHI_PRIOR: f32 = 0.25;
/// Tail probability of the band learning is winsorised at (largest bucket).
const P_LEARN: f64 = 1e-3;
/// Standard deviations of the band an hour's mean is winsorised at.
const Z_LEARN: f32 = 3.0;
/// Smallest expected count per bucket.
const LAMBDA_MIN: f32 = 0.05;
/// Bounds of the residual (within-day) dispersion the tests use once the
/// day's level is known; the prior is [`PHI_PRIOR`], and it never exceeds
/// the slot's day-to-day dispersion.
const RESID_MIN: f32 = 0.05;
/// Expected calls in an hour before it teaches the residual dispersion
/// (fewer: its Poisson noise would swamp it).
const RESID_HOUR_MIN: f32 = 24.0;
/// Days of hourly history before the hour-of-week component is allocated.
pub const WEEK_DAYS: u16 = 7;
/// The days a level must recur on to be learned: the last seven of an hour.
const RECUR_MASK: u8 = 0x7F;
/// Decay of an hour-of-week's envelope each week it is seen again (0.7
/// until the weekend batches of nightly jobs alerted on their bigger weeks).
const WEEKLY_DECAY: f32 = 0.85;
/// Hours in a week.
const WEEK_HOURS: usize = 168;
/// The week's envelope adds its own uncertainty only beyond this multiple
/// of the hour's usual expectation (a weekday unlike the others).
const WEEKLY_SURE: f32 = 1.5;

/// The rate model's parameters, resolved from a detector's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateParams {
    /// Bucket, seconds (divides an hour).
    pub bucket_s: u32,
    /// Never alert below this many in one bucket.
    pub min_count: u32,
    /// Tail probability a bucket (or the CUSUM) must fall below: `1 - min_score`.
    pub p: f64,
    /// The CUSUM's decision interval for `p`.
    pub h: f64,
    /// Days of the last week an hour must be above its band before its new
    /// level is learned.
    pub accept_days: u16,
}

impl RateParams {
    /// Parameters for a bucket, floor, score threshold and acceptance delay.
    pub fn new(bucket_s: u32, min_count: u32, min_score: f64, accept_days: u16) -> RateParams {
        let p = (1.0 - min_score).clamp(1e-15, 0.5);
        RateParams {
            bucket_s: bucket_s.clamp(1, 3600),
            min_count: min_count.max(1),
            p,
            h: cusum_h(p),
            accept_days: accept_days.max(1),
        }
    }

    fn buckets_per_hour(&self) -> u32 {
        (3600 / self.bucket_s).max(1)
    }
}

/// Siegmund's approximation of a one-sided CUSUM's in-control run length
/// with slack `k` and interval `h`, on standard normal increments:
/// `ARL ~ exp(2k(h + 1.166)) / (2k^2)`. Solved for `ARL = 1/p`.
fn cusum_h(p: f64) -> f64 {
    ((2.0 * CUSUM_K * CUSUM_K / p).ln() / (2.0 * CUSUM_K) - 1.166).max(1.0)
}

/// The score of a CUSUM value: one less the chance rate (per bucket) of
/// reaching it in control, by the same approximation.
fn cusum_score(s: f64) -> f64 {
    let p = 2.0 * CUSUM_K * CUSUM_K * (-2.0 * CUSUM_K * (s + 1.166)).exp();
    (1.0 - p).clamp(0.0, 1.0)
}

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
}

/// One hour of the day of the seasonal model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Mean count per bucket in this hour (EWMA over days).
    pub mean: f32,
    /// Envelope of the hour's largest bucket (decays per active day).
    pub top: f32,
    /// Dispersion of the hour's mean from day to day.
    pub disp: f32,
    /// The last eight days of this hour, a bit each (newest lowest): set
    /// when the hour was above its band.
    pub streak: u8,
    /// Residual dispersion of the hour's mean once the day's level is
    /// known (what is left of `disp` after the allowance): the tests' own.
    /// Zero until learned (the prior applies).
    #[serde(default)]
    pub resid: Half,
}

impl Slot {
    /// Expected count per bucket.
    pub fn lambda(&self) -> f32 {
        self.mean
            .max(self.top - 2.0 * self.top.max(0.0).sqrt())
            .max(LAMBDA_MIN)
    }

    /// Dispersion of the hour from day to day.
    pub fn phi(&self) -> f32 {
        // A NaN restored from a corrupt checkpoint or chunk becomes PHI_MIN
        // instead of flowing into later clamps (which panic on NaN bounds).
        if self.disp.is_nan() {
            PHI_MIN
        } else {
            self.disp.clamp(PHI_MIN, PHI_MAX)
        }
    }

    /// Dispersion the tests use around the day's level: the residual,
    /// floored, never above the day-to-day dispersion.
    pub fn resid_phi(&self) -> f32 {
        let r = self.resid.get();
        let r = if r == 0.0 { PHI_PRIOR } else { r };
        r.max(RESID_MIN).min(self.phi())
    }
}

/// Hour-of-week envelopes of the largest bucket (decayed per week).
type Weekly = [Half; WEEK_HOURS];

/// The hour-of-week envelopes as a sequence (serde has no 168-arrays).
mod weekly_serde {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Half, Weekly, WEEK_HOURS};

    pub fn serialize<S: Serializer>(w: &Option<Box<Weekly>>, s: S) -> Result<S::Ok, S::Error> {
        w.as_deref().map(|w| &w[..]).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<Weekly>>, D::Error> {
        let v: Option<Vec<Half>> = Option::deserialize(d)?;
        v.map(|v| {
            let n = v.len();
            <Box<Weekly>>::try_from(v.into_boxed_slice())
                .map_err(|_| D::Error::invalid_length(n, &"168 hours"))
        })
        .transpose()
    }

    const _: () = assert!(WEEK_HOURS == 168);
}

/// Hour-of-day model, allocated only for keys with the volume to need it,
/// with an hour-of-week component once it has a week of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    slots: [Slot; 24],
    /// Largest bucket per hour of the week (UTC), boxed: allocated at
    /// [`WEEK_DAYS`] days of history.
    #[serde(default, with = "weekly_serde")]
    weekly: Option<Box<Weekly>>,
    /// Days of hourly history (closes of hour 23).
    days: u16,
    /// The half hour (since the epoch) the cached values below are for.
    half: u32,
    /// Expected count per bucket: the hour's mean times the day's level
    /// (`exp(allowance)`), at least the hour's (or the hour of the week's)
    /// usual level.
    lambda: f32,
    /// Noise of one bucket's log ratio (Poisson and residual), and the
    /// allowance for a busy day (log of the day's level).
    sigma: Half,
    allowance: Half,
    /// Last bucket of the hour just closed, at most what was usual for its
    /// largest: a job running over the hour carries its level into the
    /// first half of the next hour.
    carry: Half,
    /// Bucket test's threshold for `hour` (floored at `min_count`).
    band: u32,
    /// CUSUM, standard deviations, and the span it covers.
    cusum: f32,
    span_from: u32,
    span_observed: f32,
    span_expected: f32,
    /// A bucket that alerted (left out of the CUSUM, which restarts).
    alerted: u32,
    /// Counts of the finished buckets of the current hour.
    hour_sum: u32,
    /// Recent closed hours' counts, and what their slots expected (EWMA).
    recent_observed: f32,
    recent_expected: f32,
    /// `carry` holds the usual level of the hour before, which went
    /// missing today (a job moved an hour later by a change of clocks, or
    /// held up): it applies to the whole hour, not its first half. Lives
    /// for one hour, so it is not part of the saved state.
    #[serde(skip)]
    carry_all: bool,
}

impl Seasonal {
    fn new() -> Seasonal {
        Seasonal {
            slots: [Slot::default(); 24],
            weekly: None,
            days: 0,
            half: u32::MAX,
            lambda: LAMBDA_MIN,
            sigma: Half::new(1.0),
            allowance: Half::default(),
            carry: Half::default(),
            band: u32::MAX,
            cusum: 0.0,
            span_from: 0,
            span_observed: 0.0,
            span_expected: 0.0,
            alerted: u32::MAX,
            hour_sum: 0,
            recent_observed: 0.0,
            recent_expected: 0.0,
            carry_all: false,
        }
    }

    /// Days of hourly history.
    pub fn days(&self) -> u16 {
        self.days
    }

    /// Whether the model is trusted.
    pub fn warm(&self) -> bool {
        self.days >= WARM_DAYS
    }

    /// The slot of the hour of `t`.
    pub fn slot_at(&self, t: Secs) -> &Slot {
        &self.slots[hour_of(t)]
    }

    /// The largest mean count per bucket of any hour of the day (the
    /// hours' averages, without their envelopes of bursts).
    pub fn busiest_mean(&self) -> f32 {
        self.slots.iter().map(|s| s.mean).fold(0.0, f32::max)
    }

    /// Whether the hour-of-week component is allocated.
    pub fn weekday_aware(&self) -> bool {
        self.weekly.is_some()
    }

    /// The hour-of-week envelope of the hour `hour` (since the epoch), 0
    /// when unseen or not allocated.
    fn weekly_top(&self, hour: u32) -> f32 {
        self.weekly
            .as_deref()
            .map_or(0.0, |w| w[hour as usize % WEEK_HOURS].get())
    }

    /// The day's level so far: log of how far the last closed hours ran
    /// above (or below) their slots, within 3 day-level sigma.
    fn day_level(&self, phi_day: f32) -> f32 {
        let recent = ((self.recent_observed + 1.0) / (self.recent_expected + 1.0)).ln();
        let cap = DAY_ALLOWANCE * phi_day.max(0.0).sqrt();
        // Never clamp(-cap, cap): it panics when cap is NaN.
        recent.max(-cap).min(cap)
    }

    /// Dispersion the tests use in an hour: the slot's residual one, or,
    /// when the hour of the week's envelope (one sample a week) sets the
    /// expectation, at least the prior.
    fn test_phi(&self, hour: u32) -> f32 {
        let slot = &self.slots[(hour % 24) as usize];
        let (base, weekly) = self.expectation(hour);
        // As far as the week's envelope sets the expectation, its own
        // uncertainty (a sample a week) is added.
        let share = (1.0 - WEEKLY_SURE * base / weekly.max(base)).clamp(0.0, 1.0);
        slot.resid_phi() + share * PHI_PRIOR
    }

    /// The hour's expected count per bucket on a usual day, and the hour of
    /// the week's (its usual largest bucket less its Poisson noise).
    fn expectation(&self, hour: u32) -> (f32, f32) {
        let w = self.weekly_top(hour);
        (
            self.slots[(hour % 24) as usize].lambda(),
            w - 2.0 * w.sqrt(),
        )
    }

    /// The hour (since the epoch) the cached values are for.
    fn hour(&self) -> u32 {
        self.half / 2
    }

    /// The usual largest bucket of the hour `hour` (since the epoch).
    fn usual_top(&self, hour: u32) -> f32 {
        self.slots[(hour % 24) as usize]
            .top
            .max(self.weekly_top(hour))
    }

    /// Caches the expected count and lines for the hour `hour` (since the
    /// epoch), its first half or its second.
    fn prepare(&mut self, hour: u32, first_half: bool, p: &RateParams) {
        let half = hour.saturating_mul(2) + u32::from(!first_half);
        if self.half == half {
            return;
        }
        let slot = self.slots[(hour % 24) as usize];
        let (base, weekly) = self.expectation(hour);
        self.allowance = Half::new(self.day_level(slot.phi()).max(0.0));
        let mut lambda = (slot.mean.max(LAMBDA_MIN) * self.allowance.get().exp())
            .max(base)
            .max(weekly);
        if first_half || self.carry_all {
            let c = self.carry.get();
            lambda = lambda.max(c - 2.0 * c.sqrt());
        }
        let phi = self.test_phi(hour);
        self.half = half;
        self.lambda = lambda;
        self.sigma = Half::new((1.0 / (lambda + 1.0) + phi).sqrt());
        self.band = threshold_for(lambda as f64, phi as f64, p.p).max(p.min_count);
    }

    /// The count at which the running CUSUM would cross `h` in this bucket.
    fn sustained_line(&self, p: &RateParams) -> u32 {
        let need = p.h - self.cusum as f64 + CUSUM_K;
        let log_ratio = self.sigma.get() as f64 * need;
        let c = (self.lambda as f64 + 1.0) * log_ratio.exp() - 1.0;
        (c.ceil().max(0.0).min(u32::MAX as f64) as u32).max(p.min_count)
    }

    /// CUSUM value if the current bucket ended at `count`.
    fn running(&self, count: u32) -> f64 {
        let y = ((count as f64 + 1.0) / (self.lambda as f64 + 1.0)).ln();
        (self.cusum as f64 + y / self.sigma.get() as f64 - CUSUM_K).max(0.0)
    }

    /// A finished bucket `bucket` with `x` enters the CUSUM.
    fn finish_bucket(&mut self, bucket: u32, x: u32) {
        if bucket == self.alerted {
            return;
        }
        let s = self.running(x) as f32;
        if s > 0.0 && self.cusum == 0.0 {
            self.span_from = bucket;
            self.span_observed = 0.0;
            self.span_expected = 0.0;
        }
        if s > 0.0 {
            self.span_observed += x as f32;
            self.span_expected += self.lambda;
        }
        self.cusum = s;
    }

    /// `n` buckets without a call (in the current cached hour) pass.
    fn empty_buckets(&mut self, n: u32) {
        if n == 0 || self.cusum == 0.0 {
            return;
        }
        let y = (1.0 / (self.lambda as f64 + 1.0)).ln();
        let step = y / self.sigma.get() as f64 - CUSUM_K;
        self.cusum = (self.cusum as f64 + n as f64 * step).max(0.0) as f32;
    }

    /// Learns one closed hour: its mean per bucket and its largest bucket.
    fn learn(&mut self, hour: u32, mean: f32, top: f32, clamp: bool, p: &RateParams) {
        let bph_u = p.buckets_per_hour();
        let bph = bph_u as f32;
        let alpha = ALPHA.max(1.0 / (self.days as f32 + 1.0));
        // The hour of the week: its largest bucket, or, if the hour alerted,
        // at most halfway from what was expected of it to the line it
        // crossed. Taught the whole line, the week would hide the same
        // attack at the same hour a week later (its expectation that line
        // less its noise, widened by the week's own uncertainty); taught
        // nothing, a false alarm would repeat every week.
        let alerted = self.alerted != u32::MAX && self.alerted / bph_u == hour;
        let cap = if alerted && self.hour() == hour {
            0.5 * (self.lambda + self.band as f32)
        } else if alerted {
            0.0
        } else {
            f32::MAX
        };
        if let Some(w) = self.weekly.as_deref_mut() {
            let i = hour as usize % WEEK_HOURS;
            w[i] = Half::new((w[i].get() * WEEKLY_DECAY).max(top.min(cap)));
        }
        let day = self.day_level(self.slots[(hour % 24) as usize].phi());
        let slot = &mut self.slots[(hour % 24) as usize];
        // A slot never learned has no dispersion yet (learning sets one).
        let first = slot.disp == 0.0;
        let (m0, phi) = (slot.mean, slot.phi());
        if !first {
            self.recent_observed += RECENT * (mean * bph - self.recent_observed);
            self.recent_expected += RECENT * (m0 * bph - self.recent_expected);
        }
        let (mut m, mut b) = (mean, top);
        if clamp && !first {
            // The hour is above its band when a bucket was (a burst beyond
            // the slot's envelope) or its mean was.
            let cap = if b > slot.lambda() {
                threshold_for(slot.lambda() as f64, phi as f64, P_LEARN) as f32
            } else {
                f32::MAX
            };
            let band = m0 + Z_LEARN * ((m0 + 1.0) / bph + phi * m0 * m0).sqrt();
            // `streak` holds the last eight days of this hour, one bit each
            // (newest lowest): above its band or not.
            let above = b > cap || m > band;
            slot.streak = (slot.streak << 1) | u8::from(above);
            if above && (slot.streak & RECUR_MASK).count_ones() >= u32::from(p.accept_days) {
                // Above the band on most recent days: what recurs at this
                // hour is the key's level, taken as it is.
                slot.streak = 0;
                slot.mean = m;
                slot.top = slot.top.max(b);
                return;
            }
            if b > cap {
                // A burst beyond the envelope is learned as the band: the
                // mean and the envelope move a step, the dispersion not.
                slot.mean += alpha * (m.min(band) - m0);
                slot.top = slot.top.max(cap);
                return;
            }
            m = m.min(band);
            b = b.min(cap);
        }
        if first {
            slot.mean = m;
            slot.disp = PHI_PRIOR;
        } else {
            // What is left of the hour's variation once the day's level
            // is known, from hours with the calls to tell.
            let me = m0 * day.exp();
            if me * bph >= RESID_HOUR_MIN {
                let dev = m - me;
                let obs = ((dev * dev - me / bph) / (me * me)).clamp(0.0, PHI_MAX);
                let r0 = match slot.resid.get() {
                    r if r > 0.0 => r,
                    _ => PHI_PRIOR.min(phi),
                };
                // Never exactly 0: that is "not learned yet".
                let r = (r0 + ALPHA_PHI.max(alpha) * (obs - r0)).max(1e-4);
                slot.resid = Half::new(r);
            }
            let dev = m - m0;
            let scale = m0.max(1.0 / bph);
            let obs = ((dev * dev - m0 / bph) / (scale * scale)).clamp(0.0, PHI_MAX);
            slot.disp += ALPHA_PHI.max(alpha) * (obs - slot.disp);
            slot.mean += alpha * (m - m0);
        }
        slot.top = slot.top.max(b);
    }

    /// One active day passes: the envelopes decay.
    fn decay(&mut self, factor: f32) {
        // Cached lines are per hour: the next hour recomputes them.
        for s in &mut self.slots {
            s.top *= factor;
        }
    }
}

/// A non-negative `f32` in two bytes (bfloat16: the top half of its bits,
/// truncated; 3 significant digits), to keep the per-key state small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Half(u16);

impl Half {
    /// Stores `x` (rounded down).
    pub fn new(x: f32) -> Half {
        Half((x.max(0.0).to_bits() >> 16) as u16)
    }

    /// The value.
    pub fn get(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }
}

/// Counts per bucket of one key with its rate model: the current bucket,
/// the largest bucket of the current hour, the key's decayed peak bucket
/// and, for keys with the volume, the seasonal model (boxed). 24 bytes in
/// place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateModel {
    bucket: u32,
    count: u32,
    threshold: u32,
    /// Largest (winsorised) finished bucket of the current hour.
    hour_max: Half,
    /// The key's largest bucket of a finished hour (decayed peak).
    level: Half,
    seasonal: Option<Box<Seasonal>>,
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

    fn crossing(&mut self, p: &RateParams) -> Crossing {
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
        };
        match self.seasonal.as_deref_mut() {
            Some(s) if s.warm() => {
                c.days = s.days;
                c.expected = s.lambda;
                c.upper_band = s.band;
                let hour = self.bucket / p.buckets_per_hour();
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
    fn roll(&mut self, bucket: u32, p: &RateParams, learned_at: Secs) {
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

    fn close_hour(&mut self, hour: u32, mean: f32, top: f32, clamp: bool, p: &RateParams) {
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
        let top_in = if clamp && alerted {
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
    fn warmup_line(&self, p: &RateParams) -> u32 {
        (p.min_count as f32)
            .max((WARMUP_RATIO * self.level.get()).ceil())
            .min(u32::MAX as f32) as u32
    }

    fn set_threshold(&mut self, p: &RateParams) {
        let bph = p.buckets_per_hour();
        let warmup = self.warmup_line(p);
        self.threshold = match self.seasonal.as_deref_mut() {
            Some(s) if s.warm() => {
                s.prepare(self.bucket / bph, self.bucket % bph < bph / 2, p);
                s.band.min(s.sustained_line(p))
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

fn hour_of(t: Secs) -> usize {
    ((t / 3600) % 24) as usize
}

/// `P(X >= x)` for a count with mean `mu` and dispersion `phi`
/// (`var = mu + phi mu^2`; Poisson when `phi` is 0).
///
/// A negative binomial is a Poisson whose rate is Gamma distributed, so
/// `P(X >= x) = P(F(2x, 2/phi) <= mu / x)` exactly; Paulson's cube-root
/// normal approximation of the F distribution (Wilson–Hilferty for the
/// Poisson case) makes that a closed form accurate to a few percent far
/// into the tail.
pub fn upper_tail(x: f64, mu: f64, phi: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let mu = mu.max(1e-6);
    let f3 = (mu / x).cbrt();
    let a = 1.0 / (9.0 * x);
    let b = phi.max(0.0) / 9.0;
    let z = ((1.0 - b) * f3 - (1.0 - a)) / (a + f3 * f3 * b).sqrt();
    norm_cdf(z)
}

/// The smallest count whose upper tail is at most `p`.
pub fn threshold_for(mu: f64, phi: f64, p: f64) -> u32 {
    let mut lo = mu.floor().max(1.0);
    // Past u32 nothing is countable; and floats that far apart (a mean from
    // a damaged checkpoint, 1e20) are more than 1 apart, so the bisection
    // below would never close (found by fuzzing).
    if lo >= u32::MAX as f64 {
        return u32::MAX;
    }
    if upper_tail(lo, mu, phi) <= p {
        return lo as u32;
    }
    let mut hi = lo * 2.0 + 8.0;
    while upper_tail(hi, mu, phi) > p {
        lo = hi;
        hi *= 2.0;
        if hi >= u32::MAX as f64 {
            return u32::MAX;
        }
    }
    // upper_tail(lo) > p >= upper_tail(hi)
    while hi - lo > 1.0 {
        let mid = ((lo + hi) / 2.0).floor();
        if mid <= lo || mid >= hi {
            break;
        }
        if upper_tail(mid, mu, phi) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi as u32
}

fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the checkpoint fuzz target: a restored slot whose dispersion
    /// was NaN made `day_level` clamp between NaN bounds, a panic (in release
    /// too) on the first event of the key.
    #[test]
    fn a_line_for_a_mean_past_any_count_is_the_largest_count_at_once() {
        // Found by fuzzing a checkpoint: a mean of 1e20 once looped forever.
        for mu in [1e10, 1e20, 1e300, f64::INFINITY, f64::NAN, -1e20] {
            let t = threshold_for(mu, 0.1, 1e-6);
            assert!(t >= 1, "{mu}: {t}");
        }
        assert_eq!(threshold_for(1e20, 0.1, 1e-6), u32::MAX);
        assert!(threshold_for(4.0, 0.1, 1e-6) < 100);
    }

    #[test]
    fn a_nan_dispersion_from_restored_state_never_panics() {
        let slot = Slot {
            disp: f32::NAN,
            ..Slot::default()
        };
        assert!(slot.phi().is_finite());
        let s = Seasonal::new();
        assert!(s.day_level(f32::NAN).is_finite());
        assert!(s.day_level(-1.0).is_finite());
    }

    #[test]
    fn peak_keeps_the_maximum_and_decays() {
        let mut p = Peak::default();
        p.observe(100.0);
        p.observe(40.0);
        assert_eq!(p.value(), 100.0);
        let daily = 0.5f32.powf(1.0 / 14.0);
        for _ in 0..14 {
            p.decay(daily);
        }
        assert!((p.value() - 50.0).abs() < 0.01);
        p.observe(60.0);
        assert_eq!(p.value(), 60.0);
    }

    /// Exact Poisson upper tail by summation.
    fn poisson_tail(x: u32, mu: f64) -> f64 {
        let mut term = (-mu).exp();
        for k in 0..x {
            term *= mu / (k as f64 + 1.0);
        }
        let mut tail = 0.0;
        let mut t = term;
        let mut k = x as f64;
        while t > 1e-300 && k < x as f64 + 10_000.0 {
            tail += t;
            k += 1.0;
            t *= mu / k;
        }
        tail
    }

    #[test]
    fn tail_approximation_is_close_to_the_exact_poisson() {
        // Within a few percent where thresholds live (1e-3 .. 1e-9)...
        for (x, mu) in [
            (30u32, 10.0),
            (20, 10.0),
            (8, 2.0),
            (140, 100.0),
            (60, 25.0),
        ] {
            let exact = poisson_tail(x, mu);
            let approx = upper_tail(x as f64, mu, 0.0);
            let r = approx / exact;
            assert!(
                (0.7..1.4).contains(&r),
                "x={x} mu={mu}: {approx} vs {exact}"
            );
        }
        // ...and the right order of magnitude far beyond (scores of 1 - 1e-18).
        let (exact, approx) = (poisson_tail(50, 10.0), upper_tail(50.0, 10.0, 0.0));
        assert!(
            (0.1..10.0).contains(&(approx / exact)),
            "{approx} vs {exact}"
        );
        // Overdispersion widens the tail.
        assert!(upper_tail(30.0, 10.0, 0.2) > 10.0 * upper_tail(30.0, 10.0, 0.0));
    }

    #[test]
    fn threshold_is_the_first_count_past_p() {
        let t = threshold_for(10.0, 0.0, 1e-6);
        assert!(upper_tail(t as f64, 10.0, 0.0) <= 1e-6);
        assert!(upper_tail(t as f64 - 1.0, 10.0, 0.0) > 1e-6);
        assert!((28..=34).contains(&t), "{t}");
        assert!(threshold_for(10.0, 0.25, 1e-6) > t);
    }

    #[test]
    fn cusum_line_matches_its_score() {
        let p = RateParams::new(300, 20, 1.0 - 1e-6, 3);
        assert!((cusum_score(p.h) - (1.0 - 1e-6)).abs() < 1e-9, "{}", p.h);
    }
}
