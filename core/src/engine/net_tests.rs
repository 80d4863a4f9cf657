//! `source_fanout`, `new_source` and `new_user_agent` on traffic they were
//! not tuned on (issue #13), and an attacker's test for each quiet rule:
//! the evasion each rule leaves must be one accepted on purpose.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use super::*;
use crate::config::Config;
use crate::decode::{AuditEvent, Outcome, Source};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// 2026-01-05 00:00:00 UTC, a Monday.
const T0: i64 = 1_767_571_200;
const CLI: &str = "aws-cli/2.15.0 Python/3.11.6 Linux/6.1";
const BOTO: &str = "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0";

use super::tests::Rng;

#[derive(Clone)]
struct Ev {
    t: i64,
    key: &'static str,
    source: String,
    ua: String,
    action: String,
}

fn ev(t: i64, key: &'static str, source: impl Into<String>) -> Ev {
    Ev {
        t,
        key,
        source: source.into(),
        ua: CLI.to_owned(),
        action: "GetObject".to_owned(),
    }
}

impl Ev {
    /// The same use, calling `action` instead.
    fn calling(mut self, action: &str) -> Ev {
        self.action = action.to_owned();
        self
    }

    fn ua(mut self, ua: impl Into<String>) -> Ev {
        self.ua = ua.into();
        self
    }

    fn audit(&self) -> AuditEvent<'_> {
        AuditEvent {
            time_ms: self.t * 1000,
            key_id: Cow::Borrowed(self.key),
            principal: None,
            source: Source::parse(Cow::Borrowed(&self.source)),
            user_agent: Some(Cow::Borrowed(&self.ua)),
            action: Some(Cow::Borrowed(&self.action)),
            // `secretsmanager:GetSecretValue` names its own service.
            action_namespace: (!self.action.contains(':'))
                .then_some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: Outcome::Success,
            region: None,
            count: 1,
        }
    }
}

fn engine_run(events: Vec<Ev>) -> (Engine, Vec<Finding>) {
    engine_run_with(&Config::default(), events)
}

/// As [`engine_run`] with `cfg`.
fn engine_run_with(cfg: &Config, mut events: Vec<Ev>) -> (Engine, Vec<Finding>) {
    events.sort_by_key(|e| e.t);
    let engine = Engine::new(cfg);
    let mut out = Vec::new();
    for e in &events {
        engine.process(&e.audit(), &mut out);
    }
    (engine, out)
}

fn run(events: Vec<Ev>) -> Vec<Finding> {
    engine_run(events).1
}

/// The findings of `d` raised (alerted): runs' records of folded ones aside.
fn of(findings: &[Finding], d: Detector) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.detector == d && f.folded.is_none())
        .collect()
}

fn rules(f: &Finding) -> Vec<&str> {
    f.evidence.observed["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

/// A working-hours key used from `sources`, 20-40 calls a day.
fn steady(key: &'static str, from_day: i64, days: i64, sources: &[&str], rng: &mut Rng) -> Vec<Ev> {
    let mut out = Vec::new();
    for d in from_day..from_day + days {
        for _ in 0..20 + rng.below(20) {
            let t = T0 + d * DAY + 9 * HOUR + rng.below(9 * HOUR as u64) as i64;
            let src = sources[rng.below(sources.len() as u64) as usize];
            out.push(ev(t, key, src));
        }
    }
    out
}

/// A CI deploy key: health checks every day from its runner /24, and on a
/// random quarter of nights (always the first) a run at 02:00 from 1 to 44
/// runner addresses of that /24, 150-600 calls in all.
fn ci_key(key: &'static str, days: i64, rng: &mut Rng) -> Vec<Ev> {
    let mut out = Vec::new();
    let runner = |rng: &mut Rng| format!("192.0.2.{}", 2 + rng.below(250));
    for d in 0..days {
        for _ in 0..1 + rng.below(3) {
            let t = T0 + d * DAY + rng.below(DAY as u64) as i64;
            out.push(ev(t, key, runner(rng)).ua(BOTO));
        }
        if d > 0 && rng.below(4) != 0 {
            continue;
        }
        let runners: Vec<String> = (0..1 + rng.below(44)).map(|_| runner(rng)).collect();
        let start = T0 + d * DAY + 2 * HOUR + rng.below(240) as i64;
        let length = 180 + rng.below(2400) as i64;
        let calls = 150 + rng.below(450) as i64;
        for i in 0..calls.max(runners.len() as i64) {
            let r = &runners[i as usize % runners.len()];
            out.push(ev(start + i * length / calls, key, r.clone()).ua(BOTO));
        }
    }
    out
}

/// `n` addresses spread over `nets` networks no key here uses (`salt`
/// picks another set of networks).
fn botnet(key: &'static str, start: i64, n: i64, nets: i64, salt: i64) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            let net = i % nets;
            let src = format!(
                "{}.{}.{}.{}",
                11 + (net * 7) % 200,
                salt + net,
                net * 3,
                7 + i
            );
            ev(start + i * 20, key, src).ua("python-requests/2.31.0")
        })
        .collect()
}

#[test]
fn ci_runner_pools_of_any_size_stay_quiet() {
    for seed in 1..=8 {
        let mut rng = Rng(0x9E37_79B9 * seed);
        let findings = run(ci_key("AKIACIPOOL", 45, &mut rng));
        let ours: Vec<_> = findings
            .iter()
            .filter(|f| {
                matches!(
                    f.detector,
                    Detector::SourceFanout | Detector::NewSource | Detector::NewUserAgent
                )
            })
            .map(|f| &f.summary)
            .collect();
        assert!(ours.is_empty(), "seed {seed}: {ours:#?}");
    }
}

#[test]
fn ci_key_whose_runs_grow_from_one_to_forty_four_runners_is_quiet() {
    // The worst order: one runner while learning, then the largest pool.
    let mut events = Vec::new();
    for d in 0..45 {
        events.push(ev(T0 + d * DAY + 12 * HOUR, "AKIAGROW", "192.0.2.5"));
        events.push(ev(T0 + d * DAY + 13 * HOUR, "AKIAGROW", "192.0.2.5"));
        let runners = match d {
            0..=8 => 1,
            9..=29 if d % 4 == 1 => 44,
            30.. if d % 3 == 0 => 2 + (d % 40),
            _ => continue,
        };
        for r in 0..runners {
            for c in 0..3 {
                let t = T0 + d * DAY + 2 * HOUR + r * 20 + c;
                events.push(ev(t, "AKIAGROW", format!("192.0.2.{}", 10 + r)));
            }
        }
    }
    let findings = run(events);
    assert!(
        of(&findings, Detector::SourceFanout).is_empty(),
        "{findings:#?}"
    );
}

#[test]
fn fanout_from_unrelated_networks_is_high_even_on_a_ci_key() {
    let mut rng = Rng(77);
    let mut events = ci_key("AKIACIFAN", 40, &mut rng);
    let start = T0 + 40 * DAY + 10 * HOUR;
    // 40 addresses in 30 unrelated networks, and a few inside the key's /24.
    events.extend(botnet("AKIACIFAN", start, 40, 30, 0));
    for i in 0..3 {
        events.push(ev(
            start + 100 + i,
            "AKIACIFAN",
            format!("192.0.2.{}", 250 + i),
        ));
    }
    let findings = run(events);
    let fan = of(&findings, Detector::SourceFanout);
    assert_eq!(fan.len(), 1, "{findings:#?}");
    assert_eq!(fan[0].severity, Severity::High);
    assert_eq!(fan[0].evidence.observed["new_networks"], 10);
    assert!(
        fan[0].observed_at_ms() <= (start + 10 * 20) * 1000,
        "alerts at the tenth network"
    );
    assert!(fan[0].summary.contains("networks"), "{}", fan[0].summary);
}

#[test]
fn a_few_new_networks_are_new_source_not_fanout() {
    let mut rng = Rng(78);
    let mut events = steady("AKIAFEW", 0, 30, &["203.0.113.10"], &mut rng);
    events.extend(botnet("AKIAFEW", T0 + 30 * DAY + 10 * HOUR, 6, 6, 0));
    let findings = run(events);
    assert!(of(&findings, Detector::SourceFanout).is_empty());
    let ns = of(&findings, Detector::NewSource);
    assert_eq!(ns.len(), 1, "one incident, one finding: {findings:#?}");
    assert_eq!(ns[0].severity, Severity::High);
}

#[test]
fn many_hosts_inside_the_keys_own_network_are_low_at_most() {
    let mut rng = Rng(79);
    let mut events = steady("AKIAINSIDE", 0, 30, &["198.51.100.10"], &mut rng);
    for i in 0..120 {
        let src = format!("198.51.100.{}", 11 + i);
        events.push(ev(T0 + 30 * DAY + 10 * HOUR + i * 10, "AKIAINSIDE", src));
    }
    let findings = run(events);
    let fan = of(&findings, Detector::SourceFanout);
    assert_eq!(fan.len(), 1, "{findings:#?}");
    assert_eq!(fan[0].severity, Severity::Low);
    assert_eq!(fan[0].evidence.observed["rule"], "inside_known_networks");
    assert!(of(&findings, Detector::NewSource).is_empty());
}

#[test]
fn an_alerting_fanout_does_not_teach_the_baseline() {
    let mut rng = Rng(80);
    let mut events = steady("AKIATWICE", 0, 30, &["203.0.113.10"], &mut rng);
    events.extend(botnet("AKIATWICE", T0 + 30 * DAY + 10 * HOUR, 40, 30, 0));
    // The next night, from other networks again.
    events.extend(botnet("AKIATWICE", T0 + 31 * DAY + 10 * HOUR, 40, 30, 100));
    let findings = run(events);
    let fan = of(&findings, Detector::SourceFanout);
    assert_eq!(fan.len(), 2, "both nights alert: {findings:#?}");
    assert!(fan.iter().all(|f| f.severity == Severity::High));
}

#[test]
fn a_key_whose_days_bring_new_networks_is_quiet_until_they_stop() {
    // Two keys meet a new network on each of their first ten days (a
    // person on a mobile carrier). One goes on being used from its last
    // network only, for a month.
    let mut rng = Rng(81);
    let mut events = Vec::new();
    for d in 0..10 {
        let net = format!("100.{}.{d}.9", 20 + d);
        events.extend(steady("AKIAMOBILE", d, 1, &[net.as_str()], &mut rng));
        events.extend(steady("AKIASETTLES", d, 1, &[net.as_str()], &mut rng));
    }
    events.extend(steady("AKIASETTLES", 10, 30, &["100.29.9.9"], &mut rng));
    // Day 10: a new network is what the mobile key does.
    events.push(ev(T0 + 10 * DAY + 15 * HOUR, "AKIAMOBILE", "77.88.55.60"));
    // Day 40: the settled key has met no new network for a month.
    events.push(ev(T0 + 40 * DAY + 15 * HOUR, "AKIASETTLES", "77.88.55.60"));
    let (engine, findings) = engine_run(events);
    let ns = of(&findings, Detector::NewSource);
    assert_eq!(ns.len(), 1, "{findings:#?}");
    assert_eq!(ns[0].key_id, "AKIASETTLES");
    assert!(ns[0].severity >= Severity::Low, "{:?}", ns[0].severity);
    let share = ns[0].evidence.baseline["new_network_days_share"]
        .as_f64()
        .unwrap();
    assert!(share < 0.3, "{:#}", ns[0].evidence.baseline);
    assert!(
        ns[0].summary.contains("% of its active days"),
        "{}",
        ns[0].summary
    );
    // The quiet one says why.
    let at = (T0 + 10 * DAY + 16 * HOUR) as u32;
    let mobile = engine
        .with_key(Entity::KeyId, "AKIAMOBILE", |s| {
            explain::explain(engine.settings(), "AKIAMOBILE", s, at)
        })
        .unwrap();
    let says = mobile["detectors"]["new_source"].as_str().unwrap();
    assert!(says.starts_with("quiet (novelty_expected)"), "{says}");
}

#[test]
fn severity_follows_how_rare_new_networks_are_for_the_key() {
    // A service on one network for 40 days: a new one is a first (high).
    // A person who meets a new network every week or so: low.
    let mut rng = Rng(89);
    let mut events = steady("AKIASERVICE", 0, 40, &["203.0.113.10"], &mut rng);
    events.push(ev(T0 + 40 * DAY + 3 * HOUR, "AKIASERVICE", "185.220.101.7"));
    events.extend(steady("AKIAWEEKLY", 0, 40, &["198.51.100.4"], &mut rng));
    for w in 0..5 {
        let cafe = format!("{}.{}.7.20", 30 + w, 40 + w);
        events.extend(steady(
            "AKIAWEEKLY",
            w * 7 + 3,
            1,
            &[cafe.as_str()],
            &mut rng,
        ));
    }
    events.push(ev(T0 + 40 * DAY + 3 * HOUR, "AKIAWEEKLY", "185.220.101.7"));
    let findings = run(events);
    let on = |key: &str| {
        of(&findings, Detector::NewSource)
            .into_iter()
            .find(|f| f.key_id == key && f.summary.contains("185.220.101.7"))
    };
    let service = on("AKIASERVICE").expect("the service's first new network alerts");
    assert_eq!(service.severity, Severity::High, "{service:#?}");
    assert!(
        service.summary.contains("on none of its last"),
        "{}",
        service.summary
    );
    if let Some(weekly) = on("AKIAWEEKLY") {
        assert!(weekly.severity <= Severity::Medium, "{weekly:#?}");
    }
}

#[test]
fn a_thief_right_after_the_owners_move_is_still_found_with_the_usual_client() {
    let mut rng = Rng(82);
    let mut events = steady("AKIAMOVED", 0, 30, &["203.0.113.10"], &mut rng);
    events.extend(steady("AKIAMOVED", 26, 4, &["198.51.100.20"], &mut rng));
    // Same client family as the owner: aws-cli, and the owner's call. A
    // key that met a new network four days ago has not shown that a new
    // one is news: this is held, and alone it would be dropped (the door
    // a careful thief walks through, see docs/detectors.md).
    let thief = ev(T0 + 30 * DAY + 3 * HOUR, "AKIAMOVED", "185.220.101.7");
    events.push(thief.clone());
    let ns = |findings: &[Finding]| -> Vec<Finding> {
        of(findings, Detector::NewSource)
            .into_iter()
            .filter(|f| f.summary.contains("185.220.101.7"))
            .cloned()
            .collect()
    };
    let (engine, held) = engine_run(events.clone());
    assert!(ns(&held).is_empty());
    // The key's page says what waits, and until when.
    let explained = engine.explain(Entity::KeyId, "AKIAMOVED").unwrap();
    assert_eq!(
        explained["held"][0]["network"], "185.220.101.0/24",
        "{explained}"
    );
    assert!(explained["detectors"]["new_source"]
        .as_str()
        .unwrap()
        .contains("held for corroboration"));
    // Two minutes later, from it, a call the owner never made: the held
    // finding is raised, at the severity the network had (one move in a
    // month: medium or more), with the call in its evidence.
    events.push(Ev {
        t: thief.t + 120,
        ..thief.calling("ListBuckets")
    });
    let findings = run(events);
    let ns = ns(&findings);
    assert_eq!(ns.len(), 1, "{findings:#?}");
    assert!(ns[0].severity >= Severity::Medium);
    assert_eq!(ns[0].evidence.observed["usual_client"], true);
    assert_eq!(
        ns[0].evidence.observed["corroboration"],
        serde_json::json!({"rule": "new_action", "value": "s3:ListBuckets", "after_s": 120})
    );
    assert!(
        ns[0].summary.ends_with(
            "From it 2m later, it called s3:ListBuckets, an action it has not called before."
        ),
        "{}",
        ns[0].summary
    );
    assert_eq!(ns[0].sample.source.as_deref(), Some("185.220.101.7"));
}

#[test]
fn usual_client_does_not_lower_severity() {
    let mut rng = Rng(83);
    let mut events = steady("AKIASDK", 0, 30, &["203.0.113.10"], &mut rng);
    for i in 0..20 {
        events.push(ev(
            T0 + 30 * DAY + 3 * HOUR + i * 30,
            "AKIASDK",
            "185.220.101.7",
        ));
    }
    let findings = run(events);
    let ns = of(&findings, Detector::NewSource);
    assert_eq!(ns.len(), 1, "{findings:#?}");
    assert_eq!(ns[0].severity, Severity::High);
    assert_eq!(ns[0].evidence.observed["usual_client"], true);
    assert!(of(&findings, Detector::NewUserAgent).is_empty());
}

#[test]
fn pool_churn_only_where_the_key_churned() {
    let mut rng = Rng(84);
    // Two NAT gateways in one public /16 since day one: no churn shown.
    let mut events = steady("AKIANATS", 0, 30, &["52.94.1.10", "52.94.2.10"], &mut rng);
    events.push(ev(T0 + 30 * DAY + 3 * HOUR, "AKIANATS", "52.94.77.5"));
    // A key that moved to a third /24 of its /16 ten days ago.
    events.extend(steady(
        "AKIACHURN",
        0,
        30,
        &["100.64.1.10", "100.64.2.10"],
        &mut rng,
    ));
    events.extend(steady("AKIACHURN", 20, 10, &["100.64.3.10"], &mut rng));
    // (A call it never made: the churning key's days bring new networks,
    // and a new one alone would be held.)
    events.push(ev(T0 + 30 * DAY + 3 * HOUR, "AKIACHURN", "100.64.9.5").calling("DeleteObject"));
    let (engine, findings) = engine_run(events);
    // The churning key's own move to 100.64.3.0/24 on day 20 is a finding
    // too (medium: no churn shown before it).
    let ns: Vec<_> = of(&findings, Detector::NewSource)
        .into_iter()
        .filter(|f| !f.summary.contains("100.64.3.10"))
        .collect();
    assert_eq!(ns.len(), 2, "{findings:#?}");
    let nats = ns.iter().find(|f| f.key_id == "AKIANATS").unwrap();
    assert_eq!(nats.severity, Severity::Medium);
    assert!(rules(nats).contains(&"same_wider_network"), "{nats:#?}");
    let churn = ns.iter().find(|f| f.key_id == "AKIACHURN").unwrap();
    assert_eq!(churn.severity, Severity::Low);
    assert!(rules(churn).contains(&"pool_churn"), "{churn:#?}");
    let explained = engine.explain(Entity::KeyId, "AKIACHURN").unwrap();
    assert!(
        explained["baseline"]["pool_churn"][0]
            .as_str()
            .unwrap()
            .starts_with("100.64.0.0/16 until"),
        "{explained}"
    );
}

#[test]
fn a_fanout_does_not_make_the_key_roam() {
    let mut rng = Rng(85);
    let mut events = steady("AKIAAFTER", 0, 40, &["203.0.113.10"], &mut rng);
    events.extend(botnet("AKIAAFTER", T0 + 30 * DAY + 10 * HOUR, 51, 50, 0));
    // Three days later, one new network, calling what the key never did
    // (alone it would be held: see the attacker's test below).
    events.push(ev(T0 + 33 * DAY + 3 * HOUR, "AKIAAFTER", "185.220.101.7").calling("ListBuckets"));
    let (engine, findings) = engine_run(events);
    let ns = of(&findings, Detector::NewSource);
    assert_eq!(
        ns.len(),
        2,
        "the fan-out is one incident; the later network another: {findings:#?}"
    );
    let later = ns
        .iter()
        .find(|f| f.summary.contains("185.220.101.7"))
        .unwrap();
    // The fan-out day is one day that brought new networks, not fifty: the
    // key still met a new network on under a tenth of its days.
    assert!(later.severity >= Severity::Medium, "{later:#?}");
    let share = later.evidence.baseline["new_network_days_share"]
        .as_f64()
        .unwrap();
    assert!(share > 0.0 && share < 0.1, "{later:#?}");
    let explained = engine.explain(Entity::KeyId, "AKIAAFTER").unwrap();
    assert!(explained["detectors"]["new_source"]
        .as_str()
        .unwrap()
        .starts_with("armed"));
}

/// A NAT pool wider than a key's memory: every hour of `days` days, 4 to 15
/// calls, each from a random host of one of 96 /24s in 12 /16s (more
/// networks than `max_sources_per_key` 64 can hold).
fn wide_pool(key: &'static str, days: i64, rng: &mut Rng) -> Vec<Ev> {
    let mut out = Vec::new();
    for h in 0..days * 24 {
        for _ in 0..4 + rng.below(12) {
            let net = rng.below(96) as i64;
            let t = T0 + h * HOUR + rng.below(HOUR as u64) as i64;
            let src = format!("100.{}.{net}.{}", 64 + net / 8, 1 + rng.below(250));
            out.push(ev(t, key, src).ua(BOTO));
        }
    }
    out
}

#[test]
fn a_pool_wider_than_the_keys_memory_stays_quiet() {
    // Evicting the last address of a network it still uses, the key would
    // "newly" meet that network again within hours, every hour.
    let mut rng = Rng(91);
    let (engine, findings) = engine_run(wide_pool("AKIAWIDEPOOL", 30, &mut rng));
    assert!(
        of(&findings, Detector::NewSource).is_empty(),
        "{} new_source findings, the first: {:#?}",
        of(&findings, Detector::NewSource).len(),
        of(&findings, Detector::NewSource).first()
    );
    let explained = engine.explain(Entity::KeyId, "AKIAWIDEPOOL").unwrap();
    let says = explained["detectors"]["new_source"].as_str().unwrap();
    assert!(says.starts_with("quiet (novelty_expected)"), "{says}");
}

#[test]
fn many_addresses_in_a_few_networks_never_overflow() {
    // 500 addresses over 30 days in two /24s: far past 64 addresses, but no
    // network is ever forgotten, so a new network is as new as ever.
    let mut rng = Rng(92);
    let mut events = Vec::new();
    for d in 0..30 {
        for i in 0..20 {
            let host = (d * 20 + i) % 250 + 1;
            let net = if i % 2 == 0 {
                "198.51.100"
            } else {
                "203.0.113"
            };
            let t = T0 + d * DAY + 9 * HOUR + rng.below(8 * HOUR as u64) as i64;
            events.push(ev(t, "AKIADHCP", format!("{net}.{host}")));
        }
    }
    events.push(ev(T0 + 30 * DAY + 10 * HOUR, "AKIADHCP", "185.220.101.7"));
    let ns = run(events);
    let ns = of(&ns, Detector::NewSource);
    assert_eq!(ns.len(), 1, "{ns:#?}");
    assert!(ns[0].summary.contains("185.220.101.7"));
    assert!(!rules(ns[0]).contains(&"forgotten_for_room"), "{ns:#?}");
}

#[test]
fn a_fanout_that_overflows_the_memory_does_not_quiet_the_key() {
    // The attacker's way in: overflow a settled key's memory with a
    // fan-out. Its home hosts then push the fan-out's networks out day
    // after day, but forgetting is not coming back: the next new network
    // alerts as new, and so does going back to a forgotten fan-out network,
    // named as such.
    let mut rng = Rng(93);
    let home: Vec<String> = (10..22).map(|h| format!("203.0.113.{h}")).collect();
    let home: Vec<&str> = home.iter().map(String::as_str).collect();
    let mut events = steady("AKIAONCE", 0, 40, &home, &mut rng);
    events.extend(botnet("AKIAONCE", T0 + 30 * DAY + 10 * HOUR, 100, 100, 0));
    // (Each doing what the key never did: after a fan-out's day a new
    // network alone is held, see the next test.)
    events.push(ev(T0 + 32 * DAY + 3 * HOUR, "AKIAONCE", "185.220.101.7").calling("ListBuckets"));
    // One of the fan-out's networks (the 41st, see `botnet`; among the
    // latest forgotten), on the next day.
    events.push(ev(T0 + 33 * DAY + 3 * HOUR, "AKIAONCE", "91.40.120.200").calling("DeleteObject"));
    // A pool key that settled on one network five weeks ago: its share of
    // days bringing new networks has decayed below `expected_novelty` (the
    // baseline half-life, 14 days, more than twice over), and a new network
    // alerts again.
    let mut pool = wide_pool("AKIASETTLED", 20, &mut rng);
    pool.extend(steady("AKIASETTLED", 20, 35, &["198.51.100.20"], &mut rng));
    events.extend(pool);
    events.push(ev(
        T0 + 55 * DAY + 20 * HOUR,
        "AKIASETTLED",
        "185.220.101.7",
    ));
    // Each finding on its own: the fan-out's findings would otherwise fold
    // the next ones into their run.
    let mut cfg = Config::default();
    cfg.engine.fold_after = 0;
    let findings = engine_run_with(&cfg, events).1;
    let on = |key: &str, source: &str| {
        of(&findings, Detector::NewSource)
            .into_iter()
            .find(|f| f.key_id == key && f.summary.contains(source))
    };
    let new = on("AKIAONCE", "185.220.101.7").expect("one fan-out is not a pool");
    assert!(new.severity >= Severity::Medium, "{new:#?}");
    assert!(!rules(new).contains(&"forgotten_for_room"), "{new:#?}");
    let back = on("AKIAONCE", "91.40.120.200").expect("coming back once is not a pool");
    assert!(rules(back).contains(&"forgotten_for_room"), "{back:#?}");
    assert!(
        on("AKIASETTLED", "185.220.101.7").is_some(),
        "five settled weeks make it judged again: {findings:#?}"
    );
}

#[test]
fn roaming_person_moving_every_few_days_raises_little_and_low() {
    let mut rng = Rng(86);
    let mut events = steady(
        "AKIATRAVEL",
        0,
        60,
        &["203.0.113.10", "198.51.100.4"],
        &mut rng,
    );
    let mut d = 3;
    let mut i = 0;
    while d < 60 {
        let hotel = format!("{}.{}.{}.20", 30 + i * 5, 10 + i, i);
        events.extend(steady("AKIATRAVEL", d, 2, &[hotel.as_str()], &mut rng));
        d += 5 + (i % 6);
        i += 1;
    }
    let findings = run(events);
    // A hotel every week or so: a new network on about one day in eight,
    // never a high, and after two findings the run folds.
    let ns = of(&findings, Detector::NewSource);
    assert!(ns.len() <= 2, "{findings:#?}");
    assert!(ns.iter().all(|f| f.severity <= Severity::Medium), "{ns:#?}");
    assert!(of(&findings, Detector::SourceFanout).is_empty());
}

#[test]
fn a_key_with_179_actions_keeps_its_clients() {
    let mut rng = Rng(87);
    let mut events = Vec::new();
    for d in 0..40 {
        for j in 0..30 {
            let t = T0 + d * DAY + 9 * HOUR + j * 600;
            let mut e = ev(t, "AKIAADMIN", "203.0.113.10");
            e.action = format!("Action{}", rng.below(179));
            e.ua = match j % 3 {
                // A client used one day in five: the one the shared table lost.
                0 if j == 0 && d % 5 == 0 => "HashiCorp/1.0 Terraform/1.6.6".to_owned(),
                0 => CLI.to_owned(),
                1 => BOTO.to_owned(),
                _ => format!(
                    "stratus-red-team_{:08x}-{:04x}-4{:03x}-9{:03x}-{:012x}",
                    rng.next() as u32,
                    rng.next() as u16,
                    rng.below(0xfff),
                    rng.below(0xfff),
                    rng.next() & 0xFFFF_FFFF_FFFF
                ),
            };
            events.push(e);
        }
    }
    let (engine, findings) = engine_run(events);
    assert!(
        of(&findings, Detector::NewUserAgent).is_empty(),
        "{:#?}",
        of(&findings, Detector::NewUserAgent)
    );
    let stats = engine.stats();
    assert!(stats.actions_evicted.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.user_agents_evicted.load(Ordering::Relaxed), 0);
    let families = engine
        .with_key(Entity::KeyId, "AKIAADMIN", |s| {
            s.values
                .fresh_len(state::ValueKind::UserAgent, s.last_seen, 30 * DAY as u32)
        })
        .unwrap();
    assert_eq!(families, 4);
}

#[test]
fn a_new_client_family_is_still_found() {
    let mut rng = Rng(88);
    let mut events = steady("AKIATOOL", 0, 30, &["203.0.113.10"], &mut rng);
    events.push(
        ev(T0 + 30 * DAY + 3 * HOUR, "AKIATOOL", "203.0.113.10")
            .ua("stratus-red-team_3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
    );
    events.push(
        ev(T0 + 30 * DAY + 5 * HOUR, "AKIATOOL", "203.0.113.10")
            .ua("stratus-red-team_9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"),
    );
    let findings = run(events);
    let ua = of(&findings, Detector::NewUserAgent);
    assert_eq!(ua.len(), 1, "one tool, one family: {findings:#?}");
    assert_eq!(ua[0].evidence.observed["family"], "stratus-red-team");
}

/// Findings of the three detectors on generated fleets, per archetype, and
/// the attacks' recall: `cargo test --lib engine::net_tests::generated --
/// --ignored --nocapture` (slow in debug; seeds 101.. are not the ones the
/// generator's own tests look at).
#[test]
#[ignore]
fn generated_fleets_per_archetype() {
    use std::collections::BTreeMap;

    use crate::decode::Decoder;
    use crate::gen::{Format, GenConfig, Scenario};

    let decoder = Decoder::for_profile("cloudtrail", &BTreeMap::new()).unwrap();
    let seeds: u64 = std::env::var("KW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut normal: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut worst: BTreeMap<String, usize> = BTreeMap::new();
    let mut recall: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for seed in 101..101 + seeds {
        let scenario = Scenario::new(GenConfig {
            seed,
            keys: 81,
            days: 45,
            format: Format::CloudTrail,
            volume: std::env::var("KW_VOLUME")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.5),
            ..GenConfig::default()
        });
        let engine = Engine::new(&Config::default());
        let mut out = Vec::new();
        for e in scenario.events() {
            let _ = decoder.decode(e.json.as_bytes(), |r| {
                if let Ok(ev) = r {
                    engine.process(&ev, &mut out);
                }
            });
        }
        let mut per_fleet: BTreeMap<String, usize> = BTreeMap::new();
        let normal_keys = scenario.normal_keys();
        for f in out
            .iter()
            .filter(|f| f.entity == Entity::KeyId && normal_keys.contains(&f.key_id))
        {
            let d = format!("{:?}", f.detector);
            let Some(arch) = scenario.archetype(&f.key_id) else {
                continue;
            };
            let arch = format!("{arch:?}");
            *normal
                .entry((d.clone(), format!("{arch}/{:?}", f.severity)))
                .or_default() += 1;
            *per_fleet.entry(d).or_default() += 1;
        }
        for (d, n) in per_fleet {
            let w = worst.entry(d).or_default();
            *w = (*w).max(n);
        }
        for a in scenario.attacks() {
            let hit = out.iter().any(|f| {
                f.key_id == a.key_id
                    && f.detector.as_str() == a.detector
                    // CloudTrail times are whole seconds.
                    && f.observed_at_ms() >= a.start_ms - 1000
                    && f.observed_at_ms() <= a.end_ms + 1000
            });
            let r = recall
                .entry(format!("{:?}/{}", a.kind, a.detector))
                .or_default();
            r.0 += usize::from(hit);
            r.1 += 1;
        }
    }
    println!("false positives on normal keys ({seeds} fleets of 81 keys, 45 days):");
    for ((d, arch), n) in &normal {
        println!("  {d:>14} {arch:<28} {n}");
    }
    println!("worst fleet per detector: {worst:?}");
    println!("recall: {recall:?}");
}

/// A person between home, office and now and then a new network: a new
/// network with the key's own calls and client is held and dropped after
/// `corroborate_within`, counted; the same network calling what the key
/// never called, using a client it never used, or making a sensitive call
/// (even one the key makes) raises the held finding.
#[test]
fn a_new_network_on_a_key_that_meets_them_now_and_then_waits_for_a_call_the_key_does_not_make() {
    let mut rng = Rng(95);
    let person = |key: &'static str, rng: &mut Rng| {
        let mut events = steady(key, 0, 21, &["203.0.113.10", "198.51.100.4"], rng);
        // A cafe on day 12: the key's days now bring a new network now and then.
        events.extend(steady(key, 12, 1, &["192.0.2.77"], rng));
        events
    };
    let at = T0 + 21 * DAY + 10 * HOUR;
    let cafe = "100.70.8.9";
    let mut events = person("AKIACAFE", &mut rng);
    events.extend((0..30).map(|i| ev(at + i * 60, "AKIACAFE", cafe)));
    // Its next use of that network, two hours on: the hold is over.
    events.push(ev(at + 2 * HOUR, "AKIACAFE", cafe).calling("ListBuckets"));
    let mut thieves = Vec::new();
    for (key, odd) in [
        ("AKIANEWCALL", ev(0, "", "").calling("ListBuckets")),
        ("AKIANEWCLIENT", ev(0, "", "").ua("python-requests/2.31.0")),
        (
            "AKIASENSITIVE",
            ev(0, "", "").calling("secretsmanager:GetSecretValue"),
        ),
    ] {
        let mut events = person(key, &mut rng);
        if key == "AKIASENSITIVE" {
            // It reads its secret every day: the call is not new to it.
            events.extend((0..21).map(|d| {
                ev(T0 + d * DAY + 5 * HOUR, key, "203.0.113.10")
                    .calling("secretsmanager:GetSecretValue")
            }));
        }
        events.extend((0..5).map(|i| ev(at + i * 60, key, cafe)));
        events.push(Ev {
            t: at + 10 * 60,
            key,
            source: cafe.into(),
            ..odd
        });
        thieves.push((key, events));
    }
    for (_, e) in &thieves {
        events.extend(e.iter().cloned());
    }
    let (engine, findings) = engine_run(events);
    let on = |key: &str| -> Vec<&Finding> {
        of(&findings, Detector::NewSource)
            .into_iter()
            .filter(|f| f.key_id == key && f.observed_at.as_str() >= "2026-01-26")
            .collect()
    };
    assert!(on("AKIACAFE").is_empty(), "{:#?}", on("AKIACAFE"));
    assert!(
        engine.stats().uncorroborated.load(Ordering::Relaxed) >= 1,
        "the dropped hold is counted"
    );
    for (key, rule) in [
        ("AKIANEWCALL", "new_action"),
        ("AKIANEWCLIENT", "new_user_agent"),
        ("AKIASENSITIVE", "sensitive_action"),
    ] {
        let found = on(key);
        assert_eq!(found.len(), 1, "{key}: {findings:#?}");
        let f = found[0];
        assert_eq!(f.evidence.observed["corroboration"]["rule"], rule, "{f:#?}");
        assert_eq!(f.evidence.observed["corroboration"]["after_s"], 600);
        assert_eq!(f.evidence.observed["network"], "100.70.8.0/24");
        assert!(rules(f).contains(&"corroborated"), "{f:#?}");
        assert!(f.severity >= Severity::Medium, "{f:#?}");
    }
}

/// A service on the same networks for a month needs no corroboration: its
/// first new network, with its own calls and client, is high at once. So
/// is a weekly job's, once its one network is a month old, however few
/// its active days.
#[test]
fn a_key_settled_for_a_month_is_judged_on_a_new_network_alone() {
    let mut rng = Rng(96);
    let mut events = steady("AKIASETTLED", 0, 31, &["203.0.113.10"], &mut rng);
    events.push(ev(T0 + 31 * DAY + 3 * HOUR, "AKIASETTLED", "185.220.101.7"));
    for w in 0..5 {
        events.extend(steady(
            "AKIAWEEKLYJOB",
            w * 7,
            1,
            &["198.51.100.4"],
            &mut rng,
        ));
    }
    events.push(ev(
        T0 + 33 * DAY + 3 * HOUR,
        "AKIAWEEKLYJOB",
        "185.220.101.7",
    ));
    // The same job three weeks old: not yet.
    for w in 0..3 {
        events.extend(steady(
            "AKIAYOUNGJOB",
            7 + w * 7,
            1,
            &["198.51.100.5"],
            &mut rng,
        ));
    }
    events.push(ev(
        T0 + 26 * DAY + 3 * HOUR,
        "AKIAYOUNGJOB",
        "185.220.101.7",
    ));
    let findings = run(events);
    let on = |key: &str| {
        of(&findings, Detector::NewSource)
            .into_iter()
            .find(|f| f.key_id == key)
    };
    let settled = on("AKIASETTLED").expect("a month on one network");
    assert_eq!(settled.severity, Severity::High, "{settled:#?}");
    assert!(settled.evidence.observed.get("corroboration").is_none());
    assert!(on("AKIAWEEKLYJOB").is_some(), "{findings:#?}");
    assert!(on("AKIAYOUNGJOB").is_none(), "{findings:#?}");
}

/// Attacker's test for the hold: a thief who first fans out (raising
/// `source_fanout`) makes the key's days bring new networks; his later use
/// from yet another network, doing only what the key does, is held and
/// dropped. The door costs him the fan-out's finding; a call the key never
/// made closes it.
#[test]
fn after_a_fanout_a_blending_thief_is_held_the_fanout_was_the_finding() {
    let mut rng = Rng(97);
    let mut events = steady("AKIAFANNED", 0, 40, &["203.0.113.10"], &mut rng);
    events.extend(botnet("AKIAFANNED", T0 + 30 * DAY + 10 * HOUR, 60, 30, 0));
    events.push(ev(T0 + 32 * DAY + 3 * HOUR, "AKIAFANNED", "185.220.101.7"));
    let mut cfg = Config::default();
    cfg.engine.fold_after = 0;
    let findings = engine_run_with(&cfg, events.clone()).1;
    assert!(
        !of(&findings, Detector::SourceFanout).is_empty(),
        "{findings:#?}"
    );
    let blend = |f: &&Finding| f.summary.contains("185.220.101.7");
    assert!(
        of(&findings, Detector::NewSource).iter().all(|f| !blend(f)),
        "{findings:#?}"
    );
    events.push(
        ev(T0 + 32 * DAY + 3 * HOUR + 30, "AKIAFANNED", "185.220.101.7").calling("ListBuckets"),
    );
    let findings = engine_run_with(&cfg, events).1;
    assert!(
        of(&findings, Detector::NewSource).iter().any(blend),
        "{findings:#?}"
    );
}

/// A person's key: [`steady`] from `sources(day)` with the CLI, whose days
/// bring a call it never made before on every sixth day (`Explore3`,
/// `Explore9`, ...): new actions on about one day in seven, as a person
/// taking up a service now and then.
fn explorer(
    key: &'static str,
    days: i64,
    sources: impl Fn(i64) -> String,
    rng: &mut Rng,
) -> Vec<Ev> {
    let mut out = Vec::new();
    for d in 0..days {
        let src = sources(d);
        out.extend(steady(key, d, 1, &[src.as_str()], rng));
        if d % 6 == 3 {
            out.push(
                ev(T0 + d * DAY + 11 * HOUR, key, src.as_str()).calling(&format!("Explore{d}")),
            );
        }
    }
    out
}

/// The findings of `d` on `key` from `t` on.
fn after<'f>(findings: &'f [Finding], d: Detector, key: &str, t: i64) -> Vec<&'f Finding> {
    let from = crate::decode::time::format_rfc3339(t * 1000);
    of(findings, d)
        .into_iter()
        .filter(|f| f.key_id == key && f.observed_at >= from)
        .collect()
}

#[test]
fn a_persons_new_action_waits_and_a_session_of_them_is_raised() {
    let mut rng = Rng(90);
    let home = |_| "203.0.113.10".to_owned();
    let mut events = explorer("AKIAEXPLORE", 30, home, &mut rng);
    let t = T0 + 30 * DAY + 10 * HOUR;
    let first = ev(t, "AKIAEXPLORE", "203.0.113.10").calling("ListQueues");
    events.push(first.clone());
    // One new call on a key whose days bring them now and then: held, and
    // the key's page says so.
    let (engine, findings) = engine_run(events.clone());
    assert!(
        after(&findings, Detector::NewAction, "AKIAEXPLORE", t).is_empty(),
        "{findings:#?}"
    );
    let explained = engine.explain(Entity::KeyId, "AKIAEXPLORE").unwrap();
    let held = &explained["held"][0];
    assert_eq!(held["detector"], "new_action", "{explained}");
    assert_eq!(held["action"], "s3:ListQueues", "{explained}");
    // Alone, it is dropped once the hour is over, and counted.
    let mut alone = events.clone();
    alone.push(ev(t + 2 * HOUR, "AKIAEXPLORE", "203.0.113.10"));
    let dropped = |engine: &Engine| engine.stats().uncorroborated.load(Ordering::Relaxed);
    let before = dropped(&engine);
    let (engine, findings) = engine_run(alone);
    assert!(after(&findings, Detector::NewAction, "AKIAEXPLORE", t).is_empty());
    assert_eq!(dropped(&engine), before + 1);
    // Four new calls in all are still a task, not a session (the door: a
    // thief on the key's own network and client who calls no more)...
    for (i, action) in ["ListTopics", "ListRoles", "ListKeys"].iter().enumerate() {
        events.push(Ev {
            t: t + 30 * (i as i64 + 1),
            ..first.clone().calling(action)
        });
    }
    let findings = run(events.clone());
    assert!(
        after(&findings, Detector::NewAction, "AKIAEXPLORE", t).is_empty(),
        "{findings:#?}"
    );
    // ...the fifth within the hour makes a session that explores what the
    // key can do: one finding, naming the session.
    events.push(Ev {
        t: t + 120,
        ..first.clone().calling("ListStacks")
    });
    let findings = run(events);
    let raised = after(&findings, Detector::NewAction, "AKIAEXPLORE", t);
    assert_eq!(raised.len(), 1, "{findings:#?}");
    assert_eq!(raised[0].evidence.observed["action"], "s3:ListQueues");
    assert_eq!(
        raised[0].evidence.observed["corroboration"],
        serde_json::json!({"rule": "enumeration", "value": "s3:ListStacks", "after_s": 120})
    );
    assert!(
        raised[0].summary.ends_with(
            "Then 2m later, it had called 5 actions it had not called before, the latest s3:ListStacks."
        ),
        "{}",
        raised[0].summary
    );
}

#[test]
fn a_held_action_is_raised_by_a_tool_or_a_network_the_key_never_used() {
    let mut rng = Rng(91);
    let home = |_| "203.0.113.10".to_owned();
    let mut events = explorer("AKIAEXPLORE", 30, home, &mut rng);
    let t = T0 + 30 * DAY + 10 * HOUR;
    let first = ev(t, "AKIAEXPLORE", "203.0.113.10").calling("ListQueues");
    events.push(first.clone());
    // Three minutes later, from the same network, a tool the key never
    // used, making the key's own call.
    let mut tool = events.clone();
    tool.push(Ev {
        t: t + 180,
        ..first
            .clone()
            .calling("GetObject")
            .ua("python-requests/2.31.0")
    });
    let findings = run(tool);
    let raised = after(&findings, Detector::NewAction, "AKIAEXPLORE", t);
    assert_eq!(raised.len(), 1, "{findings:#?}");
    assert_eq!(
        raised[0].evidence.observed["corroboration"]["rule"],
        "new_user_agent"
    );
    assert!(
        raised[0].summary.ends_with(
            "Then 3m later, it used the client \"python-requests\", which it has not used before."
        ),
        "{}",
        raised[0].summary
    );
    // Or from a network the key never used (a thief's second call).
    events.push(ev(t + 600, "AKIAEXPLORE", "185.220.101.7"));
    let findings = run(events);
    let raised = after(&findings, Detector::NewAction, "AKIAEXPLORE", t);
    assert_eq!(raised.len(), 1, "{findings:#?}");
    assert_eq!(
        raised[0].evidence.observed["corroboration"]["rule"],
        "new_source"
    );
}

#[test]
fn a_new_network_does_not_corroborate_on_a_key_that_meets_one_every_day() {
    // A person on a mobile carrier: a new /24 every day, so a new network
    // is no news on this key and cannot make its held new action news.
    let mut rng = Rng(92);
    let carrier = |d: i64| format!("100.64.{}.10", d % 250);
    let mut events = explorer("AKIAMOBILE", 30, carrier, &mut rng);
    let t = T0 + 30 * DAY + 10 * HOUR;
    events.push(ev(t - 600, "AKIAMOBILE", "100.64.30.10"));
    events.push(ev(t, "AKIAMOBILE", "100.64.30.10").calling("ListQueues"));
    events.push(ev(t + 600, "AKIAMOBILE", "100.64.31.10"));
    let findings = run(events);
    assert!(
        after(&findings, Detector::NewAction, "AKIAMOBILE", t).is_empty(),
        "{findings:#?}"
    );
    assert!(
        after(&findings, Detector::NewSource, "AKIAMOBILE", t).is_empty(),
        "{findings:#?}"
    );
}

#[test]
fn a_young_keys_new_client_waits_for_it_to_do_something_new() {
    // Ten days of one client: not yet shown that a new one is news.
    let mut rng = Rng(93);
    let mut events = steady("AKIAYOUNG", 0, 10, &["203.0.113.10"], &mut rng);
    let t = T0 + 10 * DAY + 10 * HOUR;
    let boto = ev(t, "AKIAYOUNG", "203.0.113.10").ua(BOTO);
    events.push(boto.clone());
    let mut quiet = events.clone();
    quiet.push(Ev {
        t: t + 60,
        ..boto.clone()
    });
    let findings = run(quiet);
    assert!(
        after(&findings, Detector::NewUserAgent, "AKIAYOUNG", t).is_empty(),
        "{findings:#?}"
    );
    // With it five minutes later, a call the key never made: raised.
    events.push(Ev {
        t: t + 300,
        ..boto.calling("DeleteBucket")
    });
    let findings = run(events);
    let raised = after(&findings, Detector::NewUserAgent, "AKIAYOUNG", t);
    assert_eq!(raised.len(), 1, "{findings:#?}");
    assert_eq!(raised[0].evidence.observed["family"], "Boto3");
    assert!(
        raised[0].summary.ends_with(
            "With it 5m later, it called s3:DeleteBucket, an action it has not called before."
        ),
        "{}",
        raised[0].summary
    );
}
