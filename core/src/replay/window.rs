//! The reorder window: events read but not yet applied, taken out in
//! (time, file, position) order, and the cap on how many it holds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::decode::OwnedEvent;

/// Events held at most in the reorder window whatever the window holds at
/// the input's rate (about 250 bytes each): past it the oldest are applied
/// early, and what then arrives earlier is late.
pub(super) const MAX_HELD: usize = 2_000_000;

/// An event read, in (time, file, position) order.
pub(super) struct Held {
    pub(super) time_ms: i64,
    pub(super) ev: OwnedEvent,
}

/// The reorder window: the heap orders small keys, the events wait in a
/// slab (moving a key is cheaper than moving an event at every heap level).
#[derive(Default)]
pub(super) struct Window {
    /// (time, file, position in file, slot).
    order: BinaryHeap<Reverse<(i64, u32, u64, u32)>>,
    slots: Vec<Option<OwnedEvent>>,
    free: Vec<u32>,
}

impl Window {
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn push(&mut self, file: u32, seq: u64, ev: OwnedEvent) {
        let time = ev.time_ms();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slots.push(Some(ev));
                (self.slots.len() - 1) as u32
            }
        };
        self.order.push(Reverse((time, file, seq, slot)));
    }

    /// The earliest event if it is before `before`.
    pub(super) fn pop_before(&mut self, before: i64) -> Option<Held> {
        if self.order.peek()?.0 .0 >= before {
            return None;
        }
        self.pop()
    }

    pub(super) fn pop(&mut self) -> Option<Held> {
        let Reverse((time_ms, _, _, slot)) = self.order.pop()?;
        let ev = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some(Held { time_ms, ev })
    }
}
