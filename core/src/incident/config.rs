//! `[incidents]`: how findings are grouped into incidents.

use serde::{Deserialize, Serialize};

use crate::types::{invalid, ConfigError, HumanDuration};

/// `[incidents]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Group findings into incidents. Off, every sink is sent findings one by
    /// one as before incidents existed.
    pub enabled: bool,
    /// An incident stays open while its identity's findings keep arriving
    /// less than this apart (event time), and resolves after this long
    /// without one.
    pub window: HumanDuration,
    /// Most incidents open at once; past it the one idle longest is resolved
    /// early (and counted), so memory stays bounded.
    pub max_open: usize,
    /// Steps kept in one incident's timeline; later findings still count
    /// in its score and its count, the timeline keeps the first ones.
    pub max_timeline: usize,
}

/// The engine's cooldown (an hour) and half an hour more, so a detector that
/// re-raises as soon as its cooldown lets it (the next rate bucket or event
/// after it, minutes later) lands in the same incident when the attack goes
/// on; GuardDuty's attack sequences and Datadog's entity grouping use
/// windows of this order. At exactly the cooldown, every slow ramp was two
/// incidents (two pages): 6 of 70 held-out attacks, 1 of 70 at 90 minutes,
/// and 39.7 incidents of medium and above a fleet became 38.3.
fn default_window() -> HumanDuration {
    HumanDuration::secs(90 * 60)
}

/// Ten thousand open incidents are far past any real outage of a fleet's
/// keys (the evaluation fleets open a few dozen a day); each costs a few KB.
fn default_max_open() -> usize {
    10_000
}

/// Enough for the longest attack the generator plays (60 calls), small
/// enough that an incident stays a few KB in memory and in the store.
fn default_max_timeline() -> usize {
    100
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            enabled: true,
            window: default_window(),
            max_open: default_max_open(),
            max_timeline: default_max_timeline(),
        }
    }
}

impl IncidentsConfig {
    /// Every error names the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window.0.as_secs() < 60 {
            return Err(invalid(
                "incidents.window",
                self.window,
                "must be at least 1m: findings of one attack arrive minutes apart",
            ));
        }
        if self.window.0.as_secs() > 7 * 86_400 {
            return Err(invalid(
                "incidents.window",
                self.window,
                "must be at most 7d: longer joins unrelated findings into one incident",
            ));
        }
        if self.max_open == 0 {
            return Err(invalid(
                "incidents.max_open",
                self.max_open,
                "must be at least 1",
            ));
        }
        if self.max_timeline == 0 {
            return Err(invalid(
                "incidents.max_timeline",
                self.max_timeline,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
