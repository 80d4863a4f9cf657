//! One plan per kind of attack: the victim key's normal life and the
//! attack's calls, each with the description its ground truth carries.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::gen::agent::{AgentKind, ATTACKER_AGENTS};
use crate::gen::archetype::{project, Archetype, Built, LowVolume, Office, Pattern};
use crate::gen::catalog::{ESCALATION, PROBE_THEME, RECON_THEME, STS_CALLER_IDENTITY};
use crate::gen::key::{id_chars, Role};
use crate::gen::net::{Net24, ATTACKER_NETWORKS, FANOUT_OCTETS};
use crate::gen::traffic::{poisson, Day, ErrorKind, Habits, Sink, Span, HOUR_MS, MINUTE_MS};

use super::stage::{Plan, Stage, DORMANT_DAYS};

pub(super) fn stolen_key(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (office, habits) = Office::new(rng, &stage.span);
    let mut built = victim(Box::new(office), habits, "svc", rng);
    let agent = push_agent(&mut built, ATTACKER_AGENTS[rng.gen_range(0..2)]);
    let net = Net24(*ATTACKER_NETWORKS.choose(rng).expect("non-empty"));
    let hosts = [net.random_host(rng), net.random_host(rng)];
    let n = rng.gen_range(20..=60);
    let start = stage.start(rng, 22);
    let length = rng.gen_range(45 * MINUTE_MS..60 * MINUTE_MS);
    let mut sink = stage.sink(&built.habits);
    // Who am I first, then look around; a second host joins now and then.
    sink.foreign(start, hosts[0], &STS_CALLER_IDENTITY, agent, None);
    for i in 1..n {
        let action = *RECON_THEME.choose(rng).expect("non-empty");
        // The key was never meant for IAM: much of the recon fails.
        let denied = action.service() == "iam" && rng.gen_bool(0.5);
        let error = denied.then_some(ErrorKind::AccessDenied);
        let t = start + rng.gen_range(0..length);
        sink.foreign(t, hosts[usize::from(i % 3 == 2)], action, agent, error);
    }
    let description = format!(
        "stolen key used from {}/24, a network in a /16 the key never used, with {}: \
         {n} reconnaissance calls over about an hour",
        net.host(0),
        built.agents[usize::from(agent)],
    );
    Plan::new(Archetype::OfficeHours, built, stage, description)
}

pub(super) fn burst(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (office, habits) = Office::new(rng, &stage.span);
    let source = office.usual_source();
    let normal_15min = office.peak_per_hour() * stage.day.volume / 4.0;
    let n = (20.0 * normal_15min).round().max(60.0) as u32;
    // In business hours, when the key is busy anyway.
    let start = stage
        .day
        .at_local(office.utc_offset_min(), rng.gen_range(600.0..900.0));
    let built = victim(Box::new(office), habits, "svc", rng);
    let mut sink = stage.sink(&built.habits);
    for _ in 0..n {
        let t = start + rng.gen_range(0..15 * MINUTE_MS);
        sink.usual(rng, t, source);
    }
    let description = format!(
        "{n} calls in 15 minutes from the usual source {source}, about 20 times the key's \
         normal busiest 15 minutes ({normal_15min:.0} calls)"
    );
    Plan::new(Archetype::OfficeHours, built, stage, description)
}

pub(super) fn dormant_revival(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (key, habits) = low_volume_victim(rng, &stage.span);
    let source = key.usual_source();
    let built = victim(Box::new(key), habits, "legacy", rng);
    let used = rng.gen_range(3..=(stage.span.days - DORMANT_DAYS - 1).min(5));
    stage.day = stage.span.day(used + DORMANT_DAYS, stage.day.volume);
    let start = stage.start(rng, 20);
    let n = rng.gen_range(3..=8);
    let mut sink = stage.sink(&built.habits);
    sink.usual(rng, start, source);
    for _ in 1..n {
        let t = start + rng.gen_range(0..30 * MINUTE_MS);
        sink.usual(rng, t, source);
    }
    let description = format!(
        "key used on days 0-{} only, silent for {DORMANT_DAYS} days, then {n} calls on day {} \
         from {source}",
        used - 1,
        stage.day.index,
    );
    Plan {
        active: 0..used,
        ..Plan::new(Archetype::LowVolume, built, stage, description)
    }
}

pub(super) fn error_storm(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (office, habits) = Office::new(rng, &stage.span);
    let source = office.usual_source();
    let built = victim(Box::new(office), habits, "svc", rng);
    let n = rng.gen_range(200..=500);
    let start = stage.start(rng, 23);
    let mut sink = stage.sink(&built.habits);
    for _ in 0..n {
        let action = *PROBE_THEME.choose(rng).expect("non-empty");
        let t = start + rng.gen_range(0..10 * MINUTE_MS);
        sink.call(t, source, action, Some(ErrorKind::AccessDenied));
    }
    let description = format!(
        "{n} AccessDenied failures in 10 minutes from the usual source {source}: permission \
         probing across services"
    );
    Plan::new(Archetype::OfficeHours, built, stage, description)
}

pub(super) fn fanout(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    const HOSTS: usize = 50;
    let (key, habits) = low_volume_victim(rng, &stage.span);
    let mut built = victim(Box::new(key), habits, "app", rng);
    let agents: Vec<u8> = ATTACKER_AGENTS
        .iter()
        .map(|a| push_agent(&mut built, a))
        .collect();
    let hosts = fanout_hosts(rng, HOSTS);
    let start = stage.start(rng, 23);
    let mut sink = stage.sink(&built.habits);
    // Each host checks the key works, then uses it a little, within a minute.
    for &host in &hosts {
        let agent = *agents.choose(rng).expect("non-empty");
        let first = start + rng.gen_range(0..9 * MINUTE_MS);
        sink.foreign(first, host, &STS_CALLER_IDENTITY, agent, None);
        for _ in 0..rng.gen_range(0..=3) {
            let action = sink.habits().action(rng);
            let t = first + rng.gen_range(0..MINUTE_MS);
            sink.foreign(t, host, action, agent, None);
        }
    }
    let description =
        format!("key used from {HOSTS} distinct hosts, each in a different /16, within 10 minutes");
    Plan::new(Archetype::LowVolume, built, stage, description)
}

pub(super) fn scope_creep(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (key, habits) = low_volume_victim(rng, &stage.span);
    let source = key.usual_source();
    let built = victim(Box::new(key), habits, "svc", rng);
    let users = rng.gen_range(1..=2);
    let mut t = stage.start(rng, 23);
    let mut sink = stage.sink(&built.habits);
    for _ in 0..users {
        for action in ESCALATION {
            sink.call(t, source, action, None);
            t += rng.gen_range(5_000..40_000);
        }
    }
    let description = format!(
        "{} calls of iam:CreateUser, iam:AttachUserPolicy and iam:CreateAccessKey (backdoor \
         users) from the usual source {source}; the key never called IAM before",
        users * ESCALATION.len(),
    );
    Plan::new(Archetype::LowVolume, built, stage, description)
}

/// Calls per 5-minute bucket the rate attacks' victims make at their busiest
/// (after `volume`): ten, as in a steady service key; a ramp from there
/// crosses a 20-call floor after one doubling.
pub(super) const RATE_VICTIM_PER_BUCKET: f64 = 10.0;

/// An office-hours victim busy enough for rate attacks at any `volume`.
pub(super) fn busy_office(rng: &mut SmallRng, stage: &Stage, per_bucket: f64) -> (Office, Habits) {
    let (office, habits) = Office::new(rng, &stage.span);
    let peak = per_bucket * 12.0 / stage.day.volume.max(1e-3);
    (office.with_peak(peak), habits)
}

/// Extra calls from the usual source at `extra_per_hour(t)` calls an hour,
/// minute by minute, over `from..to`.
pub(super) fn extra_calls(
    rng: &mut SmallRng,
    sink: &mut Sink<'_>,
    source: Ipv4Addr,
    from: i64,
    to: i64,
    mut extra_per_hour: impl FnMut(i64) -> f64,
) -> u32 {
    let mut n = 0;
    let mut t0 = from;
    while t0 < to {
        for _ in 0..poisson(rng, extra_per_hour(t0).max(0.0) / 60.0) {
            let t = t0 + rng.gen_range(0..MINUTE_MS);
            sink.usual(rng, t, source);
            n += 1;
        }
        t0 += MINUTE_MS;
    }
    n
}

pub(super) fn ramp(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (office, habits) = busy_office(rng, stage, RATE_VICTIM_PER_BUCKET);
    let source = office.usual_source();
    let slope: f64 = *[2.0, 2.0, 3.0, 4.0].choose(rng).expect("non-empty");
    // From 64x down to where the slope gets in six hours at most.
    let hours = (64f64.ln() / slope.ln()).min(6.0);
    on_a_weekday(stage, &office, 540.0);
    let start = stage.day.at_local(office.utc_offset_min(), 540.0);
    let end = start + (hours * HOUR_MS as f64) as i64;
    let x8 = start + (8f64.ln() / slope.ln() * HOUR_MS as f64) as i64;
    let volume = stage.day.volume;
    let rate = |t: i64| office.rate(t) * volume;
    let habits_copy = habits.clone();
    let mut sink = stage.sink(&habits_copy);
    let n = extra_calls(rng, &mut sink, source, start, end, |t| {
        let x = slope.powf((t - start) as f64 / HOUR_MS as f64);
        rate(t) * (x - 1.0)
    });
    let built = victim(Box::new(office), habits, "svc", rng);
    let description = format!(
        "use multiplied by {slope} every hour for {hours:.1} hours from the usual source \
         {source} ({n} extra calls); 8x reached at {}",
        crate::decode::time::format_rfc3339(x8),
    );
    Plan {
        deadline_ms: Some(x8),
        ..Plan::new(Archetype::OfficeHours, built, stage, description)
    }
}

/// Moves the attack to a weekday (local time `at`): the rate attacks are
/// measured against a working day's usual level, ten calls per bucket.
pub(super) fn on_a_weekday(stage: &mut Stage, office: &Office, at: f64) {
    while crate::gen::traffic::is_local_weekend(
        stage.day.at_local(office.utc_offset_min(), at),
        office.utc_offset_min(),
    ) {
        let next = (stage.day.index + 1).min(stage.span.days - 1);
        let prev = stage.day.index.saturating_sub(3);
        let index = if next == stage.day.index { prev } else { next };
        stage.day = stage.span.day(index, stage.day.volume);
    }
}

/// `factor` times the usual rate for an hour from local minute `at`.
pub(super) fn step(
    rng: &mut SmallRng,
    stage: &mut Stage,
    factor: f64,
    at: f64,
    within: i64,
) -> Plan {
    let per_bucket = if factor < 4.0 {
        // In the evening, at 0.3 of the busiest hour: busy enough that three
        // times the hour's usual is counted in tens, still under the peak.
        RATE_VICTIM_PER_BUCKET * 3.5
    } else {
        RATE_VICTIM_PER_BUCKET
    };
    let (office, habits) = busy_office(rng, stage, per_bucket);
    let source = office.usual_source();
    on_a_weekday(stage, &office, at);
    let start = stage.day.at_local(office.utc_offset_min(), at);
    let volume = stage.day.volume;
    let habits_copy = habits.clone();
    let mut sink = stage.sink(&habits_copy);
    let n = extra_calls(rng, &mut sink, source, start, start + HOUR_MS, |t| {
        office.rate(t) * volume * (factor - 1.0)
    });
    let busiest = office.peak_per_hour() * volume / 12.0;
    let usual = office.rate(start) * volume / 12.0;
    let built = victim(Box::new(office), habits, "svc", rng);
    let description = format!(
        "{factor}x the hour's usual rate for an hour from the usual source {source} ({n} extra \
         calls; usual {usual:.1} per 5 minutes at this hour, {busiest:.1} at the busiest)",
    );
    Plan {
        deadline_ms: Some(start + within),
        ..Plan::new(Archetype::OfficeHours, built, stage, description)
    }
}

/// A low-volume key that also visited a few other networks on given days
/// (a developer's key in its first weeks): normal use, not the attack.
#[derive(Debug)]
pub(super) struct Visited {
    pub(super) inner: LowVolume,
    /// (day, offset into the day, host, calls).
    pub(super) visits: Vec<(u32, i64, Ipv4Addr, u32)>,
}

impl Pattern for Visited {
    fn steady(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        self.inner.steady(day, rng, sink);
        for &(d, offset, host, calls) in &self.visits {
            if d == day.index {
                for i in 0..i64::from(calls) {
                    let t = day.start_ms + offset + i * rng.gen_range(MINUTE_MS..20 * MINUTE_MS);
                    sink.usual(rng, t, host);
                }
            }
        }
    }
}

pub(super) fn roamed_then_stolen(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (key, habits) = low_volume_victim(rng, &stage.span);
    let home = key.usual_source();
    let taken = [[home.octets()[0], home.octets()[1]]];
    let mut visits = Vec::new();
    for day in [2u32, 4, 7, 10] {
        let net = Net24::random_outside(rng, &taken);
        let offset = rng.gen_range(8 * HOUR_MS..18 * HOUR_MS);
        visits.push((day, offset, net.random_host(rng), rng.gen_range(3..=6)));
    }
    let roamed: Vec<String> = visits
        .iter()
        .map(|v| {
            format!(
                "{}/24",
                Net24([v.2.octets()[0], v.2.octets()[1], v.2.octets()[2]]).host(0)
            )
        })
        .collect();
    let built = victim(Box::new(Visited { inner: key, visits }), habits, "app", rng);
    // The theft comes at least a month after the last new network.
    stage.day = stage
        .span
        .day(rng.gen_range(43..stage.span.days), stage.day.volume);
    let attacker = Net24(*ATTACKER_NETWORKS.choose(rng).expect("non-empty"));
    let host = attacker.random_host(rng);
    let start = stage.start(rng, 22);
    let n = rng.gen_range(10..=30);
    let mut sink = stage.sink(&built.habits);
    for _ in 0..n {
        let t = start + rng.gen_range(0..40 * MINUTE_MS);
        sink.usual(rng, t, host);
    }
    let description = format!(
        "key used from {} on days 2-10 (otherwise only from {home}), stolen on day {}: {n} of \
         its usual calls with its usual client from {}/24",
        roamed.join(", "),
        stage.day.index,
        attacker.host(0),
    );
    Plan {
        deadline_ms: Some(start + HOUR_MS),
        ..Plan::new(Archetype::LowVolume, built, stage, description)
    }
}

pub(super) fn stolen_sessions(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    // An instance role: a few calls every hour, around the clock.
    let (key, habits) = LowVolume::new(rng, &stage.span, 96.0, 24);
    let built = victim(Box::new(key), habits, "role", rng);
    let role = Role {
        name: format!("{}-instance-role", built.user_name),
        instance: format!("i-{}", id_chars(rng, 17).to_lowercase()),
        attacker_session: ["botocore-session", "exfil", "aws-go-sdk"]
            .choose(rng)
            .expect("non-empty")
            .to_string(),
        seed: rng.gen(),
    };
    let mut built = built;
    let agent = push_agent(&mut built, ATTACKER_AGENTS[rng.gen_range(0..3)]);
    let attacker = Net24(*ATTACKER_NETWORKS.choose(rng).expect("non-empty"));
    let hosts = [attacker.random_host(rng), attacker.random_host(rng)];
    let sessions = rng.gen_range(5..=15u8);
    let start = stage.start(rng, 20);
    let mut sink = stage.sink(&built.habits);
    let mut first_end = start;
    for s in 1..=sessions {
        let begin = start + i64::from(s - 1) * rng.gen_range(5 * MINUTE_MS..20 * MINUTE_MS);
        let calls = rng.gen_range(3..=12);
        let mut t = begin;
        for i in 0..calls {
            let action = if i == 0 {
                &STS_CALLER_IDENTITY
            } else {
                *RECON_THEME.choose(rng).expect("non-empty")
            };
            sink.foreign(t, hosts[usize::from(s % 2)], action, agent, None);
            t += rng.gen_range(2_000..4 * MINUTE_MS);
        }
        if s == 1 {
            first_end = t;
        }
    }
    // Number the attacker's sessions in the order they were made.
    let mut session = 0u8;
    let mut at = i64::MIN;
    for c in &mut stage.calls {
        if c.agent == agent {
            if c.time_ms != at && (session == 0 || c.action.name == STS_CALLER_IDENTITY.name) {
                session += 1;
            }
            at = c.time_ms;
            c.session = session;
        }
    }
    let description = format!(
        "{sessions} STS sessions of the role minted by a thief and used from {}/24 with {}, \
         each with 3-12 calls, while the instance's own sessions go on",
        attacker.host(0),
        built.agents[usize::from(agent)],
    );
    Plan {
        role: Some(role),
        deadline_ms: Some(first_end + 60_000),
        ..Plan::new(Archetype::LowVolume, built, stage, description)
    }
}

pub(super) fn quiet_daily(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let mean = rng.gen_range(6.0..20.0);
    let (key, habits) = LowVolume::new(rng, &stage.span, mean, 2);
    let source = key.usual_source();
    let built = victim(Box::new(key), habits, "svc", rng);
    let used = rng.gen_range(18..=22u32).min(stage.span.days - 18);
    // Back from day 35 on, like every attack.
    let gap = rng.gen_range(17..=22u32).min(stage.span.days - used - 1);
    stage.day = stage.span.day(used + gap, stage.day.volume);
    let start = stage.start(rng, 20);
    let n = rng.gen_range(3..=8);
    let mut sink = stage.sink(&built.habits);
    for i in 0..n {
        let t = start + i * rng.gen_range(MINUTE_MS..5 * MINUTE_MS);
        sink.usual(rng, t, source);
    }
    let description = format!(
        "key used every day on days 0-{}, silent for {gap} days, then {n} calls on day {} from \
         {source}",
        used - 1,
        stage.day.index,
    );
    Plan {
        active: 0..used,
        ..Plan::new(Archetype::LowVolume, built, stage, description)
    }
}

pub(super) fn new_identity(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
    let (key, habits) = low_volume_victim(rng, &stage.span);
    let mut built = victim(Box::new(key), habits, "tmp", rng);
    let agent = push_agent(&mut built, ATTACKER_AGENTS[rng.gen_range(0..3)]);
    let host = Net24(*ATTACKER_NETWORKS.choose(rng).expect("non-empty")).random_host(rng);
    let mut t = stage.start(rng, 23);
    let mut sink = stage.sink(&built.habits);
    sink.foreign(t, host, &STS_CALLER_IDENTITY, agent, None);
    for action in ESCALATION {
        t += rng.gen_range(5_000..40_000);
        sink.foreign(t, host, action, agent, None);
    }
    let description = format!(
        "a key and user never seen before call sts:GetCallerIdentity, iam:CreateUser, \
         iam:AttachUserPolicy and iam:CreateAccessKey from {host}"
    );
    Plan {
        active: 0..0,
        ..Plan::new(Archetype::LowVolume, built, stage, description)
    }
}

/// The victim's behaviour before the attack, named like any service.
pub(super) fn victim(
    pattern: Box<dyn Pattern>,
    habits: Habits,
    prefix: &str,
    rng: &mut SmallRng,
) -> Built {
    let p = project(rng);
    Built::new(
        pattern,
        habits,
        AgentKind::Server,
        format!("{prefix}-{p}"),
        format!("{p}-prod"),
        rng,
    )
}

/// A low-volume victim busy enough to be learned: 8–15 calls a day, at
/// least one every day.
pub(super) fn low_volume_victim(rng: &mut SmallRng, span: &Span) -> (LowVolume, Habits) {
    let mean = rng.gen_range(8.0..15.0);
    LowVolume::new(rng, span, mean, 1)
}

/// Adds a user agent the key never had; returns its index.
pub(super) fn push_agent(built: &mut Built, agent: &str) -> u8 {
    built.agents.push(agent.to_owned());
    u8::try_from(built.agents.len() - 1).expect("few agents")
}

/// `n` hosts, each in a /16 of its own.
pub(super) fn fanout_hosts(rng: &mut SmallRng, n: usize) -> Vec<Ipv4Addr> {
    let mut seen = HashSet::new();
    let mut hosts = Vec::with_capacity(n);
    while hosts.len() < n {
        let first = *FANOUT_OCTETS.choose(rng).expect("non-empty");
        let second: u8 = rng.gen();
        if seen.insert((first, second)) {
            hosts.push(Ipv4Addr::new(
                first,
                second,
                rng.gen(),
                rng.gen_range(1..=254),
            ));
        }
    }
    hosts
}
