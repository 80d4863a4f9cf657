//! Detection judged against ground truth: generated traffic full of patterns
//! that fool naive rules, with attacks injected on their own keys.

use std::collections::BTreeMap;

use keywatch::config::Config;
use keywatch::gen::{Archetype, AttackSet, Format, GenConfig, Scenario};
use keywatch::replay::{replay, Input};

use crate::helpers::*;

/// Minimal view of a finding.
struct Found {
    key: String,
    detector: String,
    severity: String,
    at_ms: i64,
}

fn at_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// Every attack is found by its detector, on its key, between its first
/// event and an hour after its last (CloudTrail times have whole seconds,
/// the truth has milliseconds: one second of slack before the start).
fn assert_every_attack_found(truth: &[serde_json::Value], found: &[Found]) {
    for attack in truth {
        let key = attack["key_id"].as_str().unwrap();
        let detector = attack["detector"].as_str().unwrap();
        let (start, end) = (
            attack["start_ms"].as_i64().unwrap(),
            attack["end_ms"].as_i64().unwrap(),
        );
        let hit = found.iter().any(|f| {
            f.key == key
                && f.detector == detector
                && f.at_ms >= start - 1_000
                && f.at_ms <= end + 3_600_000
        });
        assert!(hit, "missed {}: {}", attack["kind"], attack["description"]);
    }
}

#[test]
fn example_scenario_every_attack_found_and_normal_keys_quiet() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let o = run(keywatch().arg("replay").arg(data.join("scenario.jsonl.gz")));
    assert!(o.status.success(), "{}", stderr(&o));
    let found: Vec<Found> = json_lines(&stdout(&o))
        .iter()
        .map(|f| Found {
            key: f["key_id"].as_str().unwrap().to_owned(),
            detector: f["detector"].as_str().unwrap().to_owned(),
            severity: f["severity"].as_str().unwrap().to_owned(),
            at_ms: at_ms(f["observed_at"].as_str().unwrap()),
        })
        .collect();
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("truth.json")).unwrap()).unwrap();
    let attacks = truth["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 6);
    assert_every_attack_found(attacks, &found);
    let normal = truth["normal_keys"].as_object().unwrap();
    assert_eq!(normal.len(), 16);
    for f in &found {
        if let Some(archetype) = normal.get(&f.key) {
            assert_eq!(
                archetype, "roaming",
                "normal {archetype} key {} alerted: {} {}",
                f.key, f.detector, f.severity
            );
            // A laptop meeting a new network every week or so: judged, at
            // low or medium, never high.
            assert!(
                ["low", "medium"].contains(&f.severity.as_str()),
                "{}",
                f.severity
            );
        }
    }
}

/// A larger fleet generated in-process, so each key's archetype is known.
/// Only the roaming person's key may alert, at most twice and never high:
/// it really does show up from new networks.
#[test]
fn generated_fleet_every_attack_found_only_roaming_keys_may_alert() {
    for (seed, format, profile) in [
        (21, Format::Generic, "generic"),
        (22, Format::CloudTrail, "cloudtrail"),
    ] {
        let scenario = Scenario::new(GenConfig {
            seed,
            keys: 24,
            days: 50,
            attacks: true,
            format,
            volume: 0.15,
            attack_set: AttackSet::Classic,
            ..GenConfig::default()
        });
        let mut bytes = Vec::new();
        for ev in scenario.events() {
            bytes.extend_from_slice(ev.json.as_bytes());
            bytes.push(b'\n');
        }
        let mut cfg = Config::default();
        cfg.decode.profile = profile.to_owned();
        let mut found = Vec::new();
        let summary = replay(&cfg, &[Input::bytes("generated", bytes)], |f| {
            // Alerts: a run's record of folded findings pages no one.
            if f.folded.is_none() {
                found.push(Found {
                    key: f.key_id.clone(),
                    detector: f.detector.as_str().to_owned(),
                    severity: f.severity.as_str().to_owned(),
                    at_ms: f.observed_at_ms(),
                });
            }
            Ok(())
        })
        .unwrap();
        assert!(summary.events > 100_000, "{}", summary.render());
        let truth: Vec<serde_json::Value> = scenario
            .attacks()
            .iter()
            .map(|a| serde_json::to_value(a).unwrap())
            .collect();
        assert_eq!(truth.len(), 6);
        assert_every_attack_found(&truth, &found);

        let mut per_key: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
        for key in scenario.normal_keys() {
            let key = found.iter().find(|f| f.key == key).map(|f| f.key.as_str());
            if let Some(k) = key {
                per_key.insert(k, found.iter().filter(|f| f.key == k).collect());
            }
        }
        for (key, fs) in per_key {
            let archetype = scenario.archetype(key).unwrap();
            let shown: Vec<_> = fs.iter().map(|f| (&f.detector, &f.severity)).collect();
            assert_eq!(
                archetype,
                Archetype::Roaming,
                "seed {seed}: normal {} key {key} alerted: {shown:?}",
                archetype.name()
            );
            assert!(
                fs.len() <= 2,
                "seed {seed}: roaming key alerted {} times: {shown:?}",
                fs.len()
            );
            assert!(
                fs.iter()
                    .all(|f| f.severity != "high" && f.severity != "critical"),
                "{shown:?}"
            );
        }
    }
}
