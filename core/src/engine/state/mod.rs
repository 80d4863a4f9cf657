//! Per-key state: one entry per tracked identity, holding every detector's
//! state. Sized for a million keys: a typical key is ~200 bytes in place and
//! allocates only when it uses more sources or actions than fit inline, or
//! has the volume to need a seasonal (hour-of-day) baseline.

mod novelty;
mod sources;
mod values;

use serde::{Deserialize, Serialize};

use super::finding::Severity;

use super::baseline::RateModel;
use super::detect::source_fanout::FanoutState;

pub use crate::types::Secs;
pub use novelty::*;
pub use sources::*;
pub use values::*;

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

    /// Findings of `detector` folded so far into its open run on this key
    /// (0 without one).
    pub fn folded_in_run(&self, detector: u8) -> u32 {
        self.rare.as_ref().map_or(0, |r| {
            r.folds
                .iter()
                .find(|f| f.detector == detector)
                .map_or(0, |f| f.folded)
        })
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

    /// Remembers that the key forgot `network` ([`SourceId::network`](crate::engine::source::SourceId::network)) for
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::source::SourceId;
    use smallvec::SmallVec;

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
