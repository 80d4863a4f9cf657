use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::alert::config::RedactConfig;
use crate::alert::redact::Redactor;
use keywatch_core::config::Config;
use keywatch_core::engine::{Detector, Severity};
use keywatch_core::gen::{AttackSet, Format, GenConfig, Scenario};
use keywatch_core::replay::{replay, Input};

/// The findings of a generated fleet with every attack family.
fn fleet_findings() -> Vec<keywatch_core::engine::Finding> {
    let scenario = Scenario::new(GenConfig {
        keys: 10,
        days: 50,
        volume: 0.05,
        attacks: true,
        attack_set: AttackSet::Full,
        format: Format::Generic,
        ..GenConfig::default()
    });
    let mut bytes = Vec::new();
    for ev in scenario.events() {
        bytes.extend_from_slice(ev.json.as_bytes());
        bytes.push(b'\n');
    }
    let mut out = Vec::new();
    replay(&Config::default(), &[Input::bytes("fleet", bytes)], |f| {
        out.push(f.clone());
        Ok(())
    })
    .unwrap();
    out
}

/// Every incident event the fleet's findings make, the last ones resolved.
fn incident_events() -> Vec<crate::alert::shape::IncidentAlert> {
    use keywatch_core::incident::{IncidentsConfig, Tracker};
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let mut tracker = Tracker::new(&IncidentsConfig::default(), true);
    let mut events = Vec::new();
    for f in fleet_findings() {
        events.extend(tracker.observe(&f).events);
    }
    events.extend(tracker.resolve_all());
    events
        .iter()
        .map(|e| crate::alert::shape::IncidentAlert::from_event(e, None, &redactor))
        .collect()
}

fn schema(name: &str) -> Value {
    let path = format!("{}/tests/data/ocsf/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Alerts from real findings: a generated fleet with every attack family
/// replayed, then one alert per detector the engine has (a real alert
/// relabelled where the fleet raised none of that detector).
fn alerts() -> Vec<Alert> {
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let mut out: Vec<Alert> = fleet_findings()
        .iter()
        .map(|f| Alert::from_finding(f, None, &redactor))
        .collect();
    let seen: BTreeSet<Detector> = out.iter().map(|a| a.detector).collect();
    assert!(seen.len() >= 6, "{seen:?}");
    let template = out[0].clone();
    for d in Detector::ALL {
        if !seen.contains(&d) {
            out.push(Alert {
                detector: d,
                ..template.clone()
            });
        }
    }
    out
}

fn encoded(alert: &Alert) -> EncodedAlert {
    EncodedAlert::new(alert)
}

/// The evidence as the keywatch format carries it (through the queued JSON,
/// as every sink sends it).
fn evidence_json(alert: &Alert) -> Value {
    serde_json::from_str::<Value>(encoded(alert).json()).unwrap()["evidence"].clone()
}

/// The line a sink writes for `alert` in `format`, parsed.
fn rendered(format: AlertFormat, alert: &Alert) -> Value {
    let enc = encoded(alert);
    let line = format.render(&enc);
    serde_json::from_str(&line).unwrap()
}

/// The value at a dotted path, `None` when a step is missing or null.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, step| v.get(step))
        .filter(|v| !v.is_null())
}

/// Every object a path names: `evidences[].actor` is each evidence's actor.
fn objects<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = vec![v];
    for step in path.split('.') {
        let (name, each) = match step.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (step, false),
        };
        found = found
            .into_iter()
            .filter_map(|v| v.get(name).filter(|v| !v.is_null()))
            .flat_map(|v| match (each, v.as_array()) {
                (true, Some(items)) => items.iter().collect(),
                _ => vec![v],
            })
            .collect();
    }
    found
}

/// What the OCSF 1.3.0 schema requires of a Detection Finding, broken by
/// `finding`: empty when it validates.
fn ocsf_violations(schema: &Value, finding: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    for path in strings(&schema["required"]) {
        if at(finding, &path).is_none() {
            bad.push(format!("missing required {path}"));
        }
    }
    for path in strings(&schema["integers"]) {
        if !at(finding, &path).is_some_and(Value::is_i64) {
            bad.push(format!("{path} is not an integer"));
        }
    }
    for (path, allowed) in schema["enums"].as_object().unwrap() {
        if let Some(v) = at(finding, path) {
            if !allowed.as_array().unwrap().contains(v) {
                bad.push(format!("{path} = {v} is not in {allowed}"));
            }
        }
    }
    if finding["class_uid"] != schema["class_uid"]
        || finding["category_uid"] != schema["category_uid"]
    {
        bad.push(format!("not of class {}", schema["class_uid"]));
    }
    if let Some(one_of) = schema.get("at_least_one") {
        let one_of = strings(one_of);
        if !one_of
            .iter()
            .any(|k| at(finding, k).is_some_and(|v| !v.is_null()))
        {
            bad.push(format!("none of {one_of:?}"));
        }
    }
    let type_uid = finding["class_uid"].as_i64().unwrap_or(0) * 100
        + finding["activity_id"].as_i64().unwrap_or(0);
    if finding["type_uid"].as_i64() != Some(type_uid) {
        bad.push(format!(
            "type_uid is not class_uid * 100 + activity_id ({type_uid})"
        ));
    }
    if finding["metadata"]["version"] != schema["version"] {
        bad.push("metadata.version is not the schema's".into());
    }
    for (path, rules) in schema["objects"].as_object().unwrap() {
        for object in objects(finding, path) {
            for key in strings(&rules["required"]) {
                if object.get(&key).is_none_or(Value::is_null) {
                    bad.push(format!("{path}: missing required {key}"));
                }
            }
            let one_of = strings(&rules["at_least_one"]);
            if !one_of.is_empty()
                && !one_of
                    .iter()
                    .any(|k| object.get(k).is_some_and(|v| !v.is_null()))
            {
                bad.push(format!("{path}: none of {one_of:?}"));
            }
        }
    }
    bad
}

#[test]
fn ocsf_findings_of_every_detector_validate_against_the_schema() {
    let schema = schema("detection_finding-1.3.0.json");
    let alerts = alerts();
    let mut detectors = BTreeSet::new();
    for alert in &alerts {
        let finding = rendered(AlertFormat::Ocsf, alert);
        let bad = ocsf_violations(&schema, &finding);
        assert!(bad.is_empty(), "{}: {bad:?}\n{finding:#}", alert.detector);
        // The finding's evidence travels whole, and its facts where OCSF puts them.
        assert_eq!(finding["unmapped"]["evidence"], evidence_json(alert));
        assert_eq!(finding["finding_info"]["uid"], alert.id.as_str());
        assert_eq!(
            finding["evidences"][0]["actor"]["user"]["credential_uid"],
            alert.key_id.as_str()
        );
        assert_eq!(finding["time"], observed_ms(alert));
        if let Some(ip) = source_ip(alert) {
            assert_eq!(
                finding["evidences"][0]["src_endpoint"]["ip"],
                ip.to_string()
            );
        }
        detectors.insert(alert.detector);
    }
    assert_eq!(detectors.len(), Detector::ALL.len());
    // The check itself catches a broken finding.
    let mut broken: Value = rendered(AlertFormat::Ocsf, &alerts[0]);
    broken["finding_info"]
        .as_object_mut()
        .unwrap()
        .remove("title");
    broken["severity_id"] = Value::from(9);
    broken["evidences"] = serde_json::json!([{ "actor": {} }, { "api": {} }]);
    assert_eq!(
        ocsf_violations(&schema, &broken),
        [
            "missing required finding_info.title",
            "severity_id = 9 is not in [0,1,2,3,4,5,6,99]",
            "evidences[].actor: none of [\"process\", \"user\", \"invoked_by\", \"session\", \"app_name\", \"app_uid\"]",
            "evidences[].api: missing required operation",
        ]
    );
}

#[test]
fn ocsf_severity_follows_the_alert() {
    let alert = &alerts()[0];
    for (severity, id) in [
        (Severity::Info, 1),
        (Severity::Low, 2),
        (Severity::Medium, 3),
        (Severity::High, 4),
        (Severity::Critical, 5),
    ] {
        let a = Alert {
            severity,
            ..alert.clone()
        };
        let v = AlertFormat::Ocsf.value(&encoded(&a));
        assert_eq!(v["severity_id"], id);
    }
}

#[test]
fn ecs_documents_carry_what_elastic_rules_read() {
    for alert in alerts() {
        let doc: Value = rendered(AlertFormat::Ecs, &alert);
        assert_eq!(doc["event"]["kind"], "alert", "{doc:#}");
        assert_eq!(doc["event"]["id"], alert.id.as_str());
        assert_eq!(doc["rule"]["name"], alert.detector.as_str());
        assert_eq!(doc["event"]["action"], alert.detector.as_str());
        assert!(doc["event"]["severity"].is_u64());
        assert!(["success", "failure"].contains(&doc["event"]["outcome"].as_str().unwrap()));
        let ts = doc["@timestamp"].as_str().unwrap();
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .timestamp_millis(),
            observed_ms(&alert)
        );
        assert_eq!(doc["user"]["name"], alert.principal.as_deref().unwrap());
        assert_eq!(doc["source"]["ip"], source_ip(&alert).unwrap().to_string());
        // The generated fleet is AWS's: provider, account and region follow.
        assert_eq!(doc["cloud"]["provider"], "aws");
        let account = alert
            .principal
            .as_deref()
            .unwrap()
            .split(':')
            .nth(4)
            .unwrap();
        assert_eq!(doc["cloud"]["account"]["id"], account);
        assert_eq!(doc["cloud"]["region"], alert.sample["region"]);
        assert_eq!(doc["keywatch"]["key_id"], alert.key_id.as_str());
        assert_eq!(doc["keywatch"]["evidence"], evidence_json(&alert));
        let related: Vec<&Value> = doc["related"]["user"].as_array().unwrap().iter().collect();
        assert!(related.contains(&&Value::from(alert.key_id.as_str())));
    }
}

#[test]
fn the_keywatch_format_is_the_alert_unchanged() {
    let alert = &alerts()[0];
    let enc = encoded(alert);
    assert_eq!(AlertFormat::Keywatch.render(&enc), enc.json());
    assert_eq!(AlertFormat::default(), AlertFormat::Keywatch);
}

#[test]
fn ocsf_incident_events_are_incident_findings_that_validate() {
    use keywatch_core::incident::Change;
    let schema = schema("incident_finding-1.3.0.json");
    let events = incident_events();
    let mut seen = BTreeSet::new();
    for i in &events {
        let v = AlertFormat::Ocsf.value(&EncodedAlert::incident(i));
        let bad = ocsf_violations(&schema, &v);
        assert!(bad.is_empty(), "{:?}: {bad:?}\n{v:#}", i.event);
        let activity = match i.event {
            Change::Opened => 1,
            Change::Updated | Change::Escalated => 2,
            Change::Resolved => 3,
        };
        assert_eq!(v["activity_id"], activity);
        assert_eq!(v["unmapped"]["incident_id"], i.incident_id.as_str());
        assert_eq!(v["metadata"]["uid"], i.id.as_str());
        let uids: Vec<&str> = v["finding_info_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["uid"].as_str().unwrap())
            .collect();
        let timeline: Vec<&str> = i.timeline.iter().map(|s| s.finding_id.as_str()).collect();
        assert_eq!(uids, timeline, "its findings, in order");
        let tactics: Vec<&str> = v["attacks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["tactic"]["uid"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<&str> = i.tactics.iter().map(|t| t.attack_id()).collect();
        assert_eq!(tactics, expected);
        assert_eq!(v["is_suspected_breach"], i.attack_sequence);
        seen.insert(activity);
    }
    assert_eq!(seen, BTreeSet::from([1, 2, 3]), "create, update and close");
    assert!(events.iter().any(|i| !i.tactics.is_empty()));
    // The check catches an incident without findings or an assignee.
    let mut broken = AlertFormat::Ocsf.value(&EncodedAlert::incident(&events[0]));
    let obj = broken.as_object_mut().unwrap();
    obj.remove("finding_info_list");
    obj.remove("assignee_group");
    assert_eq!(
        ocsf_violations(&schema, &broken),
        [
            "missing required finding_info_list",
            "none of [\"assignee\", \"assignee_group\"]",
        ]
    );
    // A Detection Finding is not an Incident Finding.
    let finding = rendered(AlertFormat::Ocsf, &alerts()[0]);
    assert!(ocsf_violations(&schema, &finding).contains(&"not of class 2005".to_owned()));
}

#[test]
fn ecs_incident_events_carry_tactics_users_and_addresses() {
    for i in incident_events() {
        let doc = AlertFormat::Ecs.value(&EncodedAlert::incident(&i));
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["dataset"], "keywatch.incident");
        assert_eq!(
            doc["event"]["action"],
            format!("incident_{}", i.event.as_str())
        );
        assert_eq!(doc["event"]["id"], i.id.as_str());
        assert_eq!(doc["rule"]["name"], "keywatch incident");
        assert_eq!(
            doc["keywatch"]["incident"]["incident_id"],
            i.incident_id.as_str()
        );
        let tactic_ids: Vec<&str> = i.tactics.iter().map(|t| t.attack_id()).collect();
        if tactic_ids.is_empty() {
            assert!(doc.get("threat").is_none());
        } else {
            assert_eq!(doc["threat"]["tactic"]["id"], serde_json::json!(tactic_ids));
        }
        for key in &i.key_ids {
            assert!(doc["related"]["user"]
                .as_array()
                .unwrap()
                .contains(&Value::from(key.as_str())));
        }
        if let Some(p) = &i.principal {
            assert_eq!(doc["user"]["name"], p.as_str());
        }
        let ips = doc["related"]["ip"].as_array().unwrap();
        for s in &i.timeline {
            if let Some(ip) = s
                .source
                .as_deref()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            {
                assert!(ips.contains(&Value::from(ip.to_string())), "{doc:#}");
            }
        }
        // One line, as a file or Kafka sink writes it.
        let encoded = EncodedAlert::incident(&i);
        let line = AlertFormat::Ecs.render(&encoded);
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), doc);
    }
}
