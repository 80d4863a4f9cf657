//! What an engine runs with: the configuration resolved into the units the
//! hot path uses ([`Settings`]), and the counters metrics read ([`Stats`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use compact_str::CompactString;
use wildmatch::WildMatch;

use super::baseline;
use super::config::Sections;
use super::detect::config::DetectorsConfig;
use super::state::{KeyState, Secs};
use crate::decode::Source;
use crate::types::Entity;

/// Settings resolved from configuration into the units the hot path uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Identities tracked.
    pub entities: Vec<Entity>,
    /// Most identities per kind.
    pub max_keys: usize,
    /// Most sources remembered per key.
    pub max_sources: usize,
    /// Most actions remembered per key.
    pub max_values: usize,
    /// Most user-agent families remembered per key.
    pub max_user_agents: usize,
    /// Learning period, seconds.
    pub learning_s: u32,
    /// Learning minimum events.
    pub learning_events: u64,
    /// Forget-after, seconds.
    pub forget_s: u32,
    /// Factor applied to learned peaks on each active day (from the half-life).
    pub daily_decay: f32,
    /// Cooldown, seconds.
    pub cooldown_s: u32,
    /// Findings of one detector on one key raised before further ones fold.
    pub fold_after: u8,
    /// A run of folding findings ends after this long without one, seconds.
    pub fold_quiet_s: u32,
    /// Allowlisted networks.
    pub allowlist: Vec<ipnet::IpNet>,
    /// Named sources that are the provider itself.
    pub ignore_named: Vec<WildMatch>,
    /// Detector switches and thresholds.
    pub detectors: DetectorsConfig,
    /// `rate_spike`'s rate model.
    pub rate: baseline::RateParams,
    /// `error_spike`'s rate model.
    pub errors: baseline::RateParams,
    /// `source_fanout` window, seconds.
    pub fanout_window_s: u32,
    /// `dormant_revival` threshold, seconds.
    pub dormant_s: u32,
}

impl Settings {
    /// Resolves a validated configuration.
    pub fn from_config(cfg: &dyn Sections) -> Settings {
        let e = cfg.engine();
        let d = cfg.detectors();
        Settings {
            entities: e.entities.clone(),
            max_keys: e.max_keys,
            max_sources: e.max_sources_per_key as usize,
            max_values: e.max_values_per_key as usize,
            max_user_agents: e.max_user_agents_per_key as usize,
            learning_s: e.learning_period.as_secs_u32(),
            learning_events: e.learning_min_events,
            forget_s: e.forget_after.as_secs_u32(),
            daily_decay: 0.5f32.powf(86_400.0 / e.baseline_half_life.0.as_secs_f32().max(3600.0)),
            cooldown_s: e.cooldown.as_secs_u32(),
            fold_after: e.fold_after,
            fold_quiet_s: e.fold_quiet.as_secs_u32(),
            allowlist: e.allowlist_networks.iter().map(|c| c.0).collect(),
            ignore_named: e
                .ignore_named_sources
                .iter()
                .map(|g| WildMatch::new(g))
                .collect(),
            detectors: d.clone(),
            rate: baseline::RateParams::new(
                d.rate_spike.bucket.as_secs_u32(),
                d.rate_spike.min_count,
                d.rate_spike.min_score,
                (d.rate_spike.accept_after.0.as_secs() / 86_400) as u16,
            ),
            errors: baseline::RateParams::new(
                d.error_spike.bucket.as_secs_u32(),
                d.error_spike.min_count,
                d.error_spike.min_score,
                (d.error_spike.accept_after.0.as_secs() / 86_400) as u16,
            ),
            fanout_window_s: d.source_fanout.window.as_secs_u32().max(1),
            dormant_s: d.dormant_revival.dormant_after.as_secs_u32(),
        }
    }

    /// Whether the key is still in its learning period at `now` (too young,
    /// or too few events): the detectors that need a baseline stay quiet.
    pub fn still_learning(&self, state: &KeyState, now: Secs) -> bool {
        now.saturating_sub(state.first_seen) < self.learning_s
            || (state.events as u64) < self.learning_events
    }

    /// Whether a named source is the provider acting for the key.
    pub fn ignores(&self, source: &Source<'_>) -> bool {
        match source {
            Source::Named(name) => self.ignore_named.iter().any(|g| g.matches(name)),
            Source::Ip(_) => false,
        }
    }

    pub(super) fn allowlisted(&self, source: Option<&Source<'_>>) -> bool {
        match source {
            Some(Source::Ip(ip)) => self.allowlist.iter().any(|n| n.contains(ip)),
            _ => false,
        }
    }
}

/// Engine counters, read by metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events applied.
    pub events: AtomicU64,
    /// New identities refused because `max_keys` was reached.
    pub keys_rejected: AtomicU64,
    /// Sources forgotten to stay within `max_sources_per_key`.
    pub sources_evicted: AtomicU64,
    /// Actions forgotten to stay within `max_values_per_key`.
    pub actions_evicted: AtomicU64,
    /// User-agent families forgotten to stay within `max_user_agents_per_key`.
    pub user_agents_evicted: AtomicU64,
    /// Findings dropped because the event came from an allowlisted network.
    pub suppressed_allowlist: AtomicU64,
    /// Findings dropped by the per-(key, detector, dimension) cooldown.
    pub suppressed_cooldown: AtomicU64,
    /// Findings folded into an open run of the same detector on the same
    /// key (see [`KeyState::fold`]).
    pub folded: AtomicU64,
    /// Findings dropped because a responder taught the identity that what
    /// they show is normal (a verdict of `expected`).
    pub suppressed_taught: AtomicU64,
    /// New networks held for corroboration (`new_source` on a key that
    /// meets new networks now and then) that did nothing the key does not
    /// before their hold ended: no finding.
    pub uncorroborated: AtomicU64,
    /// Principal findings dropped because the key's own baseline raised the
    /// same detector on the same event (one event, one finding per detector).
    pub suppressed_duplicate: AtomicU64,
    /// Events older than their key's latest event (they still count, in the
    /// key's current bucket).
    pub out_of_order: AtomicU64,
    /// Events a key had already applied before a restore, skipped.
    pub replayed: AtomicU64,
    /// Latest event time applied, epoch ms (the engine's watermark).
    pub watermark_ms: AtomicI64,
    /// Events of a key that arrived on another partition than the key's
    /// previous event: the producer does not key messages by key id, and
    /// the key's state is not where a scaled-out group expects it.
    pub partition_moves: AtomicU64,
    /// The latest such key, with the partition it left and the one it came on.
    pub last_move: std::sync::Mutex<Option<(CompactString, u16, u16)>>,
}

impl Stats {
    pub(super) fn moved(&self, key: &str, from: u16, to: u16) {
        self.partition_moves.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_move.try_lock() {
            *last = Some((CompactString::from(key), from, to));
        }
    }
}
