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
use super::key::{id_chars, Key, Role};
use super::net::{Net24, ATTACKER_NETWORKS, FANOUT_OCTETS};
use super::traffic::{mix, poisson, Call, Day, ErrorKind, Habits, Sink, Span, HOUR_MS, MINUTE_MS};

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
    /// The key's use doubles (or quadruples) every hour for up to six hours,
    /// from its usual source and client: a slow exfiltration or a miner
    /// scaling out. Found in time when found before it reaches 8x.
    Ramp,
    /// Five times the key's usual rate for an hour, from its usual source:
    /// found in time when found within its first ten minutes.
    Step,
    /// Three times what is usual for the hour, in the evening, while still
    /// below the key's busiest hour of the day.
    Rise,
    /// A key that roamed over a few networks in its first weeks and then
    /// settled for a month is used from an attacker network with its own
    /// usual client and calls.
    RoamedThenStolen,
    /// A role's hourly STS sessions have weeks of history from the
    /// instance; a thief mints 5–15 sessions of the role from an attacker
    /// network, each with a handful of calls. Found in time when the first
    /// session is flagged.
    StolenSessions,
    /// A key used every day for three weeks falls silent for 16–22 days,
    /// then is used again from its usual source.
    QuietDaily,
    /// A brand-new user of a brand-new key creates a user, gives it a
    /// policy and an access key from an attacker network: no history at all.
    NewIdentity,
}

impl AttackKind {
    /// Every kind, in the order the scenario injects them.
    pub const ALL: [AttackKind; 13] = [
        AttackKind::StolenKeyNewNetwork,
        AttackKind::Burst,
        AttackKind::DormantRevival,
        AttackKind::ErrorStorm,
        AttackKind::Fanout,
        AttackKind::ScopeCreep,
        AttackKind::Ramp,
        AttackKind::Step,
        AttackKind::Rise,
        AttackKind::RoamedThenStolen,
        AttackKind::StolenSessions,
        AttackKind::QuietDaily,
        AttackKind::NewIdentity,
    ];

    /// The six classic kinds (before the detection second wave); the
    /// default scenario's attacks.
    pub const CLASSIC: [AttackKind; 6] = [
        AttackKind::StolenKeyNewNetwork,
        AttackKind::Burst,
        AttackKind::DormantRevival,
        AttackKind::ErrorStorm,
        AttackKind::Fanout,
        AttackKind::ScopeCreep,
    ];

    /// Name in truth files and reports.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::StolenKeyNewNetwork => "stolen_key_new_network",
            AttackKind::Burst => "burst",
            AttackKind::DormantRevival => "dormant_revival",
            AttackKind::ErrorStorm => "error_storm",
            AttackKind::Fanout => "fanout",
            AttackKind::ScopeCreep => "scope_creep",
            AttackKind::Ramp => "ramp",
            AttackKind::Step => "step",
            AttackKind::Rise => "rise",
            AttackKind::RoamedThenStolen => "roamed_then_stolen",
            AttackKind::StolenSessions => "stolen_sessions",
            AttackKind::QuietDaily => "quiet_daily",
            AttackKind::NewIdentity => "new_identity",
        }
    }

    /// The detector expected to find it.
    pub fn detector(self) -> &'static str {
        match self {
            AttackKind::StolenKeyNewNetwork => "new_source",
            AttackKind::Burst => "rate_spike",
            AttackKind::DormantRevival => "dormant_revival",
            AttackKind::ErrorStorm => "error_spike",
            AttackKind::Fanout => "source_fanout",
            AttackKind::ScopeCreep => "new_action",
            AttackKind::Ramp | AttackKind::Step | AttackKind::Rise => "rate_spike",
            AttackKind::RoamedThenStolen | AttackKind::StolenSessions => "new_source",
            AttackKind::QuietDaily => "dormant_revival",
            AttackKind::NewIdentity => "new_identity_sensitive_action",
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
    /// For an attack through a role's sessions: the role (as keywatch tracks
    /// it); a finding on any of its session keys counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// A finding counts as in time only up to here (a ramp before 8x, a
    /// step in its first minutes, the first stolen session); absent: an
    /// hour after the attack's last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
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
        AttackKind::RoamedThenStolen => days >= 45,
        AttackKind::QuietDaily => days >= 40,
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
        AttackKind::Ramp => ramp(rng, &mut stage),
        AttackKind::Step => step(rng, &mut stage, 5.0, 600.0, 10 * MINUTE_MS),
        AttackKind::Rise => step(rng, &mut stage, 3.0, 1140.0, 70 * MINUTE_MS),
        AttackKind::RoamedThenStolen => roamed_then_stolen(rng, &mut stage),
        AttackKind::StolenSessions => stolen_sessions(rng, &mut stage),
        AttackKind::QuietDaily => quiet_daily(rng, &mut stage),
        AttackKind::NewIdentity => new_identity(rng, &mut stage),
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
    key.identity.role = plan.role;
    let attack_calls: Vec<&Call> = calls.iter().collect();
    let first = attack_calls
        .iter()
        .find(|c| c.session > 0)
        .or(attack_calls.first())
        .copied();
    let attack = Attack {
        kind,
        key_id: first.map_or_else(
            || key.identity.key_id.clone(),
            |c| key.identity.for_call(c).key_id.clone(),
        ),
        start_ms: attack_calls.first().map_or(0, |c| c.time_ms),
        end_ms: attack_calls.last().map_or(0, |c| c.time_ms),
        detector: kind.detector(),
        description: plan.description,
        principal: key.identity.role_arn(),
        deadline_ms: plan.deadline_ms,
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
    /// Set for a role used through sessions.
    role: Option<Role>,
    /// See [`Attack::deadline_ms`].
    deadline_ms: Option<i64>,
}

impl Plan {
    fn new(archetype: Archetype, built: Built, stage: &Stage, description: String) -> Plan {
        Plan {
            archetype,
            built,
            active: 0..stage.span.days,
            description,
            role: None,
            deadline_ms: None,
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

/// Calls per 5-minute bucket the rate attacks' victims make at their busiest
/// (after `volume`): ten, as in a steady service key; a ramp from there
/// crosses a 20-call floor after one doubling.
const RATE_VICTIM_PER_BUCKET: f64 = 10.0;

/// An office-hours victim busy enough for rate attacks at any `volume`.
fn busy_office(rng: &mut SmallRng, stage: &Stage, per_bucket: f64) -> (Office, Habits) {
    let (office, habits) = Office::new(rng, &stage.span);
    let peak = per_bucket * 12.0 / stage.day.volume.max(1e-3);
    (office.with_peak(peak), habits)
}

/// Extra calls from the usual source at `extra_per_hour(t)` calls an hour,
/// minute by minute, over `from..to`.
fn extra_calls(
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

fn ramp(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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
fn on_a_weekday(stage: &mut Stage, office: &Office, at: f64) {
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
fn step(rng: &mut SmallRng, stage: &mut Stage, factor: f64, at: f64, within: i64) -> Plan {
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
struct Visited {
    inner: LowVolume,
    /// (day, offset into the day, host, calls).
    visits: Vec<(u32, i64, Ipv4Addr, u32)>,
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

fn roamed_then_stolen(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn stolen_sessions(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn quiet_daily(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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

fn new_identity(rng: &mut SmallRng, stage: &mut Stage) -> Plan {
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
