//! `keywatch review --fail-on`: the review as a CI/CD gate. For each class
//! (expired-in-use, unknown, stale, rotation-overdue, compromised) a
//! scenario with such keys exits 2 and names exactly them, one line each
//! on stderr, while the review itself still goes to stdout; a clean
//! scenario exits 0 with every class listed.

use std::path::Path;
use std::sync::Arc;

use keywatch::config::StoreConfig;
use keywatch::engine::Finding;
use keywatch::metrics::Metrics;
use keywatch::store::{Actor, FindingsStore, Status};

use crate::helpers::*;

const DAY: i64 = 86_400;
/// 2026-03-01T00:00:00Z: the end of the recording, the review's time.
const MAR1: i64 = 1_772_323_200;

/// Every class has its key: AKIAFRESH is clean.
const INVENTORY: &str = "\
key_id,owner,created,expires,last_rotated,last_used
AKIAFRESH,alice,2026-02-01,,,
AKIASTALE,bob,2026-01-20,,,2025-09-01
AKIAOLD,carol,2025-01-10,,,
AKIAEXPIRED,dave,2026-02-01,2026-02-10,,
";

/// Uses of each key over February; AKIAUNKNOWN is in no inventory.
fn events(keys: &[&str]) -> String {
    let mut out = String::new();
    for day in 0..28 {
        for key in keys {
            let t = MAR1 - (28 - day) * DAY + 3_600;
            out.push_str(&format!(
                "{{\"time\": {t}, \"key_id\": \"{key}\", \"source\": \"203.0.113.5\", \"action\": \"s3:GetObject\"}}\n"
            ));
        }
    }
    out
}

struct Scenario {
    dir: tempfile::TempDir,
}

impl Scenario {
    fn new(inventory: &str, keys: &[&str]) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys.csv"), inventory).unwrap();
        std::fs::write(dir.path().join("events.jsonl"), events(keys)).unwrap();
        Scenario { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `keywatch review --fail-on CLASSES`, with `extra` arguments.
    fn gate(&self, classes: &str, extra: &[&str]) -> std::process::Output {
        run(keywatch()
            .arg("review")
            .arg("-i")
            .arg(self.path("keys.csv"))
            .args(["--fail-on", classes])
            .args(extra)
            .arg(self.path("events.jsonl")))
    }
}

/// The keys the gate named, in order, from its `fail-on CLASS KEY: …` lines.
fn named(o: &std::process::Output, class: &str) -> Vec<String> {
    let prefix = format!("fail-on {class} ");
    stderr(o)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(':').next().unwrap().to_owned())
        .collect()
}

fn all_keys() -> Scenario {
    Scenario::new(
        INVENTORY,
        &["AKIAFRESH", "AKIAOLD", "AKIAEXPIRED", "AKIAUNKNOWN"],
    )
}

#[test]
fn each_class_exits_2_naming_its_keys_and_only_them() {
    let s = all_keys();
    for (class, keys) in [
        ("expired-in-use", vec!["AKIAEXPIRED"]),
        ("unknown", vec!["AKIAUNKNOWN"]),
        ("stale", vec!["AKIASTALE"]),
        ("rotation-overdue", vec!["AKIAOLD"]),
    ] {
        let o = s.gate(class, &[]);
        assert_eq!(o.status.code(), Some(2), "{class}: {}", stderr(&o));
        assert_eq!(named(&o, class), keys, "{class}: {}", stderr(&o));
        let lines = stderr(&o)
            .lines()
            .filter(|l| l.starts_with("fail-on "))
            .count();
        assert_eq!(
            lines,
            keys.len(),
            "one line per key, no other class: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(&format!("review gate failed: 1 {class}")),
            "{}",
            stderr(&o)
        );
        assert!(
            stdout(&o).starts_with("# Key security review"),
            "the review still goes to stdout"
        );
    }
    // Several classes at once: each key under its class, in the gate's order.
    let o = s.gate("stale,unknown", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("fail-on "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        lines,
        ["fail-on unknown AKIAUNKNOWN", "fail-on stale AKIASTALE"]
    );
    assert!(stderr(&o).contains("1 unknown, 1 stale"), "{}", stderr(&o));
}

#[test]
fn a_clean_inventory_passes_every_class() {
    let s = Scenario::new(
        "key_id,owner,created\nAKIAFRESH,alice,2026-02-01\n",
        &["AKIAFRESH"],
    );
    let store = s.path("findings.db");
    make_store(&store, None);
    let o = s.gate(
        "expired-in-use,unknown,stale,rotation-overdue,compromised",
        &["--store", store.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("fail-on"), "{}", stderr(&o));
    // A class the scenario has, not asked for: no gate.
    let o = all_keys().gate("compromised", &["--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_unknown_class_or_compromised_without_a_store_is_a_usage_error() {
    let s = all_keys();
    let o = s.gate("stale,leaked", &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("leaked") && stderr(&o).contains("rotation-overdue"),
        "{}",
        stderr(&o)
    );
    let o = s.gate("compromised", &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--store"), "{}", stderr(&o));
}

/// A findings store; with `confirm`, holding that finding confirmed as a
/// compromise by a responder.
fn make_store(path: &Path, confirm: Option<&Finding>) {
    let cfg = StoreConfig {
        path: path.to_owned(),
        ..StoreConfig::default()
    };
    let (store, writer) = FindingsStore::open(&cfg, Arc::new(Metrics::new()), None).unwrap();
    if let Some(f) = confirm {
        store.record(f);
        drop(writer);
        let actor = Actor {
            who: "erin".into(),
            ..Actor::default()
        };
        store
            .set_status(&f.id, Status::Confirmed, None, None, &actor)
            .unwrap();
    }
}

#[test]
fn compromised_names_the_keys_a_responder_confirmed() {
    let s = all_keys();
    // The expired key's finding, as `replay` raises it.
    std::fs::write(
        s.path("keywatch.toml"),
        format!("[inventory]\npath = \"{}\"\n", s.path("keys.csv").display()),
    )
    .unwrap();
    let o = run(keywatch()
        .args(["replay", "-c"])
        .arg(s.path("keywatch.toml"))
        .arg(s.path("events.jsonl")));
    assert!(o.status.success(), "{}", stderr(&o));
    let finding: Finding = json_lines(&stdout(&o))
        .into_iter()
        .find(|f| f["detector"] == "expired_key")
        .map(|f| serde_json::from_value(f).unwrap())
        .expect("an expired_key finding");
    let store = s.path("findings.db");
    make_store(&store, Some(&finding));
    let o = s.gate("compromised", &["--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(named(&o, "compromised"), ["AKIAEXPIRED"]);
    assert!(
        stderr(&o).contains("confirmed compromised, owner dave"),
        "{}",
        stderr(&o)
    );
}
