//! An alert as an Elastic Common Schema (8.x) document, with the fields
//! Elastic Security's detection rules and alert views read: `event.*`
//! (`kind: alert`, `severity`, `risk_score`), `rule.*`, `user.*`,
//! `source.ip`, `user_agent.original`, `cloud.*`, `related.*`. keywatch's
//! own fields (the key, owner, team, evidence) sit under `keywatch`.
//!
//! An incident event is an alert document too (`event.dataset:
//! keywatch.incident`, `event.action: incident_<event>`), with its
//! tactics as ECS `threat.tactic.*`, its networks' addresses in
//! `related.ip` and the incident under `keywatch.incident`.

use serde_json::{json, Map, Value};

use super::{observed_ms, sample_str, source_ip};
use crate::alert::shape::{Alert, IncidentAlert};
use keywatch_core::engine::Severity;

/// The ECS version the documents follow.
const ECS_VERSION: &str = "8.11.0";

/// Elastic Security's numeric severity (its rules' `risk_score` bands:
/// low 21, medium 47, high 73, critical 99).
fn risk(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

/// The cloud a credential belongs to, when its shape says.
fn provider(key: &str, principal: Option<&str>) -> Option<&'static str> {
    let principal = principal.unwrap_or("");
    if principal.starts_with("arn:aws") || key.starts_with("AKIA") || key.starts_with("ASIA") {
        Some("aws")
    } else if key.starts_with("//iam.googleapis.com/")
        || principal.ends_with(".gserviceaccount.com")
    {
        Some("gcp")
    } else {
        None
    }
}

/// ECS `user`: the principal as name and id, the owner as email; `None`
/// when neither is known.
fn user(principal: Option<&str>, owner: Option<&str>) -> Option<Value> {
    let mut user = Map::new();
    if let Some(p) = principal {
        user.insert("name".into(), json!(p));
        user.insert("id".into(), json!(p));
    }
    if let Some(owner) = owner {
        user.insert("email".into(), json!(owner));
    }
    (!user.is_empty()).then_some(Value::Object(user))
}

/// The ECS document for `alert`.
pub fn document(alert: &Alert) -> Value {
    let detector = alert.detector.as_str();
    let outcome = match sample_str(alert, "outcome") {
        Some("failure") => "failure",
        Some("success") => "success",
        _ => "unknown",
    };
    let event = json!({
        "kind": "alert",
        "category": ["iam"],
        "type": ["info"],
        "action": detector,
        "id": alert.id,
        "severity": risk(alert.severity),
        "risk_score": risk(alert.severity),
        "outcome": outcome,
        "reason": alert.summary,
        "provider": "keywatch",
        "module": "keywatch",
        "dataset": "keywatch.alert",
        "start": alert.observed_at,
    });

    let mut doc = json!({
        "@timestamp": chrono::DateTime::from_timestamp_millis(observed_ms(alert))
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "message": alert.summary,
        "ecs": { "version": ECS_VERSION },
        "event": event,
        "rule": {
            "id": detector,
            "name": detector,
            "ruleset": "keywatch",
            "category": "credential misuse",
            "description": alert.summary,
        },
        "observer": { "vendor": "keywatch", "product": "keywatch", "type": "detector" },
        "tags": ["keywatch", detector],
        "keywatch": {
            "alert_id": alert.id,
            "key_id": alert.key_id,
            "severity": alert.severity,
            "owner": alert.owner,
            "team": alert.team,
            "evidence": alert.evidence,
            "sample": alert.sample,
        },
    });

    if let Some(user) = user(alert.principal.as_deref(), alert.owner.as_deref()) {
        doc["user"] = user;
    }

    let mut related_ip = Vec::new();
    if let Some(source) = sample_str(alert, "source") {
        doc["source"] = match source_ip(alert) {
            Some(ip) => {
                related_ip.push(ip.to_string());
                json!({ "ip": ip.to_string(), "address": source })
            }
            None => json!({ "address": source }),
        };
    }
    if let Some(ua) = sample_str(alert, "user_agent") {
        doc["user_agent"] = json!({ "original": ua });
    }

    let mut cloud = Map::new();
    if let Some(p) = provider(&alert.key_id, alert.principal.as_deref()) {
        cloud.insert("provider".into(), json!(p));
    }
    if let Some(region) = sample_str(alert, "region") {
        cloud.insert("region".into(), json!(region));
    }
    if let Some(account) = alert
        .principal
        .as_deref()
        .and_then(|p| p.strip_prefix("arn:aws"))
        .and_then(|rest| rest.split(':').nth(3))
        .filter(|a| !a.is_empty())
    {
        cloud.insert("account".into(), json!({ "id": account }));
    }
    if let Some((service, _)) = sample_str(alert, "action").and_then(|a| a.split_once(':')) {
        cloud.insert("service".into(), json!({ "name": service }));
    }
    if !cloud.is_empty() {
        doc["cloud"] = Value::Object(cloud);
    }

    let mut related_user = vec![json!(alert.key_id)];
    if let Some(p) = &alert.principal {
        related_user.push(json!(p));
    }
    doc["related"] = json!({ "user": related_user, "ip": related_ip });
    doc
}

/// The ECS document for an incident event.
pub fn incident(i: &IncidentAlert) -> Value {
    let event = json!({
        "kind": "alert",
        "category": ["iam"],
        "type": ["info"],
        "action": format!("incident_{}", i.event.as_str()),
        "id": i.id,
        "severity": risk(i.severity),
        "risk_score": risk(i.severity),
        "reason": i.summary,
        "provider": "keywatch",
        "module": "keywatch",
        "dataset": "keywatch.incident",
        "start": i.first_seen,
        "end": i.last_seen,
    });
    let mut doc = json!({
        "@timestamp": i.last_seen,
        "message": i.summary,
        "ecs": { "version": ECS_VERSION },
        "event": event,
        "rule": {
            "id": "incident",
            "name": "keywatch incident",
            "ruleset": "keywatch",
            "category": "credential misuse",
            "description": i.summary,
        },
        "observer": { "vendor": "keywatch", "product": "keywatch", "type": "detector" },
        "tags": ["keywatch", "incident"],
        "keywatch": { "incident": i },
    });
    if !i.tactics.is_empty() {
        doc["threat"] = json!({
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": i.tactics.iter().map(|t| t.attack_id()).collect::<Vec<_>>(),
                "name": i.tactics.iter().map(|t| t.text()).collect::<Vec<_>>(),
            },
        });
    }
    if let Some(user) = user(i.principal.as_deref(), i.owner.as_deref()) {
        doc["user"] = user;
    }
    if let Some(p) = provider(&i.key_id, i.principal.as_deref()) {
        doc["cloud"] = json!({ "provider": p });
    }
    let related_ip: Vec<String> = i
        .timeline
        .iter()
        .filter_map(|s| s.source.as_deref()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string())
        .fold(Vec::new(), |mut v, ip| {
            if !v.contains(&ip) {
                v.push(ip);
            }
            v
        });
    let mut related_user: Vec<&str> = i.key_ids.iter().map(String::as_str).collect();
    if let Some(p) = &i.principal {
        related_user.push(p);
    }
    doc["related"] = json!({ "user": related_user, "ip": related_ip });
    doc
}
