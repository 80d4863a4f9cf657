//! Roaming person: home, office and a few other networks, and now and then
//! a hotel or café never seen before.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, HUMAN_THEME, PEOPLE, REGIONS};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    is_weekend, log_uniform, poisson, upgrade_days, Day, Habits, Sink, Span, MINUTE_MS,
};

/// A stay away from the usual networks.
#[derive(Debug)]
struct Trip {
    first_day: u32,
    last_day: u32,
    net: Net24,
}

/// A person's key on a laptop.
#[derive(Debug)]
pub(crate) struct Roaming {
    utc_offset_min: i32,
    office: Vec<Ipv4Addr>,
    home: Net24,
    /// Co-working space, a client's office, family, phone tethering.
    others: Vec<Net24>,
    trips: Vec<Trip>,
    per_hour: f64,
}

impl Roaming {
    /// A working session: calls spread over `minutes` from local `start`.
    fn session(
        &self,
        day: &Day,
        rng: &mut SmallRng,
        sink: &mut Sink<'_>,
        source: Ipv4Addr,
        start: (f64, f64),
        minutes: (f64, f64),
    ) {
        let from = day.at_local(self.utc_offset_min, rng.gen_range(start.0..start.1));
        let length = (rng.gen_range(minutes.0..minutes.1) * MINUTE_MS as f64) as i64;
        let mean = self.per_hour * day.volume * length as f64 / (60.0 * MINUTE_MS as f64);
        for _ in 0..poisson(rng, mean) {
            let t = from + rng.gen_range(0..length);
            sink.usual(rng, t, source);
        }
    }
}

impl Pattern for Roaming {
    fn episodes(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let weekend = is_weekend(day.start_ms);
        let trip = self
            .trips
            .iter()
            .find(|t| (t.first_day..=t.last_day).contains(&day.index));
        if let Some(trip) = trip {
            let hotel = trip.net.random_host(rng);
            self.session(day, rng, sink, hotel, (420.0, 540.0), (20.0, 60.0));
            self.session(day, rng, sink, hotel, (1140.0, 1320.0), (30.0, 120.0));
            return;
        }
        if !weekend {
            let desk = *self.office.choose(rng).expect("non-empty");
            if rng.gen_bool(0.85) {
                self.session(day, rng, sink, desk, (510.0, 630.0), (60.0, 180.0));
            }
            if rng.gen_bool(0.8) {
                self.session(day, rng, sink, desk, (780.0, 900.0), (60.0, 180.0));
            }
        }
        if rng.gen_bool(if weekend { 0.4 } else { 0.35 }) {
            let home = self.home.random_host(rng);
            self.session(day, rng, sink, home, (1140.0, 1320.0), (20.0, 90.0));
        }
        if rng.gen_bool(if weekend { 0.2 } else { 0.12 }) {
            let other = self.others.choose(rng).expect("non-empty").random_host(rng);
            self.session(day, rng, sink, other, (660.0, 1080.0), (30.0, 120.0));
        }
    }
}

/// A person with six usual networks and a trip every 5–10 days.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let office = Net24::random(rng);
    let home = Net24::random(rng);
    let others: Vec<Net24> = (0..4).map(|_| Net24::random(rng)).collect();
    let mut taken: Vec<[u8; 2]> = [office, home]
        .iter()
        .chain(&others)
        .map(|n| n.slash16())
        .collect();
    let mut trips = Vec::new();
    let mut day = rng.gen_range(5..=10);
    while day < span.days {
        let net = Net24::random_outside(rng, &taken);
        taken.push(net.slash16());
        let last_day = day + rng.gen_range(0..=2);
        trips.push(Trip {
            first_day: day,
            last_day,
            net,
        });
        day = last_day + rng.gen_range(5..=10);
    }
    let region = home_region(rng);
    let habits = Habits::new(
        HUMAN_THEME,
        rng.gen_range(8..=12),
        0.01,
        upgrade_days(rng, span.days, 2),
        region,
    );
    let roaming = Roaming {
        utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
        office: distinct_hosts(office, 2, rng),
        home,
        others,
        trips,
        per_hour: log_uniform(rng, 20.0, 90.0),
    };
    let person = *PEOPLE.choose(rng).expect("non-empty");
    Built::new(
        Box::new(roaming),
        habits,
        AgentKind::Laptop,
        person.to_owned(),
        format!("{}-sandbox", person.replace('.', "-")),
        rng,
    )
}
