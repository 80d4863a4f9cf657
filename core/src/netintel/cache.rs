//! The caches each load of the tables keeps: whole answers by address
//! block ([`AnswerCache`]) and decoded MaxMind records by offset
//! ([`RecordCache`]).

use std::sync::Mutex;

use super::NetInfo;

/// Whole answers ([`NetInfo`]) by the address block they hold for: the
/// addresses of one /64 (or /24, for
/// [`Tables::lookup_blocks`](super::Tables::lookup_blocks); IPv4
/// lookups use the flattened table) share one answer when every table (the
/// MaxMind DBs' networks, the cloud and list intervals) covers the whole
/// block, as a GeoLite2 network almost always does. An answer that differs inside
/// the block is never stored (those addresses are looked up each time), so
/// the cache is exact. Direct-mapped, [`AnswerCache::SLOTS`] slots each
/// behind its own lock; it belongs to one load of the tables, so a reload
/// starts empty.
pub(super) struct AnswerCache {
    slots: Box<[Mutex<(u128, NetInfo)>]>,
}

impl AnswerCache {
    /// 32768 slots of 64 bytes: 2 MiB per load (a GeoLite2-City file is
    /// 30 times that); the busy /64s of a large fleet rarely share a slot.
    const SLOTS: usize = 32768;
    /// No block starts here (a block's low bits are zeros).
    const EMPTY: u128 = u128::MAX;

    pub(super) fn new() -> AnswerCache {
        AnswerCache {
            slots: (0..Self::SLOTS)
                .map(|_| Mutex::new((Self::EMPTY, NetInfo::default())))
                .collect(),
        }
    }

    fn slot(&self, block: u128) -> &Mutex<(u128, NetInfo)> {
        let h = ((block >> 64) as u64 ^ block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.slots[(h >> 32) as usize & (Self::SLOTS - 1)]
    }

    pub(super) fn get(&self, block: u128) -> Option<NetInfo> {
        let s = self.slot(block).lock().ok()?;
        (s.0 == block).then_some(s.1)
    }

    pub(super) fn put(&self, block: u128, info: NetInfo) {
        if let Ok(mut s) = self.slot(block).lock() {
            *s = (block, info);
        }
    }
}

/// Decoded MaxMind records by their offset in the database's data section:
/// the addresses of a network share one record, and decoding a GeoLite2
/// City record walks past its names in eight languages (~2 µs) where the
/// tree walk that finds it takes a tenth of that. Exact (a record is the
/// same whichever address found it); direct-mapped, 4096 slots, each behind
/// its own lock (threads meet on a slot rarely).
pub(super) struct RecordCache<T> {
    slots: Box<[std::sync::Mutex<(usize, T)>]>,
}

impl<T: Copy + Default> RecordCache<T> {
    const SLOTS: usize = 4096;

    pub(super) fn new() -> RecordCache<T> {
        RecordCache {
            slots: (0..Self::SLOTS)
                .map(|_| std::sync::Mutex::new((usize::MAX, T::default())))
                .collect(),
        }
    }

    /// The record at `offset`, decoded by `decode` when not cached.
    pub(super) fn get(&self, offset: usize, decode: impl FnOnce() -> T) -> T {
        let slot =
            &self.slots[offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52 & (Self::SLOTS - 1)];
        if let Ok(s) = slot.lock() {
            if s.0 == offset {
                return s.1;
            }
        }
        let value = decode();
        if let Ok(mut s) = slot.lock() {
            *s = (offset, value);
        }
        value
    }
}
