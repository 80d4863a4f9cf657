//! `rate_spike`: requests in the current bucket above what the key's own
//! history expects for this hour of the day.
//!
//! The model ([`RateModel`]) learns an expected count per bucket for each
//! hour of the day (and, after a week, each hour of the week) from previous
//! days only, winsorised at its upper band, so an attack cannot raise its
//! own bar; the day's level so far scales the hour's mean. A bucket alerts as soon as its count
//! crosses the lower of two lines: the bucket test (the count is improbable
//! under a Poisson / negative binomial with the expected mean and the hour's
//! residual dispersion) and the sustained test (Page's CUSUM of the log ratio of
//! observed to expected over finished buckets, which finds a ramp long
//! before any single bucket is extreme). Both are floored at `min_count`.
//! Until the model has a few days of hourly history only a tenfold departure
//! from the key's level alerts. Every finding carries a score in [0, 1].
//!
//! A key used in bursts at irregular times is judged by the size of its
//! bursts instead: a bucket alerts only above three times the key's largest usual
//! bucket ([`BURST_FLOOR`]). Irregular means its days bring bursts the
//! hourly model does not expect, as a habit (on [`BURST_HABIT`] of its
//! days or more: a person's console sessions, CI runs and deploys at random
//! times), or its largest usual bucket is [`SPIKY_RATIO`] times its busiest
//! hour's mean per bucket. Keys whose load comes at fixed times (nightly
//! batches, daily peaks) keep the hourly model's lines at every hour.
//!
//! [`RateModel`]: crate::engine::baseline::RateModel

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::share::{round3, share_text};
use super::{hold, human_secs, Ctx, Report};
use crate::engine::baseline::{Crossing, Test, WARMUP_RATIO, WARM_DAYS};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{HeldOn, KeyState, Novel};
use crate::types::{invalid, ConfigError, HumanDuration};

/// `[detectors.rate_spike]`.
///
/// The rate model (see `engine::baseline`): an expected count per bucket for
/// each hour of the day, learned from previous days only and winsorised at
/// its upper band; a bucket alerts when its count is improbable under that
/// expectation (bucket test) or when the key stays above it across buckets
/// (sustained test, a CUSUM). Every finding carries a score in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSpikeConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Counting bucket (divides an hour).
    pub bucket: HumanDuration,
    /// Never alert below this many requests in one bucket.
    pub min_count: u32,
    /// The sensitivity knob: a bucket alerts when its score (one less the
    /// probability of a count at least this high under the key's model)
    /// reaches it; the sustained test's decision interval is derived from
    /// the same probability. Lower is more sensitive.
    pub min_score: f64,
    /// A new level is learned as it is once an hour of the day has been
    /// above its band on this many of its last seven days (whole days,
    /// 1d-7d): what recurs at the same hour is the key's, a one-off or a
    /// ramp is not; until then it is learned only up to the band, so it
    /// keeps alerting.
    pub accept_after: HumanDuration,
}

/// Five minutes: short enough to alert while an attack runs, long enough to
/// smooth per-second jitter (the design's default). 15 calls in 5 minutes:
/// a burst of a few dozen calls in a quarter hour from a key that normally
/// makes one or two is an enumeration script, and on the generated fleets
/// 15 found every such burst with no more false positives than 20 (which
/// missed a quarter of them); below it a "spike" of a low-volume key is
/// noise. A score of 1 - 1e-6: at 288 buckets a day a key whose traffic
/// matched its model exactly would cross by chance about once in ten years
/// of buckets, which keeps a fleet of thousands of keys quiet while a 5x step
/// on a key at 10 calls per bucket scores 1 - 1e-14. Three of the last seven
/// days: a new nightly job alerts on its first nights and is accepted on
/// the third even when it skips a night (in a row, a job that skipped one
/// night in three was never learned); an attacker repeating the same hour
/// is seen at least three times.
impl Default for RateSpikeConfig {
    fn default() -> Self {
        RateSpikeConfig {
            enabled: true,
            bucket: default_bucket(),
            min_count: 15,
            min_score: default_min_score(),
            accept_after: default_accept_after(),
        }
    }
}

impl RateSpikeConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        validate_rate_model(
            section,
            self.bucket,
            self.min_count,
            self.min_score,
            self.accept_after,
        )
    }
}

/// The checks `rate_spike` and `error_spike` share: one rate model.
pub(super) fn validate_rate_model(
    section: &str,
    bucket: HumanDuration,
    min_count: u32,
    min_score: f64,
    accept_after: HumanDuration,
) -> Result<(), ConfigError> {
    let s = bucket.0.as_secs();
    if !(10..=3600).contains(&s) || 3600 % s != 0 {
        return Err(invalid(
            &format!("{section}.bucket"),
            bucket,
            "must be between 10s and 1h and divide an hour evenly (e.g. 1m, 5m, 15m)",
        ));
    }
    if !(0.5..1.0).contains(&min_score) {
        return Err(invalid(
            &format!("{section}.min_score"),
            min_score,
            "must be at least 0.5 and below 1 (e.g. 0.999999)",
        ));
    }
    if !(1..=7).contains(&(accept_after.0.as_secs() / 86_400)) {
        return Err(invalid(
            &format!("{section}.accept_after"),
            accept_after,
            "must be between 1d and 7d (days of the last week)",
        ));
    }
    if min_count == 0 {
        return Err(invalid(
            &format!("{section}.min_count"),
            min_count,
            "must be at least 1",
        ));
    }
    Ok(())
}

pub(super) fn default_min_score() -> f64 {
    0.999_999
}

pub(super) fn default_accept_after() -> HumanDuration {
    HumanDuration::days(3)
}

pub(super) fn default_bucket() -> HumanDuration {
    HumanDuration::secs(300)
}

/// On a key used in bursts at irregular times, a bucket alerts only above
/// this multiple of the key's largest usual bucket (decayed peak).
pub const BURST_FLOOR: f32 = 3.0;

/// A key whose days bring a burst its hourly model does not expect on at
/// least this share of them (decayed, as every novelty share) is used in
/// bursts at irregular times. The hourly model's line is crossed by chance
/// about once in ten years of buckets; a key that crosses it on one day in
/// fifteen is showing a habit the model cannot describe, not an anomaly.
/// One in fifteen is the share at which `new_source` stops believing new
/// networks rare for a key (`alone_below`'s default, the lowest a key used
/// on weekdays can reach with one more): about two such days in a key's
/// memory of three weeks. It was `expected_novelty` (0.15): people, CI
/// runners and deploy keys at 10-15% were judged by the hour's mean, and a
/// session at an hour they seldom work was "150x the 0.1 expected".
pub const BURST_HABIT: f32 = 0.066;

/// A key whose largest usual bucket is this many times its busiest hour's
/// mean per bucket does its work in short bursts (a person's
/// session, a deploy): steady keys, daily peaks and nightly batches run at
/// 1-4 times.
pub const SPIKY_RATIO: f32 = 8.0;

/// Counts the event into its bucket and checks the bucket.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    // A call the provider did not serve (a rate limit pacing a busy key's
    // retries, an outage) is not more of its use (see `decode::failure`).
    if !s.detectors.rate_spike.enabled || ctx.ev.outcome.unserved() {
        return;
    }
    // A key used in bursts at irregular times (a person's sessions, CI and
    // deploys at random hours) is judged by the size of its bursts: a bucket
    // must be more than three times its largest usual one. Irregular: its days
    // bring bursts its hourly model does not expect, as a habit, or its
    // usual bucket dwarfs what any hour of the day expects.
    let habit = state.novelty.rate(Novel::Burst);
    let (crossing, over_line) =
        state
            .rate
            .observe(ctx.now, ctx.ev.count, &s.rate, ctx.learned_at, |m| {
                let level = m.level();
                let spiky = m
                    .seasonal()
                    .is_some_and(|x| x.busiest_mean() * SPIKY_RATIO < level);
                if habit >= BURST_HABIT || spiky {
                    // Saturating: a level near u32::MAX (a record with
                    // count 4e9; found by fuzzing) must not wrap to 0.
                    ((BURST_FLOOR * level).ceil() as u32).saturating_add(1)
                } else {
                    0
                }
            });
    // What the habit is made of: bursts over the model's line that were not
    // judged anomalous (in learning, under a burst key's floor), that a
    // verdict called benign, or that folded into a run already raised. A
    // burst that alerts is not one: else a thief's first burst would make
    // the key "bursty" and buy the next ones the higher floor.
    let Some(c) = crossing else {
        if over_line {
            state.novelty.saw(Novel::Burst);
        }
        return;
    };
    if ctx.quiet(state, Detector::RateSpike, 0) {
        return;
    }
    if ctx.is_taught(Detector::RateSpike, Some(c.count)) {
        if over_line {
            state.novelty.saw(Novel::Burst);
        }
        return;
    }
    let who = ctx.who();
    let (mut summary, observed, mut baseline) =
        describe(&c, &who, "requests", "requests", s.rate.bucket_s);
    baseline["burst_days_share"] = json!(round3(habit));
    if c.burst_floor > 0 {
        summary.pop();
        summary.push_str(&format!(
            "; the key is used in bursts at irregular times ({} bring one its hourly model does not expect), so only a bucket above three times its largest usual one alerts ({}).",
            share_text(habit, state.novelty.days()).trim_start_matches("on "),
            c.burst_floor
        ));
        baseline["usual_largest_bucket"] = json!(state.rate.level().round());
    }
    let report = Report {
        severity: severity(&c),
        summary,
        observed,
        baseline,
        threshold: json!(c.threshold),
    };
    // A burst in the hour before a job's own, no bigger than the job's
    // usual largest bucket, may be the job run an hour early (its time
    // zone's clocks went forward): held until the job's hour shows whether
    // it ran there too. One such hold stands for the early run.
    let hour = c.bucket_start / 3600;
    let early = matches!(c.test, Test::Bucket | Test::Sustained)
        .then(|| state.rate.job_after(hour, &s.rate))
        .flatten()
        .filter(|&(_, top)| c.count as f32 <= top);
    if let Some((needed, _)) = early {
        let open = state.rare.as_deref().is_some_and(|r| {
            r.held
                .iter()
                .any(|h| matches!(h.on, HeldOn::Run(_)) && h.until > ctx.now)
        });
        if !open {
            let needed = needed.ceil().clamp(1.0, f32::from(u16::MAX)) as u16;
            let mut report = report;
            report.observed["held_for_usual_run"] = json!(needed);
            let until = (hour + 2) * 3600;
            hold::hold_until(state, ctx, HeldOn::Run(needed), 0, until, report);
        }
        return;
    }
    let folded = state.folded_in_run(Detector::RateSpike as u8);
    ctx.emit_sized(state, Detector::RateSpike, 0, report, c.count);
    // A burst that folded into an open run (two raised already, no verdict
    // yet) is more of what the key does, as the recurrence rule learns a
    // level seen on three days: it joins the habit.
    if over_line && state.folded_in_run(Detector::RateSpike as u8) > folded {
        state.novelty.saw(Novel::Burst);
    }
}

/// High when the bucket is ten times what was expected or the score is
/// beyond doubt; medium otherwise.
pub(super) fn severity(c: &Crossing) -> Severity {
    let tenfold = c.expected > 0.0 && c.count as f32 >= 10.0 * c.expected.max(1.0);
    if tenfold || c.score >= 1.0 - 1e-9 {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// Summary, observed and baseline evidence of a crossing; `noun` is what
/// was counted ("requests", "failed requests"), `field` its evidence key.
pub(super) fn describe(
    c: &Crossing,
    who: &str,
    noun: &str,
    field: &str,
    bucket_s: u32,
) -> (String, serde_json::Value, serde_json::Value) {
    let at = |t: u32| crate::decode::time::format_rfc3339(t as i64 * 1000);
    let start = at(c.bucket_start);
    let span = human_secs(bucket_s as u64);
    let times = c.count as f32 / c.expected.max(0.1);
    let score = round_score(c.score);
    let mut summary = match c.test {
        Test::Bucket => format!(
            "{who} made {} {noun} in the {span} starting {start}, {times:.1}x the {:.1} expected for {:02}:00 UTC from {} days of history (upper band {}; score {score}).",
            c.count, c.expected, c.hour, c.days, c.upper_band
        ),
        Test::Sustained => format!(
            "{who} has stayed above its usual {noun} rate for {} buckets since {}: {} in the {span} starting {start}, {times:.1}x the {:.1} expected for {:02}:00 UTC from {} days of history (sustained: CUSUM {:.1}; score {score}).",
            c.span_buckets, at(c.span_start), c.count, c.expected, c.hour, c.days, c.cusum
        ),
        Test::WarmUp => format!(
            "{who} made {} {noun} in the {span} starting {start}, {times:.0}x its level so far of {:.0} per bucket (warm-up: until {WARM_DAYS} days of hourly history only {WARMUP_RATIO:.0}x its level alerts; score {score}).",
            c.count, c.expected
        ),
        Test::NoBaseline => format!(
            "{who} made {} {noun} in the {span} starting {start}; no baseline yet (alerts at {}; score {score}).",
            c.count, c.threshold
        ),
    };
    if c.month_end_unseen {
        summary.pop();
        summary.push_str(&format!(
            "; a month's end it has not seen yet, where only {WARMUP_RATIO:.0}x the expected alerts ({})."
            , c.threshold
        ));
    }
    let mut observed = json!({
        "bucket_start": start,
        "bucket_s": bucket_s,
        "test": c.test.name(),
        "score": score,
    });
    observed[field] = json!(c.count);
    if c.test == Test::Sustained {
        observed["cusum"] = json!(round1(c.cusum));
        observed["span"] = json!({
            "start": at(c.span_start),
            "buckets": c.span_buckets,
            "observed": round1(c.span_observed),
            "expected": round1(c.span_expected),
        });
    }
    let baseline = match c.test {
        Test::Bucket | Test::Sustained => json!({
            "model": "seasonal",
            "expected_per_bucket": round1(c.expected),
            "upper_band": c.upper_band,
            "dispersion": round3(c.dispersion),
            "days_of_history": c.days,
            "hour_slot_utc": c.hour,
            "weekday_aware": c.weekday_aware,
            "from_hour_of_week": c.from_weekly,
            "day_factor": round3(c.day_factor),
            "key_level": round1(c.level),
            "month_end_unseen": c.month_end_unseen,
        }),
        Test::WarmUp => json!({
            "model": "warm_up",
            "key_level": round1(c.level),
            "ratio": WARMUP_RATIO,
            "days_of_history": c.days,
        }),
        Test::NoBaseline => json!({ "model": "none" }),
    };
    (summary, observed, baseline)
}

fn round1(x: f32) -> f64 {
    (x as f64 * 10.0).round() / 10.0
}

/// Scores keep the digits that matter near 1: 0.999999, 0.99999999997.
fn round_score(s: f64) -> f64 {
    if s >= 1.0 - 1e-15 {
        return 1.0;
    }
    let digits = (-(1.0 - s).log10()).floor() as i32 + 2;
    let f = 10f64.powi(digits.clamp(2, 15));
    (s * f).floor() / f
}
