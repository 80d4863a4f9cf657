//! The key security review: every key classified by system, privilege and
//! age; stale keys (valid but unused); rotation overdue; expired keys still
//! in use; unknown keys seen in traffic; keys allowed actions they never use
//! (least-privilege candidates); the keys with the most findings; all ranked
//! by risk, each rank with its reasons.
//!
//! [`review`] is a pure function of the engine's state, the inventory, the
//! period's findings and the time of the review ([`ReviewInput`]), so
//! `keywatch review` (over replayed events), the daemon's API and a
//! checkpoint file can all feed it. Its serde form is the JSON for machines;
//! [`Review::to_markdown`] is the report for people. [`status`] counts the
//! same classification for the inventory metrics. [`Review::offences`]
//! lists the keys on the lists a CI gate requires empty (`--fail-on`).

mod build;
mod changes;
mod gate;
mod input;
mod judge;
mod markdown;
mod report;

pub use build::review;
pub use changes::{Changes, Digest};
pub use gate::{Class, Offence};
pub use input::{ReviewInput, Thresholds};
pub use report::*;

use crate::config::Entity;
use crate::inventory::Privilege;
use crate::metrics::Metrics;
use judge::{judge, traffic};

/// Keys by inventory status, privilege and age: what the inventory metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryStatus {
    /// Listed keys.
    pub known: u64,
    /// Keys seen in traffic and not listed.
    pub unknown: u64,
    /// Listed keys past their expiry.
    pub expired: u64,
    /// Listed keys valid but unused past the stale threshold.
    pub stale: u64,
    /// Listed keys valid and due for rotation.
    pub rotation_overdue: u64,
    /// Listed keys by privilege: read, write, admin, unspecified.
    pub by_privilege: [u64; 4],
    /// Listed keys by age since creation.
    pub by_age: ByAge,
}

/// Counts the review's classification without building the report (for
/// metrics, refreshed periodically by the daemon). `input.findings` is not read.
pub fn status(input: &ReviewInput<'_>) -> InventoryStatus {
    let mut s = InventoryStatus::default();
    for entry in input.inventory.entries() {
        let seen = traffic(input.engine, &entry.key_id);
        let j = judge(entry, seen.as_ref(), input);
        s.known += 1;
        s.expired += u64::from(j.expired);
        s.stale += u64::from(j.stale.is_some());
        s.rotation_overdue += u64::from(j.overdue.is_some());
        let slot = match entry.privilege {
            Some(Privilege::Read) => 0,
            Some(Privilege::Write) => 1,
            Some(Privilege::Admin) => 2,
            None => 3,
        };
        s.by_privilege[slot] += 1;
        s.by_age.add(j.age_days);
    }
    input.engine.for_each_key(Entity::KeyId, |key, _| {
        s.unknown += u64::from(input.inventory.get(key).is_none());
    });
    s
}

impl InventoryStatus {
    /// Sets the `keywatch_inventory_keys*` gauges.
    pub fn export(&self, m: &Metrics) {
        for (status, n) in [
            ("known", self.known),
            ("unknown", self.unknown),
            ("expired", self.expired),
            ("stale", self.stale),
            ("rotation_overdue", self.rotation_overdue),
        ] {
            m.inventory_keys.with_label_values(&[status]).set(n as i64);
        }
        for (label, n) in ["read", "write", "admin", "unspecified"]
            .into_iter()
            .zip(self.by_privilege)
        {
            m.inventory_keys_by_privilege
                .with_label_values(&[label])
                .set(n as i64);
        }
        for (label, n) in ByAge::LABELS.into_iter().zip(self.by_age.counts()) {
            m.inventory_keys_by_age
                .with_label_values(&[label])
                .set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests;
