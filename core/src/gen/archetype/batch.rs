//! Nightly batch: one large job at 03:00, a bigger one on Sundays.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, BATCH_THEME, REGIONS};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    pick_front, upgrade_days, weekday, Day, ErrorKind, Habits, Sink, Span, MINUTE_MS,
};

/// Share of reads that miss (a partition not written yet): failures that
/// are no security signal.
const MISSING: f64 = 0.004;

/// A nightly job.
#[derive(Debug)]
pub(crate) struct Batch {
    hosts: Vec<Ipv4Addr>,
    /// The scheduler's timezone: UTC or the team's.
    utc_offset_min: i32,
    calls: f64,
    minutes: f64,
}

impl Pattern for Batch {
    fn episodes(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let sunday = weekday(day.start_ms) == 6;
        let (scale, stretch) = if sunday {
            (rng.gen_range(2.5..4.0), 2.0)
        } else {
            (rng.gen_range(0.85..1.15), 1.0)
        };
        let start = day.at_local(self.utc_offset_min, 180.0 + rng.gen_range(0.0..5.0));
        let length = (self.minutes * stretch * rng.gen_range(0.9..1.1) * MINUTE_MS as f64) as i64;
        let n = (self.calls * scale * day.volume).round() as u32;
        for _ in 0..n {
            let t = start + rng.gen_range(0..length.max(1));
            let source = pick_front(rng, &self.hosts);
            let action = sink.habits().action(rng);
            let error = if rng.gen_bool(MISSING) {
                Some(ErrorKind::NotFound)
            } else {
                sink.habits().error(rng)
            };
            sink.call(t, source, action, error);
        }
    }
}

/// A job of 500–2000 calls over 20–40 minutes from 1–2 hosts.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let region = home_region(rng);
    let habits = Habits::new(
        BATCH_THEME,
        rng.gen_range(4..=BATCH_THEME.len()),
        0.002,
        upgrade_days(rng, span.days, 1),
        region,
    );
    let batch = Batch {
        hosts: distinct_hosts(Net24::random(rng), rng.gen_range(1..=2), rng),
        utc_offset_min: if rng.gen_bool(0.5) {
            0
        } else {
            REGIONS[usize::from(region)].utc_offset_min
        },
        calls: rng.gen_range(500.0..2000.0),
        minutes: rng.gen_range(20.0..40.0),
    };
    let p = project(rng);
    Built::new(
        Box::new(batch),
        habits,
        AgentKind::Server,
        format!("etl-{p}"),
        format!("{p}-lake"),
        rng,
    )
}
