//! Each policy detector fires where the inventory is broken and stays quiet
//! where it is kept, on hand-built events with explicit times.

use std::borrow::Cow;
use std::path::Path;

use crate::config::Config;
use crate::decode::{AuditEvent, Outcome, Source};
use crate::engine::{Detector, Engine, Finding, Severity};
use crate::inventory::InventoryHandle;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// 2026-01-05 00:00:00 UTC.
const T0: i64 = 1_767_571_200;

const INVENTORY: &str = r#"
[[keys]]
key_id = "AKIAWRITE"
owner = "alice"
team = "payments"
privilege = "write"
expires = "2026-01-10"
allowed_cidrs = ["10.0.0.0/8"]
allowed_actions = ["s3:Get*", "s3:ListBucket"]
usage_cap = "5/1h"

[[keys]]
key_id = "AKIAADMIN"
owner = "platform"
privilege = "admin"
expires = "2026-01-10"
allowed_cidrs = ["10.0.0.0/8"]
allowed_actions = ["s3:*"]

[[keys]]
key_id = "AKIAREAD"
owner = "bob"
privilege = "read"
allowed_actions = ["s3:Get*"]

[[keys]]
key_id = "AKIAONCE"
owner = "provisioning"
one_time = true

[[keys]]
key_id = "AKIAONCEUSED"
owner = "provisioning"
one_time = true
last_used = "2025-12-01"

[[keys]]
key_id = "AKIASEEDED"
owner = "carol"
last_used = "2025-10-01"

[[keys]]
key_id = "AKIARECENT"
owner = "dave"
last_used = "2026-01-01"

[[keys]]
key_id = "AKIAPLAIN"
owner = "erin"
"#;

struct Use {
    t: i64,
    key: &'static str,
    source: &'static str,
    namespace: Option<&'static str>,
    action: &'static str,
    failed: bool,
    count: u32,
}

fn at(t: i64, key: &'static str) -> Use {
    Use {
        t,
        key,
        source: "10.1.2.3",
        namespace: Some("s3.amazonaws.com"),
        action: "GetObject",
        failed: false,
        count: 1,
    }
}

impl Use {
    fn from(mut self, source: &'static str) -> Use {
        self.source = source;
        self
    }
    fn calling(mut self, namespace: Option<&'static str>, action: &'static str) -> Use {
        self.namespace = namespace;
        self.action = action;
        self
    }
    fn refused(mut self) -> Use {
        self.failed = true;
        self
    }
    fn times(mut self, count: u32) -> Use {
        self.count = count;
        self
    }
    fn event(&self) -> AuditEvent<'_> {
        AuditEvent {
            time_ms: self.t * 1000,
            key_id: Cow::Borrowed(self.key),
            principal: None,
            source: Source::parse(Cow::Borrowed(self.source)),
            user_agent: None,
            action: Some(Cow::Borrowed(self.action)),
            action_namespace: self.namespace.map(Cow::Borrowed),
            outcome: if self.failed {
                Outcome::Failure {
                    code: Some(Cow::Borrowed("AccessDenied")),
                }
            } else {
                Outcome::Success
            },
            region: None,
            count: self.count,
        }
    }
}

struct Rig {
    engine: Engine,
    handle: InventoryHandle,
    _dir: tempfile::TempDir,
}

fn rig_with(cfg: &Config, inventory: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.toml");
    std::fs::write(&path, inventory).unwrap();
    let handle = InventoryHandle::open(&path, None).unwrap();
    Rig {
        engine: Engine::with_inventory(cfg, handle.clone()),
        handle,
        _dir: dir,
    }
}

fn rig() -> Rig {
    rig_with(&Config::default(), INVENTORY)
}

impl Rig {
    fn run(&self, uses: &[Use]) -> Vec<Finding> {
        let mut out = Vec::new();
        for u in uses {
            self.engine.process(&u.event(), &mut out);
        }
        out
    }

    fn rewrite(&self, inventory: &str) {
        std::fs::write(self.handle.path(), inventory).unwrap();
        self.handle.reload().unwrap();
    }

    fn path(&self) -> &Path {
        self.handle.path()
    }
}

fn of(findings: &[Finding], d: Detector) -> Vec<(String, Severity)> {
    findings
        .iter()
        .filter(|f| f.detector == d)
        .map(|f| (f.key_id.clone(), f.severity))
        .collect()
}

fn policy(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| Detector::POLICY.contains(&f.detector))
        .collect()
}

#[test]
fn nothing_without_an_inventory() {
    let engine = Engine::new(&Config::default());
    let mut out = Vec::new();
    for u in [
        at(T0, "AKIAGHOST"),
        at(T0 + 1, "AKIAWRITE").from("203.0.113.9"),
        at(T0 + 2, "AKIAWRITE").calling(Some("iam.amazonaws.com"), "CreateUser"),
    ] {
        engine.process(&u.event(), &mut out);
    }
    assert!(policy(&out).is_empty(), "{out:?}");
}

#[test]
fn unknown_key_once_per_key_until_it_is_listed_and_removed_again() {
    let rig = rig();
    let mut uses: Vec<Use> = (0..72).map(|h| at(T0 + h * HOUR, "AKIAGHOST")).collect();
    uses.push(at(T0, "AKIAPLAIN"));
    let found = rig.run(&uses);
    assert_eq!(
        of(&found, Detector::UnknownKey),
        vec![("AKIAGHOST".to_owned(), Severity::Medium)],
        "once, although used for three days past every cooldown"
    );
    let f = found
        .iter()
        .find(|f| f.detector == Detector::UnknownKey)
        .unwrap();
    assert_eq!(
        f.observed_at, "2026-01-05T00:00:00.000Z",
        "on the first use"
    );
    assert!(f.summary.contains("not in the inventory"), "{}", f.summary);

    rig.rewrite(&format!(
        "{INVENTORY}\n[[keys]]\nkey_id = \"AKIAGHOST\"\nowner = \"frank\"\n"
    ));
    assert!(of(
        &rig.run(&[at(T0 + 4 * DAY, "AKIAGHOST")]),
        Detector::UnknownKey
    )
    .is_empty());
    rig.rewrite(INVENTORY);
    assert_eq!(
        of(
            &rig.run(&[at(T0 + 5 * DAY, "AKIAGHOST")]),
            Detector::UnknownKey
        )
        .len(),
        1,
        "removed from the inventory again: news again"
    );
}

#[test]
fn expired_key_after_expiry_only_critical_for_admin() {
    let rig = rig();
    let found = rig.run(&[
        at(T0 + 4 * DAY, "AKIAWRITE"),
        at(T0 + 4 * DAY, "AKIAADMIN"),
        at(T0 + 6 * DAY, "AKIAWRITE"),
        at(T0 + 6 * DAY + 60, "AKIAWRITE"),
        at(T0 + 6 * DAY, "AKIAADMIN"),
        at(T0 + 6 * DAY, "AKIAPLAIN"),
    ]);
    assert_eq!(
        of(&found, Detector::ExpiredKey),
        vec![
            ("AKIAWRITE".to_owned(), Severity::High),
            ("AKIAADMIN".to_owned(), Severity::Critical),
        ],
        "before expiry nothing; after it, once per cooldown"
    );
    let f = found
        .iter()
        .find(|f| f.detector == Detector::ExpiredKey)
        .unwrap();
    assert!(
        f.summary.contains("owned by alice (payments, write)")
            && f.summary.contains("24h after it expired on 2026-01-10"),
        "{}",
        f.summary
    );
    assert_eq!(f.evidence.baseline["owner"], "alice");
}

#[test]
fn outside_allowlist_only_for_addresses_outside() {
    let rig = rig();
    let found = rig.run(&[
        at(T0, "AKIAWRITE").from("10.200.0.1"),
        at(T0 + 1, "AKIAWRITE").from("AWS Internal"),
        at(T0 + 2, "AKIAPLAIN").from("198.51.100.1"),
        at(T0 + 3, "AKIAWRITE").from("203.0.113.9"),
        at(T0 + 4, "AKIAADMIN").from("203.0.113.9"),
    ]);
    assert_eq!(
        of(&found, Detector::OutsideAllowlist),
        vec![
            ("AKIAWRITE".to_owned(), Severity::High),
            ("AKIAADMIN".to_owned(), Severity::Critical),
        ]
    );
    let f = found
        .iter()
        .find(|f| f.detector == Detector::OutsideAllowlist)
        .unwrap();
    assert_eq!(f.evidence.observed["source"], "203.0.113.9");
    assert_eq!(f.evidence.threshold["allowed_cidrs"][0], "10.0.0.0/8");
}

#[test]
fn usage_cap_once_per_window_counting_weights() {
    let rig = rig();
    let hour = |h: i64, n: i64| -> Vec<Use> {
        (0..n)
            .map(|i| at(T0 + h * HOUR + i * 60, "AKIAWRITE"))
            .collect()
    };
    assert!(
        of(&rig.run(&hour(0, 5)), Detector::UsageCap).is_empty(),
        "at the cap"
    );
    let mut uses = hour(1, 8);
    uses.push(at(T0 + 2 * HOUR, "AKIAWRITE").times(6));
    let found = rig.run(&uses);
    let caps: Vec<&Finding> = found
        .iter()
        .filter(|f| f.detector == Detector::UsageCap)
        .collect();
    assert_eq!(caps.len(), 2, "one per window: {caps:?}");
    assert_eq!(
        caps[0].observed_at, "2026-01-05T01:05:00.000Z",
        "the sixth use"
    );
    assert_eq!(caps[0].severity, Severity::Medium);
    assert_eq!(
        caps[1].evidence.observed["uses"], 6,
        "one record of six uses"
    );
    assert_ne!(caps[0].id, caps[1].id);
}

#[test]
fn one_time_reuse_on_the_second_use() {
    let rig = rig();
    let found = rig.run(&[
        at(T0, "AKIAONCE"),
        at(T0 + DAY, "AKIAONCE"),
        at(T0, "AKIAONCEUSED"),
        at(T0, "AKIAPLAIN"),
        at(T0 + 1, "AKIAPLAIN"),
    ]);
    assert_eq!(
        of(&found, Detector::OneTimeReuse),
        vec![
            ("AKIAONCE".to_owned(), Severity::High),
            ("AKIAONCEUSED".to_owned(), Severity::High),
        ],
        "a first use is quiet unless the provider saw one before"
    );
    let f = found
        .iter()
        .find(|f| f.key_id == "AKIAONCEUSED" && f.detector == Detector::OneTimeReuse)
        .unwrap();
    assert_eq!(f.evidence.baseline["previous_use_known_from"], "inventory");
    let rig = self::rig();
    assert_eq!(
        of(
            &rig.run(&[at(T0, "AKIAONCE").times(2)]),
            Detector::OneTimeReuse
        )
        .len(),
        1,
        "one record standing for two uses"
    );
}

#[test]
fn scope_violation_outside_the_patterns_by_privilege_and_outcome() {
    let rig = rig();
    let iam = Some("iam.amazonaws.com");
    let found = rig.run(&[
        at(T0, "AKIAWRITE").calling(Some("s3.amazonaws.com"), "GetObject"),
        at(T0 + 1, "AKIAWRITE").calling(Some("s3.amazonaws.com"), "ListBucket"),
        at(T0 + 2, "AKIAPLAIN").calling(iam, "CreateUser"),
        at(T0 + 3, "AKIAWRITE").calling(iam, "CreateUser"),
        at(T0 + 4, "AKIAREAD")
            .calling(Some("s3.amazonaws.com"), "PutObject")
            .refused(),
        at(T0 + 5, "AKIAADMIN")
            .calling(None, "iam:CreateAccessKey")
            .refused(),
    ]);
    assert_eq!(
        of(&found, Detector::ScopeViolation),
        vec![
            ("AKIAWRITE".to_owned(), Severity::High),
            ("AKIAREAD".to_owned(), Severity::Low),
            ("AKIAADMIN".to_owned(), Severity::Critical),
        ],
        "read and refused are a step lower each; admin is critical regardless"
    );
    let f = found
        .iter()
        .find(|f| f.key_id == "AKIAWRITE" && f.detector == Detector::ScopeViolation)
        .unwrap();
    assert_eq!(f.evidence.observed["action"], "iam:CreateUser");
    assert!(
        f.summary.contains("s3:Get*, s3:ListBucket"),
        "{}",
        f.summary
    );
}

#[test]
fn dormancy_is_known_from_the_inventory_on_first_sight() {
    let rig = rig();
    let found = rig.run(&[
        at(T0, "AKIASEEDED"),
        at(T0, "AKIARECENT"),
        at(T0, "AKIAPLAIN"),
    ]);
    let dormant: Vec<&Finding> = found
        .iter()
        .filter(|f| f.detector == Detector::DormantRevival)
        .collect();
    assert_eq!(dormant.len(), 1, "{dormant:?}");
    assert_eq!(dormant[0].key_id, "AKIASEEDED");
    assert_eq!(
        dormant[0].severity,
        Severity::High,
        "96 days: over 3× dormant_after"
    );
    assert_eq!(
        dormant[0].evidence.observed["last_seen"],
        "2025-10-01T00:00:00.000Z"
    );
    assert_eq!(
        dormant[0].evidence.baseline["last_use_known_from"],
        "inventory"
    );
}

#[test]
fn switched_off_detectors_stay_quiet_but_usage_is_still_learned() {
    let mut cfg = Config::default();
    cfg.inventory.detectors.scope_violation = false;
    cfg.inventory.detectors.unknown_key = false;
    let rig = rig_with(&cfg, INVENTORY);
    let found = rig.run(&[
        at(T0, "AKIAWRITE").calling(Some("iam.amazonaws.com"), "CreateUser"),
        at(T0 + 1, "AKIAWRITE"),
        at(T0 + 2, "AKIAGHOST"),
    ]);
    assert!(policy(&found).is_empty(), "{found:?}");
    let usage = rig.engine.policy().unwrap().usage("AKIAWRITE").unwrap();
    assert_eq!(
        usage.patterns_used.len(),
        1,
        "s3:Get* matched, for the review"
    );
    assert!(rig.path().exists());
}

#[test]
fn ids_are_the_same_in_a_second_replay() {
    let uses = || {
        vec![
            at(T0, "AKIAGHOST"),
            at(T0, "AKIAWRITE").from("203.0.113.9"),
            at(T0 + 6 * DAY, "AKIAADMIN").calling(Some("iam.amazonaws.com"), "CreateUser"),
        ]
    };
    let ids = |found: Vec<Finding>| -> Vec<String> { found.into_iter().map(|f| f.id).collect() };
    let first = ids(rig().run(&uses()));
    assert_eq!(first.len(), 4, "unknown, outside, expired, scope");
    assert_eq!(first, ids(rig().run(&uses())));
}
