//! Injected misuse with its ground truth. Each attack runs on a key of its
//! own that behaves like an office-hours service or a low-volume key for
//! weeks before; the attack's calls are planned up front, so the truth
//! ([`Attack`]) is known before a single event is generated.

use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::key::Key;
use super::traffic::{mix, Call, Span, MINUTE_MS};

mod plans;
mod stage;

use plans::*;
use stage::{Stage, ATTACK_NONCES, DORMANT_DAYS};

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
