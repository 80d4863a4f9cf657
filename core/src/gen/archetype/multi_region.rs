//! Multi-region service: every day from five regions' egress networks.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{Region, REGIONAL_THEME, REGIONS};
use crate::gen::net::{distinct_hosts, Net24};
use crate::gen::traffic::{
    day_factor, local_minute, log_uniform, pick_front, upgrade_days, Day, Habits, Sink, Span,
};

/// How many regions the service runs in.
const SITES: usize = 5;

/// One regional deployment: its NAT addresses and load.
#[derive(Debug)]
struct Site {
    region: Region,
    hosts: Vec<Ipv4Addr>,
    per_hour: f64,
}

/// A service deployed in several regions.
#[derive(Debug)]
pub(crate) struct MultiRegion {
    sites: Vec<Site>,
}

impl Pattern for MultiRegion {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        for site in &self.sites {
            let offset = REGIONS[usize::from(site.region)].utc_offset_min;
            let wobble = day_factor(rng);
            day.arrivals(
                rng,
                |t| {
                    // Follows its region's day, never below half its peak.
                    let phase = (local_minute(t, offset) / 1440.0 - 0.6) * std::f64::consts::TAU;
                    site.per_hour * wobble * (0.75 + 0.25 * phase.cos())
                },
                |rng, t| {
                    let source = pick_front(rng, &site.hosts);
                    sink.usual_in(rng, t, source, site.region);
                },
            );
        }
    }
}

/// A five-region service, each region 5–40 calls an hour from 2–3 NAT
/// addresses in its own /16.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let mut regions: Vec<Region> = (0..REGIONS.len() as Region).collect();
    regions.shuffle(rng);
    let mut taken = Vec::new();
    let sites: Vec<Site> = regions
        .into_iter()
        .take(SITES)
        .map(|region| {
            let net = Net24::random_outside(rng, &taken);
            taken.push(net.slash16());
            Site {
                region,
                hosts: distinct_hosts(net, rng.gen_range(2..=3), rng),
                per_hour: log_uniform(rng, 5.0, 40.0),
            }
        })
        .collect();
    let habits = Habits::new(
        REGIONAL_THEME,
        rng.gen_range(3..=REGIONAL_THEME.len()),
        0.003,
        upgrade_days(rng, span.days, 2),
        sites[0].region,
    );
    let p = project(rng);
    Built::new(
        Box::new(MultiRegion { sites }),
        habits,
        AgentKind::Server,
        format!("edge-{p}"),
        format!("{p}-global"),
        rng,
    )
}
