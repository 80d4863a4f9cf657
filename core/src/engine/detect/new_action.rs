//! `new_action`: a settled key calling an action it has not called within
//! `forget_after` — scope creep, or a stolen key exploring what it can do.
//!
//! A first sensitive call ([`sensitive`]: minting credentials, changing
//! permissions, disabling logging or monitoring, reading secrets) is judged
//! on every key: high, or medium on a key with `broad_after` or more actions
//! (infrastructure as code, admin automation) — breadth lowers it, never
//! silences it. Other new actions are judged only on keys with fewer than
//! `broad_after` actions whose recent days did not bring new actions as a
//! matter of course (the same novelty estimate as `new_source`'s, with its
//! `expected_novelty`): a new action of a service the key already uses is
//! low (a deploy added a call), and only reported once the key has 50
//! events per known action (before that it is still showing its
//! repertoire); an action of a service the key never touched is medium on a
//! narrow key (ten actions or fewer) and low on a wider one or from a
//! browser (a person, a broad role).
//!
//! What the key did a calendar month ago is its repertoire: an action last
//! called 27 to 32 days ago is a scheduled monthly job's (the cost report
//! on the 1st). Only the action: any other call on that month-old service
//! is still a call on a service the key has not used within
//! `forget_after`, so a thief's first `s3:GetObject` on the cost report's
//! key is judged as before.

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::share::{habitual, round3, share_text};
use super::{a_month_apart, hold, sensitive, Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{value_hash, Found, HeldOn, KeyState, Novel, ValueKind};
use crate::types::ConfigError;

/// `[detectors.new_action]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key that has called this many distinct actions is broad by design
    /// (an admin or CI key) and does not alert on one more.
    pub broad_after: u16,
}

/// Service keys call a handful of APIs; 40 distinct actions is an admin key.
impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            enabled: true,
            broad_after: 40,
        }
    }
}

impl ActionConfig {
    /// Nothing to check across fields: every value is allowed.
    pub fn validate(&self, _section: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Events per known action before a new call on a known service is news:
/// with fewer, the key has simply not shown its whole repertoire yet.
const WELL_SAMPLED_PER_ACTION: u64 = 50;

/// A repertoire this small is a fixed job's: a call on a service it never
/// used is medium. A wider one (a person, a broad role, infrastructure as
/// code) meets new services in its ordinary work: low.
const NARROW_REPERTOIRE: usize = 10;

/// Whether a user-agent family is a person's browser (the console).
fn browser(family: &str) -> bool {
    family.eq_ignore_ascii_case("Mozilla")
        || family.starts_with("console.")
        || family.starts_with("signin.")
}

/// An action's value hash in the key's [`ValueSet`](crate::engine::state::ValueSet), tagged with its service.
pub fn hash(ns: Option<&str>, action: &str) -> u32 {
    let service = ns.map_or(0, |n| xxh3_64(n.as_bytes()));
    value_hash(
        ValueKind::Action,
        service,
        xxh3_64_with_seed(action.as_bytes(), service),
    )
}

/// Whether an action the key's table answered `found` for is new: not
/// called within `forget` seconds, and not what the key's monthly job
/// called a month ago.
pub fn is_new(found: Found, now: u32, forget: u32) -> bool {
    let monthly = found
        .last_seen()
        .is_some_and(|last| a_month_apart(last, now));
    !found.fresh(now, forget) && !monthly
}

/// Checks the event's action; records it and its service.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    // `iam:CreateUser` in a flat action field names its service too.
    let Some((ns, action)) = ctx.ev.action_parts() else {
        return;
    };
    let action_hash = hash(ns, action);
    let s = ctx.settings;
    let cfg = &s.detectors.new_action;
    let (now, forget) = (ctx.now, s.forget_s);
    let found = state.values.find(action_hash);
    let new = is_new(found, now, forget);
    if cfg.enabled && ctx.eligible && new {
        let known = state.values.fresh_len(ValueKind::Action, now, forget);
        let sensitive = sensitive::category(ns, action);
        let broad = known >= cfg.broad_after as usize;
        // A sensitive call is judged on every key: breadth lowers it, never
        // silences it. Anything else only on keys with a bounded repertoire
        // whose days do not bring new actions as a matter of course.
        let rate = state.novelty.rate(Novel::Action);
        let expected = habitual(rate, s.detectors.new_source.expected_novelty);
        let judged = known > 0 && (sensitive.is_some() || (!broad && !expected));
        if judged {
            let new_service = ns.is_some() && !state.values.knows_service(action_hash, now, forget);
            // Another call on a service the key already uses is news only when
            // the key's calls are well sampled; a low-volume key is still
            // filling in its long tail.
            let well_sampled = state.events as u64 >= WELL_SAMPLED_PER_ACTION * known as u64;
            if sensitive.is_none() && !new_service && !well_sampled {
                return record(state, ctx, found, action_hash);
            }
            if ctx.quiet(state, Detector::NewAction, action_hash as u64) {
                return record(state, ctx, found, action_hash);
            }
            let person = ctx.user_agent.is_some_and(|(fam, _)| browser(fam));
            let severity = match (sensitive, new_service) {
                (Some(_), _) if broad => Severity::Medium,
                (Some(_), _) => Severity::High,
                (None, true) if known <= NARROW_REPERTOIRE && !person => Severity::Medium,
                (None, _) => Severity::Low,
            };
            let shown = ctx.ev.action_display().unwrap_or_default();
            let why = match (sensitive, new_service) {
                (Some(c), _) => format!(" ({})", c.text()),
                (None, true) => ", on a service it never used".to_owned(),
                (None, false) => String::new(),
            };
            let summary = format!(
                "{} called {shown}, an action it has not called before{why}; it knows {known} action{} and met a new one {}.",
                ctx.who(),
                if known == 1 { "" } else { "s" },
                share_text(rate, state.novelty.days()),
            );
            let alone_below = s.detectors.new_source.alone_below;
            let mut report = Report {
                severity,
                summary,
                observed: json!({
                    "action": shown,
                    "new_service": new_service,
                    "sensitive": sensitive.is_some(),
                    "category": sensitive,
                    "browser": person,
                }),
                baseline: json!({
                    "known_actions": known,
                    "broad": broad,
                    "new_action_days_share": round3(rate),
                }),
                threshold: json!({
                    "broad_after": cfg.broad_after,
                    "narrow_repertoire": NARROW_REPERTOIRE,
                    "expected_novelty": s.detectors.new_source.expected_novelty,
                    "alone_below": alone_below,
                    "enumeration": hold::ENUMERATION,
                }),
            };
            // A new action alone is a finding on a key whose days have not
            // shown new actions (a service, a job) and for a sensitive call;
            // on a key whose days bring them now and then (a person, a
            // sparse key) it waits for the key to do something else it does
            // not, or for a session of them.
            let alone = sensitive.is_some() || f64::from(rate) < alone_below;
            let corroboration = match sensitive {
                Some(_) => None,
                None => hold::corroboration(state, ctx, hold::ACTIONS),
            };
            if let Some(c) = corroboration {
                hold::corroborated(&mut report, &c, 0, "With it");
                ctx.emit(state, Detector::NewAction, action_hash as u64, report);
            } else if alone {
                ctx.emit(state, Detector::NewAction, action_hash as u64, report);
            } else if !ctx.firsts.gathered {
                // (An open hold gathered it already: one session, one hold.)
                hold::hold(state, ctx, HeldOn::Actions(action_hash), 1, report);
            }
        }
    }
    if new && state.active_days > 0 {
        state.novelty.saw(Novel::Action);
    }
    record(state, ctx, found, action_hash);
}

fn record(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, found: Found, action_hash: u32) {
    if state
        .values
        .record_found(found, action_hash, ctx.now, ctx.settings.max_values)
    {
        ctx.stats
            .actions_evicted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
