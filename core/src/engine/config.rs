//! `[engine]`: per-key state (what is tracked, learning, bounds, folding),
//! and [`Sections`], what an engine is built from.

use serde::{Deserialize, Serialize};

use super::detect::config::DetectorsConfig;
use crate::inventory::config::PolicyDetectorsConfig;
use crate::types::{invalid, Cidr, ConfigError, Entity, HumanDuration};

/// The configuration sections an engine reads. The core's `Config`
/// provides them (and whatever dereferences to it); the engine names no
/// configuration file of its own.
pub trait Sections {
    /// `[engine]`.
    fn engine(&self) -> &EngineConfig;
    /// `[detectors]`.
    fn detectors(&self) -> &DetectorsConfig;
    /// `[inventory.detectors]`: the policy detectors' switches.
    fn policy_detectors(&self) -> &PolicyDetectorsConfig;
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// What to keep baselines for: `["key_id"]`, or `["key_id", "principal"]`.
    pub entities: Vec<Entity>,
    /// Most entities tracked per kind; past it new ones are counted and not tracked.
    pub max_keys: usize,
    /// Most source addresses remembered per key (least recently used are forgotten).
    pub max_sources_per_key: u16,
    /// Most actions remembered per key.
    pub max_values_per_key: u16,
    /// Most user-agent families remembered per key (a table of their own:
    /// a key with many actions never evicts its clients).
    pub max_user_agents_per_key: u16,
    /// A key alerts on novelty and rates only after being known this long...
    pub learning_period: HumanDuration,
    /// ...and after this many events.
    pub learning_min_events: u64,
    /// A source, user agent or action unused this long is forgotten (new again).
    pub forget_after: HumanDuration,
    /// Peaks learned by the spike detectors halve over this time, so a baseline
    /// follows a key that has calmed down.
    pub baseline_half_life: HumanDuration,
    /// One finding per (key, detector, dimension) per cooldown: one incident, one alert.
    pub cooldown: HumanDuration,
    /// After this many findings of one detector on one key without a
    /// verdict, further ones fold into the open finding (counted, not
    /// raised) unless more severe than all before them; 0 never folds.
    pub fold_after: u8,
    /// A run of findings that fold ends after this long without one (or at a
    /// verdict); the next finding is raised again.
    pub fold_quiet: HumanDuration,
    /// Trusted networks (CI, corporate egress): their events update baselines
    /// but never raise findings of their own.
    pub allowlist_networks: Vec<Cidr>,
    /// Named sources (glob, `*` wildcard) that are the provider acting for the
    /// key, not a place: never new, never counted as fan-out.
    pub ignore_named_sources: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            // The principal beside the key: a new credential (an STS session,
            // a fresh token, a rotated key) is judged through its principal
            // from its first event.
            entities: vec![Entity::KeyId, Entity::Principal],
            // One million keys at ~200 B each is ~200 MB: a large fleet on a small pod.
            max_keys: 1_000_000,
            // A service key uses 1-3 addresses; 64 keeps a fan-out's worth of evidence.
            max_sources_per_key: 64,
            max_values_per_key: 64,
            // Above new_user_agent.broad_after (12), so a shared key's count reaches it.
            max_user_agents_per_key: 16,
            // The design's defaults: learning 7d and ≥ 20 events, forget after 30d.
            learning_period: HumanDuration::days(7),
            learning_min_events: 20,
            forget_after: HumanDuration::days(30),
            // Two weeks: covers a weekly cycle twice, so weekend lows don't erase weekday peaks.
            baseline_half_life: HumanDuration::days(14),
            cooldown: HumanDuration::secs(3600),
            // Two findings: the second shows the first was no fluke; a third
            // of the same kind on the same key, unanswered, is a broken model
            // or one incident, and either way one open item for a person.
            fold_after: 2,
            // As long as the key remembers what it used (forget_after): a
            // person whose trips come every two to four weeks is one run,
            // and no benign key raises one detector more than twice a month.
            fold_quiet: HumanDuration::days(30),
            allowlist_networks: Vec::new(),
            // CloudTrail writes these when AWS services call on the key's behalf.
            ignore_named_sources: vec!["AWS Internal".to_owned(), "*.amazonaws.com".to_owned()],
        }
    }
}

impl EngineConfig {
    /// Checks the section across fields; an error names the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = self;
        if !e.entities.contains(&Entity::KeyId) {
            return Err(invalid(
                "engine.entities",
                format!("{:?}", e.entities),
                "must include \"key_id\"",
            ));
        }
        if e.max_keys == 0 {
            return Err(invalid("engine.max_keys", 0, "must be at least 1"));
        }
        if e.max_sources_per_key == 0 || e.max_values_per_key == 0 || e.max_user_agents_per_key == 0
        {
            return Err(invalid(
                "engine.max_sources_per_key / engine.max_values_per_key / engine.max_user_agents_per_key",
                format!(
                    "{} / {} / {}",
                    e.max_sources_per_key, e.max_values_per_key, e.max_user_agents_per_key
                ),
                "must be at least 1",
            ));
        }
        if e.forget_after < e.learning_period {
            return Err(invalid(
                "engine.forget_after",
                e.forget_after,
                format!(
                    "must be at least engine.learning_period ({}), or sources are forgotten before they are learned",
                    e.learning_period
                ),
            ));
        }
        if e.fold_after > 0 && e.fold_quiet.0 < e.cooldown.0 {
            return Err(invalid(
                "engine.fold_quiet",
                e.fold_quiet,
                format!(
                    "must be at least engine.cooldown ({}), or a run of findings ends between two of them",
                    e.cooldown
                ),
            ));
        }
        if e.baseline_half_life.0.as_secs() < 3600 {
            return Err(invalid(
                "engine.baseline_half_life",
                e.baseline_half_life,
                "must be at least 1h",
            ));
        }
        Ok(())
    }
}
