//! `new_action`: a settled key calling an action it has not called within
//! `forget_after` — scope creep, or a stolen key exploring what it can do.
//!
//! A new action of a service the key already uses is low severity (a deploy
//! added a call), and only reported once the key has 50 events per known
//! action (before that it is still showing its repertoire); an action of a
//! service the key never touched is medium; a new privilege-changing or
//! credential-minting call is high.
//!
//! What the key did a calendar month ago is its repertoire: an action last
//! called 27 to 32 days ago is a scheduled monthly job's (the cost report
//! on the 1st). Only the action: any other call on that month-old service
//! is still a call on a service the key has not used within
//! `forget_after`, so a thief's first `s3:GetObject` on the cost report's
//! key is judged as before.

use serde_json::json;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::{a_month_apart, Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{value_hash, Found, KeyState, ValueKind};

/// Events per known action before a new call on a known service is news:
/// with fewer, the key has simply not shown its whole repertoire yet.
const WELL_SAMPLED_PER_ACTION: u64 = 50;

/// Calls that change who can do what, or mint credentials: a key that never
/// made them and suddenly does is the classic escalation path.
pub const SENSITIVE: [&str; 14] = [
    "CreateUser",
    "CreateAccessKey",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "AttachUserPolicy",
    "AttachRolePolicy",
    "PutUserPolicy",
    "PutRolePolicy",
    "UpdateAssumeRolePolicy",
    "CreatePolicyVersion",
    "AddUserToGroup",
    "GetSecretValue",
    "GetPasswordData",
    "GetFederationToken",
];

/// Checks the event's action; records it and its service.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    // `iam:CreateUser` in a flat action field names its service too.
    let Some((ns, action)) = ctx.ev.action_parts() else {
        return;
    };
    let service = ns.map_or(0, |n| xxh3_64(n.as_bytes()));
    let action_hash = value_hash(
        ValueKind::Action,
        service,
        xxh3_64_with_seed(action.as_bytes(), service),
    );
    let s = ctx.settings;
    let cfg = &s.detectors.new_action;
    let (now, forget) = (ctx.now, s.forget_s);
    let found = state.values.find(action_hash);
    // The key's monthly job calling what it called a month ago.
    let monthly = found
        .last_seen()
        .is_some_and(|last| a_month_apart(last, now));
    if cfg.enabled && ctx.eligible && !found.fresh(now, forget) && !monthly {
        let known = state.values.fresh_len(ValueKind::Action, now, forget);
        if known > 0 && known < cfg.broad_after as usize {
            let new_service = ns.is_some() && !state.values.knows_service(action_hash, now, forget);
            let sensitive = SENSITIVE.contains(&action);
            // Another call on a service the key already uses is news only when
            // the key's calls are well sampled; a low-volume key is still
            // filling in its long tail.
            let well_sampled = state.events as u64 >= WELL_SAMPLED_PER_ACTION * known as u64;
            if !sensitive && !new_service && !well_sampled {
                return record(state, ctx, found, action_hash);
            }
            if ctx.quiet(state, Detector::NewAction, action_hash as u64) {
                return record(state, ctx, found, action_hash);
            }
            let severity = match (sensitive, new_service) {
                (true, _) => Severity::High,
                (false, true) => Severity::Medium,
                (false, false) => Severity::Low,
            };
            let shown = ctx.ev.action_display().unwrap_or_default();
            let summary = format!(
                "{} called {shown}, an action it has not called before{}.",
                ctx.who(),
                match (sensitive, new_service) {
                    (true, _) => " (it changes permissions or exposes credentials)",
                    (false, true) => ", on a service it never used",
                    (false, false) => "",
                },
            );
            let report = Report {
                severity,
                summary,
                observed: json!({ "action": shown, "new_service": new_service, "sensitive": sensitive }),
                baseline: json!({ "known_actions": known }),
                threshold: json!({ "broad_after": cfg.broad_after }),
            };
            ctx.emit(state, Detector::NewAction, action_hash as u64, report);
        }
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
