//! An alert as an OCSF 1.3.0 Detection Finding (class 2004, category 2
//! Findings, activity 1 Create). The finding's evidence (observed,
//! baseline, threshold, eligibility) travels whole in `unmapped.evidence`;
//! the tripping event is an evidence artifact: its actor (the principal and
//! the credential), its source endpoint and its API operation.
//!
//! An incident event as an OCSF 1.3.0 Incident Finding (class 2005):
//! opened is Create, updated and escalated Update, resolved Close; its
//! findings are `finding_info_list`, its tactics `attacks`, and the routed
//! team (or `unassigned`) the `assignee_group` the class requires.

use serde_json::{json, Map, Value};

use super::{epoch_ms, observed_ms, sample_str, source_ip};
use crate::alert::shape::{Alert, IncidentAlert};
use keywatch_core::engine::Severity;
use keywatch_core::incident::{Change, Status};

/// The OCSF schema version the findings follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// OCSF `severity_id`: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// The `metadata` of every event: the schema version and the product.
fn metadata(uid: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "uid": uid,
        "product": {
            "name": "keywatch",
            "vendor_name": "keywatch",
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The Incident Finding for an incident event.
pub fn incident(i: &IncidentAlert) -> Value {
    let (severity_id, severity) = severity(i.severity);
    let (activity_id, activity_name) = match i.event {
        Change::Opened => (1, "Create"),
        Change::Updated | Change::Escalated => (2, "Update"),
        Change::Resolved => (3, "Close"),
    };
    let (status_id, status) = match i.status {
        Status::Open => (1, "New"),
        Status::Resolved => (4, "Resolved"),
    };
    let findings: Vec<Value> = i
        .timeline
        .iter()
        .map(|s| {
            let t = epoch_ms(&s.observed_at);
            json!({
                "uid": s.finding_id,
                "title": format!("{} on key {}", s.detector.as_str(), s.key_id),
                "desc": s.summary,
                "types": [s.detector.as_str()],
                "first_seen_time": t,
                "last_seen_time": t,
                "analytic": { "name": s.detector.as_str(), "uid": s.detector.as_str(), "type_id": 2, "type": "Behavioral" },
            })
        })
        .collect();
    let attacks: Vec<Value> = i
        .tactics
        .iter()
        .map(|t| json!({ "tactic": { "name": t.text(), "uid": t.attack_id() }, "version": "15" }))
        .collect();
    let time = epoch_ms(&i.last_seen);
    let mut out = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2005,
        "class_name": "Incident Finding",
        "type_uid": 200_500 + activity_id,
        "type_name": format!("Incident Finding: {activity_name}"),
        "time": time,
        "start_time": epoch_ms(&i.first_seen),
        "end_time": time,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "desc": i.summary,
        "message": i.summary,
        "metadata": metadata(&i.id),
        "finding_info_list": findings,
        "assignee_group": { "name": i.team.as_deref().unwrap_or("unassigned") },
        "is_suspected_breach": i.attack_sequence,
        "unmapped": {
            "incident_id": i.incident_id,
            "event": i.event,
            "revision": i.revision,
            "score": i.score,
            "entity": i.entity,
            "identity": i.identity,
            "key_ids": i.key_ids,
            "principal": i.principal,
            "owner": i.owner,
            "networks": i.networks,
            "clients": i.clients,
            "actions": i.actions,
        },
    });
    if !attacks.is_empty() {
        out["attacks"] = Value::Array(attacks);
    }
    out
}

/// The Detection Finding for `alert`.
pub fn finding(alert: &Alert) -> Value {
    let (severity_id, severity) = severity(alert.severity);
    let time = observed_ms(alert);
    let detector = alert.detector.as_str();

    let mut user = Map::new();
    user.insert("credential_uid".into(), json!(alert.key_id));
    user.insert(
        "name".into(),
        json!(alert.principal.as_deref().unwrap_or(&alert.key_id)),
    );
    if let Some(p) = &alert.principal {
        user.insert("uid".into(), json!(p));
    }
    let mut evidence = Map::new();
    evidence.insert("actor".into(), json!({ "user": user }));
    if let Some(source) = sample_str(alert, "source") {
        let endpoint = match source_ip(alert) {
            Some(ip) => json!({ "ip": ip.to_string() }),
            None => json!({ "name": source }),
        };
        evidence.insert("src_endpoint".into(), endpoint);
    }
    if let Some(action) = sample_str(alert, "action") {
        let mut api = json!({ "operation": action });
        if let Some((service, _)) = action.split_once(':') {
            api["service"] = json!({ "name": service });
        }
        evidence.insert("api".into(), api);
    }
    if let Some(ua) = sample_str(alert, "user_agent") {
        evidence.insert("http_request".into(), json!({ "user_agent": ua }));
    }

    let mut observables = vec![
        json!({ "name": "actor.user.credential_uid", "type_id": 99, "type": "Other", "value": alert.key_id }),
    ];
    if let Some(p) = &alert.principal {
        observables.push(
            json!({ "name": "actor.user.name", "type_id": 4, "type": "User Name", "value": p }),
        );
    }
    if let Some(ip) = source_ip(alert) {
        observables.push(json!({ "name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip.to_string() }));
    }

    let mut out = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200_401,
        "type_name": "Detection Finding: Create",
        "time": time,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "message": alert.summary,
        "metadata": metadata(&alert.id),
        "finding_info": {
            "uid": alert.id,
            "title": format!("{detector} on key {}", alert.key_id),
            "desc": alert.summary,
            "types": [detector],
            "first_seen_time": time,
            "last_seen_time": time,
            "analytic": { "name": detector, "uid": detector, "type_id": 2, "type": "Behavioral" },
        },
        "evidences": [Value::Object(evidence)],
        "observables": observables,
        "unmapped": {
            "key_id": alert.key_id,
            "owner": alert.owner,
            "team": alert.team,
            "evidence": alert.evidence,
            "sample": alert.sample,
        },
    });
    if let Some(region) = sample_str(alert, "region") {
        out["unmapped"]["region"] = json!(region);
    }
    out
}
