//! The rate model's constants (each with its reasoning) and the
//! parameters a detector's configuration resolves to.

/// Slack of the CUSUM, in standard deviations: a sustained elevation of up
/// to 1.5 sigma (a busy day) never accumulates.
pub const CUSUM_K: f64 = 1.5;
/// An hour whose calls today are below this share of its usual ones went
/// missing: its usual level is accepted in the hour after it.
pub(super) const MISSED_SHARE: f32 = 0.25;
/// Days of hourly history before the seasonal model is trusted.
pub const WARM_DAYS: u16 = 3;
/// Before that, a bucket alerts only at this multiple of the key's level.
pub const WARMUP_RATIO: f32 = 10.0;
/// Weight of each new day in a slot's mean and dispersion (half-life ~3
/// days: growth of a few % a day is followed with a lag of ~10 %).
pub(super) const ALPHA: f32 = 0.2;
/// Weight of each new day in a slot's dispersion (slower than the mean:
/// a steadier estimate of how much whole days vary).
pub(super) const ALPHA_PHI: f32 = 0.1;
/// Day-level standard deviations (of `sqrt(phi)`) the CUSUM allows when the
/// last hours ran that high: whole days that run high move every bucket of
/// the day together, which a test of independent buckets would add up.
pub(super) const DAY_ALLOWANCE: f32 = 3.0;
/// Weight of the latest closed hour in the recent level (~3 hours).
pub(super) const RECENT: f32 = 0.3;
/// Dispersion bounds and the prior of a new slot (a floor of 14 % day to day).
pub(super) const PHI_MIN: f32 = 0.02;
pub(super) const PHI_MAX: f32 = 4.0;
/// Dispersion warm-up scores are computed with (geometric: wide).
pub(super) const WARMUP_PHI: f32 = 1.0;
pub(super) const PHI_PRIOR: f32 = 0.25;
/// Tail probability of the band learning is winsorised at (largest bucket).
pub(super) const P_LEARN: f64 = 1e-3;
/// Standard deviations of the band an hour's mean is winsorised at.
pub(super) const Z_LEARN: f32 = 3.0;
/// Smallest expected count per bucket.
pub(super) const LAMBDA_MIN: f32 = 0.05;
/// Bounds of the residual (within-day) dispersion the tests use once the
/// day's level is known; the prior is [`PHI_PRIOR`], and it never exceeds
/// the slot's day-to-day dispersion.
pub(super) const RESID_MIN: f32 = 0.05;
/// Expected calls in an hour before it teaches the residual dispersion
/// (fewer: its Poisson noise would swamp it).
pub(super) const RESID_HOUR_MIN: f32 = 24.0;
/// Days of hourly history before the hour-of-week component is allocated.
pub const WEEK_DAYS: u16 = 7;
/// The days a level must recur on to be learned: the last seven of an hour.
pub(super) const RECUR_MASK: u8 = 0x7F;
/// Decay of an hour-of-week's envelope each week it is seen again (0.7
/// until the weekend batches of nightly jobs alerted on their bigger weeks).
pub(super) const WEEKLY_DECAY: f32 = 0.85;
/// Largest month-end factor remembered: a month's last day at fifty times
/// its hours' means is already beyond any billing run; more is not
/// learned as usual.
pub(super) const MONTH_END_MAX: f32 = 50.0;
/// Hours in a week.
pub(super) const WEEK_HOURS: usize = 168;
/// The week's envelope adds its own uncertainty only beyond this multiple
/// of the hour's usual expectation (a weekday unlike the others).
pub(super) const WEEKLY_SURE: f32 = 1.5;

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

    pub(super) fn buckets_per_hour(&self) -> u32 {
        (3600 / self.bucket_s).max(1)
    }
}

/// Siegmund's approximation of a one-sided CUSUM's in-control run length
/// with slack `k` and interval `h`, on standard normal increments:
/// `ARL ~ exp(2k(h + 1.166)) / (2k^2)`. Solved for `ARL = 1/p`.
pub(super) fn cusum_h(p: f64) -> f64 {
    ((2.0 * CUSUM_K * CUSUM_K / p).ln() / (2.0 * CUSUM_K) - 1.166).max(1.0)
}

/// The score of a CUSUM value: one less the chance rate (per bucket) of
/// reaching it in control, by the same approximation.
pub(super) fn cusum_score(s: f64) -> f64 {
    let p = 2.0 * CUSUM_K * CUSUM_K * (-2.0 * CUSUM_K * (s + 1.166)).exp();
    (1.0 - p).clamp(0.0, 1.0)
}
