//! The ids of alerts already sent (or on their way), bounded: what keeps a
//! replayed finding from being delivered twice.

use std::collections::{HashMap, VecDeque};

/// A bounded memory of alert ids (hashed), oldest forgotten first.
pub struct SeenIds {
    ids: HashMap<u128, u64, foldhash::fast::RandomState>,
    order: VecDeque<(u128, u64)>,
    capacity: usize,
    generation: u64,
}

impl SeenIds {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: usize) -> SeenIds {
        SeenIds {
            ids: HashMap::default(),
            order: VecDeque::new(),
            capacity,
            generation: 0,
        }
    }

    /// Remembers `id`; false if it was already remembered.
    pub fn remember(&mut self, id: u128) -> bool {
        if self.ids.contains_key(&id) {
            return false;
        }
        self.generation += 1;
        self.ids.insert(id, self.generation);
        self.order.push_back((id, self.generation));
        while self.order.len() > self.capacity {
            if let Some((old, generation)) = self.order.pop_front() {
                // Only if not forgotten and remembered again since.
                if self.ids.get(&old) == Some(&generation) {
                    self.ids.remove(&old);
                }
            }
        }
        true
    }

    /// Forgets `id` (it was not delivered after all).
    pub fn forget(&mut self, id: u128) {
        self.ids.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_bounded_and_forgettable() {
        let mut seen = SeenIds::new(3);
        assert!(seen.remember(1));
        assert!(!seen.remember(1));
        assert!(seen.remember(2));
        assert!(seen.remember(3));
        assert!(seen.remember(4), "past capacity the oldest is forgotten");
        assert!(seen.remember(1));
        seen.forget(3);
        assert!(seen.remember(3), "a forgotten id may come again");
        assert!(seen.ids.len() <= 3 && seen.order.len() <= 3);
    }
}
