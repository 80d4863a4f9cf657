//! An alert as an OCSF 1.3.0 Detection Finding (class 2004, category 2
//! Findings, activity 1 Create). The finding's evidence (observed,
//! baseline, threshold, eligibility) travels whole in `unmapped.evidence`;
//! the tripping event is an evidence artifact: its actor (the principal and
//! the credential), its source endpoint and its API operation.

use serde_json::{json, Map, Value};

use super::{observed_ms, sample_str, source_ip};
use crate::alert::shape::Alert;
use keywatch_core::engine::Severity;

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
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert.id,
            "product": {
                "name": "keywatch",
                "vendor_name": "keywatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
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
