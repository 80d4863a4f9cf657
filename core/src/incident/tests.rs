use std::path::Path;

use super::tactics::{of_action, of_finding, TACTICS};
use super::*;
use crate::decode::EventSample;
use crate::engine::finding::finding_id;
use crate::engine::{Eligibility, Evidence};
use crate::types::HumanDuration;

const PRINCIPAL: &str = "arn:aws:iam::123456789012:user/svc-billing";
const T0: i64 = 1_770_606_764_000;
const MIN: i64 = 60_000;

/// A finding of `detector` on `key` at `T0 + minute` min, from `source`, calling `action`.
fn finding(
    key: &str,
    detector: Detector,
    severity: Severity,
    minute: i64,
    source: &str,
    action: &str,
) -> Finding {
    let at = T0 + minute * MIN;
    let time = rfc3339(at);
    Finding {
        id: finding_id(Entity::KeyId, key, detector, action.len() as u64, at),
        detector,
        severity,
        entity: Entity::KeyId,
        key_id: key.to_owned(),
        principal: Some(PRINCIPAL.to_owned()),
        observed_at: time.clone(),
        summary: format!("{} on {key}", detector.as_str()),
        evidence: Evidence {
            observed: serde_json::Value::Null,
            baseline: serde_json::Value::Null,
            threshold: serde_json::Value::Null,
            eligibility: Eligibility {
                learned_for_s: 0,
                events_learned: 0,
                active_days: 0,
            },
            network: None,
        },
        sample: EventSample {
            time,
            key_id: key.to_owned(),
            principal: Some(PRINCIPAL.to_owned()),
            source: Some(source.to_owned()),
            user_agent: Some("python-requests/2.31.0".to_owned()),
            action: Some(action.to_owned()),
            outcome: "success".to_owned(),
            error_code: None,
            region: None,
            count: 1,
        },
        folded: None,
        origin: 0,
    }
}

fn tracker() -> Tracker {
    Tracker::new(&IncidentsConfig::default(), true)
}

/// The demo's stolen key: a new network, a Tor exit, a new client and new
/// reconnaissance calls, all within minutes.
fn stolen_key() -> Vec<Finding> {
    let tor = "185.220.101.7";
    let mut v = vec![
        finding(
            "AKIA1",
            Detector::NewSource,
            Severity::High,
            0,
            tor,
            "sts:GetCallerIdentity",
        ),
        finding(
            "AKIA1",
            Detector::ListedSource,
            Severity::High,
            0,
            tor,
            "sts:GetCallerIdentity",
        ),
        finding(
            "AKIA1",
            Detector::NewUserAgent,
            Severity::Low,
            1,
            tor,
            "iam:ListUsers",
        ),
    ];
    for (i, a) in [
        "iam:ListUsers",
        "iam:ListRoles",
        "s3:ListBuckets",
        "ec2:DescribeInstances",
    ]
    .iter()
    .enumerate()
    {
        v.push(finding(
            "AKIA1",
            Detector::NewAction,
            Severity::Medium,
            2 + i as i64,
            tor,
            a,
        ));
    }
    v
}

#[test]
fn one_attack_is_one_incident_with_a_stable_id() {
    let mut a = tracker();
    let observed: Vec<_> = stolen_key().iter().map(|f| a.observe(f)).collect();
    let ids: std::collections::HashSet<_> = observed.iter().map(|o| &o.incident_id).collect();
    assert_eq!(
        ids.len(),
        1,
        "seven findings on one key within minutes are one incident"
    );
    assert_eq!(a.open_count(), 1);
    assert_eq!(observed[0].events[0].change, Change::Opened);
    assert!(observed[1..]
        .iter()
        .all(|o| o.events.len() == 1 && o.events[0].change != Change::Opened));

    // Replayed: the same incident id and the same event ids.
    let mut b = tracker();
    let again: Vec<_> = stolen_key().iter().map(|f| b.observe(f)).collect();
    assert_eq!(observed, again);

    let incident = &observed.last().unwrap().events[0].incident;
    assert_eq!(incident.findings, 7);
    assert_eq!(incident.timeline.len(), 7);
    assert_eq!(incident.networks, ["185.220.101.0/24"]);
    assert_eq!(incident.clients, ["python-requests/2.31.0"]);
    assert_eq!(incident.entity, Entity::Principal);
    assert_eq!(incident.identity, PRINCIPAL);
    assert_eq!(incident.tactics, [Tactic::InitialAccess, Tactic::Discovery]);
    assert!(
        !incident.attack_sequence,
        "recon alone is one tactic past access"
    );
    assert!(
        incident
            .summary
            .contains("7 findings over 5 min from 185.220.101.0/24"),
        "{}",
        incident.summary
    );
    assert!(
        incident
            .summary
            .contains("tactics: initial access → discovery"),
        "{}",
        incident.summary
    );
}

#[test]
fn the_same_finding_twice_changes_nothing() {
    let mut t = tracker();
    let f = &stolen_key()[0];
    let first = t.observe(f);
    let again = t.observe(f);
    assert_eq!(again.incident_id, first.incident_id);
    assert!(again.events.is_empty(), "no event for a finding already in");
    assert_eq!(t.open_incidents()[0].findings, 1);
}

#[test]
fn the_score_is_a_noisy_or_over_detectors_and_only_rises() {
    let mut t = tracker();
    let net = "198.51.100.7";
    let first = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        0,
        net,
        "s3:GetBucketTagging",
    ));
    let inc = &first.events[0].incident;
    assert!((inc.score - 0.4).abs() < 1e-9);
    assert_eq!(inc.severity, Severity::Medium);

    // The same detector again is the same evidence: no rise.
    let same = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        5,
        net,
        "s3:GetBucketAcl",
    ));
    assert_eq!(same.events[0].change, Change::Updated);
    assert!((same.events[0].incident.score - 0.4).abs() < 1e-9);

    // A second detector: 1 − 0.6 × 0.6 = 0.64, still medium.
    let two = t.observe(&finding(
        "AKIA1",
        Detector::RateSpike,
        Severity::Medium,
        9,
        net,
        "s3:GetObject",
    ));
    assert!((two.events[0].incident.score - 0.64).abs() < 1e-9);
    assert_eq!(two.events[0].change, Change::Updated);
    assert_eq!(two.events[0].incident.severity, Severity::Medium);

    // A third: 1 − 0.6³ = 0.784, high, and the change says so.
    let three = t.observe(&finding(
        "AKIA1",
        Detector::ErrorSpike,
        Severity::Medium,
        12,
        net,
        "s3:GetObject",
    ));
    let inc = &three.events[0].incident;
    assert!((inc.score - 0.784).abs() < 1e-9);
    assert_eq!(three.events[0].change, Change::Escalated);
    assert_eq!(inc.severity, Severity::High);
    assert_eq!(
        inc.detectors,
        [
            (Detector::NewAction, 2),
            (Detector::RateSpike, 1),
            (Detector::ErrorSpike, 1)
        ]
    );

    // A low finding never lowers it.
    let low = t.observe(&finding(
        "AKIA1",
        Detector::DormantRevival,
        Severity::Low,
        20,
        net,
        "s3:GetObject",
    ));
    assert!(low.events[0].incident.score > inc.score);
    assert_eq!(low.events[0].incident.severity, Severity::High);
}

#[test]
fn one_finding_keeps_its_own_weight_and_severity() {
    for severity in [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ] {
        let mut t = tracker();
        let o = t.observe(&finding(
            "AKIA1",
            Detector::NewAction,
            severity,
            0,
            "198.51.100.7",
            "s3:PutObject",
        ));
        let inc = &o.events[0].incident;
        assert_eq!(inc.score, finding_weight(severity), "{severity}");
        assert_eq!(
            severity_of_score(inc.score),
            severity,
            "the score alone says {severity}"
        );
        assert_eq!(inc.severity, severity);
    }
}

#[test]
fn a_finding_past_the_window_resolves_the_old_incident_and_opens_a_new_one() {
    // The default window, in minutes (90: the engine's cooldown and half an hour).
    let w = (IncidentsConfig::default().window.0.as_secs() / 60) as i64;
    assert_eq!(w, 90);
    let mut t = tracker();
    let net = "198.51.100.7";
    let a = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        0,
        net,
        "iam:ListUsers",
    ));
    // A minute short of the window later: still the same incident, and the
    // window restarts.
    let b = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        w - 1,
        net,
        "iam:ListRoles",
    ));
    assert_eq!(a.incident_id, b.incident_id);
    assert!(
        t.resolve_idle(T0 + (2 * w - 2) * MIN).is_empty(),
        "a window since the last one has not passed"
    );
    // A window after the last one: a new incident.
    let c = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        2 * w - 1,
        net,
        "iam:ListGroups",
    ));
    assert_ne!(c.incident_id, a.incident_id);
    assert_eq!(c.events.len(), 2);
    assert_eq!(c.events[0].change, Change::Resolved);
    assert_eq!(c.events[0].incident.id, a.incident_id);
    assert_eq!(c.events[0].incident.status, Status::Resolved);
    assert_eq!(c.events[1].change, Change::Opened);

    // Quiet for the window: resolved by the clock.
    assert!(t.resolve_idle(T0 + (3 * w - 2) * MIN).is_empty());
    let done = t.resolve_idle(T0 + (3 * w - 1) * MIN);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].incident.id, c.incident_id);
    assert_eq!(t.open_count(), 0);
}

/// A detector that re-raises as soon as its cooldown (an hour) lets it, a
/// rate bucket later, is the same attack going on: a slow ramp is one
/// incident, not two pages.
#[test]
fn a_detector_re_raising_after_its_cooldown_stays_in_the_incident() {
    let mut t = tracker();
    let net = "198.51.100.7";
    let first = t.observe(&finding(
        "AKIA1",
        Detector::RateSpike,
        Severity::Medium,
        0,
        net,
        "s3:GetObject",
    ));
    let again = t.observe(&finding(
        "AKIA1",
        Detector::RateSpike,
        Severity::Medium,
        65,
        net,
        "s3:GetObject",
    ));
    assert_eq!(again.incident_id, first.incident_id);
    assert_ne!(again.events[0].change, Change::Opened);
}

#[test]
fn evidence_given_later_joins_an_open_incident_or_opens_one_of_its_own() {
    let net = "198.51.100.7";
    let f = finding(
        "AKIA1",
        Detector::NewSource,
        Severity::High,
        0,
        net,
        "s3:GetObject",
    );
    let mut confirmed = f.clone();
    confirmed.id = format!("{}-confirmed", f.id);
    confirmed.severity = Severity::Critical;

    // Within the window: the open incident escalates.
    let mut t = tracker();
    let opened = t.observe(&f);
    let later = t.observe_at(&confirmed, T0 + 30 * MIN);
    assert_eq!(later.incident_id, opened.incident_id);
    assert_eq!(later.events[0].change, Change::Escalated);
    assert_eq!(later.events[0].incident.severity, Severity::Critical);

    // A day on: the old incident resolves, a new one is open from now, so
    // the clock does not resolve it at once.
    let mut t = tracker();
    t.observe(&f);
    let later = t.observe_at(&confirmed, T0 + 24 * 60 * MIN);
    assert_eq!(later.events[0].change, Change::Resolved);
    assert_eq!(later.events[1].change, Change::Opened);
    assert!(t.resolve_idle(T0 + 24 * 60 * MIN + 30 * MIN).is_empty());
    assert_eq!(t.open_incidents()[0].severity, Severity::Critical);
}

#[test]
fn the_window_is_configurable() {
    let cfg = IncidentsConfig {
        window: HumanDuration::secs(600),
        ..IncidentsConfig::default()
    };
    let mut t = Tracker::new(&cfg, true);
    let net = "198.51.100.7";
    let a = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        0,
        net,
        "iam:ListUsers",
    ));
    let b = t.observe(&finding(
        "AKIA1",
        Detector::NewAction,
        Severity::Medium,
        11,
        net,
        "iam:ListRoles",
    ));
    assert_ne!(a.incident_id, b.incident_id);
}

#[test]
fn a_principals_keys_share_an_incident_when_the_principal_is_judged() {
    let net = "198.51.100.7";
    let one = finding(
        "AKIA1",
        Detector::NewSource,
        Severity::High,
        0,
        net,
        "sts:GetCallerIdentity",
    );
    let two = finding(
        "AKIA2",
        Detector::NewSource,
        Severity::High,
        3,
        net,
        "sts:GetCallerIdentity",
    );

    let mut by_principal = tracker();
    let (a, b) = (by_principal.observe(&one), by_principal.observe(&two));
    assert_eq!(a.incident_id, b.incident_id);
    assert_eq!(b.events[0].incident.key_ids, ["AKIA1", "AKIA2"]);

    let mut by_key = Tracker::new(&IncidentsConfig::default(), false);
    let (a, b) = (by_key.observe(&one), by_key.observe(&two));
    assert_ne!(a.incident_id, b.incident_id);
    assert_eq!(a.events[0].incident.identity, "AKIA1");
    assert_eq!(a.events[0].incident.entity, Entity::KeyId);
}

#[test]
fn tactics_in_sequence_from_a_new_network_are_a_critical_attack_sequence() {
    let mut t = tracker();
    let net = "203.0.113.9";
    // Weak signals: a new client, a first ListUsers, a first CreateAccessKey.
    let steps = [
        finding(
            "AKIA1",
            Detector::NewUserAgent,
            Severity::Low,
            0,
            net,
            "sts:GetCallerIdentity",
        ),
        finding(
            "AKIA1",
            Detector::NewAction,
            Severity::Low,
            2,
            net,
            "iam:ListUsers",
        ),
        finding(
            "AKIA1",
            Detector::NewAction,
            Severity::Medium,
            4,
            net,
            "iam:CreateAccessKey",
        ),
    ];
    let events: Vec<_> = steps
        .iter()
        .map(|f| t.observe(f).events.pop().unwrap())
        .collect();
    assert_eq!(events[0].incident.severity, Severity::Low);
    assert!(
        !events[1].incident.attack_sequence,
        "one tactic after access"
    );
    assert_eq!(events[2].change, Change::Escalated);
    let inc = &events[2].incident;
    assert!(inc.attack_sequence);
    assert_eq!(inc.severity, Severity::Critical);
    assert_eq!(inc.tactics, [Tactic::Discovery, Tactic::Persistence]);
    assert!(
        inc.summary
            .starts_with("attack sequence (discovery → persistence) on principal"),
        "{}",
        inc.summary
    );

    // The same calls from the key's usual place and client: scope creep,
    // not an attack sequence.
    let mut t = tracker();
    for f in &steps[1..] {
        t.observe(f);
    }
    let inc = t.open_incidents()[0];
    assert!(!inc.attack_sequence);
    assert_eq!(inc.severity, Severity::Medium);
}

#[test]
fn open_incidents_are_bounded() {
    let cfg = IncidentsConfig {
        max_open: 2,
        ..IncidentsConfig::default()
    };
    let mut t = Tracker::new(&cfg, false);
    let net = "198.51.100.7";
    let first = t.observe(&finding(
        "AKIA1",
        Detector::NewSource,
        Severity::High,
        0,
        net,
        "s3:GetObject",
    ));
    t.observe(&finding(
        "AKIA2",
        Detector::NewSource,
        Severity::High,
        1,
        net,
        "s3:GetObject",
    ));
    let third = t.observe(&finding(
        "AKIA3",
        Detector::NewSource,
        Severity::High,
        2,
        net,
        "s3:GetObject",
    ));
    assert_eq!(t.open_count(), 2);
    assert_eq!(third.events[0].change, Change::Resolved);
    assert_eq!(
        third.events[0].incident.id, first.incident_id,
        "the one idle longest goes"
    );
    assert_eq!(t.resolve_all().len(), 2);
}

#[test]
fn the_timeline_is_bounded_and_the_count_is_not() {
    let cfg = IncidentsConfig {
        max_timeline: 3,
        ..IncidentsConfig::default()
    };
    let mut t = Tracker::new(&cfg, true);
    for m in 0..5 {
        t.observe(&finding(
            "AKIA1",
            Detector::NewAction,
            Severity::Medium,
            m,
            "198.51.100.7",
            &format!("s3:List{m}"),
        ));
    }
    let inc = t.open_incidents()[0];
    assert_eq!(inc.findings, 5);
    assert_eq!(inc.timeline.len(), 3);
    assert_eq!(inc.actions.len(), 5);
}

#[test]
fn configuration_errors_name_the_key_and_value() {
    let bad = |cfg: IncidentsConfig| cfg.validate().unwrap_err().to_string();
    let e = bad(IncidentsConfig {
        window: HumanDuration::secs(30),
        ..IncidentsConfig::default()
    });
    assert!(e.contains("incidents.window") && e.contains("30s"), "{e}");
    let e = bad(IncidentsConfig {
        window: HumanDuration::days(8),
        ..IncidentsConfig::default()
    });
    assert!(e.contains("incidents.window") && e.contains("8d"), "{e}");
    let e = bad(IncidentsConfig {
        max_open: 0,
        ..IncidentsConfig::default()
    });
    assert!(e.contains("incidents.max_open") && e.contains('0'), "{e}");
    IncidentsConfig::default().validate().unwrap();
}

#[test]
fn the_table_maps_the_issues_actions() {
    let cases = [
        ("sts:GetCallerIdentity", Tactic::Discovery),
        ("iam:ListUsers", Tactic::Discovery),
        ("ec2:DescribeInstances", Tactic::Discovery),
        ("s3:GetBucketPolicy", Tactic::Discovery),
        ("iam:CreateAccessKey", Tactic::Persistence),
        ("iam:CreateUser", Tactic::Persistence),
        ("iam:CreateLoginProfile", Tactic::Persistence),
        ("iam:AttachUserPolicy", Tactic::PrivilegeEscalation),
        ("iam:PutRolePolicy", Tactic::PrivilegeEscalation),
        ("iam:PassRole", Tactic::PrivilegeEscalation),
        ("secretsmanager:GetSecretValue", Tactic::CredentialAccess),
        ("ec2:GetPasswordData", Tactic::CredentialAccess),
        ("ssm:GetParameters", Tactic::CredentialAccess),
        ("cloudtrail:StopLogging", Tactic::DefenseEvasion),
        ("cloudtrail:DeleteTrail", Tactic::DefenseEvasion),
        ("cloudtrail:PutEventSelectors", Tactic::DefenseEvasion),
        ("ec2:ModifySnapshotAttribute", Tactic::Exfiltration),
        ("s3:PutBucketPolicy", Tactic::Exfiltration),
        ("s3:DeleteObjects", Tactic::Impact),
        // Case and a flat action without a service.
        ("IAM:createaccesskey", Tactic::Persistence),
        ("StopLogging", Tactic::DefenseEvasion),
    ];
    for (action, tactic) in cases {
        assert_eq!(of_action(action), Some(tactic), "{action}");
    }
    assert_eq!(of_action("s3:PutObject"), None);
    assert_eq!(of_action("sts:AssumeRole"), None);
    assert_eq!(
        of_finding(Detector::NewSource, Some("s3:GetObject")),
        [Tactic::InitialAccess],
        "a new network's call is incidental"
    );
    assert_eq!(
        of_finding(Detector::NewAction, Some("iam:CreateUser")),
        [Tactic::Persistence]
    );
    assert!(of_finding(Detector::NewAction, Some("s3:PutObject")).is_empty());
    assert_eq!(
        of_finding(Detector::ErrorSpike, Some("iam:ListUsers")),
        [Tactic::Discovery]
    );
    // Every row is reachable: no earlier row shadows a later one entirely.
    for (i, (signal, tactic)) in TACTICS.iter().enumerate() {
        if let tactics::Signal::Action(p) = signal {
            let example = p.replace('*', "X");
            let example = if example.starts_with("X:") {
                example.replacen("X:", "svc:", 1)
            } else {
                example
            };
            assert_eq!(
                of_action(&example),
                Some(*tactic),
                "row {i} {p} is shadowed"
            );
        }
    }
}

/// `../shared/data/NAME` beside the checkout: in CI it must be there; in a
/// user's clone the test says it was skipped.
fn shared_data(name: &str) -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{} is missing under CI=true",
        dir.display()
    );
    eprintln!(
        "skipped: {} not found (it sits beside the checkout in CI)",
        dir.display()
    );
    None
}

/// Each Stratus Red Team technique of more than one call, as CloudTrail
/// logged it, maps to the tactic Stratus files it under.
#[test]
fn stratus_techniques_map_to_their_tactic() {
    let Some(dir) = shared_data("cloudtrail-stratus") else {
        return;
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(technique) = name
            .strip_prefix("aws.")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let records: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let records = records
            .get("Records")
            .unwrap_or(&records)
            .as_array()
            .unwrap()
            .clone();
        if records.len() < 2 {
            continue;
        }
        let filed = technique.split('.').next().unwrap().replace('-', "_");
        let mapped: Vec<Tactic> = records
            .iter()
            .filter_map(|r| {
                let service = r["eventSource"].as_str()?.split('.').next()?;
                of_action(&format!("{service}:{}", r["eventName"].as_str()?))
            })
            .collect();
        assert!(
            mapped.iter().any(|t| t.as_str() == filed),
            "{technique}: its calls map to {mapped:?}, not {filed}"
        );
        checked += 1;
    }
    assert!(checked >= 19, "only {checked} multi-call techniques found");
}
