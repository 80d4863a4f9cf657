//! Normal key behaviour: ten archetypes of legitimate use, each a
//! [`Pattern`] of when and from where a key is used, plus the [`Habits`] of
//! what it calls. Every archetype holds some shape that fools a naive
//! detector (rhythms, bursts, churn inside a network, growth, long gaps).

mod batch;
mod ci;
mod daily_peak;
mod dhcp;
mod growth;
mod low_volume;
mod monthly;
mod multi_region;
pub(crate) mod office;
mod roaming;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::Serialize;

pub(crate) use low_volume::LowVolume;
pub(crate) use office::Office;

use super::agent::{agent_versions, AgentKind};
use super::catalog::PROJECTS;
use super::traffic::{Day, Habits, Sink, Span};

/// A kind of legitimate key use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Archetype {
    /// A service used in office hours of its timezone: busy 08–19, near
    /// silent at night, weekends at a fifth of weekdays; 1–3 hosts in one
    /// /24; client minor-version upgrades.
    OfficeHours,
    /// A deploy pipeline: 150–600 calls within ~5 minutes at fixed times
    /// each day, from a fresh CI runner address in one /24 every run,
    /// near idle otherwise; now and then a failed job with 5–15 errors.
    CiDeploy,
    /// A steady worker whose address changes every day or two (DHCP
    /// leases), always inside one /24.
    DhcpChurn,
    /// A service deployed in five regions, used every day from each
    /// region's egress network (five different /16s); region field matches.
    MultiRegion,
    /// A service whose traffic grows ~2 % a day (the last day of a 50-day
    /// scenario is ~2.6x the first), adding hosts inside its /24 as it grows.
    Growth,
    /// 2–15 calls a day at random hours from one or two addresses.
    LowVolume,
    /// A person's key: a pool of ~6 home and office networks, plus every
    /// 5–10 days a brand-new network (hotel, café) in a fresh /16. A
    /// genuinely hard case for a new-network detector.
    Roaming,
    /// One large job at 03:00 (500–2000 calls in 20–40 minutes), a bigger
    /// and longer run on Sundays.
    NightlyBatch,
    /// A report run on the 1st of each month only: gaps of ~30 days.
    Monthly,
    /// A busy key with a sharp daily peak at 10:00 local (about 1000 calls
    /// in the peak 5 minutes, with some throttling), and much quieter
    /// weekends.
    DailyPeak,
}

impl Archetype {
    /// Every archetype.
    pub const ALL: [Archetype; 10] = [
        Archetype::OfficeHours,
        Archetype::CiDeploy,
        Archetype::DhcpChurn,
        Archetype::MultiRegion,
        Archetype::Growth,
        Archetype::LowVolume,
        Archetype::Roaming,
        Archetype::NightlyBatch,
        Archetype::Monthly,
        Archetype::DailyPeak,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Archetype::OfficeHours => "office_hours",
            Archetype::CiDeploy => "ci_deploy",
            Archetype::DhcpChurn => "dhcp_churn",
            Archetype::MultiRegion => "multi_region",
            Archetype::Growth => "growth",
            Archetype::LowVolume => "low_volume",
            Archetype::Roaming => "roaming",
            Archetype::NightlyBatch => "nightly_batch",
            Archetype::Monthly => "monthly",
            Archetype::DailyPeak => "daily_peak",
        }
    }
}

/// The order archetypes are handed out to normal keys, cycling: every
/// archetype is in the first ten; office-hours services are the most
/// common, roaming people a small share.
pub(crate) const ROTATION: [Archetype; 16] = [
    Archetype::OfficeHours,
    Archetype::CiDeploy,
    Archetype::DhcpChurn,
    Archetype::MultiRegion,
    Archetype::Growth,
    Archetype::LowVolume,
    Archetype::Roaming,
    Archetype::NightlyBatch,
    Archetype::Monthly,
    Archetype::DailyPeak,
    Archetype::OfficeHours,
    Archetype::LowVolume,
    Archetype::DhcpChurn,
    Archetype::OfficeHours,
    Archetype::NightlyBatch,
    Archetype::OfficeHours,
];

/// When and from where a key is used. Calls of a day come from two places:
/// rate-driven traffic that stays inside its UTC day, and episodes (jobs,
/// sessions) that belong to a local day and may run past UTC midnight.
pub(crate) trait Pattern: Send + Sync + std::fmt::Debug {
    /// Rate-driven calls of UTC day `day`; never outside that day.
    fn steady(&self, _day: &Day, _rng: &mut SmallRng, _sink: &mut Sink<'_>) {}

    /// Calls of the episodes scheduled on `day`; may spill into the
    /// neighbouring UTC days (the caller keeps what falls in its window).
    fn episodes(&self, _day: &Day, _rng: &mut SmallRng, _sink: &mut Sink<'_>) {}
}

/// A key's behaviour as an archetype made it.
#[derive(Debug)]
pub(crate) struct Built {
    /// When and from where.
    pub pattern: Box<dyn Pattern>,
    /// What it calls.
    pub habits: Habits,
    /// Its user-agent strings, one per client version.
    pub agents: Vec<String>,
    /// IAM user name (made unique by the scenario).
    pub user_name: String,
    /// Name of the resources it works on.
    pub resource: String,
}

impl Built {
    /// Bundles a pattern with its habits, drawing the client versions.
    pub fn new(
        pattern: Box<dyn Pattern>,
        habits: Habits,
        agents: AgentKind,
        user_name: String,
        resource: String,
        rng: &mut SmallRng,
    ) -> Built {
        let agents = agent_versions(agents, habits.agent_versions() - 1, rng);
        Built {
            pattern,
            habits,
            agents,
            user_name,
            resource,
        }
    }
}

/// A project name for principals and resources.
pub(crate) fn project(rng: &mut SmallRng) -> &'static str {
    PROJECTS.choose(rng).expect("non-empty")
}

/// Makes one key of `archetype`.
pub(crate) fn build(archetype: Archetype, rng: &mut SmallRng, span: &Span) -> Built {
    match archetype {
        Archetype::OfficeHours => office::build(rng, span),
        Archetype::CiDeploy => ci::build(rng, span),
        Archetype::DhcpChurn => dhcp::build(rng, span),
        Archetype::MultiRegion => multi_region::build(rng, span),
        Archetype::Growth => growth::build(rng, span),
        Archetype::LowVolume => low_volume::build(rng, span),
        Archetype::Roaming => roaming::build(rng, span),
        Archetype::NightlyBatch => batch::build(rng, span),
        Archetype::Monthly => monthly::build(rng, span),
        Archetype::DailyPeak => daily_peak::build(rng, span),
    }
}
