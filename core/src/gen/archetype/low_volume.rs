//! Low-volume key: a handful of calls a day at random hours.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{home_region, SERVICE_THEMES};
use crate::gen::net::Net24;
use crate::gen::traffic::{pick_front, poisson, upgrade_days, Day, Habits, Sink, Span, DAY_MS};

/// A key used a few times a day.
#[derive(Debug)]
pub(crate) struct LowVolume {
    daily_mean: f64,
    min_per_day: u32,
    hosts: Vec<Ipv4Addr>,
}

impl LowVolume {
    /// A key averaging `daily_mean` calls a day (scaled by volume), never
    /// fewer than `min_per_day`, from one address or two (the second often
    /// in another /24), with 1–4 actions.
    pub fn new(
        rng: &mut SmallRng,
        span: &Span,
        daily_mean: f64,
        min_per_day: u32,
    ) -> (LowVolume, Habits) {
        let theme = *SERVICE_THEMES.choose(rng).expect("non-empty");
        let habits = Habits::new(
            theme,
            rng.gen_range(1..=4),
            0.01,
            upgrade_days(rng, span.days, 1),
            home_region(rng),
        );
        let main = Net24::random(rng);
        let mut hosts = vec![main.random_host(rng)];
        if rng.gen_bool(0.5) {
            let net = if rng.gen_bool(0.5) {
                main
            } else {
                Net24::random(rng)
            };
            let second = net.random_host(rng);
            if second != hosts[0] {
                hosts.push(second);
            }
        }
        let key = LowVolume {
            daily_mean,
            min_per_day,
            hosts,
        };
        (key, habits)
    }

    /// The address most calls come from.
    pub fn usual_source(&self) -> Ipv4Addr {
        self.hosts[0]
    }
}

impl Pattern for LowVolume {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let n = poisson(rng, self.daily_mean * day.volume).max(self.min_per_day);
        for _ in 0..n {
            let t = day.start_ms + rng.gen_range(0..DAY_MS);
            let source = pick_front(rng, &self.hosts);
            sink.usual(rng, t, source);
        }
    }
}

/// A low-volume key with 2–15 calls a day.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let mean = rng.gen_range(2.0..15.0);
    let (key, habits) = LowVolume::new(rng, span, mean, 0);
    let p = project(rng);
    Built::new(
        Box::new(key),
        habits,
        AgentKind::Server,
        format!("{p}-cron"),
        format!("{p}-jobs"),
        rng,
    )
}
