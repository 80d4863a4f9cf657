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

mod model;
mod params;
mod seasonal;
mod stats;

pub use model::{Crossing, RateModel, Test};
pub use params::*;
pub use seasonal::{Half, Seasonal, Slot};
pub use stats::{threshold_for, upper_tail};

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests;
