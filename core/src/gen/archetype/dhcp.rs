//! DHCP churn: steady use from an address that changes every day or two,
//! always inside one /24.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, REGIONS, SERVICE_THEMES};
use crate::gen::net::Net24;
use crate::gen::traffic::{
    day_factor, local_minute, log_uniform, upgrade_days, Day, Habits, Sink, Span, HOUR_MS,
};

/// A worker on a DHCP network.
#[derive(Debug)]
pub(crate) struct Dhcp {
    /// Leases: from when (epoch ms) the worker has which address; sorted.
    leases: Vec<(i64, Ipv4Addr)>,
    per_hour: f64,
    utc_offset_min: i32,
}

impl Dhcp {
    fn source(&self, t: i64) -> Ipv4Addr {
        let i = self.leases.partition_point(|(from, _)| *from <= t);
        self.leases[i.saturating_sub(1)].1
    }
}

impl Pattern for Dhcp {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let wobble = day_factor(rng);
        day.arrivals(
            rng,
            |t| {
                // Mild daily swing: a worker, not a person.
                let phase =
                    (local_minute(t, self.utc_offset_min) / 1440.0 - 0.4) * std::f64::consts::TAU;
                self.per_hour * wobble * (1.0 + 0.3 * phase.cos())
            },
            |rng, t| sink.usual(rng, t, self.source(t)),
        );
    }
}

/// A DHCP worker with 10–60 calls an hour and 18–48 h leases.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let net = Net24::random(rng);
    let mut leases = vec![(i64::MIN, net.random_host(rng))];
    let mut t = span.start_ms + rng.gen_range(2 * HOUR_MS..36 * HOUR_MS);
    while t < span.end_ms() {
        let previous = leases.last().expect("non-empty").1;
        let next = loop {
            let ip = net.random_host(rng);
            if ip != previous {
                break ip;
            }
        };
        leases.push((t, next));
        t += rng.gen_range(18 * HOUR_MS..48 * HOUR_MS);
    }
    let region = home_region(rng);
    let theme = *SERVICE_THEMES.choose(rng).expect("non-empty");
    let habits = Habits::new(
        theme,
        rng.gen_range(2..=6),
        0.004,
        upgrade_days(rng, span.days, 2),
        region,
    );
    let dhcp = Dhcp {
        leases,
        per_hour: log_uniform(rng, 10.0, 60.0),
        utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
    };
    let p = project(rng);
    Built::new(
        Box::new(dhcp),
        habits,
        AgentKind::Server,
        format!("{p}-worker"),
        format!("{p}-queue"),
        rng,
    )
}
