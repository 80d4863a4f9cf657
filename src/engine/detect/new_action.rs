//! `new_action`: a settled key calling an action it has not called within
//! `forget_after` — scope creep, or a stolen key exploring what it can do.
//!
//! A new action of a service the key already uses is low severity (a deploy
//! added a call); an action of a service the key never touched is medium; a
//! new privilege-changing or credential-minting call is high.

use serde_json::json;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::{Ctx, Report};
use crate::decode::event::namespace_short;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;

/// Calls that change who can do what, or mint credentials: a key that never
/// made them and suddenly does is the classic escalation path.
const SENSITIVE: [&str; 14] = [
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

/// Seed separating service hashes from action hashes in one set.
const SERVICE_SEED: u64 = 0x5e41_71ce;

/// Checks the event's action; records it and its service.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let Some(action) = ctx.ev.action.as_deref() else {
        return;
    };
    let ns = ctx.ev.action_namespace.as_deref().map(namespace_short);
    let action_hash = hash_action(ns, action);
    let service_hash = ns.map(|n| xxh3_64_with_seed(n.as_bytes(), SERVICE_SEED) as u32);
    let s = ctx.settings;
    let cfg = &s.detectors.new_action;
    let (now, forget) = (ctx.now, s.forget_s);
    if cfg.enabled && ctx.eligible && !state.actions.knows(action_hash, now, forget) {
        let known = state.actions.fresh_len(now, forget);
        if known > 0 && known < cfg.broad_after as usize {
            let new_service = service_hash.is_some_and(|h| !state.actions.knows(h, now, forget));
            let sensitive = SENSITIVE.contains(&action);
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
                baseline: json!({ "known_actions_and_services": known }),
                threshold: json!({ "broad_after": cfg.broad_after }),
            };
            ctx.emit(state, Detector::NewAction, action_hash as u64, report);
        }
    }
    let mut evicted = state.actions.record(action_hash, now, s.max_values);
    if let Some(h) = service_hash {
        evicted |= state.actions.record(h, now, s.max_values);
    }
    if evicted {
        ctx.stats
            .values_evicted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn hash_action(ns: Option<&str>, action: &str) -> u32 {
    match ns {
        Some(ns) => xxh3_64_with_seed(action.as_bytes(), xxh3_64(ns.as_bytes())) as u32,
        None => xxh3_64(action.as_bytes()) as u32,
    }
}
