//! A key's values: the actions and client families it used, hashed with
//! their kind into one bounded set.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::types::Secs;

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

    /// Keeps the `cap` most recently used values of `kind` (see
    /// [`crate::types::keep_recent`]); returns how many were dropped.
    pub fn keep_recent(&mut self, kind: ValueKind, cap: usize) -> usize {
        crate::types::keep_recent(
            &mut self.entries,
            cap,
            |e| e.last_seen,
            |e| e.hash >> TAG_SHIFT == kind as u32,
        )
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
