//! Policy detectors: each use judged against the key's inventory entry.
//!
//! They run only when an inventory is configured, and only for the `key_id`
//! identity (the inventory lists keys, not principals). Their findings go
//! through [`Ctx::emit`] like every other detector's, so the network
//! allowlist, cooldowns and stable ids work the same. Severity follows the
//! key's privilege ([`severity`]): an admin key misused is critical.
//!
//! Per-key policy state that has no place in [`KeyState`] (which must stay
//! small for a million keys) lives in [`Policy`]'s own table: the usage-cap
//! window, and which allowed-action patterns the key's uses matched (for the
//! review's least-privilege list). Only keys whose entry has a cap or allowed
//! actions get a row, and only once the engine tracks them, so the table is
//! bounded by `engine.max_keys` like the key map itself.

pub mod expired_key;
pub mod one_time_reuse;
pub mod outside_allowlist;
pub mod scope_violation;
pub mod unknown_key;
pub mod usage_cap;

use compact_str::CompactString;
use dashmap::DashMap;
use serde_json::{json, Value};
use smallvec::SmallVec;

use super::Ctx;
use crate::engine::finding::Severity;
use crate::engine::state::{KeyState, Secs};
use crate::inventory::config::PolicyDetectorsConfig;
use crate::inventory::{InventoryHandle, KeyEntry, Privilege};

/// The inventory the engine enforces, with the per-key state its detectors keep.
pub struct Policy {
    inventory: InventoryHandle,
    switches: PolicyDetectorsConfig,
    usage: DashMap<CompactString, KeyUsage, foldhash::fast::RandomState>,
}

/// What the policy detectors remember about one key's use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUsage {
    /// Start of the usage-cap window being counted.
    pub window_start: Secs,
    /// Uses in that window (weighted by `count`).
    pub window_count: u32,
    /// The window's cap breach was reported.
    pub cap_reported: bool,
    /// [`crate::inventory::ActionPattern::id`]s of the allowed patterns the
    /// key's uses matched.
    pub patterns_used: SmallVec<[u32; 4]>,
}

impl Policy {
    /// Enforces `inventory` with the detectors `switches` turn on.
    pub fn new(inventory: InventoryHandle, switches: PolicyDetectorsConfig) -> Policy {
        Policy {
            inventory,
            switches,
            usage: DashMap::default(),
        }
    }

    /// The inventory enforced.
    pub fn inventory(&self) -> &InventoryHandle {
        &self.inventory
    }

    /// What the policy detectors remember about `key_id`, if anything.
    pub fn usage(&self, key_id: &str) -> Option<KeyUsage> {
        self.usage.get(key_id).map(|u| u.clone())
    }
}

/// The policy and the inventory's entry for the key being observed.
#[derive(Clone, Copy)]
pub struct PolicyView<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The key's entry; `None`: the key is not listed.
    pub entry: Option<&'a KeyEntry>,
}

/// Runs every enabled policy detector on the event in `ctx`, before the
/// event is folded into `state`.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, view: PolicyView<'_>) {
    let on = &view.policy.switches;
    let Some(entry) = view.entry else {
        if on.unknown_key {
            unknown_key::check(state, ctx);
        }
        return;
    };
    unknown_key::forget(state);
    if on.expired_key {
        expired_key::check(state, ctx, entry);
    }
    if on.outside_allowlist {
        outside_allowlist::check(state, ctx, entry);
    }
    if on.one_time_reuse {
        one_time_reuse::check(state, ctx, entry);
    }
    let capped = on.usage_cap && entry.usage_cap.is_some();
    if capped || entry.allowed_actions.is_some() {
        let table = &view.policy.usage;
        let mut usage = match table.get_mut(ctx.subject) {
            Some(usage) => usage,
            None => table.entry(CompactString::from(ctx.subject)).or_default(),
        };
        if capped {
            usage_cap::check(state, ctx, entry, &mut usage);
        }
        scope_violation::check(state, ctx, entry, &mut usage, on.scope_violation);
    }
}

/// A misuse's severity for this key: critical for an admin key, one step
/// below `base` for a read-only key, `base` otherwise (write, or unstated).
pub fn severity(base: Severity, entry: &KeyEntry) -> Severity {
    match entry.privilege {
        Some(Privilege::Admin) => Severity::Critical,
        Some(Privilege::Read) => one_lower(base),
        Some(Privilege::Write) | None => base,
    }
}

/// The next lower severity (`info` stays `info`).
pub fn one_lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        Severity::Medium => Severity::Low,
        Severity::Low | Severity::Info => Severity::Info,
    }
}

/// `owned by alice (payments, admin)`, for summaries.
fn owned_by(entry: &KeyEntry) -> String {
    let mut about: Vec<&str> = Vec::new();
    if let Some(team) = &entry.team {
        about.push(team);
    }
    if let Some(p) = entry.privilege {
        about.push(p.as_str());
    }
    if about.is_empty() {
        format!("owned by {}", entry.owner)
    } else {
        format!("owned by {} ({})", entry.owner, about.join(", "))
    }
}

/// Who the inventory says the key belongs to, for every policy finding's baseline.
fn listing(entry: &KeyEntry) -> Value {
    json!({
        "owner": &*entry.owner,
        "team": entry.team.as_deref(),
        "system": entry.system.as_deref(),
        "privilege": entry.privilege.map(Privilege::as_str),
    })
}

fn rfc3339(t: Secs) -> String {
    crate::decode::time::format_rfc3339(t as i64 * 1000)
}

#[cfg(test)]
mod tests;
