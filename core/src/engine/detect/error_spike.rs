//! `error_spike`: failed requests (AccessDenied, 401/403, names that do not
//! exist) in the current bucket above what the key's own history expects — a
//! permission probe, or a key being used for something it was never granted.
//! Rate limits and the provider's outages are not counted: they are the
//! provider's failures, not the caller's ([`Failure`]). The same
//! rate model as `rate_spike` ([`RateModel`]), counting failures only; most
//! keys hardly fail, so the `min_count` floor does most of the work.
//!
//! [`RateModel`]: crate::engine::baseline::RateModel

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rate_spike::{self, describe, severity};
use super::{Ctx, Report};
use crate::decode::{Failure, Outcome};
use crate::engine::baseline::Test;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::types::{ConfigError, HumanDuration};

/// `[detectors.error_spike]`: the same rate model on failed requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorSpikeConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Counting bucket.
    pub bucket: HumanDuration,
    /// Never alert below this many failed requests in one bucket.
    pub min_count: u32,
    /// As `rate_spike.min_score`, on failures.
    pub min_score: f64,
    /// As `rate_spike.accept_after`, on failures.
    pub accept_after: HumanDuration,
}

/// 20 failures in 5 minutes: a failing deploy retries a few times, a
/// permission probe fails dozens of times. Score and acceptance as
/// `rate_spike`.
impl Default for ErrorSpikeConfig {
    fn default() -> Self {
        ErrorSpikeConfig {
            enabled: true,
            bucket: rate_spike::default_bucket(),
            min_count: 20,
            min_score: rate_spike::default_min_score(),
            accept_after: rate_spike::default_accept_after(),
        }
    }
}

impl ErrorSpikeConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        rate_spike::validate_rate_model(
            section,
            self.bucket,
            self.min_count,
            self.min_score,
            self.accept_after,
        )
    }
}

/// Counts a failed event into its bucket and checks the bucket.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    let Outcome::Failure { code } = &ctx.ev.outcome else {
        return;
    };
    // Only the caller's failures: a rate limit or an outage is the
    // provider's, not a probe (see `decode::failure`).
    if !s.detectors.error_spike.enabled || Failure::of_code(code.as_deref()) != Failure::Caller {
        return;
    }
    let (Some(c), _) =
        state
            .errors
            .observe(ctx.now, ctx.ev.count, &s.errors, ctx.learned_at, |_| 0)
    else {
        return;
    };
    if ctx.quiet(state, Detector::ErrorSpike, 0) {
        return;
    }
    let code = code.as_deref().unwrap_or("unspecified");
    let who = format!("{} (latest error {code})", ctx.who());
    let (mut summary, mut observed, baseline) =
        describe(&c, &who, "failed requests", "failures", s.errors.bucket_s);
    observed["latest_error_code"] = json!(code);
    // A settled key with no failure of its own in its history (rate limits
    // and outages are not its own) failing this often at once is a probe:
    // high, where a key with no request history at all is only medium.
    let never_failed = c.test == Test::NoBaseline;
    if never_failed {
        summary = summary.replace("no baseline yet", "it had not failed before");
    }
    let report = Report {
        severity: if never_failed {
            Severity::High
        } else {
            severity(&c)
        },
        summary,
        observed,
        baseline,
        threshold: json!(c.threshold),
    };
    ctx.emit_sized(state, Detector::ErrorSpike, 0, report, c.count);
}
