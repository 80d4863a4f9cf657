//! The review's judgements on a small fleet with explicit times.

use std::borrow::Cow;

use super::*;
use crate::config::{Config, InventoryConfig};
use crate::decode::{AuditEvent, Outcome, Source};
use crate::engine::state::Secs;
use crate::engine::{Engine, Finding};
use crate::inventory::Inventory;
use crate::inventory::InventoryHandle;

const DAY: Secs = 86_400;
/// 2026-03-01 00:00:00 UTC, the time of the review.
const NOW: Secs = 1_772_323_200;

const INVENTORY: &str = r#"
[[keys]]
key_id = "AKIAADMIN"
owner = "platform | ops"
system = "billing"
privilege = "admin"
created = "2025-01-01"
last_used = "2025-10-01"

[[keys]]
key_id = "AKIAREAD"
owner = "bob"
system = "billing"
privilege = "read"
created = "2025-01-01"
last_used = "2025-10-01"

[[keys]]
key_id = "AKIAUNSEEN"
owner = "carol"
created = "2025-01-01"

[[keys]]
key_id = "AKIAFRESH"
owner = "dave"
created = "2026-02-20"
allowed_actions = ["s3:GetObject", "s3:PutObject", "iam:*"]
"#;

fn use_at<'a>(t: Secs, key: &'a str, action: &'a str) -> AuditEvent<'a> {
    AuditEvent {
        time_ms: t as i64 * 1000,
        key_id: Cow::Borrowed(key),
        principal: None,
        source: Source::parse(Cow::Borrowed("10.0.0.1")),
        user_agent: None,
        action: Some(Cow::Borrowed(action)),
        action_namespace: None,
        outcome: Outcome::Success,
        region: None,
        count: 1,
    }
}

struct Rig {
    engine: Engine,
    inventory: std::sync::Arc<Inventory>,
    findings: Vec<Finding>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.toml");
    std::fs::write(&path, INVENTORY).unwrap();
    let handle = InventoryHandle::open(&path, None).unwrap();
    let engine = Engine::with_inventory(&Config::default(), handle.clone());
    let mut findings = Vec::new();
    for day in 1..=3 {
        engine.process(
            &use_at(NOW - day * DAY, "AKIAFRESH", "s3:GetObject"),
            &mut findings,
        );
    }
    engine.process(
        &use_at(NOW - DAY, "AKIAGHOST", "s3:GetObject"),
        &mut findings,
    );
    Rig {
        engine,
        inventory: handle.current(),
        findings,
        _dir: dir,
    }
}

impl Rig {
    fn review(&self, observed_since: Option<Secs>) -> Review {
        review(&self.input(observed_since))
    }

    fn input(&self, observed_since: Option<Secs>) -> ReviewInput<'_> {
        ReviewInput {
            engine: &self.engine,
            inventory: &self.inventory,
            findings: &self.findings,
            now: NOW,
            observed_since,
            thresholds: Thresholds::from_config(&InventoryConfig::default()),
        }
    }
}

fn keys<T>(list: &[T], key: impl Fn(&T) -> &str) -> Vec<&str> {
    list.iter().map(key).collect()
}

#[test]
fn stale_needs_known_disuse() {
    let rig = rig();
    let r = rig.review(Some(NOW - 10 * DAY));
    assert_eq!(
        keys(&r.stale, |s| &s.key_id),
        ["AKIAADMIN", "AKIAREAD"],
        "the provider's last use says 151 days; the unseen key was watched for only 10"
    );
    assert_eq!(r.stale[0].basis, "inventory");
    assert_eq!(r.stale[0].unused_days, 151);
    let r = rig.review(Some(NOW - 100 * DAY));
    assert_eq!(
        keys(&r.stale, |s| &s.key_id),
        ["AKIAADMIN", "AKIAREAD", "AKIAUNSEEN"],
        "watched for 100 days and never seen"
    );
    assert_eq!(r.stale[2].basis, "never_seen");
    assert_eq!(r.stale[2].last_used, None);
    let r = rig.review(None);
    assert!(
        !keys(&r.stale, |s| &s.key_id).contains(&"AKIAUNSEEN"),
        "nothing observed: nothing known"
    );
}

#[test]
fn ranked_by_risk_with_reasons() {
    let rig = rig();
    let r = rig.review(Some(NOW - 10 * DAY));
    let ranked: Vec<(&str, u32)> = r.ranked.iter().map(|k| (&*k.key_id, k.risk)).collect();
    assert_eq!(
        ranked,
        [
            ("AKIAADMIN", 75),
            ("AKIAGHOST", 68),
            ("AKIAREAD", 25),
            ("AKIAUNSEEN", 20),
            ("AKIAFRESH", 10),
        ]
    );
    assert_eq!(
        r.ranked[0].reasons,
        [
            "valid but unused for 151d (+15)",
            "rotation 334d overdue (created 2025-01-01) (+10)",
            "×3 for admin privilege"
        ]
    );
    assert_eq!(
        r.ranked[1].reasons,
        [
            "not in the inventory, used 1 time (+30)",
            "1 finding (1 medium) (+4)",
            "×2 for privilege not stated"
        ]
    );
    assert_eq!(
        r.ranked[4].reasons,
        [
            "2 of 3 allowed action patterns never used (+5)",
            "×2 for privilege not stated"
        ]
    );
    assert_eq!(r.least_privilege[0].never_used, ["s3:PutObject", "iam:*"]);
}

#[test]
fn classified_by_system_privilege_and_age() {
    let rig = rig();
    let r = rig.review(None);
    let rows: Vec<(&str, &str, u64)> = r
        .classification
        .iter()
        .map(|c| (&*c.system, &*c.privilege, c.total))
        .collect();
    assert_eq!(
        rows,
        [
            ("-", "unspecified", 2),
            ("billing", "admin", 1),
            ("billing", "read", 1)
        ]
    );
    assert_eq!(r.classification[0].by_age.ge_1y, 1);
    assert_eq!(r.classification[0].by_age.lt_30d, 1);
    assert_eq!(r.summary.listed, 4);
    assert_eq!(r.summary.seen, 2);
    let unknown = r.keys.iter().find(|k| !k.listed).unwrap();
    assert_eq!(unknown.status, ["unknown"]);
}

#[test]
fn status_feeds_the_metrics() {
    let rig = rig();
    let s = status(&rig.input(Some(NOW - 100 * DAY)));
    assert_eq!(
        (s.known, s.unknown, s.expired, s.stale, s.rotation_overdue),
        (4, 1, 0, 3, 3)
    );
    assert_eq!(s.by_privilege, [1, 0, 1, 2]);
    let m = Metrics::new();
    s.export(&m);
    let text = m.render();
    for line in [
        "keywatch_inventory_keys{status=\"stale\"} 3",
        "keywatch_inventory_keys{status=\"unknown\"} 1",
        "keywatch_inventory_keys_by_privilege{privilege=\"admin\"} 1",
        "keywatch_inventory_keys_by_age{age=\"ge_1y\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn markdown_keeps_tables_intact() {
    let rig = rig();
    let md = rig.review(None).to_markdown();
    assert!(
        md.starts_with("# Key security review, 2026-03-01\n"),
        "{md}"
    );
    assert!(
        md.contains("| 1 | `AKIAADMIN` | platform \\| ops | 75 |"),
        "{md}"
    );
    assert!(md.contains("## Expired keys still in use\n\nRevoke them at the provider, or correct the inventory.\n\nNone.\n"), "{md}");
}
