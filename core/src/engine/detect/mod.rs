//! The detectors, one per file, and the order they see an event in.
//!
//! Each detector reads the key's state as it was *before* the event (is this
//! source new? how long was the key idle?), may emit a finding, and then the
//! event is folded into the state. [`observe`] fixes that order.

pub mod cloud_credential_outside_cloud;
pub mod config;
pub mod dormant_revival;
pub mod error_spike;
pub mod hold;
pub mod impossible_travel;
pub mod list;
pub mod listed_source;
pub mod new_action;
pub mod new_identity;
pub mod new_source;
pub mod new_user_agent;
pub mod policy;
pub mod rate_spike;
#[cfg(test)]
mod rate_tests;
pub mod sensitive;
pub mod share;
pub mod source_fanout;

pub use config::*;

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::finding::{finding_id, Detector, Eligibility, Evidence, Finding, Folded, Severity};
use super::settings::{Settings, Stats};
use super::source::SourceId;
use super::state::{Eviction, Folding, KeyState, Novel, Secs};
use crate::decode::{AuditEvent, EventSample, Source};
use crate::engine::org::OrgNetworks;
use crate::types::Entity;

/// Seconds in a day.
pub const DAY: u32 = 86_400;

/// How long after one run a scheduled monthly job runs again: a calendar
/// month (28 to 31 days) from the same day, give or take a day.
pub const A_MONTH_LATER: std::ops::RangeInclusive<u32> = 27 * DAY..=32 * DAY;

/// Whether a use at `last` and one at `now` are a monthly job's runs.
pub fn a_month_apart(last: Secs, now: Secs) -> bool {
    A_MONTH_LATER.contains(&now.saturating_sub(last))
}

/// Everything a detector needs about the event being observed.
pub struct Ctx<'a, 'e> {
    /// Engine settings.
    pub settings: &'a Settings,
    /// Engine counters.
    pub stats: &'a Stats,
    /// Which identity this state belongs to.
    pub entity: Entity,
    /// The identity's value (key id or principal).
    pub subject: &'a str,
    /// The event.
    pub ev: &'a AuditEvent<'e>,
    /// The event's user-agent family and its value hash
    /// ([`new_user_agent::of_event`]), worked out once for every identity.
    pub user_agent: Option<(&'a str, u32)>,
    /// Event time, seconds.
    pub now: Secs,
    /// The key's active-day clock after this event.
    pub day: u16,
    /// How much the key had been learned before this event.
    pub eligibility: Eligibility,
    /// Past learning: detectors that need a baseline may alert.
    pub eligible: bool,
    /// When the key's learning ended (`Secs::MAX`: it has not): the rate
    /// models learn each hour as of its own time.
    pub learned_at: Secs,
    /// The event came from an allowlisted network: nothing it trips alerts.
    pub allowlisted: bool,
    /// What the organisation knows beyond this identity.
    pub history: History<'a>,
    /// The inventory's view of the key, when an inventory is enforced and
    /// the identity is a key id.
    pub policy: Option<policy::PolicyView<'a>>,
    /// What responders taught identities is normal.
    pub taught: &'a super::teach::Teachings,
    /// Network intelligence, when enrichment files are configured and the
    /// event's source is an address.
    pub netintel: Option<&'a crate::netintel::Tables>,
    /// Findings raised so far.
    pub out: &'a mut Vec<Finding>,
    /// Where in `out` the event's key raised its findings, when this is the
    /// key's principal (empty otherwise): one event, at most one finding per
    /// detector, and the key's own baseline speaks first.
    pub key_found: std::ops::Range<usize>,
    /// Detectors (bits by index) whose finding on this event the key folded
    /// into an open run: its principal's would be the same incident, and
    /// folds too. Set while the key is observed, read by its principal.
    pub key_folded: u32,
    /// Firsts of this event that detectors learned before others read them
    /// (for [`hold`]).
    pub firsts: Firsts,
}

/// Firsts of the event for its identity, set as they are learned: a later
/// detector can no longer read them off the identity's tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Firsts {
    /// The event's network is one the identity has not used, and new
    /// networks are not a habit of its days ([`share::habitual`]).
    pub network: bool,
    /// The event's client family is one the identity has not used (and it
    /// knows others), and new clients are not a habit of its days.
    pub client: bool,
    /// The event's new action was gathered by an open hold
    /// ([`hold::settle`]): it does not start a hold of its own.
    pub gathered: bool,
}

/// What is known beyond the identity's own state: whether it is new to the
/// organisation, whether its holder has a history, which networks anyone uses.
pub struct History<'a> {
    /// Identities first seen at or after this time are new to the
    /// organisation (keywatch had been watching for a learning period).
    pub new_after: Secs,
    /// For a key: its principal is tracked and has a history of its own, so
    /// a new key is judged through the principal.
    pub holder_has_history: bool,
    /// Networks any identity has used (before this event).
    pub org: &'a OrgNetworks,
}

/// The numbers a detector reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Severity.
    pub severity: Severity,
    /// One sentence.
    pub summary: String,
    /// Observed value.
    pub observed: Value,
    /// What is normal for the key.
    pub baseline: Value,
    /// The line crossed.
    pub threshold: Value,
}

impl Ctx<'_, '_> {
    /// How the key is named in summaries: `key AKIA… (arn:…)`.
    pub fn who(&self) -> String {
        match (self.entity, self.ev.principal.as_deref()) {
            (Entity::Principal, _) => {
                format!("key {} of principal {}", self.ev.key_id, self.subject)
            }
            (Entity::KeyId, Some(p)) => format!("key {} ({p})", self.subject),
            (Entity::KeyId, None) => format!("key {}", self.subject),
        }
    }

    /// The event's source as written (address or name), or empty.
    pub fn source_text(&self) -> String {
        self.ev
            .source
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Whether a finding of `detector` on `dim` would be dropped now (the
    /// event's network is allowlisted, or the key is cooling down on it),
    /// counting the drop. Detectors ask before they describe a finding, so
    /// a key that keeps tripping a rule in its cooldown costs no formatting.
    pub fn quiet(&mut self, state: &mut KeyState, detector: Detector, dim: u64) -> bool {
        if self.allowlisted {
            self.stats
                .suppressed_allowlist
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if self.is_taught(detector, None) {
            return true;
        }
        if state.cooling(detector as u8, cooldown_dim(dim), self.now) {
            self.stats
                .suppressed_cooldown
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if self.key_folded & detector_bit(detector) != 0 {
            // The key folded this into its open run: so does the principal.
            self.start_cooldown(state, detector, dim);
            self.count_in_run(state, detector);
            self.stats.folded.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if self.out[self.key_found.clone()]
            .iter()
            .any(|f| f.detector == detector)
        {
            // The key raised this already: the principal's finding would say
            // it again. Its cooldown starts as if it had been raised, and it
            // counts in the principal's run; nothing is formatted.
            self.start_cooldown(state, detector, dim);
            self.count_in_run(state, detector);
            self.stats
                .suppressed_duplicate
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The fold limit for `detector`: policy findings never fold.
    fn fold_after(&self, detector: Detector) -> u8 {
        if Detector::POLICY.contains(&detector) {
            0
        } else {
            self.settings.fold_after
        }
    }

    /// Counts a finding said by the key in the principal's run of
    /// `detector`, so the principal does not raise what its key folds.
    fn count_in_run(&self, state: &mut KeyState, detector: Detector) {
        let after = self.fold_after(detector);
        state.fold(
            detector as u8,
            Severity::Info as u8,
            0,
            self.now,
            after,
            self.settings.fold_quiet_s,
        );
    }

    /// Whether the key is cooling down on `detector` (`dim`): nothing it
    /// raised there would be said now. A detector whose judgement is costly
    /// asks this first and then lets [`Ctx::quiet`] count the drop.
    pub fn cooling(&self, state: &KeyState, detector: Detector, dim: u64) -> bool {
        state.cooling(detector as u8, cooldown_dim(dim), self.now)
    }

    fn start_cooldown(&self, state: &mut KeyState, detector: Detector, dim: u64) {
        state.cool(
            detector as u8,
            cooldown_dim(dim),
            self.now,
            self.settings.cooldown_s,
        );
    }

    /// Whether a responder taught this identity that what this event shows
    /// to `detector` (with `count` in its bucket, for rates) is normal,
    /// counting the drop.
    pub fn is_taught(&self, detector: Detector, count: Option<u32>) -> bool {
        let taught = self
            .taught
            .covers(self.entity, self.subject, detector, self.ev, count);
        if taught {
            self.stats.suppressed_taught.fetch_add(1, Ordering::Relaxed);
        }
        taught
    }

    /// Raises a finding unless the source is allowlisted or the
    /// (detector, dimension) is cooling down; starts the cooldown.
    ///
    /// A finding of a behavioural detector that would continue a run of its
    /// findings on this key past `fold_after` folds instead
    /// ([`KeyState::fold`]): it is counted, its cooldown starts, and nothing
    /// is raised. Policy findings never fold.
    pub fn emit(&mut self, state: &mut KeyState, detector: Detector, dim: u64, report: Report) {
        self.emit_sized(state, detector, dim, report, 0);
    }

    /// [`Ctx::emit`] for a finding with a size (the count in a bucket, the
    /// networks in a window): one at least twice the largest raised in its
    /// run is raised, not folded.
    pub fn emit_sized(
        &mut self,
        state: &mut KeyState,
        detector: Detector,
        dim: u64,
        report: Report,
        size: u32,
    ) {
        if self.quiet(state, detector, dim) {
            return;
        }
        self.start_cooldown(state, detector, dim);
        // A policy finding is a rule the inventory states, broken again:
        // said every cooldown for as long as it goes on. Only the models
        // fold.
        let folding = state.fold(
            detector as u8,
            report.severity as u8,
            size,
            self.now,
            self.fold_after(detector),
            self.settings.fold_quiet_s,
        );
        let ev = self.ev;
        let mut finding = Finding {
            id: finding_id(self.entity, self.subject, detector, dim, ev.time_ms),
            detector,
            severity: report.severity,
            entity: self.entity,
            key_id: ev.key_id.to_string(),
            principal: ev.principal.as_deref().map(str::to_owned),
            observed_at: crate::decode::time::format_rfc3339(ev.time_ms),
            summary: report.summary,
            evidence: Evidence {
                observed: report.observed,
                baseline: report.baseline,
                threshold: report.threshold,
                eligibility: self.eligibility.clone(),
                network: match (self.netintel, &ev.source) {
                    (Some(tables), Some(Source::Ip(ip))) => Some(tables.describe(*ip)),
                    _ => None,
                },
            },
            sample: EventSample::from(ev),
            folded: None,
            // Set by the pipeline, which knows the event's partition.
            origin: 0,
        };
        if folding == Folding::Fold {
            self.stats.folded.fetch_add(1, Ordering::Relaxed);
            if self.entity == Entity::KeyId {
                self.key_folded |= detector_bit(detector);
            }
            // The run's record: one id per run, the latest evidence, no page.
            if let Some(run) = state.open_run(detector as u8) {
                let since_ms = i64::from(run.since) * 1000;
                let since = crate::decode::time::format_rfc3339(since_ms);
                finding.id = finding_id(self.entity, self.subject, detector, FOLD_DIM, since_ms);
                finding.summary = format!(
                    "{} (folded into the run open since {}: {} raised, {} folded so far; no new alert)",
                    finding.summary,
                    since.get(..10).unwrap_or(&since),
                    run.raised,
                    run.folded
                );
                finding.folded = Some(Folded {
                    run_since: since,
                    raised: run.raised,
                    folded: run.folded,
                });
            }
        }
        self.out.push(finding);
    }
}

/// The dimension of a run's record (no detector's own dimension is all ones).
const FOLD_DIM: u64 = u64::MAX;

/// A detector's bit in [`Ctx::key_folded`].
fn detector_bit(detector: Detector) -> u32 {
    1 << (detector as u32 & 31)
}

/// A finding's dimension as the cooldown table keys it (folded to 32 bits).
fn cooldown_dim(dim: u64) -> u32 {
    (dim ^ (dim >> 32)) as u32
}

/// Folds one event into `state`, running every enabled detector first.
pub fn observe(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let s = ctx.settings;
    let now = ctx.now;
    let seen_before = state.events > 0;
    if seen_before && now < state.last_seen {
        ctx.stats.out_of_order.fetch_add(1, Ordering::Relaxed);
    }
    if seen_before && now / DAY != state.last_seen / DAY && now > state.last_seen {
        state.active_days = state.active_days.saturating_add(1);
        state.decay_peaks(s.daily_decay);
        state.novelty.next_day(s.daily_decay);
    }
    ctx.day = state.active_days;
    ctx.eligibility = Eligibility {
        learned_for_s: now.saturating_sub(state.first_seen) as u64,
        events_learned: state.events as u64,
        active_days: state.active_days as u32 + u32::from(seen_before),
    };
    ctx.eligible = seen_before
        && now.saturating_sub(state.first_seen) >= s.learning_s
        && state.events as u64 >= s.learning_events;
    // Past the event threshold too since an unknown moment: the learning
    // window's end is taken (an hour of the window closed late is learned
    // unclamped either way).
    ctx.learned_at = if ctx.eligible {
        state.first_seen.saturating_add(s.learning_s)
    } else {
        Secs::MAX
    };

    if let Some(view) = ctx.policy {
        policy::check(state, ctx, view);
    }
    if seen_before {
        dormant_revival::check(state, ctx);
    } else if let Some(last_used) = ctx.policy.and_then(|p| p.entry?.last_used) {
        dormant_revival::check_first_sight(state, ctx, last_used);
    }

    // Network intelligence: what the source is (cached per key), judged
    // before the event is learned.
    let located = match (ctx.netintel, &ctx.ev.source) {
        (Some(tables), Some(src @ Source::Ip(ip))) => {
            let memory = state.net.get_or_insert_with(Default::default);
            Some((tables, *ip, memory.locate(tables, SourceId::of(src), *ip)))
        }
        _ => None,
    };
    let mut network_new = false;
    let mut known_network = None;
    if let Some(source) = &ctx.ev.source {
        if !s.ignores(source) {
            let id = SourceId::of(source);
            let countable = matches!(source, Source::Ip(_)) && !ctx.allowlisted;
            let window_start = now - now % s.fanout_window_s;
            let facts = state.sources.facts(id, now, s.forget_s, window_start);
            network_new = !facts.network_known;
            // A first network corroborates only on a key for which new
            // networks are not a habit (a mobile carrier's, a VPN pool's).
            ctx.firsts.network = network_new
                && state.events > 0
                && !share::habitual(
                    state.novelty.rate(Novel::Network),
                    s.detectors.new_source.expected_novelty,
                );
            // A network the key forgot for lack of room, used again.
            let returned = network_new && state.came_back(id.network(), now);
            if network_new {
                new_source::check(state, ctx, id, &facts, returned, located.as_ref());
            } else {
                known_network = Some(id);
            }
            // The key's first day shows where it is used, not how often
            // that changes.
            if network_new && state.active_days > 0 {
                state.novelty.saw(Novel::Network);
                if !facts.wide_known {
                    state.novelty.saw(Novel::Wide);
                }
            }
            source_fanout::check(state, ctx, countable, &facts);
            match state
                .sources
                .record_after(&facts, id, now, s.forget_s, s.max_sources)
            {
                Eviction::None => {}
                evicted => {
                    ctx.stats.sources_evicted.fetch_add(1, Ordering::Relaxed);
                    if let Eviction::Network(network) = evicted {
                        state.forgot_network(network);
                    }
                }
            }
        }
    }
    if let Some((tables, ip, info)) = &located {
        listed_source::check(state, ctx, tables, info);
        impossible_travel::check(state, ctx, tables, info, *ip);
        cloud_credential_outside_cloud::check(state, ctx, tables, info);
        if let Some(memory) = state.net.as_deref_mut() {
            memory.learn(tables, info, *ip, now, ctx.ev.count, network_new);
        }
    }
    hold::settle(state, ctx, known_network);
    new_user_agent::check(state, ctx);
    new_identity::check(state, ctx);
    new_action::check(state, ctx);
    rate_spike::check(state, ctx);
    error_spike::check(state, ctx);

    state.events = state.events.saturating_add(ctx.ev.count);
    state.last_seen = state.last_seen.max(now);
    state.first_seen = state.first_seen.min(now);
}

/// Human duration for summaries: `45d`, `3h`, `12m`.
pub fn human_secs(s: u64) -> String {
    if s >= DAY as u64 * 2 {
        format!("{}d", s / DAY as u64)
    } else if s >= 7200 {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}
