//! Per-key state as older keywatch versions wrote it: checkpoint format 1
//! and changelog chunks of versions 1 and 2 ([`KeyStateV1`]); checkpoint
//! format 2 and changelog chunks of version 3 ([`KeyStateV2`]); checkpoint
//! format 3 and changelog chunks of version 4 ([`KeyStateV3`]); checkpoint
//! format 4 and changelog chunks of version 5 ([`KeyStateV4`]). Frozen
//! copies of the types of that time, read only, and the conversion to
//! today's [`KeyState`].
//!
//! Version 3 is today's state with its cooldowns alone where today's keeps
//! them with the networks the key forgot for lack of room ([`Rare`]):
//! everything carries over, and the forgotten networks are noted again from
//! the next eviction. Version 2 is version 3 without the network memory
//! ([`crate::engine::net_memory::NetMemory`]), which starts empty (learned again from
//! the next events).
//!
//! What carries over: when the key was first and last used, its event count,
//! active days and longest gap, the sources, user agents and actions it used,
//! its cooldowns and its applied position (exactly-once replay). What does
//! not: the old peak-envelope rate, error and fan-out baselines, which the
//! current models do not read; those re-learn, each with its own warm-up, so
//! an upgrade never turns an old peak into a wrong expectation.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::baseline::RateModel;
use super::detect::source_fanout::FanoutState;
use super::source::SourceId;
use super::state::{Cooldown, Forgotten, KeyState, Novelty, Rare, Secs, SourceSet, ValueSet};

/// `Peak` of version 1.
#[derive(Deserialize)]
struct PeakV1(#[allow(dead_code)] f32);

/// `BucketCounter` of version 1.
#[derive(Deserialize)]
#[allow(dead_code)]
struct BucketCounterV1 {
    bucket: u32,
    count: u32,
    threshold: u32,
    pending: PeakV1,
    peak: PeakV1,
}

/// `HourlyPeaks` of version 1.
#[derive(Deserialize)]
#[allow(dead_code)]
struct HourlyPeaksV1 {
    since: Secs,
    slots: [PeakV1; 24],
}

/// `FanoutState` of version 1.
#[derive(Deserialize)]
#[allow(dead_code)]
struct FanoutStateV1 {
    window: u32,
    distinct: u16,
    threshold: u16,
    peak: PeakV1,
}

/// `SourceSeen` of version 1.
#[derive(Deserialize)]
struct SourceSeenV1 {
    id: SourceId,
    first_seen: Secs,
    last_seen: Secs,
}

/// `Seen` of version 1: a user agent or action, tagged in the top two bits
/// (1 user agent, 2 action).
#[derive(Deserialize)]
struct SeenV1 {
    hash: u32,
    last_seen: Secs,
}

/// `KeyState` of checkpoint format 1 and changelog versions 1–2.
#[derive(Deserialize)]
pub struct KeyStateV1 {
    first_seen: Secs,
    last_seen: Secs,
    events: u32,
    active_days: u16,
    longest_gap: u32,
    #[allow(dead_code)]
    rate: BucketCounterV1,
    #[allow(dead_code)]
    rate_hours: Option<Box<HourlyPeaksV1>>,
    #[allow(dead_code)]
    errors: BucketCounterV1,
    #[allow(dead_code)]
    fanout: FanoutStateV1,
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    sources: SmallVec<[SourceSeenV1; 2]>,
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    values: SmallVec<[SeenV1; 4]>,
    applied: u64,
    applied_record: u16,
    #[allow(clippy::box_collection)] // the layout of version 1, as written
    cooldowns: Option<Box<Vec<Cooldown>>>,
}

impl From<KeyStateV1> for KeyState {
    fn from(old: KeyStateV1) -> KeyState {
        let mut k = KeyState::new(old.first_seen);
        k.first_seen = old.first_seen;
        k.last_seen = old.last_seen;
        k.events = old.events;
        k.active_days = old.active_days;
        k.longest_gap = old.longest_gap;
        k.applied = old.applied;
        k.applied_record = old.applied_record;
        k.rare = rare(old.cooldowns);
        for s in old.sources {
            k.sources.restore(s.id, s.first_seen, s.last_seen);
        }
        for v in old.values {
            k.restore_value(v.hash, v.last_seen);
        }
        k
    }
}

/// Cooldowns as versions 1 to 3 kept them, as today's state keeps them.
#[allow(clippy::box_collection)] // the layout of versions 1 to 3, as written
fn rare(cooldowns: Option<Box<Vec<Cooldown>>>) -> Option<Box<Rare>> {
    cooldowns.map(|c| {
        Box::new(Rare {
            cooldowns: *c,
            ..Rare::default()
        })
    })
}

/// Today's cooldowns as versions 1 to 3 wrote them.
#[allow(clippy::box_collection)] // the layout of versions 1 to 3, as written
fn cooldowns(rare: Option<Box<Rare>>) -> Option<Box<Vec<Cooldown>>> {
    rare.map(|r| Box::new(r.cooldowns))
}

/// `KeyState` of checkpoint format 2 and changelog version 3: version 3's
/// without the network memory. (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub struct KeyStateV2 {
    first_seen: Secs,
    last_seen: Secs,
    events: u32,
    active_days: u16,
    longest_gap: u32,
    rate: RateModel,
    errors: RateModel,
    fanout: FanoutState,
    sources: SourceSet,
    values: ValueSet,
    applied: u64,
    applied_record: u16,
    #[allow(clippy::box_collection)] // the layout of version 2, as written
    cooldowns: Option<Box<Vec<Cooldown>>>,
}

impl From<KeyStateV2> for KeyState {
    fn from(old: KeyStateV2) -> KeyState {
        KeyState {
            first_seen: old.first_seen,
            last_seen: old.last_seen,
            events: old.events,
            active_days: old.active_days,
            longest_gap: old.longest_gap,
            rate: old.rate,
            errors: old.errors,
            fanout: old.fanout,
            sources: old.sources,
            values: old.values,
            applied: old.applied,
            applied_record: old.applied_record,
            rare: rare(old.cooldowns),
            net: None,
            novelty: Novelty::default(),
        }
    }
}

impl From<KeyState> for KeyStateV2 {
    /// The state as a version 2 writer wrote it (the network memory dropped).
    fn from(k: KeyState) -> KeyStateV2 {
        KeyStateV2 {
            first_seen: k.first_seen,
            last_seen: k.last_seen,
            events: k.events,
            active_days: k.active_days,
            longest_gap: k.longest_gap,
            rate: k.rate,
            errors: k.errors,
            fanout: k.fanout,
            sources: k.sources,
            values: k.values,
            applied: k.applied,
            applied_record: k.applied_record,
            cooldowns: cooldowns(k.rare),
        }
    }
}

/// `KeyState` of checkpoint format 3 and changelog version 4: today's with
/// its cooldowns alone, without the networks forgotten for lack of room.
/// (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub struct KeyStateV3 {
    first_seen: Secs,
    last_seen: Secs,
    events: u32,
    active_days: u16,
    longest_gap: u32,
    rate: RateModel,
    errors: RateModel,
    fanout: FanoutState,
    sources: SourceSet,
    values: ValueSet,
    applied: u64,
    applied_record: u16,
    #[allow(clippy::box_collection)] // the layout of version 3, as written
    cooldowns: Option<Box<Vec<Cooldown>>>,
    net: Option<Box<crate::engine::net_memory::NetMemory>>,
}

impl From<KeyStateV3> for KeyState {
    fn from(old: KeyStateV3) -> KeyState {
        KeyState {
            first_seen: old.first_seen,
            last_seen: old.last_seen,
            events: old.events,
            active_days: old.active_days,
            longest_gap: old.longest_gap,
            rate: old.rate,
            errors: old.errors,
            fanout: old.fanout,
            sources: old.sources,
            values: old.values,
            applied: old.applied,
            applied_record: old.applied_record,
            rare: rare(old.cooldowns),
            net: old.net,
            novelty: Novelty::default(),
        }
    }
}

impl From<KeyState> for KeyStateV3 {
    /// The state as a version 3 writer wrote it (forgotten networks dropped).
    fn from(k: KeyState) -> KeyStateV3 {
        KeyStateV3 {
            first_seen: k.first_seen,
            last_seen: k.last_seen,
            events: k.events,
            active_days: k.active_days,
            longest_gap: k.longest_gap,
            rate: k.rate,
            errors: k.errors,
            fanout: k.fanout,
            sources: k.sources,
            values: k.values,
            applied: k.applied,
            applied_record: k.applied_record,
            cooldowns: cooldowns(k.rare),
            net: k.net,
        }
    }
}

/// `Rare` of checkpoint format 4 and changelog version 5: without the runs
/// of findings that fold ([`crate::engine::state::Fold`]).
#[derive(Serialize, Deserialize)]
struct RareV4 {
    cooldowns: Vec<Cooldown>,
    forgotten: Option<Box<Forgotten>>,
}

/// `KeyState` of checkpoint format 4 and changelog version 5: today's
/// without the novelty estimate (which starts anew, from the next active
/// day) and without runs of folded findings (a storm's next findings are
/// raised again, up to the fold's count). (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub struct KeyStateV4 {
    first_seen: Secs,
    last_seen: Secs,
    events: u32,
    active_days: u16,
    longest_gap: u32,
    rate: RateModel,
    errors: RateModel,
    fanout: FanoutState,
    sources: SourceSet,
    values: ValueSet,
    applied: u64,
    applied_record: u16,
    rare: Option<Box<RareV4>>,
    net: Option<Box<crate::engine::net_memory::NetMemory>>,
}

impl From<KeyStateV4> for KeyState {
    fn from(old: KeyStateV4) -> KeyState {
        KeyState {
            first_seen: old.first_seen,
            last_seen: old.last_seen,
            events: old.events,
            active_days: old.active_days,
            longest_gap: old.longest_gap,
            rate: old.rate,
            errors: old.errors,
            fanout: old.fanout,
            sources: old.sources,
            values: old.values,
            applied: old.applied,
            applied_record: old.applied_record,
            rare: old.rare.map(|r| {
                Box::new(Rare {
                    cooldowns: r.cooldowns,
                    forgotten: r.forgotten,
                    ..Rare::default()
                })
            }),
            net: old.net,
            novelty: Novelty::default(),
        }
    }
}

impl From<KeyState> for KeyStateV4 {
    /// The state as a version 4 writer wrote it (novelty and folds dropped).
    fn from(k: KeyState) -> KeyStateV4 {
        KeyStateV4 {
            first_seen: k.first_seen,
            last_seen: k.last_seen,
            events: k.events,
            active_days: k.active_days,
            longest_gap: k.longest_gap,
            rate: k.rate,
            errors: k.errors,
            fanout: k.fanout,
            sources: k.sources,
            values: k.values,
            applied: k.applied,
            applied_record: k.applied_record,
            rare: k.rare.map(|r| {
                Box::new(RareV4 {
                    cooldowns: r.cooldowns,
                    forgotten: r.forgotten,
                })
            }),
            net: k.net,
        }
    }
}
