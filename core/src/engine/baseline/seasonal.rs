//! What the rate model learns per hour: a slot per hour of the day, an
//! envelope per hour of the week once a week is seen, and the day's level.

use serde::{Deserialize, Serialize};

use crate::types::Secs;

use super::params::*;
use super::stats::*;

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
pub(super) type Weekly = [Half; WEEK_HOURS];

/// The hour-of-week envelopes as a sequence (serde has no 168-arrays).
pub(super) mod weekly_serde {
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
    pub(super) slots: [Slot; 24],
    /// Largest bucket per hour of the week (UTC), boxed: allocated at
    /// [`WEEK_DAYS`] days of history.
    #[serde(default, with = "weekly_serde")]
    pub(super) weekly: Option<Box<Weekly>>,
    /// Days of hourly history (closes of hour 23).
    pub(super) days: u16,
    /// The half hour (since the epoch) the cached values below are for.
    pub(super) half: u32,
    /// Expected count per bucket: the hour's mean times the day's level
    /// (`exp(allowance)`), at least the hour's (or the hour of the week's)
    /// usual level.
    pub(super) lambda: f32,
    /// Noise of one bucket's log ratio (Poisson and residual), and the
    /// allowance for a busy day (log of the day's level).
    pub(super) sigma: Half,
    pub(super) allowance: Half,
    /// Last bucket of the hour just closed, at most what was usual for its
    /// largest: a job running over the hour carries its level into the
    /// first half of the next hour.
    pub(super) carry: Half,
    /// Bucket test's threshold for `hour` (floored at `min_count`).
    pub(super) band: u32,
    /// CUSUM, standard deviations, and the span it covers.
    pub(super) cusum: f32,
    pub(super) span_from: u32,
    pub(super) span_observed: f32,
    pub(super) span_expected: f32,
    /// A bucket that alerted (left out of the CUSUM, which restarts).
    pub(super) alerted: u32,
    /// Counts of the finished buckets of the current hour.
    pub(super) hour_sum: u32,
    /// Recent closed hours' counts, and what their slots expected (EWMA).
    pub(super) recent_observed: f32,
    pub(super) recent_expected: f32,
    /// `carry` holds the usual level of the hour before, which went
    /// missing today (a job moved an hour later by a change of clocks, or
    /// held up): it applies to the whole hour, not its first half. Lives
    /// for one hour, so it is not part of the saved state.
    #[serde(skip)]
    pub(super) carry_all: bool,
    /// The month's last two days (UTC; the last, the day before): how far
    /// the previous month's ran above their hours' means, as a factor (0:
    /// not seen yet). A month-end peak (billing, reports) is expected on
    /// the same days of the next month.
    #[serde(default)]
    pub(super) month_end: [Half; 2],
    /// The current month-end day's hourly means so far, and what their
    /// slots expected.
    #[serde(default)]
    pub(super) month_observed: f32,
    #[serde(default)]
    pub(super) month_expected: f32,
    /// Whether an hour falls on a month's end the model has not yet seen
    /// ([`Seasonal::calendar_line`]), cached for one hour: the hour since
    /// the epoch plus one, with [`UNSEEN`] set if so; 0 until computed, as
    /// after a restore.
    #[serde(skip)]
    pub(super) calendar: u32,
}

/// The bit of [`Seasonal::calendar`] that marks an unseen month's end.
const UNSEEN: u32 = 1 << 31;

/// Days from 0001-01-01 to 1970-01-01 (chrono's day count from the CE).
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Where the UTC day of `hour` (since the epoch) lies at its month's end: 0
/// on the last day, 1 on the day before; `None` on any other day.
pub(super) fn month_end_position(hour: u32) -> Option<usize> {
    use chrono::{Datelike, Days, NaiveDate};
    let day = i32::try_from(hour as i64 / 24 + EPOCH_DAYS_FROM_CE).ok()?;
    let date = NaiveDate::from_num_days_from_ce_opt(day)?;
    (0..2).find(|&k| {
        date.checked_add_days(Days::new(k as u64 + 1))
            .is_some_and(|d| d.day() == 1)
    })
}

impl Seasonal {
    pub(super) fn new() -> Seasonal {
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
            month_end: [Half::default(); 2],
            month_observed: 0.0,
            month_expected: 0.0,
            calendar: 0,
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
    pub(super) fn weekly_top(&self, hour: u32) -> f32 {
        self.weekly
            .as_deref()
            .map_or(0.0, |w| w[hour as usize % WEEK_HOURS].get())
    }

    /// The day's level so far: log of how far the last closed hours ran
    /// above (or below) their slots, within 3 day-level sigma.
    pub(super) fn day_level(&self, phi_day: f32) -> f32 {
        let recent = ((self.recent_observed + 1.0) / (self.recent_expected + 1.0)).ln();
        let cap = DAY_ALLOWANCE * phi_day.max(0.0).sqrt();
        // Never clamp(-cap, cap): it panics when cap is NaN.
        recent.max(-cap).min(cap)
    }

    /// Dispersion the tests use in an hour: the slot's residual one, or,
    /// when the hour of the week's envelope (one sample a week) sets the
    /// expectation, at least the prior.
    pub(super) fn test_phi(&self, hour: u32) -> f32 {
        let slot = &self.slots[(hour % 24) as usize];
        let (base, weekly) = self.expectation(hour);
        // As far as the week's envelope sets the expectation, its own
        // uncertainty (a sample a week) is added.
        let share = (1.0 - WEEKLY_SURE * base / weekly.max(base)).clamp(0.0, 1.0);
        // A month-end level is one sample a month: its own uncertainty too.
        let monthly = if self.month_factor(hour) > 1.0 {
            PHI_PRIOR
        } else {
            0.0
        };
        slot.resid_phi() + share * PHI_PRIOR + monthly
    }

    /// The factor the same day of last month's end ran at, on the month's
    /// last two days (UTC); 0 on other days or when not seen.
    pub(super) fn month_factor(&self, hour: u32) -> f32 {
        month_end_position(hour).map_or(0.0, |k| self.month_end[k].get())
    }

    /// The hour's expected count per bucket on a usual day, and the hour of
    /// the week's (its usual largest bucket less its Poisson noise).
    pub(super) fn expectation(&self, hour: u32) -> (f32, f32) {
        let w = self.weekly_top(hour);
        (
            self.slots[(hour % 24) as usize].lambda(),
            w - 2.0 * w.sqrt(),
        )
    }

    /// The hour (since the epoch) the cached values are for.
    pub(super) fn hour(&self) -> u32 {
        self.half / 2
    }

    /// The usual largest bucket of the hour `hour` (since the epoch).
    pub(super) fn usual_top(&self, hour: u32) -> f32 {
        self.slots[(hour % 24) as usize]
            .top
            .max(self.weekly_top(hour))
    }

    /// Caches the expected count and lines for the hour `hour` (since the
    /// epoch), its first half or its second.
    pub(super) fn prepare(&mut self, hour: u32, first_half: bool, p: &RateParams) {
        let half = hour.saturating_mul(2) + u32::from(!first_half);
        if self.half == half {
            return;
        }
        let slot = self.slots[(hour % 24) as usize];
        let (base, weekly) = self.expectation(hour);
        self.allowance = Half::new(self.day_level(slot.phi()).max(0.0));
        let mut lambda = (slot.mean.max(LAMBDA_MIN) * self.allowance.get().exp())
            .max(base)
            .max(weekly)
            .max(slot.mean * self.month_factor(hour));
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

    /// The least line of the hour `hour` (since the epoch; its lines
    /// prepared) on a month's end the model has not seen yet, 0 on any
    /// other. Such a day (the first month's end after the model was made,
    /// or after a restore from a state without one) is a day whose level
    /// nobody knows: billing and reports run at many times their usual on
    /// it, rising through the day. As in warm-up (tenfold the key's level
    /// so far), only a tenfold departure from what the day so far expects
    /// of the hour alerts; the next month's end is judged by this one's.
    /// The door: on those two days, once, a thief within tenfold of the
    /// day's expectation (a day already running high lifts it, by the
    /// day's allowance) is not a rate spike.
    pub(super) fn calendar_line(&mut self, hour: u32) -> u32 {
        let key = hour.wrapping_add(1) & !UNSEEN;
        if self.calendar & !UNSEEN != key {
            let unseen = month_end_position(hour).is_some_and(|k| self.month_end[k].get() == 0.0);
            self.calendar = key | if unseen { UNSEEN } else { 0 };
        }
        if self.calendar & UNSEEN == 0 {
            return 0;
        }
        (WARMUP_RATIO * self.lambda).ceil().min(u32::MAX as f32) as u32
    }

    /// The count at which the running CUSUM would cross `h` in this bucket.
    pub(super) fn sustained_line(&self, p: &RateParams) -> u32 {
        let need = p.h - self.cusum as f64 + CUSUM_K;
        let log_ratio = self.sigma.get() as f64 * need;
        let c = (self.lambda as f64 + 1.0) * log_ratio.exp() - 1.0;
        (c.ceil().max(0.0).min(u32::MAX as f64) as u32).max(p.min_count)
    }

    /// CUSUM value if the current bucket ended at `count`.
    pub(super) fn running(&self, count: u32) -> f64 {
        let y = ((count as f64 + 1.0) / (self.lambda as f64 + 1.0)).ln();
        (self.cusum as f64 + y / self.sigma.get() as f64 - CUSUM_K).max(0.0)
    }

    /// A finished bucket `bucket` with `x` enters the CUSUM.
    pub(super) fn finish_bucket(&mut self, bucket: u32, x: u32) {
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
    pub(super) fn empty_buckets(&mut self, n: u32) {
        if n == 0 || self.cusum == 0.0 {
            return;
        }
        let y = (1.0 / (self.lambda as f64 + 1.0)).ln();
        let step = y / self.sigma.get() as f64 - CUSUM_K;
        self.cusum = (self.cusum as f64 + n as f64 * step).max(0.0) as f32;
    }

    /// Learns one closed hour: its mean per bucket and its largest bucket.
    pub(super) fn learn(&mut self, hour: u32, mean: f32, top: f32, clamp: bool, p: &RateParams) {
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
        self.learn_month_end(hour, mean);
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

    /// On a month's last two days, adds the closed hour's mean (and its
    /// slot's) to the day's, and at the day's last hour keeps how far the
    /// day ran above its slots, for the same day of the next month. Learned
    /// as it was, once: what recurs at a month's end is the key's, and one
    /// month is all a key has before the next. The door: a thief who struck
    /// on the last day of a month (and was found then) is expected at the
    /// same size on the last day of the next.
    fn learn_month_end(&mut self, hour: u32, mean: f32) {
        let Some(k) = month_end_position(hour) else {
            return;
        };
        if hour % 24 == 0 {
            self.month_observed = 0.0;
            self.month_expected = 0.0;
        }
        let m0 = self.slots[(hour % 24) as usize].mean;
        self.month_observed += mean;
        self.month_expected += m0;
        if hour % 24 == 23 && self.month_expected > 0.0 {
            let factor = (self.month_observed + 0.1) / (self.month_expected + 0.1);
            self.month_end[k] = Half::new(factor.min(MONTH_END_MAX));
        }
    }

    /// One active day passes: the envelopes decay.
    pub(super) fn decay(&mut self, factor: f32) {
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
