//! Busy key with a sharp daily peak at 10:00 and quieter weekends.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, REGIONAL_THEME, REGIONS};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    day_factor, is_local_weekend, local_minute, upgrade_days, Day, ErrorKind, Habits, Sink, Span,
};

/// Local minute of the peak (10:00).
const PEAK_AT: f64 = 600.0;

/// A front end whose clients all sync at 10:00.
#[derive(Debug)]
pub(crate) struct DailyPeak {
    hosts: Vec<Ipv4Addr>,
    utc_offset_min: i32,
    /// Daytime calls per hour outside the peak.
    base_per_hour: f64,
    /// Calls per minute at the top of the peak.
    peak_per_min: f64,
    /// Width of the peak (standard deviation, minutes).
    sigma_min: f64,
}

impl DailyPeak {
    /// Peak part of the rate at `t`, per hour, and the daytime part.
    fn rates(&self, t: i64) -> (f64, f64) {
        let minute = local_minute(t, self.utc_offset_min);
        let weekend = is_local_weekend(t, self.utc_offset_min);
        let z = (minute - PEAK_AT) / self.sigma_min;
        let peak = self.peak_per_min * 60.0 * (-0.5 * z * z).exp();
        let daytime = if (420.0..1200.0).contains(&minute) {
            1.0
        } else {
            0.15
        };
        let base = self.base_per_hour * daytime;
        if weekend {
            (peak * 0.3, base * 0.4)
        } else {
            (peak, base)
        }
    }
}

impl Pattern for DailyPeak {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let wobble = day_factor(rng);
        let top = self.peak_per_min * 60.0;
        day.arrivals(
            rng,
            |t| {
                let (peak, base) = self.rates(t);
                (peak + base) * wobble
            },
            |rng, t| {
                let source = self.hosts[rng.gen_range(0..self.hosts.len())];
                let action = sink.habits().action(rng);
                // The peak runs into the service's rate limit every day.
                let throttled = 0.02 * self.rates(t).0 / top;
                let error = if rng.gen_bool(throttled) {
                    Some(ErrorKind::Throttled)
                } else {
                    sink.habits().error(rng)
                };
                sink.call(t, source, action, error);
            },
        );
    }
}

/// 100–400 calls an hour in the day, ~1000 calls in the peak 5 minutes.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let region = home_region(rng);
    let habits = Habits::new(
        REGIONAL_THEME,
        rng.gen_range(3..=6),
        0.002,
        upgrade_days(rng, span.days, 2),
        region,
    );
    let peak = DailyPeak {
        hosts: distinct_hosts(Net24::random(rng), rng.gen_range(6..=12), rng),
        utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
        base_per_hour: rng.gen_range(100.0..400.0),
        peak_per_min: rng.gen_range(150.0..250.0),
        sigma_min: rng.gen_range(8.0..14.0),
    };
    let p = project(rng);
    Built::new(
        Box::new(peak),
        habits,
        AgentKind::Server,
        format!("{p}-frontend"),
        format!("{p}-sessions"),
        rng,
    )
}
