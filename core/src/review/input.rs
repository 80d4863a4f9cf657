//! What a review is made from: the engine's state, the inventory, the
//! period's findings, the time, and the thresholds `[inventory]` sets.

use crate::config::InventoryConfig;
use crate::engine::state::Secs;
use crate::engine::{Engine, Finding};
use crate::inventory::Inventory;

/// The review's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A valid key unused this long is stale, seconds.
    pub stale_after_s: u32,
    /// A key not rotated (or created) within this long is overdue, seconds.
    pub rotation_after_s: u32,
}

impl Thresholds {
    /// The thresholds `[inventory]` configures.
    pub fn from_config(cfg: &InventoryConfig) -> Thresholds {
        Thresholds {
            stale_after_s: cfg.stale_after.as_secs_u32(),
            rotation_after_s: cfg.rotation_after.as_secs_u32(),
        }
    }
}

/// Everything a review is made from.
pub struct ReviewInput<'a> {
    /// Per-key state: what traffic showed of each key.
    pub engine: &'a Engine,
    /// The known keys.
    pub inventory: &'a Inventory,
    /// The findings of the period reviewed.
    pub findings: &'a [Finding],
    /// The time of the review (for recorded events, the newest event's time).
    pub now: Secs,
    /// Since when the engine has watched traffic: a listed key it never saw
    /// is known to be unused since then (or since its creation, if later).
    /// `None`: nothing is known of unseen keys' use.
    pub observed_since: Option<Secs>,
    /// Stale and rotation thresholds.
    pub thresholds: Thresholds,
}
