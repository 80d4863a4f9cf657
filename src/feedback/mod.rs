//! Verdicts that act. A responder's verdict on a stored finding sets its
//! status (with an audit entry) and, by status:
//!
//! - `expected`: teaches the identity that what the finding showed (its
//!   network, client family, action, a rate level up to twice the one seen) is normal
//!   ([`Engine::teach`]), so the same use never alerts again;
//! - `false_positive`: adds a suppression with an expiry, scoped to the key,
//!   the principal or the source network as the responder chose, through
//!   the alert pipeline's own rules (it lists in `/api/v1/suppressions`);
//! - `confirmed`: sends the finding to the sinks again at `critical`; the
//!   review marks the key compromised until the finding is resolved.
//!
//! Teachings and verdict suppressions are kept in the store and given back
//! at start ([`restore`]), so they survive a restart and a `kill -9`.
//! With several instances, [`topic`] carries each verdict's effect to every
//! instance (`store.feedback_topic`).

pub mod topic;

use serde::{Deserialize, Serialize};

use crate::alert::Alerts;
use crate::config::{Cidr, Entity, Suppression, Timestamp};
use crate::store::{Actor, FindingsStore, Status, StoreError};
use keywatch_core::engine::{Engine, Finding, Lesson, Severity, Teaching};

/// What a `false_positive` verdict mutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This key's findings of this detector.
    #[default]
    Key,
    /// Every key of this principal, this detector.
    Principal,
    /// This detector for any key, from the finding's source network.
    Network,
}

/// The body of `POST /api/v1/findings/{id}/verdict`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// The new status.
    pub status: Status,
    /// Who takes it on.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Free text for the audit trail.
    #[serde(default)]
    pub note: Option<String>,
    /// Who gives the verdict (the console asks for a name).
    #[serde(default)]
    pub by: Option<String>,
    /// `false_positive`: what to mute (default: this key).
    #[serde(default)]
    pub scope: Option<Scope>,
    /// `false_positive`: how long, e.g. `"7d"` (default 7 days).
    #[serde(default)]
    pub expires_in: Option<crate::config::HumanDuration>,
}

/// What a verdict did besides setting the status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Effect {
    /// `expected`: what the identity was taught.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taught: Option<Lesson>,
    /// `false_positive`: the suppression's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppression_id: Option<u64>,
    /// `confirmed`: re-sent to the sinks at critical.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub renotified: bool,
}

/// Why a verdict was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The store refused or has no such finding.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The verdict cannot apply to this finding.
    #[error("{0}")]
    Invalid(String),
}

/// Default life of a `false_positive` suppression.
const DEFAULT_MUTE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Applies a verdict on stored finding `id`, and publishes its effect to
/// the other instances when `topic` is set.
pub fn apply(
    store: &FindingsStore,
    engine: &Engine,
    alerts: &Alerts,
    topic: Option<&topic::FeedbackTopic>,
    id: &str,
    v: &Verdict,
    actor: &Actor,
) -> Result<Effect, VerdictError> {
    let (stored, _) = store.get(id)?;
    let f = &stored.finding;
    let mut effect = Effect::default();
    // The effect first: a verdict that cannot act is refused before the
    // status says it did.
    match v.status {
        Status::Expected => {
            let lesson = lesson_of(f).ok_or_else(|| {
                VerdictError::Invalid(format!(
                    "a {} finding has nothing to teach the baseline; mark it resolved or false_positive",
                    f.detector
                ))
            })?;
            let teaching = Teaching {
                lesson: lesson.clone(),
                by: actor.who.clone(),
                at: Timestamp::now().to_string(),
                finding_id: f.id.clone(),
            };
            let subject = subject_of(f);
            engine.teach(f.entity, &subject, f.principal.as_deref(), teaching.clone());
            store.add_teaching(f.entity, &subject, f.principal.as_deref(), &teaching)?;
            if let Some(t) = topic {
                t.publish(&topic::Feedback::Teaching {
                    entity: f.entity,
                    subject: subject.clone(),
                    principal: f.principal.clone(),
                    teaching: teaching.clone(),
                });
            }
            store.note(id, actor, "taught", serde_json::json!(lesson))?;
            effect.taught = Some(lesson);
        }
        Status::FalsePositive => {
            let rule = suppression_for(f, v.scope.unwrap_or_default(), v, actor)?;
            let sid = alerts
                .add_suppression(rule.clone())
                .map_err(|e| VerdictError::Invalid(e.to_string()))?;
            store.add_suppression(id, &rule)?;
            if let Some(t) = topic {
                t.publish(&topic::Feedback::Suppression {
                    finding_id: id.to_owned(),
                    rule: rule.clone(),
                });
            }
            store.note(
                id,
                actor,
                "suppressed",
                serde_json::json!({ "suppression_id": sid, "rule": rule }),
            )?;
            effect.suppression_id = Some(sid);
        }
        Status::Confirmed => {
            alerts.renotify(&confirmed(f, actor));
            store.note(id, actor, "renotified", serde_json::json!("critical"))?;
            effect.renotified = true;
        }
        Status::Open | Status::Acknowledged | Status::Resolved => {}
    }
    store.set_status(
        id,
        v.status,
        v.assignee.as_deref(),
        v.note.as_deref(),
        actor,
    )?;
    Ok(effect)
}

/// Gives the engine and the alert pipeline back what verdicts made: every
/// teaching, and every verdict suppression that has not expired. Returns
/// (teachings, suppressions) applied.
pub fn restore(store: &FindingsStore, engine: &Engine, alerts: &Alerts) -> (usize, usize) {
    let mut taught = 0;
    match store.teachings() {
        Ok(all) => {
            for (entity, subject, principal, t) in all {
                taught += usize::from(engine.teach(entity, &subject, principal.as_deref(), t));
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the teachings back"),
    }
    let mut muted = 0;
    match store.suppressions() {
        Ok(rules) => {
            let now = Timestamp::now();
            for rule in rules {
                if rule.expires.is_some_and(|t| t.epoch_ms <= now.epoch_ms) {
                    continue;
                }
                muted += usize::from(add_rule_once(alerts, &rule));
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the verdict suppressions back"),
    }
    (taught, muted)
}

/// Adds `rule` unless the same rule is in force already (a verdict's rule
/// read back from the store and again from the feedback topic); `true` when
/// added.
pub fn add_rule_once(alerts: &Alerts, rule: &Suppression) -> bool {
    if alerts.suppressions().iter().any(|e| e.rule == *rule) {
        return false;
    }
    alerts.add_suppression(rule.clone()).is_ok()
}

/// The identity a finding's baseline belongs to.
fn subject_of(f: &Finding) -> String {
    match (f.entity, f.principal.as_deref()) {
        (Entity::Principal, Some(p)) => keywatch_core::engine::principal_identity(p).to_owned(),
        _ => f.key_id.clone(),
    }
}

/// What an `expected` verdict on `f` teaches.
pub fn lesson_of(f: &Finding) -> Option<Lesson> {
    let observed = &f.evidence.observed;
    let count = observed
        .get("count")
        .or_else(|| observed.get("requests"))
        .and_then(|v| v.as_u64())
        .or(Some(u64::from(f.sample.count)))
        // The finding fired as the bucket crossed its line; the level the
        // responder calls normal is what the whole bucket reached, which
        // the finding never saw: twice the crossing is that allowance.
        .map(|c| c.saturating_mul(2));
    Lesson::for_finding(
        f.detector,
        f.sample.source.as_deref(),
        f.sample.user_agent.as_deref(),
        f.sample.action.as_deref(),
        count,
    )
}

fn suppression_for(
    f: &Finding,
    scope: Scope,
    v: &Verdict,
    actor: &Actor,
) -> Result<Suppression, VerdictError> {
    let mut rule = Suppression {
        key: None,
        principal: None,
        detector: Some(f.detector),
        source_network: None,
        expires: Some(Timestamp::now().after(v.expires_in.map(|d| d.0).unwrap_or(DEFAULT_MUTE))),
        reason: Some(format!(
            "false positive: finding {} ({}), by {}",
            f.id, f.detector, actor.who
        )),
    };
    match scope {
        Scope::Key => rule.key = Some(glob_literal(&f.key_id)),
        Scope::Principal => {
            let p = f.principal.as_deref().ok_or_else(|| {
                VerdictError::Invalid("the finding names no principal to mute".into())
            })?;
            rule.principal = Some(glob_literal(p));
        }
        Scope::Network => {
            let source = f.sample.source.as_deref().unwrap_or_default();
            let ip: std::net::IpAddr = source.parse().map_err(|_| {
                VerdictError::Invalid(format!(
                    "the finding's source {source:?} is not an address: mute the key or the principal"
                ))
            })?;
            let prefix = if ip.is_ipv4() { 24 } else { 64 };
            let net = ipnet::IpNet::new(ip, prefix)
                .map_err(|e| VerdictError::Invalid(e.to_string()))?
                .trunc();
            rule.source_network = Some(Cidr(net));
        }
    }
    Ok(rule)
}

/// A key id or principal as a glob matching only itself.
fn glob_literal(s: &str) -> String {
    s.chars()
        .map(|c| if c == '*' || c == '?' { '?' } else { c })
        .collect()
}

/// The finding as sent again after a `confirmed` verdict: critical, a new
/// id (receivers that saw the first one alert again), the verdict in the summary.
fn confirmed(f: &Finding, actor: &Actor) -> Finding {
    let mut c = f.clone();
    c.id = format!("{}{}", f.id, crate::store::ingest::CONFIRMED_SUFFIX);
    c.severity = Severity::Critical;
    c.summary = format!("CONFIRMED COMPROMISE (by {}): {}", actor.who, f.summary);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_only_the_literal() {
        assert_eq!(glob_literal("AKIA1"), "AKIA1");
        assert_eq!(glob_literal("a*b?"), "a?b?");
    }
}
