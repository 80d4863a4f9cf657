//! What the whole organisation has seen: the networks (/24, /56) any tracked
//! identity has used. A brand-new identity doing something sensitive from a
//! network nobody in the organisation uses is a stronger signal than the same
//! from the office egress.
//!
//! Bounded: past [`MAX_NETWORKS`] networks new ones are not remembered (and
//! so stay "unseen", which errs towards a higher severity, never silence).
//! Not checkpointed: a restore rebuilds it from the restored keys' sources.

use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most networks remembered: ~40 MB at the bound.
pub const MAX_NETWORKS: usize = 1 << 20;

/// Networks used by any identity, with the bound.
pub struct OrgNetworks {
    seen: DashMap<u64, (), foldhash::fast::RandomState>,
    len: AtomicUsize,
    cap: usize,
}

impl OrgNetworks {
    /// An empty set holding at most `cap` networks.
    pub fn new(cap: usize) -> OrgNetworks {
        OrgNetworks {
            seen: DashMap::with_hasher_and_shard_amount(Default::default(), 64),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    /// Whether any identity has used `network`.
    pub fn knows(&self, network: u64) -> bool {
        self.seen.contains_key(&network)
    }

    /// Remembers `network` (a read when it is already known).
    pub fn record(&self, network: u64) {
        if self.seen.contains_key(&network) || self.len.load(Ordering::Relaxed) >= self.cap {
            return;
        }
        if self.seen.insert(network, ()).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Networks remembered.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_its_bound() {
        let org = OrgNetworks::new(2);
        org.record(1);
        org.record(1);
        org.record(2);
        org.record(3);
        assert!(org.knows(1) && org.knows(2) && !org.knows(3));
        assert_eq!(org.len(), 2);
    }
}
