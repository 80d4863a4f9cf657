//! Injected misuse with its ground truth. Each attack runs on a key of its
//! own that behaves like an office-hours service or a low-volume key for
//! weeks before; the attack's calls are planned up front, so the truth
//! ([`Attack`]) is known before a single event is generated.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::Range;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::agent::{AgentKind, ATTACKER_AGENTS};
use super::archetype::{project, Archetype, Built, LowVolume, Office, Pattern};
use super::catalog::{ESCALATION, PROBE_THEME, RECON_THEME, STS_CALLER_IDENTITY};
use super::key::Key;
use super::net::{Net24, ATTACKER_NETWORKS, FANOUT_OCTETS};
use super::traffic::{mix, Call, Day, ErrorKind, Habits, Sink, Span, HOUR_MS, MINUTE_MS};

/// A kind of key misuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// After weeks from one /24, the key is used from a never-seen network
    /// in another /16 (Tor exit, bulletproof hosting): 20–60 recon calls
    /// over an hour with attacker tooling.
    StolenKeyNewNetwork,
    /// ~20x the key's normal peak rate for 15 minutes, from its usual source.
    Burst,
    /// Used for 3–5 days, silent for 45 days, then a handful of calls.
    /// Needs a scenario of at least 50 days; skipped in shorter ones.
    DormantRevival,
    /// 200–500 AccessDenied failures in 10 minutes from the usual source:
    /// someone probing what the key may do.
    ErrorStorm,
    /// 50 distinct hosts in as many networks use the key within 10 minutes.
    Fanout,
    /// A key with a small stable action set creates an IAM user, gives it a
    /// policy and an access key, from its usual source.
    ScopeCreep,
}

impl AttackKind {
    /// Every kind, in the order the scenario injects them.
    pub const ALL: [AttackKind; 6] = [
        AttackKind::StolenKeyNewNetwork,
        AttackKind::Burst,
        AttackKind::DormantRevival,
        AttackKind::ErrorStorm,
        AttackKind::Fanout,
        AttackKind::ScopeCreep,
    ];

    /// The detector expected to find it.
    pub fn detector(self) -> &'static str {
        match self {
            AttackKind::StolenKeyNewNetwork => "new_source",
            AttackKind::Burst => "rate_spike",
            AttackKind::DormantRevival => "dormant_revival",
            AttackKind::ErrorStorm => "error_spike",
            AttackKind::Fanout => "source_fanout",
            AttackKind::ScopeCreep => "new_action",
        }
    }
}

/// Ground truth for one injected attack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attack {
    /// What happened.
    pub kind: AttackKind,
    /// The attacked key (carries no other attack).
    pub key_id: String,
    /// Time of the attack's first event, epoch ms.
    pub start_ms: i64,
    /// Time of the attack's last event, epoch ms (inclusive).
    pub end_ms: i64,
    /// The detector expected to find it.
    pub detector: &'static str,
    /// What the attack did, for people reading a truth file.
    pub description: String,
}

/// An attack with its key and its calls.
pub(crate) struct Planted {
    /// The attacked key; its normal traffic is generated like any other's.
    pub key: Key,
    /// Ground truth.
    pub attack: Attack,
    /// The attack's own calls, sorted by time.
    pub calls: Vec<Call>,
}

/// Silence before a dormant key comes back, in days.
const DORMANT_DAYS: u32 = 45;

/// Whether `kind` fits in a scenario of `days` days.
pub(crate) fn fits(kind: AttackKind, days: u32) -> bool {
    match kind {
        AttackKind::DormantRevival => days >= DORMANT_DAYS + 5,
        _ => days >= 1,
    }
}

/// The day an attack happens: from day 35 on in scenarios of 45 days or
/// more (weeks of learning first), else in the last quarter.
fn attack_day(rng: &mut SmallRng, days: u32) -> u32 {
    let first = if days >= 45 { 35 } else { days * 3 / 4 };
    rng.gen_range(first..days)
}

/// Everything an attack needs to know about the scenario.
pub(crate) struct Setting<'a> {
    /// The calendar.
    pub span: Span,
    /// Rate multiplier.
    pub volume: f64,
    /// Accounts keys belong to.
    pub accounts: &'a [String],
    /// User names taken so far.
    pub names: &'a mut HashSet<String>,
}

/// Plans attack `kind` on a new key with index `index`.
pub(crate) fn plant(kind: AttackKind, index: u32, seed: u64, setting: Setting<'_>) -> Planted {
    let Setting {
        span,
        volume,
        accounts,
        names,
    } = setting;
    let mut rng = SmallRng::seed_from_u64(seed);
    let rng = &mut rng;
    let mut stage = Stage {
        index,
        nonces: mix(seed, ATTACK_NONCES),
        span,
        day: span.day(attack_day(rng, span.days), volume),
        calls: Vec::new(),
    };
    let plan = match kind {
        AttackKind::StolenKeyNewNetwork => stolen_key(rng, &mut stage),
        AttackKind::Burst => burst(rng, &mut stage),
        AttackKind::DormantRevival => dormant_revival(rng, &mut stage),
        AttackKind::ErrorStorm => error_storm(rng, &mut stage),
        AttackKind::Fanout => fanout(rng, &mut stage),
        AttackKind::ScopeCreep => scope_creep(rng, &mut stage),
    };
    let mut calls = stage.calls;
    calls.sort_by_key(|c| c.time_ms);
    let mut key = Key::new(
        plan.archetype,
        seed,
        plan.built,
        accounts,
        names,
        rng,
        span.days,
    );
    key.active = plan.active;
    let attack = Attack {
        kind,
        key_id: key.identity.key_id.clone(),
        start_ms: calls.first().map_or(0, |c| c.time_ms),
        end_ms: calls.last().map_or(0, |c| c.time_ms),
        detector: kind.detector(),
        description: plan.description,
    };
    Planted { key, attack, calls }
}

/// Salts the nonces of attack calls.
const ATTACK_NONCES: u64 = 0xA77AC;

/// Where an attack's calls are laid out.
struct Stage {
    index: u32,
    nonces: u64,
    span: Span,
    /// The day of the attack.
    day: Day,
    calls: Vec<Call>,
}

impl Stage {
    /// Collects calls of the attacked key, made with its habits.
    fn sink<'a>(&'a mut self, habits: &'a Habits) -> Sink<'a> {
        Sink::new(
            self.index,
            self.day.index,
            habits,
            self.nonces,
            &mut self.calls,
        )
    }

    /// A start time on the attack day, at most `latest_hour` past midnight.
    fn start(&self, rng: &mut SmallRng, latest_hour: i64) -> i64 {
        self.day.start_ms + rng.gen_range(0..latest_hour * HOUR_MS)
    }
}

/// The attacked key and what it did.
struct Plan {
    archetype: Archetype,
    built: Built,
    /// Days of normal use.
    active: Range<u32>,
    description: String,
}

impl Plan {
    fn new(archetype: Archetype, built: Built, stage: &Stage, description: String) -> Plan {
        Plan {
            archetype,
            built,
            active: 0..stage.span.days,
            description,
        }
    }
}

fn stolen_key(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn burst(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn dormant_revival(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn error_storm(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn fanout(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn scope_creep(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

/// The victim's behaviour before the attack, named like any service.
fn victim(pattern: Box<dyn Pattern>, habits: Habits, prefix: &str, rng: &mut SmallRng) -> Built {
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
fn low_volume_victim(rng: &mut SmallRng, span: &Span) -> (LowVolume, Habits) {
    let mean = rng.gen_range(8.0..15.0);
    LowVolume::new(rng, span, mean, 1)
}

/// Adds a user agent the key never had; returns its index.
fn push_agent(built: &mut Built, agent: &str) -> u8 {
    built.agents.push(agent.to_owned());
    u8::try_from(built.agents.len() - 1).expect("few agents")
}

/// `n` hosts, each in a /16 of its own.
fn fanout_hosts(rng: &mut SmallRng, n: usize) -> Vec<Ipv4Addr> {
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
