//! Per-key state: one entry per tracked identity, holding every detector's
//! state. Sized for a million keys: a typical key is ~200 bytes in place and
//! allocates only when it uses more sources or actions than fit inline, or
//! has the volume to need a seasonal (hour-of-day) baseline.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::finding::Severity;

use super::baseline::{Half, RateModel};
use super::detect::source_fanout::FanoutState;
use super::source::SourceId;

pub use crate::types::Secs;

/// When a source was first and last used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceSeen {
    /// Packed address.
    pub id: SourceId,
    /// First use.
    pub first_seen: Secs,
    /// Latest use.
    pub last_seen: Secs,
}

/// What the remembered sources say about one event's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFacts {
    /// This exact address (or /64) was used within `forget_after`.
    pub address_known: bool,
    /// Its /24 (/64) was used within `forget_after`.
    pub network_known: bool,
    /// Its wider network (/16, /48) was used within `forget_after`.
    pub wide_known: bool,

    /// First use of this address in the current fan-out window.
    pub first_in_window: bool,
    /// Its network was used earlier in the current fan-out window.
    pub network_in_window: bool,
    /// When its network was first used (earliest remembered address of it,
    /// within `forget_after`); meaningful only when `network_known`.
    pub network_first_seen: Secs,
    /// Where [`SourceSet::record_after`] puts the source: its entry, or the
    /// entry to evict for it, found in the same pass.
    slot: Slot,
}

/// Where a source goes in its [`SourceSet`], as seen by one pass over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// The source's own entry.
    found: Option<u32>,
    /// The least recently used entry (the first of them on a tie).
    oldest: u32,
    /// How many entries there were.
    len: u32,
}

/// A day on which a key acquired at least this many networks was a burst
/// (one fan-out, one pool draw), not a key moving about: its networks count
/// as one burst day, never as roaming days.
pub const BURST_NETWORKS: u16 = 4;

/// The networks a key has used recently, for `new_source`'s judgement.
///
/// "Acquired" means first used at least a day after the key itself: a key
/// that keeps acquiring networks roams (a person's laptop), one that was set
/// up with its networks (a service, a multi-region fleet) does not.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSummary {
    /// Distinct networks used within `forget_after`.
    pub networks: u16,
    /// Of them, networks acquired on burst days (see [`BURST_NETWORKS`]).
    pub burst_networks: u16,
    /// When the newest network not acquired in a burst was first used (the
    /// key's first use when it acquired none).
    pub newest_first_seen: Secs,
    /// Networks acquired after the key's first day, bursts included.
    pub acquired_later: u16,
    /// Distinct days (UTC) on which the key acquired 1 to
    /// `BURST_NETWORKS - 1` networks.
    pub roam_days: u16,
    /// When the newest network acquired on such a day was first used.
    pub last_roam: Secs,
    /// Distinct days on which the key acquired `BURST_NETWORKS` or more.
    pub burst_days: u16,
    /// When the newest burst network was first used.
    pub last_burst: Secs,
    /// Distinct days within `forget_after` on which the key came back to a
    /// network it had forgotten for lack of room, up to [`RETURN_DAYS`]
    /// (see [`KeyState::returns`]; 0 until filled in from there).
    pub return_days: u16,
    /// When the newest of those days began.
    pub last_return: Secs,
    /// Up to five of them, for evidence (burst networks last): formatted
    /// only when a finding shows them ([`NetworkSummary::sample_display`]).
    pub sample: SmallVec<[SourceId; 5]>,
}

impl NetworkSummary {
    /// The sampled networks as people read them (`203.0.113.0/24`).
    pub fn sample_display(&self) -> Vec<String> {
        self.sample.iter().map(|id| id.network_display()).collect()
    }

    /// Networks the key holds apart from bursts: what its severity is judged on.
    pub fn settled_networks(&self) -> u16 {
        self.networks - self.burst_networks
    }
}

/// How a key has moved between networks of one wider network (/16, /48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WideChurn {
    /// Distinct networks of the wider network used within `forget_after`.
    pub siblings: u16,
    /// When the newest of them acquired after the key's first day was first
    /// used (0: none was).
    pub last_acquired: Secs,
}

/// The sources a key has used, least recently used evicted past the cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceSet {
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    entries: SmallVec<[SourceSeen; 2]>,
}

/// What making room for a new source cost ([`SourceSet::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Nothing: the source was remembered, or there was room.
    None,
    /// An address whose network the key still remembers, or one not used
    /// within `forget_after`.
    Address,
    /// The last remembered address of a network used within `forget_after`:
    /// the key forgot a network it still uses (this one, [`SourceId::network`]).
    Network(u64),
}

impl SourceSet {
    /// Facts about `id` as of `now`, before it is recorded.
    ///
    /// One pass that keeps running extremes (selects, not branches) rather
    /// than deciding per source: a busy key's 64 sources are read on every
    /// event it makes.
    pub fn facts(&self, id: SourceId, now: Secs, forget_s: u32, window_start: Secs) -> SourceFacts {
        let fresh = now.saturating_sub(forget_s);
        let (net, net_mask) = (id.network(), id.network_mask());
        let (wide, wide_mask) = (id.wide_network(), id.wide_mask());
        let mut found = None;
        let (mut oldest, mut oldest_at) = (Secs::MAX, 0u32);
        // Over the network's sources used within `forget_s`: whether there
        // are any, the latest use, the earliest first use.
        let (mut network_known, mut net_last, mut net_first) = (false, 0, Secs::MAX);
        let mut wide_known = false;
        for (i, e) in self.entries.iter().enumerate() {
            if e.id == id {
                found = Some((i as u32, e.last_seen));
            }
            let older = e.last_seen < oldest;
            oldest_at = if older { i as u32 } else { oldest_at };
            oldest = oldest.min(e.last_seen);
            let same = (e.id.0 & net_mask == net) & (e.last_seen >= fresh);
            network_known |= same;
            wide_known |= (e.id.0 & wide_mask == wide) & (e.last_seen >= fresh);
            net_last = net_last.max(if same { e.last_seen } else { 0 });
            net_first = net_first.min(if same { e.first_seen } else { Secs::MAX });
        }
        SourceFacts {
            address_known: found.is_some_and(|(_, last)| last >= fresh),
            network_known,
            wide_known,
            first_in_window: found.is_none_or(|(_, last)| last < window_start),
            network_in_window: network_known && net_last >= window_start,
            network_first_seen: net_first,
            slot: Slot {
                found: found.map(|(i, _)| i),
                oldest: oldest_at,
                len: self.entries.len() as u32,
            },
        }
    }

    /// Summary of the networks used since `now - forget_s`, for a key first
    /// seen at `key_first_seen`.
    pub fn summary(&self, now: Secs, forget_s: u32, key_first_seen: Secs) -> NetworkSummary {
        summarise(&self.networks(now, forget_s), key_first_seen)
    }

    /// How the key has used the wider network of `id` (other than `id`'s own
    /// network) since `now - forget_s`.
    pub fn wide_churn(
        &self,
        id: SourceId,
        now: Secs,
        forget_s: u32,
        key_first_seen: Secs,
    ) -> WideChurn {
        churn(&self.networks(now, forget_s), id, key_first_seen)
    }

    /// [`SourceSet::summary`] and [`SourceSet::wide_churn`] from one pass over
    /// the remembered sources: what `new_source` asks about a new network.
    pub fn summary_and_churn(
        &self,
        id: SourceId,
        now: Secs,
        forget_s: u32,
        key_first_seen: Secs,
    ) -> (NetworkSummary, WideChurn) {
        let nets = self.networks(now, forget_s);
        (
            summarise(&nets, key_first_seen),
            churn(&nets, id, key_first_seen),
        )
    }

    /// Distinct networks used since `now - forget_s`, in the order they
    /// first appear among the remembered sources: (network, its first
    /// address there, its earliest first use).
    ///
    /// One pass with an open-addressing table on the stack (twice as many
    /// slots as sources): linear in what the key remembers, no sort, no
    /// allocation up to 64 networks (the default `max_sources_per_key`).
    fn networks(&self, now: Secs, forget_s: u32) -> Networks {
        const EMPTY: u32 = u32::MAX;
        let fresh = now.saturating_sub(forget_s);
        let mut out = Networks::new();
        let slots = (self.entries.len() * 2).next_power_of_two().max(16);
        let mask = slots - 1;
        let shift = 64 - slots.trailing_zeros();
        let mut table: SmallVec<[u32; 256]> = smallvec::smallvec![EMPTY; slots];
        for e in self.entries.iter().filter(|e| e.last_seen >= fresh) {
            let net = e.id.network();
            // Fibonacci hashing: the top bits of a multiplicative hash.
            let mut h = (net.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize & mask;
            loop {
                match table[h] {
                    EMPTY => {
                        table[h] = out.len() as u32;
                        out.push((net, e.id, e.first_seen));
                        break;
                    }
                    i if out[i as usize].0 == net => {
                        let first = &mut out[i as usize].2;
                        *first = (*first).min(e.first_seen);
                        break;
                    }
                    _ => h = (h + 1) & mask,
                }
            }
        }
        out
    }

    /// Records a use; says what was evicted to make room (the least recently
    /// used, the first of them on a tie).
    ///
    /// One pass finds the source or, failing that, the entry to evict.
    pub fn record(&mut self, id: SourceId, now: Secs, forget_s: u32, cap: usize) -> Eviction {
        let mut oldest = (0, Secs::MAX);
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.id == id {
                e.last_seen = e.last_seen.max(now);
                return Eviction::None;
            }
            if e.last_seen < oldest.1 {
                oldest = (i, e.last_seen);
            }
        }
        self.add(id, now, forget_s, cap, oldest.0)
    }

    /// [`SourceSet::record`] for the source `facts` were taken about, with
    /// nothing recorded since: no second pass over the sources.
    pub fn record_after(
        &mut self,
        facts: &SourceFacts,
        id: SourceId,
        now: Secs,
        forget_s: u32,
        cap: usize,
    ) -> Eviction {
        let slot = facts.slot;
        if slot.len as usize != self.entries.len() {
            // Misuse (a source was added since): the slot is stale.
            return self.record(id, now, forget_s, cap);
        }
        if let Some(i) = slot.found {
            match self.entries.get_mut(i as usize) {
                Some(e) if e.id == id => {
                    e.last_seen = e.last_seen.max(now);
                    return Eviction::None;
                }
                _ => return self.record(id, now, forget_s, cap),
            }
        }
        self.add(id, now, forget_s, cap, slot.oldest as usize)
    }

    /// Adds a source not remembered yet, first evicting the entry at
    /// `oldest` (the least recently used) when `cap` is reached.
    fn add(
        &mut self,
        id: SourceId,
        now: Secs,
        forget_s: u32,
        cap: usize,
        oldest: usize,
    ) -> Eviction {
        let mut evicted = Eviction::None;
        if !self.entries.is_empty() && self.entries.len() >= cap {
            let gone = self.entries.swap_remove(oldest);
            let fresh = now.saturating_sub(forget_s);
            // A network forgotten while in use: `gone` was its last address
            // remembered, and the key used it within `forget_s`. (A key with
            // hundreds of addresses in a few networks loses none: those
            // networks stay known.)
            let (net, mask) = (gone.id.network(), gone.id.network_mask());
            let lost = gone.last_seen >= fresh
                && id.network() != net
                && !self
                    .entries
                    .iter()
                    .any(|e| (e.id.0 & mask == net) & (e.last_seen >= fresh));
            evicted = if lost {
                Eviction::Network(net)
            } else {
                Eviction::Address
            };
        }
        self.entries.push(SourceSeen {
            id,
            first_seen: now,
            last_seen: now,
        });
        evicted
    }

    /// Puts back a remembered source (restoring older state).
    pub fn restore(&mut self, id: SourceId, first_seen: Secs, last_seen: Secs) {
        self.entries.push(SourceSeen {
            id,
            first_seen,
            last_seen,
        });
    }

    /// Remembered sources.
    pub fn entries(&self) -> &[SourceSeen] {
        &self.entries
    }
}

/// A key's distinct networks (see [`SourceSet::networks`]), on the stack up
/// to the default `max_sources_per_key`.
type Networks = SmallVec<[(u64, SourceId, Secs); 64]>;

/// The summary of `nets` (see [`SourceSet::networks`]) for a key first seen
/// at `key_first_seen`.
fn summarise(nets: &[(u64, SourceId, Secs)], key_first_seen: Secs) -> NetworkSummary {
    const NOT_ACQUIRED: u16 = u16::MAX;
    let settled_from = key_first_seen.saturating_add(86_400);
    // Networks acquired per day, to tell bursts from moves, and each
    // network's day among them: one pass, on the stack for a busy key.
    let mut days: SmallVec<[(Secs, u16); 32]> = SmallVec::new();
    let day_of: SmallVec<[u16; 64]> = nets
        .iter()
        .map(|n| {
            if n.2 < settled_from {
                return NOT_ACQUIRED;
            }
            let day = n.2 / 86_400;
            match days.iter().position(|d| d.0 == day) {
                Some(i) => {
                    days[i].1 += 1;
                    i as u16
                }
                None => {
                    days.push((day, 1));
                    (days.len() - 1) as u16
                }
            }
        })
        .collect();
    // Whether each network came in a burst, judged once.
    let bursts: SmallVec<[bool; 64]> = day_of
        .iter()
        .map(|&d| d != NOT_ACQUIRED && days[d as usize].1 >= BURST_NETWORKS)
        .collect();
    let mut out = NetworkSummary {
        networks: nets.len() as u16,
        burst_networks: 0,
        newest_first_seen: key_first_seen,
        acquired_later: day_of.iter().filter(|&&d| d != NOT_ACQUIRED).count() as u16,
        roam_days: days.iter().filter(|d| d.1 < BURST_NETWORKS).count() as u16,
        last_roam: 0,
        burst_days: days.iter().filter(|d| d.1 >= BURST_NETWORKS).count() as u16,
        last_burst: 0,
        return_days: 0,
        last_return: 0,
        sample: SmallVec::new(),
    };
    for (n, &burst) in nets.iter().zip(&bursts) {
        if burst {
            out.burst_networks += 1;
            out.last_burst = out.last_burst.max(n.2);
        } else {
            out.newest_first_seen = out.newest_first_seen.max(n.2);
            if n.2 >= settled_from {
                out.last_roam = out.last_roam.max(n.2);
            }
        }
    }
    let of = |want: bool| {
        nets.iter()
            .zip(&bursts)
            .filter(move |(_, &b)| b == want)
            .map(|(n, _)| n.1)
    };
    out.sample = of(false).chain(of(true)).take(5).collect();
    out
}

/// How the key has used the wider network of `id` (other than `id`'s own
/// network), from `nets` (see [`SourceSet::networks`]).
fn churn(nets: &[(u64, SourceId, Secs)], id: SourceId, key_first_seen: Secs) -> WideChurn {
    let (net, wide) = (id.network(), id.wide_network());
    let settled_from = key_first_seen.saturating_add(86_400);
    let mut out = WideChurn::default();
    for n in nets {
        if n.0 == net || n.1.wide_network() != wide || n.1.is_named() {
            continue;
        }
        out.siblings += 1;
        if n.2 >= settled_from {
            out.last_acquired = out.last_acquired.max(n.2);
        }
    }
    out
}

/// A remembered value (user-agent family or action) by tagged hash.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// [`ValueKind`] tag in the top two bits, hash below.
    pub hash: u32,
    /// Latest use.
    pub last_seen: Secs,
}

/// What a remembered value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueKind {
    /// A user-agent family.
    UserAgent = 1,
    /// An action: 12 bits of its service's hash, 18 of the action's, so
    /// "has this key used the service?" needs no entry of its own.
    Action = 2,
}

const TAG_SHIFT: u32 = 30;
const SERVICE_MASK: u32 = 0xFFF << 18;

/// A tagged value hash: `UserAgent` uses 30 bits of `hash`; `Action` takes
/// 12 bits from `service` and 18 from `hash`.
pub fn value_hash(kind: ValueKind, service: u64, hash: u64) -> u32 {
    let body = match kind {
        ValueKind::UserAgent => (hash as u32) & !(3 << TAG_SHIFT),
        ValueKind::Action => (((service as u32) & 0xFFF) << 18) | ((hash as u32) & 0x3_FFFF),
    };
    ((kind as u32) << TAG_SHIFT) | body
}

/// The user agents and actions a key has used: two tables in one inline
/// buffer, each bounded by its own cap (least recently used of the same kind
/// evicted), so a key with hundreds of actions never evicts its clients.
/// Four fit in place: one SDK and three calls is the common key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueSet {
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    entries: SmallVec<[Seen; 4]>,
}

/// Where a value sits in its [`ValueSet`] ([`ValueSet::find`]): asked once,
/// then used to judge the event and to record it.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    at: Option<(u32, Secs)>,
}

impl Found {
    /// Whether the value was used within `forget_s` of `now`.
    pub fn fresh(self, now: Secs, forget_s: u32) -> bool {
        self.at
            .is_some_and(|(_, last_seen)| last_seen >= now.saturating_sub(forget_s))
    }

    /// When the value was last used, if it is remembered at all.
    pub fn last_seen(self) -> Option<Secs> {
        self.at.map(|(_, last_seen)| last_seen)
    }
}

impl ValueSet {
    /// Where `hash` is remembered, if it is.
    pub fn find(&self, hash: u32) -> Found {
        Found {
            at: self
                .entries
                .iter()
                .position(|e| e.hash == hash)
                .map(|i| (i as u32, self.entries[i].last_seen)),
        }
    }

    /// [`ValueSet::record`] for what [`ValueSet::find`] said about `hash`,
    /// with nothing recorded since: a value already there costs no search.
    pub fn record_found(&mut self, found: Found, hash: u32, now: Secs, cap: usize) -> bool {
        if let Some((i, _)) = found.at {
            if let Some(e) = self.entries.get_mut(i as usize).filter(|e| e.hash == hash) {
                e.last_seen = e.last_seen.max(now);
                return false;
            }
        }
        self.record(hash, now, cap)
    }

    /// Whether `hash` was used within `forget_s` of `now`.
    pub fn knows(&self, hash: u32, now: Secs, forget_s: u32) -> bool {
        self.find(hash).fresh(now, forget_s)
    }

    /// Whether any action of the service in `action_hash` was used recently.
    pub fn knows_service(&self, action_hash: u32, now: Secs, forget_s: u32) -> bool {
        let fresh = now.saturating_sub(forget_s);
        let want = action_hash & (SERVICE_MASK | (3 << TAG_SHIFT));
        self.entries
            .iter()
            .any(|e| e.hash & (SERVICE_MASK | (3 << TAG_SHIFT)) == want && e.last_seen >= fresh)
    }

    /// Values of `kind` used within `forget_s` of `now`.
    pub fn fresh_len(&self, kind: ValueKind, now: Secs, forget_s: u32) -> usize {
        let fresh = now.saturating_sub(forget_s);
        self.entries
            .iter()
            .filter(|e| e.hash >> TAG_SHIFT == kind as u32 && e.last_seen >= fresh)
            .count()
    }

    /// Records a use; `cap` bounds the values of the hash's own kind.
    /// Returns whether a value of that kind was evicted to make room.
    pub fn record(&mut self, hash: u32, now: Secs, cap: usize) -> bool {
        let kind = hash >> TAG_SHIFT;
        let mut same_kind = 0;
        let mut oldest: Option<(usize, Secs)> = None;
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.hash == hash {
                e.last_seen = e.last_seen.max(now);
                return false;
            }
            if e.hash >> TAG_SHIFT == kind {
                same_kind += 1;
                if oldest.is_none_or(|(_, t)| e.last_seen < t) {
                    oldest = Some((i, e.last_seen));
                }
            }
        }
        let mut evicted = false;
        if same_kind >= cap {
            if let Some((i, _)) = oldest {
                self.entries.swap_remove(i);
                evicted = true;
            }
        }
        self.entries.push(Seen {
            hash,
            last_seen: now,
        });
        evicted
    }

    /// Number of remembered values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A cooldown: `detector` on dimension `dim` stays quiet until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    /// Detector index.
    pub detector: u8,
    /// Hash of the dimension (network, action, ...); 0 when the detector has none.
    pub dim: u32,
    /// Quiet until this event time.
    pub until: Secs,
}

/// A message's place in its source: an origin (a topic-partition, numbered by
/// the source) and an offset. Keys remember the position of the last event
/// they applied, so a replay after a restore applies each event to a key
/// exactly once, even from a checkpoint taken while events flowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Topic-partition number (1-based; 0 is no partition).
    pub origin: u16,
    /// Offset in the partition.
    pub offset: i64,
    /// Index of the record within its message (a message may hold many).
    pub record: u16,
}

impl Position {
    /// Whether `self` comes at or before `other` in the same partition.
    pub fn reached_by(self, other: Position) -> bool {
        self.origin == other.origin && (self.offset, self.record) <= (other.offset, other.record)
    }
}

impl Position {
    const OFFSET_BITS: u32 = 48;

    /// Packs into 64 bits: origin in the top 16, offset + 1 in the low 48.
    pub fn pack(self) -> u64 {
        ((self.origin as u64) << Self::OFFSET_BITS)
            | ((self.offset.max(-1) + 1) as u64 & ((1 << Self::OFFSET_BITS) - 1))
    }

    /// Unpacks with the record index kept beside it; `None` for "no position".
    fn unpack_at(v: u64, record: u16) -> Option<Position> {
        Position::unpack(v).map(|p| Position { record, ..p })
    }

    /// Unpacks; `None` for "no position".
    pub fn unpack(v: u64) -> Option<Position> {
        let origin = (v >> Self::OFFSET_BITS) as u16;
        let raw = v & ((1 << Self::OFFSET_BITS) - 1);
        (origin != 0 && raw != 0).then(|| Position {
            origin,
            offset: raw as i64 - 1,
            record: 0,
        })
    }
}

/// Everything keywatch knows about one key (or principal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    /// First use seen.
    pub first_seen: Secs,
    /// Latest use seen.
    pub last_seen: Secs,
    /// Uses seen (weighted by `count`, saturating).
    pub events: u32,
    /// Days on which the key was used; the clock for baseline decay.
    pub active_days: u16,
    /// Longest idle gap seen between two uses, seconds.
    pub longest_gap: u32,
    /// Requests per bucket and their rate model (`rate_spike`); the
    /// hour-of-day model inside is boxed, for keys with the volume only.
    pub rate: RateModel,
    /// Failures per bucket and their rate model (`error_spike`).
    pub errors: RateModel,
    /// Distinct-sources baseline and current window.
    pub fanout: FanoutState,
    /// Sources used.
    pub sources: SourceSet,
    /// User-agent families and actions used (separately bounded).
    pub values: ValueSet,
    /// The source position of the latest event applied (see [`Position`]).
    pub applied: u64,
    /// Its record index within its message.
    pub applied_record: u16,
    /// Cooldowns and forgotten networks, boxed: most keys never have either.
    pub rare: Option<Box<Rare>>,
    /// Network intelligence memory (ASNs, countries, clouds, latest place);
    /// allocated only when enrichment files are configured, and carried by
    /// checkpoints and the changelog (see [`crate::engine::net_memory`]).
    pub net: Option<Box<super::net_memory::NetMemory>>,
    /// How often the key meets networks, clients and actions it has not
    /// used: what makes a new one surprising, or not, for this key.
    pub novelty: Novelty,
}

impl KeyState {
    /// A key first seen at `now`.
    pub fn new(now: Secs) -> KeyState {
        KeyState {
            first_seen: now,
            last_seen: now,
            events: 0,
            active_days: 0,
            longest_gap: 0,
            rate: RateModel::default(),
            errors: RateModel::default(),
            fanout: FanoutState::default(),
            sources: SourceSet::default(),
            values: ValueSet::default(),
            rare: None,
            net: None,
            applied: 0,
            applied_record: 0,
            novelty: Novelty::default(),
        }
    }

    /// Whether the key is still in its learning period at `now` (too young,
    /// or too few events): the detectors that need a baseline stay quiet.
    pub fn still_learning(&self, now: Secs, settings: &super::Settings) -> bool {
        now.saturating_sub(self.first_seen) < settings.learning_s
            || (self.events as u64) < settings.learning_events
    }

    /// Where the latest event applied came from, if from a partition.
    pub fn applied_at(&self) -> Option<Position> {
        Position::unpack_at(self.applied, self.applied_record)
    }

    /// Records the position of an event just applied.
    pub fn set_applied(&mut self, at: Position) {
        self.applied = at.pack();
        self.applied_record = at.record;
    }

    /// The latest event applied from `origin`'s partition: the latest
    /// overall, or (a principal's) the latest of another partition.
    pub fn applied_on(&self, origin: u16) -> Option<Position> {
        self.each_position().find(|p| p.origin == origin)
    }

    /// Records the position of an event just applied to a principal, whose
    /// events come from several partitions: the previous partition's latest
    /// is kept too (see [`Rare::elsewhere`]).
    pub fn set_applied_across(&mut self, at: Position) {
        match self.applied_at() {
            Some(prev) if prev.origin != at.origin => {
                let list = &mut self.rare.get_or_insert_with(Default::default).elsewhere;
                list.retain(|&(packed, _)| {
                    Position::unpack(packed)
                        .is_some_and(|p| p.origin != prev.origin && p.origin != at.origin)
                });
                list.push((prev.pack(), prev.record));
            }
            _ => {}
        }
        self.set_applied(at);
    }

    /// Every partition's latest event applied: the latest overall first.
    pub fn positions(&self) -> Vec<Position> {
        self.each_position().collect()
    }

    fn each_position(&self) -> impl Iterator<Item = Position> + '_ {
        let elsewhere = self.rare.as_deref().map_or(&[][..], |r| &r.elsewhere[..]);
        self.applied_at().into_iter().chain(
            elsewhere
                .iter()
                .filter_map(|&(packed, record)| Position::unpack_at(packed, record)),
        )
    }

    /// Replaces every position (the first is the latest overall); none
    /// clears them.
    pub fn set_positions(&mut self, positions: &[Position]) {
        self.applied = 0;
        self.applied_record = 0;
        if let Some(r) = &mut self.rare {
            r.elsewhere.clear();
        }
        if let Some((&first, rest)) = positions.split_first() {
            self.set_applied(first);
            if !rest.is_empty() {
                self.rare.get_or_insert_with(Default::default).elsewhere =
                    rest.iter().map(|p| (p.pack(), p.record)).collect();
            }
        }
    }

    /// One active day passes: every learned peak decays by `factor`.
    pub fn decay_peaks(&mut self, factor: f32) {
        self.rate.decay(factor);
        self.errors.decay(factor);
        self.fanout.decay(factor);
    }

    /// Puts back a remembered user agent or action from older state: a
    /// value hash tagged with its [`ValueKind`] in the top two bits.
    pub fn restore_value(&mut self, tagged: u32, last_seen: Secs) {
        self.values.record(tagged, last_seen, usize::MAX);
    }

    /// Whether `detector`/`dim` is cooling down at `now`.
    pub fn cooling(&self, detector: u8, dim: u32, now: Secs) -> bool {
        self.rare.as_ref().is_some_and(|r| {
            r.cooldowns
                .iter()
                .any(|c| c.detector == detector && c.dim == dim && c.until > now)
        })
    }

    /// Starts a cooldown, dropping expired ones.
    pub fn cool(&mut self, detector: u8, dim: u32, now: Secs, cooldown_s: u32) {
        let list = &mut self.rare.get_or_insert_with(Default::default).cooldowns;
        list.retain(|c| c.until > now && !(c.detector == detector && c.dim == dim));
        list.push(Cooldown {
            detector,
            dim,
            until: now.saturating_add(cooldown_s),
        });
    }

    /// Ends every cooldown of `detector`.
    pub fn uncool(&mut self, detector: u8) {
        if let Some(r) = &mut self.rare {
            r.cooldowns.retain(|c| c.detector != detector);
        }
    }

    /// Decides whether a finding of `detector` with `severity` is raised or
    /// folds into the run of findings the detector has open on this key,
    /// and records it. A run begins with the first finding after `quiet_s`
    /// without one; its first `after` findings are raised, and after them
    /// only a high or critical finding more severe than all before it, or
    /// one with a `size` at
    /// least twice the largest before it (a burst far beyond the run's is
    /// news, not more of the same). `after` 0 never folds.
    pub fn fold(
        &mut self,
        detector: u8,
        severity: u8,
        size: u32,
        now: Secs,
        after: u8,
        quiet_s: u32,
    ) -> Folding {
        if after == 0 {
            return Folding::Raise;
        }
        let folds = &mut self.rare.get_or_insert_with(Default::default).folds;
        folds.retain(|f| now.saturating_sub(f.last) < quiet_s);
        let Some(run) = folds.iter_mut().find(|f| f.detector == detector) else {
            folds.push(Fold {
                detector,
                raised: 1,
                top: severity,
                size,
                folded: 0,
                since: now,
                last: now,
            });
            return Folding::Raise;
        };
        run.last = run.last.max(now);
        let bigger = size > 0 && size / 2 >= run.size;
        // Only a step up to high or critical escapes: a medium after two
        // lows is more of the same for the person who has the run open.
        let graver = severity > run.top && severity >= Severity::High as u8;
        if run.raised < after || graver || bigger {
            run.raised = run.raised.saturating_add(1);
            run.top = run.top.max(severity);
            run.size = run.size.max(size);
            Folding::Raise
        } else {
            run.folded = run.folded.saturating_add(1);
            Folding::Fold
        }
    }

    /// The run of `detector`'s findings open on this key, if any.
    pub fn open_run(&self, detector: u8) -> Option<Fold> {
        self.rare
            .as_ref()?
            .folds
            .iter()
            .find(|f| f.detector == detector)
            .copied()
    }

    /// Closes the run of `detector`'s findings (a responder gave a verdict).
    pub fn unfold(&mut self, detector: u8) {
        if let Some(r) = &mut self.rare {
            r.folds.retain(|f| f.detector != detector);
        }
    }

    /// Remembers that the key forgot `network` ([`SourceId::network`]) for
    /// lack of room while still using it ([`Eviction::Network`]).
    pub fn forgot_network(&mut self, network: u64) {
        let rare = self.rare.get_or_insert_with(Default::default);
        let f = rare.forgotten.get_or_insert_with(Default::default);
        let hash = network_hash(network);
        if f.networks.contains(&hash) {
            return;
        }
        if f.networks.len() < FORGOTTEN {
            f.networks.push(hash);
        } else {
            let at = f.next as usize % FORGOTTEN;
            f.networks[at] = hash;
            f.next = ((at + 1) % FORGOTTEN) as u8;
        }
    }

    /// Whether `network`, not remembered, is one the key forgot for lack of
    /// room; if so, today (of `now`) is a return day.
    pub fn came_back(&mut self, network: u64, now: Secs) -> bool {
        let Some(f) = self.rare.as_mut().and_then(|r| r.forgotten.as_mut()) else {
            return false;
        };
        if !f.networks.contains(&network_hash(network)) {
            return false;
        }
        // Days counted from 1: 0 is none. An older day arriving late
        // changes nothing.
        let day = (now / 86_400 + 1) as u16;
        if day > f.days[0] {
            f.days.rotate_right(1);
            f.days[0] = day;
        }
        true
    }

    /// On how many distinct days within `forget_s` of `now` the key came
    /// back to a network it had forgotten for lack of room (up to
    /// [`RETURN_DAYS`]), and when the latest of them began (0: none).
    pub fn returns(&self, now: Secs, forget_s: u32) -> (u16, Secs) {
        let Some(f) = self.rare.as_ref().and_then(|r| r.forgotten.as_ref()) else {
            return (0, 0);
        };
        let fresh = now.saturating_sub(forget_s);
        // Saturating: a day read from a damaged checkpoint may be past u32 time.
        let begins = |d: u16| (d as Secs - 1).saturating_mul(86_400);
        let recent = f
            .days
            .iter()
            .filter(|&&d| d != 0 && begins(d).saturating_add(86_400) > fresh);
        (
            recent.clone().count() as u16,
            recent.map(|&d| begins(d)).max().unwrap_or(0),
        )
    }
}

/// Networks forgotten a key remembers ([`Forgotten`]).
pub const FORGOTTEN: usize = 32;

/// Return days a key remembers, and how many make a key one that draws from
/// a pool wider than its memory.
pub const RETURN_DAYS: usize = 3;

/// What few keys carry, in one box: cooldowns (a key with findings) and
/// the networks it forgot (a key using more networks than it remembers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rare {
    /// Active cooldowns.
    pub cooldowns: Vec<Cooldown>,
    /// Networks forgotten for lack of room; boxed, as few keys overflow.
    pub forgotten: Option<Box<Forgotten>>,
    /// Open storms: detectors that raised several findings on the key
    /// without a verdict, whose further findings fold into the open one.
    pub folds: Vec<Fold>,
    /// A principal's latest event from each partition other than that of
    /// its latest event overall (packed [`Position`], record): events of
    /// all its partitions replayed after a restore are applied once. Not
    /// part of the state's encoding: checkpoints carry them by topic and
    /// partition (the shell's `checkpoint::Checkpoint::principal_positions`),
    /// as the numbers of partitions are this process's own.
    #[serde(skip)]
    pub elsewhere: Vec<(u64, u16)>,
}

/// One detector's run of findings on one key (see [`KeyState::fold`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    /// Detector index.
    pub detector: u8,
    /// Findings raised in this run.
    pub raised: u8,
    /// The most severe of them ([`crate::engine::Severity`] as a number).
    pub top: u8,
    /// The largest size among them (a bucket's count, a window's networks;
    /// 0 for findings without one).
    pub size: u32,
    /// Findings folded into the open one since.
    pub folded: u32,
    /// When the run began.
    pub since: Secs,
    /// The latest finding of the run, raised or folded.
    pub last: Secs,
}

/// What [`KeyState::fold`] decided for a finding about to be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folding {
    /// Raise it: the run is young, or the finding is graver or far bigger
    /// than any before it in the run.
    Raise,
    /// Fold it into the open finding: the run has raised enough already.
    Fold,
}

/// Quiet days every novelty estimate starts with (a prior): the share of
/// days bringing something new is only believed high once the key has shown
/// it on several days.
pub const PRIOR_QUIET_DAYS: f32 = 3.0;

/// Which kind of value a first sighting is of, for [`Novelty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novel {
    /// A network (/24, /64) the key had not used within `forget_after`.
    Network = 0,
    /// A user-agent family.
    UserAgent = 1,
    /// An action.
    Action = 2,
    /// A wider network (/16, /48) the key had not used within
    /// `forget_after`, with its new network.
    Wide = 4,

    /// A burst the key's hour-of-day rate model did not expect (a bucket
    /// over its line, whether or not it was reported): a key whose days
    /// bring these as a habit is used in bursts at irregular times.
    Burst = 3,
}

/// How often a key meets values it has not used, per kind of value: the
/// share of its recent active days that brought at least one, with every
/// finished day's weight decaying by the baseline half-life. A day that
/// brought fifty new networks counts once, as a day that brought one: a
/// fan-out cannot make a key look like one that roams. The key's first day
/// counts as a day but brings nothing new: it shows the key's repertoire,
/// not how often that changes.
///
/// This is the estimate new-value detectors judge surprise by: a key that
/// meets a new network on most days tells nothing by meeting another; one
/// that met its last new network a month ago tells a lot. 14 bytes in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Novelty {
    /// Finished active days, decayed.
    days: Half,
    /// Of them, days that brought a new value, per [`Novel`], decayed.
    new_days: [Half; 5],
    /// Kinds of value ([`Novel`] bits) the current active day brought.
    today: u8,
}

impl Novelty {
    /// The current active day ends: its findings join the decayed history.
    pub fn next_day(&mut self, decay: f32) {
        self.days = Half::new(self.days.get() * decay + 1.0);
        for (i, d) in self.new_days.iter_mut().enumerate() {
            let brought = f32::from(self.today >> i & 1);
            *d = Half::new(d.get() * decay + brought);
        }
        self.today = 0;
    }

    /// The current day brought a new value of `kind`.
    pub fn saw(&mut self, kind: Novel) {
        self.today |= 1 << kind as u8;
    }

    /// The share of the key's past active days that brought a new value of
    /// `kind`, in [0, 1]: the chance that a day of this key brings one. The
    /// current day is left out: an attacker controls the present, and a
    /// thief's own first new network must not make his second expected. Shrunk towards "rarely" by [`PRIOR_QUIET_DAYS`]: a
    /// key two days old that met one new value has not shown that it meets
    /// them every other day.
    pub fn rate(&self, kind: Novel) -> f32 {
        let days = self.days.get() + PRIOR_QUIET_DAYS;
        (self.new_days[kind as usize].get() / days).clamp(0.0, 1.0)
    }

    /// Past active days the estimate rests on (decayed).
    pub fn days(&self) -> f32 {
        self.days.get()
    }
}

/// The latest networks a key forgot for lack of room while still using them
/// (hashed), and the days it came back to one: a key drawing from a pool
/// wider than `max_sources_per_key` comes back every day, a key after one
/// fan-out does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forgotten {
    /// A ring of up to [`FORGOTTEN`] network hashes.
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    networks: SmallVec<[u32; FORGOTTEN]>,
    /// Where the next one goes once the ring is full.
    next: u8,
    /// The latest [`RETURN_DAYS`] distinct days (UTC, days since the epoch
    /// plus one, newest first; 0: none) the key came back to one of them.
    days: [u16; RETURN_DAYS],
}

/// A network's hash in [`Forgotten`]: the top bits of a multiplicative hash.
fn network_hash(network: u64) -> u32 {
    (network.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_stays_small() {
        // The 256 B/key budget at a million keys: the map holds a pointer,
        // the boxed state must stay within one 208-byte allocation (glibc
        // adds an 8-byte header: 200 bytes of state fill its 208-byte
        // chunk). The novelty estimate took it from 192: 8% more a key.
        assert!(
            std::mem::size_of::<KeyState>() <= 200,
            "{}",
            std::mem::size_of::<KeyState>()
        );
    }

    #[test]
    fn values_by_kind_and_service() {
        let mut v = ValueSet::default();
        let ua = value_hash(ValueKind::UserAgent, 0, 0xdead_beef);
        let get = value_hash(ValueKind::Action, 0x123, 0x1);
        let put = value_hash(ValueKind::Action, 0x123, 0x2);
        let other = value_hash(ValueKind::Action, 0x456, 0x1);
        v.record(ua, 10, 64);
        v.record(get, 10, 64);
        assert_eq!(v.fresh_len(ValueKind::Action, 10, 100), 1);
        assert_eq!(v.fresh_len(ValueKind::UserAgent, 10, 100), 1);
        assert!(!v.knows(put, 10, 100) && v.knows_service(put, 10, 100));
        assert!(!v.knows_service(other, 10, 100));
    }

    #[test]
    fn source_set_facts() {
        let mut s = SourceSet::default();
        let a = SourceId(0xCB00_7107); // 203.0.113.7
        let b = SourceId(0xCB00_7109); // same /24
        let c = SourceId(0xCB00_7209); // sibling /24 in the /16
        s.record(a, 1000, 10_000, 64);
        let f = s.facts(b, 2000, 10_000, 1500);
        assert!(!f.address_known && f.network_known && f.first_in_window);
        let f = s.facts(c, 2000, 10_000, 1500);
        assert!(!f.network_known, "a sibling /24 is another network");
        let f = s.facts(a, 2000, 10_000, 500);
        assert!(f.address_known && !f.first_in_window);
        let f = s.facts(a, 20_000, 10_000, 19_000);
        assert!(
            !f.address_known && !f.network_known,
            "forgotten after forget_after"
        );
    }

    #[test]
    fn recording_after_facts_is_recording() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let (mut after, mut plain) = (SourceSet::default(), SourceSet::default());
        let mut now = 1_000;
        for step in 0..20_000 {
            // Few distinct seconds, so eviction meets ties; more addresses
            // than the cap, so it evicts all the time.
            now += rng.gen_range(0..2);
            let id = SourceId(0x0A00_0000 | rng.gen_range(0..40u64) << 8 | rng.gen_range(0..3u64));
            let facts = after.facts(id, now, 5_000, now - now % 60);
            assert_eq!(
                after.record_after(&facts, id, now, 5_000, 16),
                plain.record(id, now, 5_000, 16),
                "step {step}: evicted"
            );
            assert_eq!(after, plain, "step {step}: entries");
        }
    }

    #[test]
    fn recording_what_was_found_is_recording() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
        let (mut found, mut plain) = (ValueSet::default(), ValueSet::default());
        let mut now = 1_000;
        for step in 0..20_000 {
            now += rng.gen_range(0..2);
            let kind = if rng.gen_bool(0.3) {
                ValueKind::UserAgent
            } else {
                ValueKind::Action
            };
            let hash = value_hash(kind, rng.gen_range(0..3), rng.gen_range(0..30));
            let f = found.find(hash);
            assert_eq!(
                f.fresh(now, 500),
                plain.knows(hash, now, 500),
                "step {step}"
            );
            assert_eq!(
                found.record_found(f, hash, now, 12),
                plain.record(hash, now, 12),
                "step {step}: evicted"
            );
            assert_eq!(found, plain, "step {step}: entries");
        }
    }

    #[test]
    fn evicting_the_last_address_of_a_network_in_use_forgets_the_network() {
        const D: Secs = 86_400;
        let forget = 30 * D;
        let net = |n: u64, host: u64| SourceId(0x0A00_0000 | n << 8 | host);
        let mut s = SourceSet::default();
        s.record(net(1, 0), 10 * D, forget, 2);
        s.record(net(1, 1), 10 * D + 1, forget, 2);
        // Another host of the same /24 past the cap: the network stays.
        assert_eq!(
            s.record(net(1, 2), 10 * D + 2, forget, 2),
            Eviction::Address
        );
        // Another /24: evicts the oldest host, but the /24 keeps one.
        assert_eq!(
            s.record(net(2, 0), 10 * D + 3, forget, 2),
            Eviction::Address
        );
        // A third /24: the last host of /24 number 1 goes, still in use.
        assert_eq!(
            s.record(net(3, 0), 10 * D + 4, forget, 2),
            Eviction::Network(net(1, 0).network())
        );
        // A network not used within forget_after is not one in use.
        assert_eq!(s.record(net(4, 0), 50 * D, forget, 2), Eviction::Address);
    }

    #[test]
    fn a_key_counts_the_days_it_comes_back_to_forgotten_networks() {
        const D: Secs = 86_400;
        let forget = 30 * D;
        let net = |n: u64| SourceId(0x0A00_0000 | n << 8).network();
        let returns = |k: &KeyState, now: Secs| k.returns(now, forget);
        let mut k = KeyState::new(0);
        assert!(!k.came_back(net(1), 10 * D), "nothing forgotten yet");
        for n in 1..=40 {
            k.forgot_network(net(n));
        }
        assert!(!k.came_back(net(1), 10 * D), "the ring keeps the latest 32");
        assert!(k.came_back(net(40), 10 * D) && k.came_back(net(9), 10 * D + 5));
        assert_eq!(returns(&k, 10 * D), (1, 10 * D), "one day, however often");
        for day in [11, 12, 14] {
            assert!(k.came_back(net(20), day * D));
        }
        assert_eq!(returns(&k, 14 * D), (3, 14 * D), "the latest three days");
        assert!(k.came_back(net(20), 5 * D), "a late event still came back");
        assert_eq!(returns(&k, 14 * D), (3, 14 * D), "but its day is not newer");
        assert_eq!(
            returns(&k, 42 * D),
            (2, 14 * D),
            "day 11 is past forget_after"
        );
        assert_eq!(returns(&k, 45 * D), (0, 0));
    }

    #[test]
    fn forgotten_networks_from_a_damaged_checkpoint_are_no_panic() {
        // What a corrupt file could hold: a day past u32 time, a ring
        // position past the ring.
        let mut k = KeyState::new(0);
        k.rare = Some(Box::new(Rare {
            cooldowns: Vec::new(),
            forgotten: Some(Box::new(Forgotten {
                networks: SmallVec::new(),
                next: 200,
                days: [u16::MAX, 3, 0],
            })),
            ..Rare::default()
        }));
        assert_eq!(k.returns(5 * 86_400, 30 * 86_400).0, 2);
        for n in 0..40 {
            k.forgot_network(n << 8);
        }
        assert!(k.came_back(39 << 8, 86_400));
    }

    #[test]
    fn sets_evict_least_recently_used() {
        let mut s = SourceSet::default();
        for i in 0..4u64 {
            s.record(SourceId(i << 8), 100 + i as u32, 1_000, 4);
        }
        s.record(SourceId(0), 200, 1_000, 4);
        assert_ne!(s.record(SourceId(9 << 8), 300, 1_000, 4), Eviction::None);
        assert_eq!(s.entries().len(), 4);
        assert!(
            !s.entries().iter().any(|e| e.id == SourceId(1 << 8)),
            "oldest last_seen evicted"
        );
        let mut v = ValueSet::default();
        assert!(!v.record(1, 10, 2));
        assert!(!v.record(2, 11, 2));
        assert!(v.record(3, 12, 2));
        assert!(!v.knows(1, 12, 100) && v.knows(3, 12, 100));
    }

    #[test]
    fn positions_pack() {
        let p = Position {
            origin: 7,
            offset: 123_456_789,
            record: 0,
        };
        assert_eq!(Position::unpack(p.pack()), Some(p));
        let first = Position {
            origin: 1,
            offset: 0,
            record: 0,
        };
        assert_eq!(Position::unpack(first.pack()), Some(first));
        assert_eq!(Position::unpack(0), None);
        let later_record = Position { record: 3, ..first };
        assert!(first.reached_by(later_record) && !later_record.reached_by(first));
        assert!(!first.reached_by(Position { origin: 2, ..first }));
    }

    #[test]
    fn a_run_of_findings_folds_after_two_until_graver_bigger_quiet_or_a_verdict() {
        const DAY: u32 = 86_400;
        let (low, high) = (Severity::Low as u8, Severity::High as u8);
        let mut k = KeyState::new(0);
        let fold = |k: &mut KeyState, sev, size, t| k.fold(3, sev, size, t, 2, 30 * DAY);
        assert_eq!(fold(&mut k, low, 10, DAY), Folding::Raise);
        assert_eq!(fold(&mut k, low, 12, 2 * DAY), Folding::Raise);
        // The third of the same kind folds; so does a medium after lows.
        assert_eq!(fold(&mut k, low, 15, 3 * DAY), Folding::Fold);
        let medium = Severity::Medium as u8;
        assert_eq!(fold(&mut k, medium, 15, 4 * DAY), Folding::Fold);
        // Twice the run's largest size, or a high: raised.
        assert_eq!(fold(&mut k, low, 24, 5 * DAY), Folding::Raise);
        assert_eq!(fold(&mut k, high, 0, 6 * DAY), Folding::Raise);
        assert_eq!(fold(&mut k, high, 0, 7 * DAY), Folding::Fold);
        // Another detector has a run of its own.
        assert_eq!(k.fold(4, low, 0, 7 * DAY, 2, 30 * DAY), Folding::Raise);
        // A verdict ends the run.
        k.unfold(3);
        assert_eq!(fold(&mut k, low, 10, 8 * DAY), Folding::Raise);
        // So do 30 quiet days.
        assert_eq!(fold(&mut k, low, 10, 9 * DAY), Folding::Raise);
        assert_eq!(fold(&mut k, low, 10, 10 * DAY), Folding::Fold);
        assert_eq!(fold(&mut k, low, 10, 41 * DAY), Folding::Raise);
        // fold_after 0 never folds.
        for t in 0..5 {
            assert_eq!(k.fold(5, low, 0, t, 0, 30 * DAY), Folding::Raise);
        }
    }

    #[test]
    fn cooldowns_expire() {
        let mut k = KeyState::new(0);
        k.cool(1, 7, 100, 3600);
        assert!(k.cooling(1, 7, 200));
        assert!(!k.cooling(1, 8, 200));
        assert!(!k.cooling(1, 7, 3700));
    }

    /// An iterator that states a length it does not have, as a corrupt
    /// checkpoint's varint can.
    struct Lying(std::vec::IntoIter<u64>);

    impl Iterator for Lying {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (usize::MAX / 4, Some(usize::MAX / 4))
        }
    }

    #[test]
    fn a_stated_length_is_not_reserved() {
        use serde::de::value::{Error, SeqDeserializer};
        let lying = || SeqDeserializer::<_, Error>::new(Lying(vec![1, 2, 3].into_iter()));
        // smallvec's own Deserialize reserves the stated length first.
        assert!(SmallVec::<[u64; 2]>::deserialize(lying()).is_err());
        let read: SmallVec<[u64; 2]> = crate::types::bounded_seq(lying()).unwrap();
        assert_eq!(read.as_slice(), [1, 2, 3]);
    }
}
