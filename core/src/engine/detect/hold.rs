//! Holding a first for corroboration: a new network, client or action on a
//! key that has not shown such firsts are rare for it is written but not
//! raised, and waits `corroborate_within` for the key to do something else
//! it does not do. Without it the finding is dropped and counted
//! (`keywatch_findings_suppressed_total{rule="uncorroborated"}`).
//!
//! What corroborates each kind of hold ([`HeldOn`]):
//!
//! - a **network** (`new_source`): a call *from that network* that is a
//!   sensitive call, an action the key has not called, or a client family
//!   it has not used;
//! - a **client** (`new_user_agent`): a call *with that client* that is a
//!   sensitive call, an action the key has not called, or from a network
//!   the key has not used;
//! - **actions** (`new_action`): any call of the key that is a sensitive
//!   call, with a client it has not used or from a network it has not used;
//! - a **run** (`rate_spike`): a burst in a quiet hour before a job's hour,
//!   within the job's size, is raised once the job's own hour brings a
//!   quarter of its usual calls too (else the job ran an hour early: its
//!   time zone's clocks went forward).
//!
//! Two firsts of different kinds together are what a person seldom does
//! and a thief almost always does; but a first the key meets as a habit
//! (`expected_novelty`: a mobile key's new /24, a browser updating)
//! corroborates nothing. Held actions also *gather* the key's further new
//! actions: the hold is raised once [`ENUMERATION`] were called within it
//! (a session that explores what the key can do, not a task that needs
//! one more call).
//!
//! The doors are the same for the three firsts: a thief who, for as long
//! as it takes, makes only the key's own calls (or a few new ones) with its
//! own client from its own networks, on a key whose days bring firsts of
//! that kind as a matter of course. The run's: a thief within a job's size
//! in the hour before it, on a night the job does not run. The holds are
//! not written into checkpoints: one open at a restart is dropped.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::{human_secs, new_action, sensitive, share, Ctx, Report};
use crate::engine::finding::Detector;
use crate::engine::source::SourceId;
use crate::engine::state::{Held, HeldOn, KeyState, Novel, Secs, ValueKind, HELD};

/// New actions within one hold that make a session one that explores what
/// the key can do: a person taking up a service makes two or three calls
/// the key has not made; enumeration (by hand, or with the tools that list
/// a key's permissions) makes dozens.
pub const ENUMERATION: u16 = 5;

/// Which firsts of the event count as corroboration.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// An action the key has not called within `forget_after`.
    pub action: bool,
    /// A client family the key has not used.
    pub client: bool,
    /// A network the key has not used.
    pub network: bool,
}

/// What corroborates a held network: a call from it that is the key's
/// first of an action or a client.
pub const NETWORK: Counts = Counts {
    action: true,
    client: true,
    network: false,
};

/// What corroborates a held client: a call with it that is the key's first
/// of an action, or from a network it has not used.
pub const CLIENT: Counts = Counts {
    action: true,
    client: false,
    network: true,
};

/// What corroborates held actions: a call of the key with a client it has
/// not used or from a network it has not used (more new actions are
/// gathered, up to [`ENUMERATION`]).
pub const ACTIONS: Counts = Counts {
    action: false,
    client: true,
    network: true,
};

/// What an event does that its key does not: a sensitive call, the first of
/// an action, a client family or a network.
pub struct Corroboration {
    /// `sensitive_action`, `new_action`, `new_user_agent` or `new_source`
    /// (`enumeration` for actions gathered in a hold).
    pub rule: &'static str,
    /// The action, client or network, as shown.
    pub value: String,
    /// What it did, for the summary: "called iam:ListUsers, an action it
    /// has not called before".
    pub text: String,
}

/// Whether the event does something its key does not, of the kinds `counts`
/// names (a sensitive call always counts). Read before `new_action` and
/// `new_user_agent` learn the event, except for what [`Ctx::firsts`]
/// carries (a first client, a first network), which they set.
pub fn corroboration(state: &KeyState, ctx: &Ctx<'_, '_>, counts: Counts) -> Option<Corroboration> {
    let (now, forget) = (ctx.now, ctx.settings.forget_s);
    if let Some((ns, action)) = ctx.ev.action_parts() {
        let shown = ctx.ev.action_display().unwrap_or_default();
        if let Some(c) = sensitive::category(ns, action) {
            return Some(Corroboration {
                text: format!("made a sensitive call, {shown} ({})", c.text()),
                rule: "sensitive_action",
                value: shown,
            });
        }
        if counts.action {
            let hash = new_action::hash(ns, action);
            let knows_actions = state.values.fresh_len(ValueKind::Action, now, forget) > 0;
            if knows_actions && new_action::is_new(state.values.find(hash), now, forget) {
                return Some(Corroboration {
                    text: format!("called {shown}, an action it has not called before"),
                    rule: "new_action",
                    value: shown,
                });
            }
        }
    }
    if counts.client {
        if let Some((family, hash)) = ctx.user_agent {
            // Before `new_user_agent` learns the event, read off the table;
            // after, as it left it.
            let new = ctx.firsts.client
                || state.values.fresh_len(ValueKind::UserAgent, now, forget) > 0
                    && !state.values.knows(hash, now, forget)
                    && !share::habitual(
                        state.novelty.rate(Novel::UserAgent),
                        ctx.settings.detectors.new_source.expected_novelty,
                    );
            if new {
                return Some(Corroboration {
                    text: format!("used the client \"{family}\", which it has not used before"),
                    rule: "new_user_agent",
                    value: family.to_owned(),
                });
            }
        }
    }
    if counts.network && ctx.firsts.network {
        let source = ctx.source_text();
        return Some(Corroboration {
            text: format!("was used from {source}, a network it has not used"),
            rule: "new_source",
            value: source,
        });
    }
    None
}

/// The event's action, as shown, when it is one the key has not called
/// (and it knows others) and not a sensitive call: what holds gather.
/// Read before `new_action` learns the event.
pub fn new_action_called(state: &KeyState, ctx: &Ctx<'_, '_>) -> Option<String> {
    let (now, forget) = (ctx.now, ctx.settings.forget_s);
    let (ns, action) = ctx.ev.action_parts()?;
    if sensitive::category(ns, action).is_some() {
        return None;
    }
    let hash = new_action::hash(ns, action);
    (state.values.fresh_len(ValueKind::Action, now, forget) > 0
        && new_action::is_new(state.values.find(hash), now, forget))
    .then(|| ctx.ev.action_display().unwrap_or_default())
}

/// Writes the corroboration into a held (or immediate) finding: "From it
/// 2m later, it called iam:ListUsers, ..." (`lead`: "From it", "With it",
/// "Then").
pub fn corroborated(report: &mut Report, c: &Corroboration, after_s: u32, lead: &str) {
    let when = if after_s >= 60 {
        format!(" {} later", human_secs(u64::from(after_s)))
    } else {
        String::new()
    };
    report.summary = format!("{} {lead}{when}, it {}.", report.summary, c.text);
    match report.observed["rules"].as_array_mut() {
        Some(rules) => rules.push(json!("corroborated")),
        None => report.observed["rules"] = json!(["corroborated"]),
    }
    report.observed["corroboration"] = json!({
        "rule": c.rule,
        "value": c.value,
        "after_s": after_s,
    });
}

/// Holds a finding until the key corroborates it, or `corroborate_within`
/// passes. `gathered`: new actions the first call already made (0 or 1).
pub fn hold(state: &mut KeyState, ctx: &Ctx<'_, '_>, on: HeldOn, gathered: u16, report: Report) {
    let within = ctx.settings.detectors.new_source.corroborate_within;
    let until = ctx.now.saturating_add(within.as_secs_u32());
    hold_until(state, ctx, on, gathered, until, report);
}

/// Holds a finding until `until` (a held run: the end of the job's hour).
pub fn hold_until(
    state: &mut KeyState,
    ctx: &Ctx<'_, '_>,
    on: HeldOn,
    gathered: u16,
    until: Secs,
    report: Report,
) {
    let held = &mut state.rare.get_or_insert_with(Default::default).held;
    drop_expired(held, ctx);
    if held.len() >= HELD {
        held.remove(0);
        ctx.stats.uncorroborated.fetch_add(1, Ordering::Relaxed);
    }
    held.push(Held {
        on,
        since: ctx.now,
        until,
        gathered,
        report: Box::new(report),
    });
}

/// Drops the holds whose time is over, counting them as uncorroborated.
fn drop_expired(held: &mut Vec<Held>, ctx: &Ctx<'_, '_>) {
    let before = held.len();
    held.retain(|h| h.until > ctx.now);
    let expired = before - held.len();
    if expired > 0 {
        ctx.stats
            .uncorroborated
            .fetch_add(expired as u64, Ordering::Relaxed);
    }
}

/// The detector a hold's finding is raised under, and its cooldown dimension.
pub fn detector_of(on: HeldOn) -> (Detector, u64) {
    match on {
        HeldOn::Network(_) => (Detector::NewSource, 0),
        HeldOn::Client(hash) => (Detector::NewUserAgent, u64::from(hash)),
        HeldOn::Actions(first) => (Detector::NewAction, u64::from(first)),
        HeldOn::Run(_) => (Detector::RateSpike, 0),
    }
}

/// Adds `n` to what the hold at `i` gathered; the new total.
fn gather(state: &mut KeyState, i: usize, n: u16) -> Option<u16> {
    let h = state.rare.as_deref_mut()?.held.get_mut(i)?;
    h.gathered = h.gathered.saturating_add(n);
    Some(h.gathered)
}

/// Raises the hold at `i` with its corroboration.
fn raise(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, i: usize, c: &Corroboration, lead: &str) {
    let Some(held) = state.rare.as_deref_mut().map(|r| r.held.swap_remove(i)) else {
        return;
    };
    let (detector, dim) = detector_of(held.on);
    let mut report = *held.report;
    corroborated(&mut report, c, ctx.now.saturating_sub(held.since), lead);
    ctx.emit(state, detector, dim, report);
}

/// Every event of a key with holds open, before `new_user_agent` and
/// `new_action` learn it (and after `new_source` judged its network): the
/// holds it corroborates are raised, the new action it calls is gathered
/// by the holds it matches, and the holds past their time are dropped.
/// `network`: the event's network, when the key knows it (a new network's
/// own first event is `new_source::check`'s).
pub fn settle(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, network: Option<SourceId>) {
    let Some(rare) = state.rare.as_deref_mut().filter(|r| !r.held.is_empty()) else {
        return;
    };
    drop_expired(&mut rare.held, ctx);
    if rare.held.is_empty() {
        return;
    }
    let client = ctx.user_agent.map(|(_, hash)| hash);
    let called = new_action_called(state, ctx);
    let mut i = 0;
    while let Some(h) = state.rare.as_deref().and_then(|r| r.held.get(i)) {
        if let HeldOn::Run(needed) = h.on {
            // The job's own hour is the hold's last: its requests count.
            let start = h.until.saturating_sub(3600);
            if ctx.now < start || ctx.ev.outcome.unserved() {
                i += 1;
                continue;
            }
            let requests = ctx.ev.count.min(u32::from(u16::MAX)) as u16;
            let Some(seen) = gather(state, i, requests) else {
                break;
            };
            if seen < needed {
                i += 1;
                continue;
            }
            let c = Corroboration {
                text: format!(
                    "ran in its usual hour too ({seen} requests since {})",
                    crate::decode::time::format_rfc3339(i64::from(start) * 1000)
                ),
                rule: "usual_run",
                value: seen.to_string(),
            };
            raise(state, ctx, i, &c, "Then");
            continue;
        }
        let (counts, lead) = match h.on {
            HeldOn::Network(id) if network.is_some_and(|n| n.network() == id.network()) => {
                (NETWORK, "From it")
            }
            HeldOn::Client(hash) if client == Some(hash) => (CLIENT, "With it"),
            HeldOn::Actions(_) => (ACTIONS, "Then"),
            _ => {
                i += 1;
                continue;
            }
        };
        if let Some(c) = corroboration(state, ctx, counts) {
            // The hold leaves the list: the one at `i` is now another.
            raise(state, ctx, i, &c, lead);
            continue;
        }
        let Some(shown) = called.as_deref() else {
            i += 1;
            continue;
        };
        ctx.firsts.gathered = true;
        let Some(seen) = gather(state, i, 1) else {
            break;
        };
        if seen < ENUMERATION {
            i += 1;
            continue;
        }
        let c = Corroboration {
            text: format!("had called {seen} actions it had not called before, the latest {shown}"),
            rule: "enumeration",
            value: shown.to_owned(),
        };
        raise(state, ctx, i, &c, lead);
    }
}
