//! The delivery ledger: per source partition (`origin`), the ids of the
//! alerts one sink delivered for findings from that partition.
//!
//! A partition's detector state moves between instances in a snapshot; the
//! ledger of the partition travels with it, so the new owner, re-finding the
//! same findings while it catches up, does not deliver them again (see
//! [`Alerts::adopt`](super::Alerts::adopt)).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

/// One sink's ledger: delivered alert ids (hashed) per origin, oldest first,
/// at most `capacity` per origin.
pub struct Ledger {
    capacity: usize,
    origins: Mutex<HashMap<u16, VecDeque<u128>, foldhash::fast::RandomState>>,
}

impl Ledger {
    /// Keeps at most `capacity` ids per origin, the oldest dropped first.
    pub fn new(capacity: usize) -> Ledger {
        Ledger {
            capacity,
            origins: Mutex::new(HashMap::default()),
        }
    }

    fn origins(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u16, VecDeque<u128>, foldhash::fast::RandomState>> {
        self.origins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the alert `id` from `origin` was delivered. Origin 0 (no
    /// partition) is not recorded.
    pub fn record(&self, origin: u16, id: u128) {
        if origin == 0 || self.capacity == 0 {
            return;
        }
        let mut origins = self.origins();
        let ids = origins.entry(origin).or_default();
        ids.push_back(id);
        while ids.len() > self.capacity {
            ids.pop_front();
        }
    }

    /// The ids delivered for `origin`, oldest first, each once.
    pub fn ids(&self, origin: u16) -> Vec<u128> {
        let origins = self.origins();
        let Some(ids) = origins.get(&origin) else {
            return Vec::new();
        };
        // An id is recorded again only when it was delivered again (the
        // sink's memory had let it go); it is listed at its first delivery.
        let mut listed =
            HashSet::with_capacity_and_hasher(ids.len(), foldhash::fast::RandomState::default());
        ids.iter()
            .copied()
            .filter(|id| listed.insert(*id))
            .collect()
    }

    /// Forgets everything recorded for `origin`.
    pub fn forget(&self, origin: u16) {
        self.origins().remove(&origin);
    }

    /// Adds `ids` (oldest first), delivered for `origin` elsewhere, to what
    /// is recorded for it: after what is already there, without repeating an
    /// id, the oldest dropped past the capacity.
    pub fn adopt(&self, origin: u16, ids: &[u128]) {
        if origin == 0 || self.capacity == 0 || ids.is_empty() {
            return;
        }
        let mut origins = self.origins();
        let known = origins.entry(origin).or_default();
        let mut present: HashSet<u128, _> =
            HashSet::with_capacity_and_hasher(known.len(), foldhash::fast::RandomState::default());
        present.extend(known.iter().copied());
        // Only the newest `capacity` of `ids` could stay.
        let start = ids.len().saturating_sub(self.capacity);
        for &id in &ids[start..] {
            if present.insert(id) {
                known.push_back(id);
            }
        }
        while known.len() > self.capacity {
            known.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_origin_and_origin_zero_is_not_kept() {
        let ledger = Ledger::new(3);
        for id in 1..=5 {
            ledger.record(3, id);
        }
        ledger.record(4, 9);
        ledger.record(0, 7);
        assert_eq!(ledger.ids(3), [3, 4, 5], "the oldest are dropped");
        assert_eq!(ledger.ids(4), [9], "each origin has its own bound");
        assert!(ledger.ids(0).is_empty());
        ledger.forget(3);
        assert!(ledger.ids(3).is_empty());
        assert_eq!(ledger.ids(4), [9]);
    }

    #[test]
    fn adopting_merges_without_repeats_within_the_bound() {
        let ledger = Ledger::new(4);
        ledger.record(3, 1);
        ledger.adopt(3, &[1, 2, 3]);
        assert_eq!(ledger.ids(3), [1, 2, 3]);
        ledger.adopt(3, &[10, 11, 12, 13, 14, 15]);
        assert_eq!(ledger.ids(3), [12, 13, 14, 15], "only the newest fit");
        ledger.adopt(0, &[1]);
        assert!(ledger.ids(0).is_empty());
    }

    #[test]
    fn a_redelivered_id_is_listed_once() {
        let ledger = Ledger::new(5);
        for id in [1, 2, 1, 3] {
            ledger.record(3, id);
        }
        assert_eq!(ledger.ids(3), [1, 2, 3]);
    }
}
