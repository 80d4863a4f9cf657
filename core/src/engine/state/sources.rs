//! A key's sources: the addresses it was used from, in a bounded set with
//! least-recently-used eviction, and what they say about its networks
//! (how many, how spread, how they churn).

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::engine::source::SourceId;
use crate::types::Secs;

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
    /// This exact address (or /56) was used within `forget_after`.
    pub address_known: bool,
    /// Its /24 (/56) was used within `forget_after`.
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
    /// network it had forgotten for lack of room, up to [`RETURN_DAYS`](super::novelty::RETURN_DAYS)
    /// (see [`KeyState::returns`](super::KeyState::returns); 0 until filled in from there).
    pub return_days: u16,
    /// When the newest of those days began.
    pub last_return: Secs,
    /// Up to five of them, for evidence (burst networks last): formatted
    /// only when a finding shows them ([`NetworkSummary::sample_display`]).
    pub sample: SmallVec<[SourceId; 5]>,
}

impl NetworkSummary {
    /// When the key last acquired a network, a fan-out's included: a
    /// thief's fan-out must not make the key look settled.
    pub fn last_acquired(&self) -> Secs {
        self.newest_first_seen.max(self.last_burst)
    }

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

    /// Keeps the `cap` most recently used sources (see
    /// [`crate::types::keep_recent`]); returns how many were dropped.
    pub fn keep_recent(&mut self, cap: usize) -> usize {
        crate::types::keep_recent(&mut self.entries, cap, |e| e.last_seen, |_| true)
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
