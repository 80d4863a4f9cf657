//! Every IPv4 answer, flattened at load: the MaxMind DBs' IPv4 networks,
//! the cloud ranges and the lists merged into one sorted table of address
//! intervals, each naming its whole [`NetInfo`] in a table of distinct
//! answers, with a direct index by the first 16 bits of the address.
//!
//! A lookup reads the index (256 KiB, mostly in the CPU's caches), searches
//! the /16's few interval starts (a GeoLite2-City /16 holds 34 on average:
//! one or two cache lines), reads the answer's place beside them and the
//! answer: three or four memory reads where
//! walking a MaxMind tree takes one per bit of the prefix (about 24, most
//! of them cache misses on a random address) and each table adds its own.
//! The answers are the same as those lookups give, address for address
//! (`tests.rs` compares them on the real GeoLite2-City).

use std::collections::HashMap;

use maxminddb::{LookupResult, Reader, WithinOptions};

use super::NetInfo;

/// One step function over the IPv4 space: from each start (sorted, the
/// first at 0) up to the next, one value.
pub(super) type Steps<V> = Vec<(u32, V)>;

/// The IPv4 answers of one load of the tables.
pub(super) struct FlatV4 {
    /// How many intervals begin before each /16, and (last) all of them:
    /// 65,537 marks.
    index: Box<[u32]>,
    /// Three cells per interval, a /16's together: the low 16 bits of the
    /// first address of each of its `n` intervals (sorted; the first is 0:
    /// every /16 begins an interval, so its intervals answer alone for
    /// it), then the `n` answers' places in `answers`, high and low half.
    /// Six bytes an interval, and a /16's starts and answers' places on
    /// neighbouring cache lines.
    cells: Box<[u16]>,
    /// The distinct answers.
    answers: Box<[NetInfo]>,
    /// Time the flattening took.
    build: std::time::Duration,
}

/// How long a flattening took and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct FlatStats {
    /// Address intervals, each one answer throughout.
    pub intervals: usize,
    /// Distinct answers.
    pub answers: usize,
    /// Memory held, bytes.
    pub bytes: usize,
    /// Time taken at load (walking the MaxMind trees, decoding each record
    /// once, merging).
    pub build: std::time::Duration,
}

impl FlatV4 {
    /// The answer for `ip`.
    #[inline]
    pub(super) fn get(&self, ip: u32) -> NetInfo {
        let b = (ip >> 16) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        let (starts, places) = self.cells[3 * lo..3 * hi].split_at(hi - lo);
        // The last interval starting at or before `ip` (there is one: the
        // first starts at the /16's first address).
        let Some(i) = starts.partition_point(|&s| s <= ip as u16).checked_sub(1) else {
            return NetInfo::default();
        };
        match (places.get(2 * i), places.get(2 * i + 1)) {
            (Some(&high), Some(&low)) => self.answers[(high as usize) << 16 | low as usize],
            _ => NetInfo::default(),
        }
    }

    /// What it holds and how long it took.
    pub(super) fn stats(&self) -> FlatStats {
        FlatStats {
            intervals: self.index[65_536] as usize,
            answers: self.answers.len(),
            bytes: self.index.len() * 4
                + self.cells.len() * 2
                + self.answers.len() * std::mem::size_of::<NetInfo>(),
            build: self.build,
        }
    }

    /// Where each interval starts, in order.
    #[cfg(test)]
    pub(super) fn starts(&self) -> Vec<u32> {
        (0..65_536usize)
            .flat_map(|b| {
                let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
                self.cells[3 * lo..3 * lo + (hi - lo)]
                    .iter()
                    .map(move |&s| (b as u32) << 16 | u32::from(s))
            })
            .collect()
    }

    /// Merges the step functions of every table into one: `place` sets
    /// the city fields of an answer from its city value. `started`: when
    /// the steps began to be read.
    pub(super) fn build<P: Copy + Default>(
        city: &[(u32, P)],
        asn: &[(u32, u32)],
        cloud: &[(u32, Option<u32>)],
        lists: &[(u32, Option<u64>)],
        place: impl Fn(&mut NetInfo, P),
        started: std::time::Instant,
    ) -> FlatV4 {
        let (mut city, mut asn) = (Walk::new(city), Walk::new(asn));
        let (mut cloud, mut lists) = (Walk::new(cloud), Walk::new(lists));
        let mut index = Vec::with_capacity(65_537);
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(city.len() + asn.len() + 65_536);
        let mut answers: Vec<NetInfo> = vec![NetInfo::default()];
        let mut known: HashMap<AnswerKey, u32, foldhash::fast::RandomState> = HashMap::default();
        known.insert(AnswerKey::of(&NetInfo::default()), 0);
        let mut last = None;
        let mut pos: u64 = 0;
        while pos <= u64::from(u32::MAX) {
            let at = pos as u32;
            let mut info = NetInfo::default();
            place(&mut info, city.at(at));
            info.asn = asn.at(at);
            info.cloud = cloud.at(at).unwrap_or(0);
            info.lists = lists.at(at).unwrap_or(0);
            let next_16 = (pos | 0xFFFF) + 1;
            let next = next_16
                .min(city.next_start())
                .min(asn.next_start())
                .min(cloud.next_start())
                .min(lists.next_start());
            let new_16 = at & 0xFFFF == 0;
            if new_16 {
                index.push(entries.len() as u32);
            }
            if new_16 || last != Some(info) {
                let key = AnswerKey::of(&info);
                let n = *known.entry(key).or_insert_with(|| {
                    answers.push(info);
                    (answers.len() - 1) as u32
                });
                entries.push((at, n));
                last = Some(info);
            }
            pos = next;
        }
        index.push(entries.len() as u32);
        let mut cells = Vec::with_capacity(3 * entries.len());
        for b in index.windows(2) {
            let run = &entries[b[0] as usize..b[1] as usize];
            cells.extend(run.iter().map(|&(start, _)| start as u16));
            cells.extend(run.iter().flat_map(|&(_, n)| [(n >> 16) as u16, n as u16]));
        }
        FlatV4 {
            index: index.into_boxed_slice(),
            cells: cells.into_boxed_slice(),
            answers: answers.into_boxed_slice(),
            build: started.elapsed(),
        }
    }
}

/// A [`NetInfo`] as a hash key (its floats by their bits).
#[derive(PartialEq, Eq, Hash)]
struct AnswerKey(u32, [u8; 2], u32, u32, u16, bool, u32, u64);

impl AnswerKey {
    fn of(i: &NetInfo) -> AnswerKey {
        AnswerKey(
            i.asn,
            i.country,
            i.lat.to_bits(),
            i.lon.to_bits(),
            i.accuracy_km,
            i.located,
            i.cloud,
            i.lists,
        )
    }
}

/// A cursor moving forward through one step function (its first step at 0).
struct Walk<'a, V> {
    steps: &'a [(u32, V)],
    i: usize,
}

impl<'a, V: Copy + Default> Walk<'a, V> {
    fn new(steps: &'a [(u32, V)]) -> Walk<'a, V> {
        Walk { steps, i: 0 }
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// The value at `pos`, not before the last one asked.
    fn at(&mut self, pos: u32) -> V {
        while self.steps.get(self.i + 1).is_some_and(|s| s.0 <= pos) {
            self.i += 1;
        }
        match self.steps.get(self.i) {
            Some(s) if s.0 <= pos => s.1,
            _ => V::default(),
        }
    }

    /// Where the value after the current one starts (2^32: none).
    fn next_start(&self) -> u64 {
        self.steps
            .get(self.i + 1)
            .map_or(1 << 32, |s| u64::from(s.0))
    }
}

/// A MaxMind DB's IPv4 networks as a step function, each network's value
/// `decode`d once per record (gaps, and networks whose record cannot be
/// read, are the default, as a lookup there finds nothing). Networks come
/// in address order from the tree walk; `None` if they do not (a damaged
/// tree), and the caller keeps walking the tree on each lookup instead.
pub(super) fn mmdb_steps<T: Copy + Default>(
    reader: &Reader<Vec<u8>>,
    decode: impl Fn(&LookupResult<'_, Vec<u8>>) -> T,
) -> Option<Steps<T>> {
    let mut out: Steps<T> = vec![(0, T::default())];
    // The first address not yet covered.
    let mut next: u64 = 0;
    let mut decoded: HashMap<usize, T, foldhash::fast::RandomState> = HashMap::default();
    let all = reader
        .within("0.0.0.0/0".parse().ok()?, WithinOptions::default())
        .ok()?;
    for found in all {
        let Ok(found) = found else { continue };
        let Some(offset) = found.offset() else {
            continue;
        };
        let Ok(net) = found.network() else { continue };
        let (start, end) = match net.network() {
            std::net::IpAddr::V4(a) => {
                let start = u64::from(u32::from(a));
                (
                    start,
                    start + (1u64 << (32 - u32::from(net.prefix()).min(32))) - 1,
                )
            }
            // A database without an IPv4 subtree: one record above it
            // answers every IPv4 address.
            std::net::IpAddr::V6(_) => (0, u64::from(u32::MAX)),
        };
        if start < next {
            return None;
        }
        let value = *decoded.entry(offset).or_insert_with(|| decode(&found));
        if start > next {
            out.push((next as u32, T::default()));
        }
        match out.last_mut() {
            Some(last) if u64::from(last.0) == start => last.1 = value,
            _ => out.push((start as u32, value)),
        }
        next = end + 1;
    }
    if next <= u64::from(u32::MAX) {
        out.push((next as u32, T::default()));
    }
    Some(out)
}
