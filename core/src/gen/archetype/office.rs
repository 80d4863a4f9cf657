//! Office-hours service: a strong daily rhythm in its own timezone.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, REGIONS, SERVICE_THEMES};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    day_factor, is_local_weekend, local_minute, log_uniform, pick_front, upgrade_days, Day, Habits,
    Sink, Span,
};

/// Relative activity by local hour: busy 08–19 with a lunch dip, near
/// silent at night.
const SHAPE: [f64; 24] = [
    0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.03, 0.15, 0.7, 1.0, 1.0, 1.0, 0.75, 0.9, 1.0, 1.0, 0.95,
    0.8, 0.55, 0.3, 0.1, 0.05, 0.03, 0.02,
];

/// Weekend activity relative to a weekday.
const WEEKEND: f64 = 0.2;

/// An office-hours service.
#[derive(Debug)]
pub(crate) struct Office {
    utc_offset_min: i32,
    peak_per_hour: f64,
    hosts: Vec<Ipv4Addr>,
}

impl Office {
    /// A service with 20–200 calls an hour at its peak, 3–8 actions,
    /// ~0.5 % errors, 1–3 hosts in one /24.
    pub fn new(rng: &mut SmallRng, span: &Span) -> (Office, Habits) {
        let region = home_region(rng);
        let theme = *SERVICE_THEMES.choose(rng).expect("non-empty");
        let habits = Habits::new(
            theme,
            rng.gen_range(3..=8),
            rng.gen_range(0.003..0.008),
            upgrade_days(rng, span.days, 2),
            region,
        );
        let hosts = distinct_hosts(Net24::random(rng), rng.gen_range(1..=3), rng);
        let office = Office {
            utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
            peak_per_hour: log_uniform(rng, 20.0, 200.0),
            hosts,
        };
        (office, habits)
    }

    /// The address most calls come from.
    pub fn usual_source(&self) -> Ipv4Addr {
        self.hosts[0]
    }

    /// Mean calls per hour at the busiest weekday hours (before `volume`).
    pub fn peak_per_hour(&self) -> f64 {
        self.peak_per_hour
    }

    /// The key's timezone.
    pub fn utc_offset_min(&self) -> i32 {
        self.utc_offset_min
    }

    /// A busier copy: `peak_per_hour` at the busiest weekday hours.
    pub fn with_peak(mut self, peak_per_hour: f64) -> Office {
        self.peak_per_hour = peak_per_hour;
        self
    }

    /// Mean calls per hour at `t` (before `volume` and the day's wobble).
    pub fn rate(&self, t: i64) -> f64 {
        let hour = (local_minute(t, self.utc_offset_min) / 60.0) as usize;
        let weekend = if is_local_weekend(t, self.utc_offset_min) {
            WEEKEND
        } else {
            1.0
        };
        self.peak_per_hour * SHAPE[hour.min(23)] * weekend
    }
}

impl Pattern for Office {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let wobble = day_factor(rng);
        day.arrivals(
            rng,
            |t| self.rate(t) * wobble,
            |rng, t| {
                let source = pick_front(rng, &self.hosts);
                sink.usual(rng, t, source);
            },
        );
    }
}

/// An office-hours key.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let (office, habits) = Office::new(rng, span);
    let p = project(rng);
    Built::new(
        Box::new(office),
        habits,
        AgentKind::Server,
        format!("svc-{p}"),
        format!("{p}-prod"),
        rng,
    )
}
