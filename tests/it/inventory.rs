//! The inventory as a user meets it: `keywatch review` on a scenario with
//! known stale, overdue, expired and unknown keys; reloads while traffic
//! flows; bad files refused with the row named; the example files valid.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keywatch::config::Config;
use keywatch::decode::{AuditEvent, Outcome, Source};
use keywatch::engine::{Detector, Engine, Finding};
use keywatch::inventory::{Inventory, InventoryHandle};
use keywatch::metrics::Metrics;

use crate::helpers::*;

const DAY: i64 = 86_400;
/// 2026-01-01 12:00:00 UTC: the recording starts.
const JAN1: i64 = 1_767_268_800;

/// The review's scenario. Events run from Jan 1 to Mar 1 2026 (the review's
/// time); the thresholds are the defaults (90 days).
const SCENARIO_INVENTORY: &str = r#"
# Used daily; allowed to delete but never does.
[[keys]]
key_id = "AKIAOK"
owner = "alice"
team = "payments"
system = "billing"
privilege = "write"
created = "2026-01-01"
allowed_actions = ["s3:GetObject", "s3:DeleteObject"]

# The provider last saw it in November: stale. Rotated in January: not overdue.
[[keys]]
key_id = "AKIASTALE"
owner = "bob"
system = "reports"
privilege = "read"
created = "2025-06-01"
last_rotated = "2026-01-15"
last_used = "2025-11-01"

# Used daily, created last June and never rotated: overdue.
[[keys]]
key_id = "AKIAOLD"
owner = "carol"
system = "billing"
privilege = "admin"
created = "2025-06-01"

# Expired Feb 1, still used until Feb 10.
[[keys]]
key_id = "AKIAEXPIRED"
owner = "dave"
system = "ci"
created = "2026-01-01"
expires = "2026-02-01"

# Expired Jan 20, last used Jan 5: expired, but not in use.
[[keys]]
key_id = "AKIAGONE"
owner = "erin"
system = "ci"
created = "2026-01-01"
expires = "2026-01-20"

# Created ten days ago, never used yet: neither stale nor overdue.
[[keys]]
key_id = "AKIANEW"
owner = "frank"
system = "ci"
created = "2026-02-20"
"#;

fn event(t: i64, key: &str, action: &str) -> String {
    format!(
        r#"{{"time":{t},"key_id":"{key}","source":"10.0.0.7","user_agent":"aws-cli/2.15.0","action":"{action}"}}"#
    )
}

fn scenario_events() -> String {
    let mut lines = Vec::new();
    for d in 0..=59 {
        let t = JAN1 + d * DAY;
        lines.push(event(t, "AKIAOK", "s3:GetObject"));
        lines.push(event(t + 60, "AKIAOLD", "s3:GetObject"));
        if d <= 40 {
            lines.push(event(t + 120, "AKIAEXPIRED", "s3:GetObject"));
        }
    }
    lines.push(event(JAN1 + 4 * DAY, "AKIAGONE", "s3:GetObject"));
    for i in 0..3 {
        lines.push(event(
            JAN1 + 45 * DAY + i * 60,
            "AKIAGHOST",
            "s3:ListBuckets",
        ));
    }
    lines.join("\n") + "\n"
}

/// Writes the scenario's files.
fn scenario(dir: &Path) -> (PathBuf, PathBuf) {
    let inventory = dir.join("inventory.toml");
    std::fs::write(&inventory, SCENARIO_INVENTORY).unwrap();
    let events = dir.join("events.jsonl");
    std::fs::write(&events, scenario_events()).unwrap();
    (inventory, events)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn json_keys(review: &serde_json::Value, list: &str) -> BTreeSet<String> {
    review[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list {list}"))
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The key ids in the table under `## title`.
fn markdown_keys(md: &str, title: &str) -> BTreeSet<String> {
    let heading = format!("## {title}\n");
    let start = md
        .find(&heading)
        .unwrap_or_else(|| panic!("no section {title}:\n{md}"));
    let body = &md[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l[3..].split('`').next().unwrap().to_owned())
        .collect()
}

#[test]
fn review_lists_exactly_the_scenario_keys_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let (inventory, events) = scenario(tmp.path());
    let review = |format: &str| {
        let o = run(keywatch()
            .args(["review", "--format", format, "--inventory"])
            .arg(&inventory)
            .arg(&events));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("reviewed 7 keys (6 listed, 1 unknown)"),
            "{}",
            stderr(&o)
        );
        stdout(&o)
    };
    let expected = [
        ("stale", "Stale keys", set(&["AKIASTALE"])),
        ("rotation_overdue", "Rotation overdue", set(&["AKIAOLD"])),
        (
            "expired_in_use",
            "Expired keys still in use",
            set(&["AKIAEXPIRED"]),
        ),
        (
            "unknown",
            "Unknown keys seen in traffic",
            set(&["AKIAGHOST"]),
        ),
        (
            "least_privilege",
            "Least-privilege candidates",
            set(&["AKIAOK"]),
        ),
    ];

    let json: serde_json::Value = serde_json::from_str(&review("json")).unwrap();
    for (list, _, keys) in &expected {
        assert_eq!(&json_keys(&json, list), keys, "JSON list {list}");
    }
    assert_eq!(json["generated_at"], "2026-03-01T12:01:00.000Z");
    assert_eq!(json["summary"]["listed"], 6);
    assert_eq!(json["expired_in_use"][0]["days_after_expiry"], 9);
    assert_eq!(
        json["least_privilege"][0]["never_used"][0],
        "s3:DeleteObject"
    );
    assert_eq!(
        json["ranked"][0]["key_id"], "AKIAEXPIRED",
        "an expired key in use, with a finding a day, ranks first: {}",
        json["ranked"]
    );
    assert_eq!(json["keys"].as_array().unwrap().len(), 7);
    let expired = json["most_findings"][0].clone();
    assert_eq!(expired["key_id"], "AKIAEXPIRED");
    assert_eq!(expired["by_detector"]["expired_key"], 10);

    let md = review("markdown");
    for (_, title, keys) in &expected {
        assert_eq!(&markdown_keys(&md, title), keys, "Markdown section {title}");
    }
    assert_eq!(markdown_keys(&md, "Every key").len(), 7);
    assert!(md.contains("- **1** expired keys still in use"), "{md}");
}

/// A finding on `key` in a findings store, as the daemon keeps it.
fn stored_finding(key: &str, n: u32) -> Finding {
    serde_json::from_value(serde_json::json!({
        "id": format!("{key}-{n}"), "detector": "new_source", "severity": "high",
        "entity": "key_id", "key_id": key, "observed_at": "2026-02-20T00:00:00.000Z",
        "summary": format!("{key} used from a new network"),
        "evidence": {"observed": {"source": "198.51.100.7"}, "baseline": [], "threshold": null,
                     "eligibility": {"learned_for_s": 1, "events_learned": 1, "active_days": 1}},
        "sample": {"time": "2026-02-20T00:00:00.000Z", "key_id": key,
                   "source": "198.51.100.7", "outcome": "success", "count": 1}
    }))
    .unwrap()
}

#[test]
fn review_lists_the_keys_confirmed_compromised_in_the_findings_store() {
    use keywatch::store::{Actor, FindingsStore, Status};
    let tmp = tempfile::tempdir().unwrap();
    let (inventory, events) = scenario(tmp.path());
    // Verdicts given in the console: two keys confirmed compromised (one
    // the inventory lists, one it does not), one confirmed then resolved,
    // one only acknowledged.
    let db = tmp.path().join("findings.db");
    {
        let cfg = keywatch::config::StoreConfig {
            path: db.clone(),
            ..Default::default()
        };
        let (store, _writer) = FindingsStore::open(&cfg, Arc::new(Metrics::new()), None).unwrap();
        let erin = Actor {
            who: "erin".into(),
            ..Actor::default()
        };
        for (key, statuses) in [
            ("AKIAEXPIRED", &[Status::Confirmed][..]),
            ("AKIAGHOST", &[Status::Confirmed][..]),
            ("AKIAOLD", &[Status::Confirmed, Status::Resolved][..]),
            ("AKIAOK", &[Status::Acknowledged][..]),
        ] {
            let f = stored_finding(key, 1);
            store.store_now(&f).unwrap();
            for s in statuses {
                store.set_status(&f.id, *s, None, None, &erin).unwrap();
            }
        }
    }
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            "[inventory]\npath = {:?}\n\n[store]\npath = {:?}\n",
            inventory.display().to_string(),
            db.display().to_string()
        ),
    )
    .unwrap();
    let review = |format: &str, extra: &[&str]| {
        let o = run(keywatch()
            .args(["review", "--format", format])
            .args(extra)
            .arg(&events));
        assert!(o.status.success(), "{}", stderr(&o));
        (stdout(&o), stderr(&o))
    };
    let cfg_args = ["-c", config.to_str().unwrap()];

    let (json, err) = review("json", &cfg_args);
    assert!(
        err.contains("2 keys confirmed compromised (findings store)"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["compromised"],
        serde_json::json!([
            {"key_id": "AKIAEXPIRED", "owner": "dave", "system": json["compromised"][0]["system"], "listed": true},
            {"key_id": "AKIAGHOST", "owner": null, "system": null, "listed": false},
        ])
    );
    let (md, _) = review("markdown", &cfg_args);
    assert_eq!(
        markdown_keys(&md, "Compromised (confirmed)"),
        set(&["AKIAEXPIRED", "AKIAGHOST"]),
        "{md}"
    );
    assert!(md.contains("- **2** keys confirmed compromised"), "{md}");
    // Most urgent first: before the risk ranking.
    assert!(md.find("## Compromised (confirmed)") < md.find("## Ranked by risk"));

    // --store names the file without a config.
    let (json, _) = review(
        "json",
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--store",
            db.to_str().unwrap(),
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["compromised"].as_array().unwrap().len(), 2);

    // Without a store the review does not pretend to know.
    let (json, err) = review("json", &["--inventory", inventory.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(json.get("compromised").is_none(), "{json}");
    assert!(!err.contains("compromised"), "{err}");
    let (md, _) = review("markdown", &["--inventory", inventory.to_str().unwrap()]);
    assert!(!md.contains("Compromised (confirmed)"), "{md}");

    // A store that is not there, or not a store: refused, naming the file.
    let missing = tmp.path().join("nope.db");
    let o = run(keywatch()
        .args(["review", "--inventory"])
        .arg(&inventory)
        .arg("--store")
        .arg(&missing)
        .arg(&events));
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&missing.display().to_string())
            && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    let o = run(keywatch()
        .args(["review", "--inventory"])
        .arg(&inventory)
        .arg("--store")
        .arg(&inventory)
        .arg(&events));
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("findings store") && stderr(&o).contains("inventory.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn review_without_an_inventory_is_a_usage_error() {
    let o = run(keywatch().args(["review"]));
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--inventory"), "{}", stderr(&o));
}

#[test]
fn a_csv_with_a_bad_row_is_refused_naming_the_row() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("keys.csv");
    std::fs::write(
        &inventory,
        "key_id,owner,allowed_cidrs\nAKIA1,alice,10.0.0.0/8\nAKIA2,bob,10.0.0.0/8;300.1.2.0/24\n",
    )
    .unwrap();
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            "[inventory]\npath = {:?}\n",
            inventory.display().to_string()
        ),
    )
    .unwrap();
    for args in [
        vec!["check-config", "-c"],
        vec!["review", "-c"],
        vec!["replay", "-c"],
    ] {
        let mut cmd = keywatch();
        cmd.args(&args).arg(&config);
        if args[0] == "replay" {
            cmd.arg("-");
        }
        let o = run(&mut cmd);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(
                "keys.csv: line 3, row 2 (key_id \"AKIA2\"): `allowed_cidrs` = \"300.1.2.0/24\""
            ),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn replay_with_an_inventory_reports_policy_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let (inventory, events) = scenario(tmp.path());
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            "[inventory]\npath = {:?}\n",
            inventory.display().to_string()
        ),
    )
    .unwrap();
    let o = run(keywatch().args(["replay", "-c"]).arg(&config).arg(&events));
    assert!(o.status.success(), "{}", stderr(&o));
    let findings = json_lines(&stdout(&o));
    let count = |d: &str| findings.iter().filter(|f| f["detector"] == d).count();
    assert_eq!(count("expired_key"), 10, "Feb 1 to Feb 10");
    assert_eq!(count("unknown_key"), 1);
    assert!(stderr(&o).contains("  expired_key "), "{}", stderr(&o));
}

#[test]
fn the_example_inventories_load_and_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let toml = Inventory::load(&dir.join("inventory.example.toml")).unwrap();
    let csv = Inventory::load(&dir.join("inventory.example.csv")).unwrap();
    assert_eq!(toml.len(), 3);
    assert_eq!(toml.entries(), csv.entries());
}

fn use_of(t: i64, key: &str) -> AuditEvent<'_> {
    AuditEvent {
        time_ms: t * 1000,
        key_id: Cow::Borrowed(key),
        principal: None,
        source: Source::parse(Cow::Borrowed("10.0.0.7")),
        user_agent: None,
        action: Some(Cow::Borrowed("s3:GetObject")),
        action_namespace: None,
        outcome: Outcome::Success,
        region: None,
        count: 1,
    }
}

#[test]
fn reload_under_traffic_keeps_state_and_refuses_a_bad_file() {
    const EVENTS: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inventory.csv");
    std::fs::write(&path, "key_id,owner,expires\nAKIAA,alice,\n").unwrap();
    let metrics = Metrics::new();
    let handle = InventoryHandle::open(&path, Some(&metrics)).unwrap();
    let engine = Engine::with_inventory(&Config::default(), handle.clone());
    let progress = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (engine, progress) = (engine.clone(), progress.clone());
        std::thread::spawn(move || {
            // One use a minute of two keys, each finding tagged with the
            // index of the event that raised it.
            let mut found: Vec<(usize, Finding)> = Vec::new();
            let mut out = Vec::new();
            for i in 0..EVENTS {
                let t = JAN1 + (i as i64 / 2) * 60;
                let key = if i % 2 == 0 { "AKIAA" } else { "AKIAB" };
                engine.process(&use_of(t, key), &mut out);
                found.extend(out.drain(..).map(|f| (i, f)));
                progress.store(i + 1, Ordering::Release);
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            found
        })
    };
    let wait_for = |n: usize| {
        while progress.load(Ordering::Acquire) < n {
            std::thread::yield_now();
        }
    };
    wait_for(EVENTS / 4);
    // Valid: B becomes known, and A expired the moment the recording began.
    std::fs::write(
        &path,
        "key_id,owner,expires\nAKIAA,alice,2026-01-01\nAKIAB,bob,\n",
    )
    .unwrap();
    let before_reload = progress.load(Ordering::Acquire);
    handle.reload().unwrap();
    let after_reload = progress.load(Ordering::Acquire);
    wait_for(EVENTS / 2);
    std::fs::write(
        &path,
        "key_id,owner,expires\nAKIAA,alice,2026-01-01\nAKIAB,,\n",
    )
    .unwrap();
    let err = handle.reload().unwrap_err().to_string();
    assert!(
        err.contains("inventory.csv: line 3, row 2 (key_id \"AKIAB\"): `owner`"),
        "{err}"
    );
    let found = feeder.join().unwrap();

    assert_eq!(
        handle.current().get("AKIAB").map(|e| e.owner.to_string()),
        Some("bob".to_owned()),
        "the rejected file left the previous inventory in force"
    );
    let uses = |key| {
        engine
            .with_key(keywatch::config::Entity::KeyId, key, |s| s.events)
            .unwrap()
    };
    assert_eq!(
        (uses("AKIAA"), uses("AKIAB")),
        (EVENTS as u32 / 2, EVENTS as u32 / 2),
        "reloads never touch per-key state"
    );
    let of = |d: Detector| -> Vec<usize> {
        found
            .iter()
            .filter(|(_, f)| f.detector == d)
            .map(|(i, _)| *i)
            .collect()
    };
    assert_eq!(
        of(Detector::UnknownKey),
        [1],
        "B unknown on its first use only"
    );
    let expired = of(Detector::ExpiredKey);
    assert!(!expired.is_empty(), "the reloaded expiry is enforced");
    assert!(
        expired.iter().all(|&i| i >= before_reload),
        "no expiry before the reload: {expired:?} vs {before_reload}"
    );
    assert!(
        expired[0] <= after_reload + 2,
        "enforced from the next event on: {} vs {after_reload}",
        expired[0]
    );
    assert_eq!(
        expired.len(),
        1 + (EVENTS / 2 - 1 - (expired[0] / 2)) / 60,
        "once per hour of A's use (the cooldown), to the end, after the bad file too"
    );
    let text = metrics.render();
    for line in [
        "keywatch_inventory_reloads_total{result=\"ok\"} 1",
        "keywatch_inventory_reloads_total{result=\"failed\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

/// The daemon's checkpoint is a source for the review: the state learned
/// from the same events gives the same stale, overdue, expired and unknown
/// lists as reviewing the events themselves.
#[test]
fn review_from_a_checkpoint_matches_review_from_the_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (inventory, events) = scenario(tmp.path());
    let state = tmp.path().join("state");
    let cfg = tmp.path().join("kw.toml");
    std::fs::write(
        &cfg,
        format!("[inventory]\npath = \"{}\"\n", inventory.display()),
    )
    .unwrap();
    let o = run(keywatch()
        .args(["replay", "-c"])
        .arg(&cfg)
        .arg("--write-checkpoint")
        .arg(&state)
        .arg(&events));
    assert!(o.status.success(), "{}", stderr(&o));
    let review = |args: &[&std::ffi::OsStr]| {
        let o = run(keywatch()
            .args([
                "review",
                "--format",
                "json",
                "--now",
                "2026-03-01T12:01:00Z",
                "-c",
            ])
            .arg(&cfg)
            .args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let from_events = review(&[events.as_os_str()]);
    let from_checkpoint = review(&[std::ffi::OsStr::new("--checkpoint"), state.as_os_str()]);
    for list in [
        "stale",
        "rotation_overdue",
        "expired_in_use",
        "unknown",
        "least_privilege",
    ] {
        assert_eq!(
            json_keys(&from_checkpoint, list),
            json_keys(&from_events, list),
            "{list}"
        );
    }
    assert_eq!(
        json_keys(&from_checkpoint, "expired_in_use"),
        set(&["AKIAEXPIRED"])
    );
}
