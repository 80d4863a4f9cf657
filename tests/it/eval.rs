//! Detection judged against ground truth, on two generators.
//!
//! The project's own (`keywatch gen`, the kinds it was first tuned on): two
//! tuning fleets, every planted attack family found in time by its
//! detector, and what asks for a person today (medium and above) within
//! what a team keeps a monitor switched on for: at most 3 in any fleet, at
//! most 1 a fleet on average. `cargo bench --bench eval` runs the same over
//! 20 tuning and 20 held-out seeds at release speed.
//!
//! An independent one (`benches/fleets/fleet.py`, which shares no code or
//! parameters with keywatch and has sixteen benign kinds with parameters
//! drawn at random): one fleet of a seed never tuned on, every family found
//! but the two cases the quiet rules (docs/detectors.md) leave open, and
//! no benign key raising one detector more than its fold allows.
//! `benches/fleets/score.py` runs many such fleets, per kind.

use std::collections::BTreeMap;
use std::path::Path;

use keywatch::config::Config;
use keywatch::gen::eval::{evaluate, FleetShape, TUNING_SEEDS};
use keywatch::gen::AttackKind;
use keywatch::replay::{replay, Input};

#[test]
fn every_attack_family_found_in_time_with_few_false_positives() {
    // One CloudTrail fleet (odd seed) and one generic, with every archetype
    // at least once (a debug build replays them in well under a minute).
    let shape = FleetShape {
        keys: 16,
        ..FleetShape::default()
    };
    let report = evaluate(&Config::default(), &shape, TUNING_SEEDS.take(2)).unwrap();
    let table = report.markdown();
    let mut serious = 0;
    for fleet in &report.fleets {
        assert_eq!(
            fleet.attacks.len(),
            AttackKind::ALL.len(),
            "every family planted"
        );
        for (kind, found) in &fleet.attacks {
            assert!(
                found,
                "seed {}: {} not found in time by {}\n{table}",
                fleet.seed,
                kind.name(),
                kind.detector()
            );
        }
        let fps: Vec<String> = fleet
            .false_positives
            .iter()
            .filter(|f| f.severity != "low" && f.severity != "info")
            .map(|f| format!("{} {} {}: {}", f.detector, f.severity, f.key, f.summary))
            .collect();
        assert!(fps.len() <= 3, "seed {}: {fps:#?}", fleet.seed);
        serious += fps.len();
        // Low ones (a person who meets a new network every week or so) stay
        // a handful: the fold keeps each key's run to two.
        assert!(
            fleet.false_positives.len() <= 6,
            "seed {}: {:#?}",
            fleet.seed,
            fleet.false_positives
        );
    }
    assert!(
        serious as f64 / report.fleets.len() as f64 <= 1.0,
        "{table}"
    );
}

/// Milliseconds since the epoch of an RFC 3339 time in a truth file.
fn ms(t: &serde_json::Value) -> i64 {
    let t = t.as_str().expect("a time");
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("RFC 3339")
        .timestamp_millis()
}

/// The role of a principal (`arn:…:role/NAME` or `…:assumed-role/NAME/…`).
fn role(principal: Option<&str>) -> Option<&str> {
    let p = principal?;
    let rest = p
        .split_once(":assumed-role/")
        .or_else(|| p.split_once(":role/"))?
        .1;
    Some(rest.split('/').next().unwrap_or(rest))
}

#[test]
fn held_out_kinds_every_family_found_and_no_benign_storm() {
    let Some(python) = crate::helpers::external_tool(&["python3"]) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // Seed 101: past the seeds tuned on (1-3); 48 keys, three of each kind.
    let status = std::process::Command::new(python)
        .arg(root.join("benches/fleets/fleet.py"))
        .args(["--seed", "101", "--keys", "48", "--days", "50", "--out"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the fleet generator failed");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
    let mut found = Vec::new();
    replay(
        &Config::default(),
        &[Input::path(&dir.path().join("events.jsonl"))],
        |f| {
            // Raised findings; a run's record of folded ones pages no one.
            if f.folded.is_none() {
                found.push((
                    f.key_id.clone(),
                    f.principal.clone(),
                    f.detector.as_str(),
                    f.severity.as_str(),
                    f.observed_at_ms(),
                    f.summary.clone(),
                ));
            }
            Ok(())
        },
    )
    .unwrap();
    let kinds: BTreeMap<&str, &str> = truth["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap(), k["kind"].as_str().unwrap()))
        .collect();
    let attacks = truth["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 11, "every family planted");
    let on = |f: &(String, Option<String>, &str, &str, i64, String), a: &serde_json::Value| {
        f.0 == a["key_id"].as_str().unwrap()
            || (a["family"] == "stolen_sessions"
                && role(f.1.as_deref()) == role(a["principal"].as_str()))
    };
    for a in attacks {
        let (start, deadline) = (ms(&a["start"]), ms(&a["deadline"]));
        let hit = found.iter().any(|f| {
            on(f, a)
                && f.2 == a["detector"].as_str().unwrap()
                && (start - 1000..=deadline).contains(&f.4)
        });
        // The documented doors: a key that meets new networks on most days
        // (serverless, mobile) is not judged on a new /24 in a /16 it
        // uses; and a careful thief, who brings only a new network (the
        // key's own calls and client), is held and dropped on a key that
        // meets new networks now and then, as people do. Anything else,
        // a careful thief on any service key included, must be found.
        let kind = a["kind"].as_str().unwrap_or("");
        let door = match a["family"].as_str().unwrap_or("") {
            "stolen_key_new_network" => ["serverless", "mobile_person"].contains(&kind),
            "stolen_key_blending_in" => [
                "serverless",
                "mobile_person",
                "office_person",
                "vpn_person",
                "traveller",
            ]
            .contains(&kind),
            _ => false,
        };
        assert!(
            hit || door,
            "{} on a {} key not found in time by {}",
            a["family"],
            a["kind"],
            a["detector"]
        );
    }
    // Benign findings: none on a key's detector more than the fold's two
    // plus one graver or far bigger one, within any 30 days.
    let during = |f: &(String, Option<String>, &str, &str, i64, String)| {
        attacks
            .iter()
            .any(|a| on(f, a) && f.4 >= ms(&a["start"]) - 1000 && f.4 <= ms(&a["end"]) + 3_600_000)
    };
    let mut runs: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for f in found.iter().filter(|f| !during(f)) {
        runs.entry((f.0.as_str(), f.2)).or_default().push(f.4);
    }
    for ((key, detector), times) in &runs {
        let most = times
            .iter()
            .map(|t| {
                times
                    .iter()
                    .filter(|u| (*t..t + 30 * 86_400_000).contains(u))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            most <= 3,
            "a {} key {key} raised {detector} {most} times within 30 days",
            kinds.get(key).unwrap_or(&"?")
        );
    }
}
