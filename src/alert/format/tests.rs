use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::alert::config::RedactConfig;
use crate::alert::redact::Redactor;
use keywatch_core::config::Config;
use keywatch_core::engine::{Detector, Severity};
use keywatch_core::gen::{AttackSet, Format, GenConfig, Scenario};
use keywatch_core::replay::{replay, Input};

/// Alerts from real findings: a generated fleet with every attack family
/// replayed, then one alert per detector the engine has (a real alert
/// relabelled where the fleet raised none of that detector).
fn alerts() -> Vec<Alert> {
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
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let mut out = Vec::new();
    replay(&Config::default(), &[Input::bytes("fleet", bytes)], |f| {
        out.push(Alert::from_finding(f, None, &redactor));
        Ok(())
    })
    .unwrap();
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
        bad.push("not a Detection Finding".into());
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
    let schema: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ocsf/detection_finding-1.3.0.json"
        ))
        .unwrap(),
    )
    .unwrap();
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
