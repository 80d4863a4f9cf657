//! CI deploy key: bursts at fixed times from churning runner addresses.

use rand::rngs::SmallRng;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, CI_THEME, STS_CALLER_IDENTITY};
use crate::gen::net::Net24;
use crate::gen::traffic::{
    poisson, upgrade_days, Day, ErrorKind, Habits, Sink, Span, DAY_MS, MINUTE_MS,
};

/// Share of runs that fail part-way.
const FAILED_RUN: f64 = 0.08;

/// A scheduled pipeline.
#[derive(Debug)]
pub(crate) struct Ci {
    runners: Net24,
    /// Scheduled run times, minutes after midnight UTC (cron runs in UTC).
    runs: Vec<i64>,
}

impl Pattern for Ci {
    /// A health check now and then between runs.
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        for _ in 0..poisson(rng, 1.5 * day.volume) {
            let t = day.start_ms + rng.gen_range(0..DAY_MS);
            sink.call(t, self.runners.random_host(rng), &STS_CALLER_IDENTITY, None);
        }
    }

    fn episodes(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        for &run in &self.runs {
            // Jobs start when a runner frees up: on time or a few minutes late.
            let start = day.start_ms + run * MINUTE_MS + rng.gen_range(0..4 * MINUTE_MS);
            let length = rng.gen_range(3 * MINUTE_MS..6 * MINUTE_MS);
            let runner = self.runners.random_host(rng);
            let planned = (rng.gen_range(150.0..600.0) * day.volume).round() as u32;
            let failed = rng.gen_bool(FAILED_RUN);
            let done = if failed {
                (f64::from(planned) * rng.gen_range(0.2..0.8)) as u32
            } else {
                planned
            };
            let mut times: Vec<i64> = (0..done)
                .map(|_| start + rng.gen_range(0..length))
                .collect();
            times.sort_unstable();
            for &t in &times {
                sink.usual(rng, t, runner);
            }
            if failed {
                // The failing step retries a few times before the job gives up.
                let at = times.last().copied().unwrap_or(start);
                let action = sink.habits().action(rng);
                let error = if rng.gen_bool(0.5) {
                    ErrorKind::Throttled
                } else {
                    ErrorKind::AccessDenied
                };
                for i in 0..rng.gen_range(5..=15) {
                    sink.call(at + i * 2_000, runner, action, Some(error));
                }
            }
        }
    }
}

/// A CI key running twice (02:00/14:00-like) or three times a day.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let minute = 15 * rng.gen_range(0..4);
    let runs = if rng.gen_bool(0.7) {
        let first = rng.gen_range(1..=5) * 60 + minute;
        vec![first, first + 12 * 60]
    } else {
        let first = rng.gen_range(0..=6) * 60 + minute;
        vec![first, first + 8 * 60, first + 16 * 60]
    };
    let habits = Habits::new(
        CI_THEME,
        rng.gen_range(8..=CI_THEME.len()),
        0.002,
        upgrade_days(rng, span.days, 2),
        home_region(rng),
    );
    let ci = Ci {
        runners: Net24::random(rng),
        runs,
    };
    let p = project(rng);
    Built::new(
        Box::new(ci),
        habits,
        AgentKind::Pipeline,
        format!("ci-{p}-deploy"),
        format!("{p}-artifacts"),
        rng,
    )
}
