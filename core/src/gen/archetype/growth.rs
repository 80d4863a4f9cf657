//! Slow organic growth: ~2 % more traffic every day, and more hosts.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, REGIONS, SERVICE_THEMES};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    day_factor, local_minute, log_uniform, upgrade_days, Day, Habits, Sink, Span,
};

/// Daily growth factor.
const GROWTH: f64 = 1.02;

/// A growing service.
#[derive(Debug)]
pub(crate) struct Growth {
    /// Hosts in the order they join the fleet.
    hosts: Vec<Ipv4Addr>,
    /// Days between fleet additions.
    scale_every: u32,
    per_hour: f64,
    utc_offset_min: i32,
}

impl Pattern for Growth {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let level = self.per_hour * GROWTH.powf(f64::from(day.index)) * day_factor(rng);
        let fleet = (2 + (day.index / self.scale_every) as usize).min(self.hosts.len());
        day.arrivals(
            rng,
            |t| {
                let phase =
                    (local_minute(t, self.utc_offset_min) / 1440.0 - 0.6) * std::f64::consts::TAU;
                level * (1.0 + 0.5 * phase.cos())
            },
            |rng, t| {
                let source = self.hosts[rng.gen_range(0..fleet)];
                sink.usual(rng, t, source);
            },
        );
    }
}

/// A service starting at 15–60 calls an hour, growing 2 % a day; its fleet
/// of 2 hosts gains one every 7–12 days, all in one /24.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let region = home_region(rng);
    let theme = *SERVICE_THEMES.choose(rng).expect("non-empty");
    let habits = Habits::new(
        theme,
        rng.gen_range(3..=7),
        0.004,
        upgrade_days(rng, span.days, 2),
        region,
    );
    let growth = Growth {
        hosts: distinct_hosts(Net24::random(rng), 12, rng),
        scale_every: rng.gen_range(7..=12),
        per_hour: log_uniform(rng, 15.0, 60.0),
        utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
    };
    let p = project(rng);
    Built::new(
        Box::new(growth),
        habits,
        AgentKind::Server,
        format!("svc-{p}-api"),
        format!("{p}-data"),
        rng,
    )
}
