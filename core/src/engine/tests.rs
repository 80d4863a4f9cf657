//! Detector behaviour on hand-built traffic with explicit event times: each
//! detector fires on its attack and stays quiet on normal traffic that looks
//! alarming to a naive rule.

use std::borrow::Cow;

use super::*;
use crate::config::Config;
use crate::decode::{AuditEvent, Outcome, Source};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// 2026-01-05 00:00:00 UTC, a Monday.
const T0: i64 = 1_767_571_200;

/// A tiny deterministic generator so the traffic is irregular but repeatable.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Poisson-ish count with mean `m`.
    fn around(&mut self, m: f64) -> u64 {
        let jitter = (self.below(1000) as f64 / 1000.0 - 0.5) * m.sqrt() * 2.0;
        (m + jitter).round().max(0.0) as u64
    }
}

#[derive(Clone)]
struct Ev {
    t: i64,
    key: String,
    principal: Option<String>,
    source: String,
    ua: &'static str,
    action: String,
    fail: Option<&'static str>,
}

fn ev(t: i64, key: &str, source: impl Into<String>) -> Ev {
    Ev {
        t,
        key: key.to_owned(),
        principal: None,
        source: source.into(),
        ua: "aws-cli/2.15.0 Python/3.11.6",
        action: "GetObject".to_owned(),
        fail: None,
    }
}

impl Ev {
    fn audit(&self) -> AuditEvent<'_> {
        AuditEvent {
            time_ms: self.t * 1000,
            key_id: Cow::Borrowed(&self.key),
            principal: self.principal.as_deref().map(Cow::Borrowed),
            source: Source::parse(Cow::Borrowed(&self.source)),
            user_agent: Some(Cow::Borrowed(self.ua)),
            action: Some(Cow::Borrowed(&self.action)),
            // `iam:CreateUser` names its own service.
            action_namespace: (!self.action.contains(':'))
                .then_some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: match self.fail {
                None => Outcome::Success,
                Some(code) => Outcome::Failure {
                    code: Some(Cow::Borrowed(code)),
                },
            },
            region: None,
            count: 1,
        }
    }
}

fn run_with(cfg: &Config, mut events: Vec<Ev>) -> Vec<Finding> {
    events.sort_by_key(|e| e.t);
    let engine = Engine::new(cfg);
    let mut out = Vec::new();
    for e in &events {
        engine.process(&e.audit(), &mut out);
    }
    out
}

fn run(events: Vec<Ev>) -> Vec<Finding> {
    run_with(&Config::default(), events)
}

fn of(findings: &[Finding], d: Detector) -> Vec<&Finding> {
    findings.iter().filter(|f| f.detector == d).collect()
}

/// Office-hours use: busy 08-18 on weekdays, a trickle at night and on weekends.
fn office_key(
    key: &str,
    days: i64,
    peak_per_hour: f64,
    sources: &[&str],
    rng: &mut Rng,
) -> Vec<Ev> {
    let mut out = Vec::new();
    for d in 0..days {
        let weekend = (d % 7) >= 5;
        for h in 0..24 {
            let busy = (8..18).contains(&h);
            let mean = match (busy, weekend) {
                (true, false) => peak_per_hour,
                (true, true) => peak_per_hour * 0.2,
                (false, _) => peak_per_hour * 0.02,
            };
            for _ in 0..rng.around(mean) {
                let t = T0 + d * DAY + h * HOUR + rng.below(3600) as i64;
                let src = sources[rng.below(sources.len() as u64) as usize];
                let mut e = ev(t, key, src);
                e.action = ["GetObject", "PutObject", "ListBucket"][rng.below(3) as usize].into();
                if rng.below(400) == 0 {
                    e.fail = Some("ThrottlingException");
                }
                out.push(e);
            }
        }
    }
    out
}

fn assert_quiet(findings: &[Finding]) {
    assert!(
        findings.is_empty(),
        "expected no findings, got: {:#?}",
        findings.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
}

#[test]
fn daily_rhythm_is_quiet() {
    let mut rng = Rng(1);
    assert_quiet(&run(office_key(
        "AKIARHYTHM",
        35,
        120.0,
        &["203.0.113.10", "203.0.113.11"],
        &mut rng,
    )));
}

#[test]
fn an_ipv6_households_own_prefixes_are_one_network() {
    // A host on a household's /56 whose ISP hands it a new /64 now and
    // then: the /64s are one network. A new /56 in the site's /48 is low
    // (same_ipv6_site); a /48 the key never used is a new network, high on
    // a key that never met one.
    let mut rng = Rng(21);
    let home = ["2001:db8:7:10::5", "2001:db8:7:10::6"];
    let events = office_key("AKIAV6HOME", 30, 60.0, &home, &mut rng);
    let at = T0 + 30 * DAY + 10 * HOUR;
    let with = |source: &str| {
        let mut all = events.clone();
        all.push(ev(at, "AKIAV6HOME", source));
        of(&run(all), Detector::NewSource)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        with("2001:db8:7:2f::9").is_empty(),
        "another /64 of the /56"
    );
    let site = with("2001:db8:7:300::9");
    assert_eq!(site.len(), 1, "{site:#?}");
    assert_eq!(site[0].severity, Severity::Low);
    assert_eq!(site[0].evidence.observed["rules"][0], "same_ipv6_site");
    assert!(
        site[0].summary.contains("2001:db8:7:300::/56"),
        "{}",
        site[0].summary
    );
    let away = with("2a00:1450:4001:81c::200e");
    assert_eq!(away.len(), 1, "{away:#?}");
    assert_eq!(away[0].severity, Severity::High);
}

#[test]
fn stolen_key_from_a_new_network_is_found() {
    let mut rng = Rng(2);
    let mut events = office_key("AKIASTOLEN", 30, 60.0, &["203.0.113.10"], &mut rng);
    let attack = T0 + 30 * DAY + 3 * HOUR;
    for i in 0..20 {
        let mut e = ev(attack + i * 30, "AKIASTOLEN", "185.220.101.7");
        e.ua = "python-requests/2.31.0";
        events.push(e);
    }
    let findings = run(events);
    let new_source = of(&findings, Detector::NewSource);
    assert_eq!(
        new_source.len(),
        1,
        "one incident, one finding: {findings:#?}"
    );
    let f = new_source[0];
    assert_eq!(f.severity, Severity::High, "a one-network key is settled");
    assert_eq!(f.observed_at_ms(), attack * 1000);
    assert!(
        f.summary.contains("185.220.101.7") && f.summary.contains("203.0.113.0/24"),
        "{}",
        f.summary
    );
    assert_eq!(f.evidence.baseline["known_networks"], 1);
    assert!(f.evidence.eligibility.learned_for_s >= 29 * DAY as u64);
    assert_eq!(of(&findings, Detector::NewUserAgent).len(), 1);
    assert!(of(&findings, Detector::RateSpike).is_empty());
}

#[test]
fn dhcp_churn_inside_one_network_is_quiet() {
    let mut events = Vec::new();
    for d in 0..40 {
        let ip = format!("198.51.100.{}", 10 + (d * 7) % 200);
        for i in 0..30 {
            events.push(ev(
                T0 + d * DAY + 9 * HOUR + i * 600,
                "AKIADHCP",
                ip.clone(),
            ));
        }
    }
    assert_quiet(&run(events));
}

#[test]
fn pool_churn_across_sibling_networks_is_quiet() {
    // A provider pool: the address moves between /24s of one /16.
    let mut events = Vec::new();
    for d in 0..40 {
        let ip = format!("100.64.{}.{}", d % 9, 10 + d);
        for i in 0..30 {
            events.push(ev(
                T0 + d * DAY + 9 * HOUR + i * 600,
                "AKIAPOOL",
                ip.clone(),
            ));
        }
    }
    let findings = run(events);
    assert!(
        findings.iter().all(|f| f.severity <= Severity::Low),
        "{findings:#?}"
    );
    assert!(of(&findings, Detector::NewSource).len() <= 1);
}

#[test]
fn many_regions_by_design_is_quiet() {
    let mut rng = Rng(3);
    let regions = [
        "3.80.1.5",
        "13.48.2.9",
        "18.196.3.4",
        "52.62.4.7",
        "35.180.5.2",
    ];
    let mut events = office_key("AKIAREGIONS", 35, 100.0, &regions, &mut rng);
    // A new address inside one of its regions' networks later on.
    events.push(ev(T0 + 34 * DAY + 10 * HOUR, "AKIAREGIONS", "13.48.2.200"));
    assert_quiet(&run(events));
}

#[test]
fn roaming_key_does_not_alert_on_yet_another_network() {
    let mut events = Vec::new();
    for d in 0..35 {
        let ip = format!("{}.{}.7.9", 20 + d * 3, d);
        for i in 0..10 {
            events.push(ev(
                T0 + d * DAY + 10 * HOUR + i * 60,
                "AKIAROAM",
                ip.clone(),
            ));
        }
    }
    assert_quiet(
        &of(&run(events), Detector::NewSource)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>(),
    );
}

#[test]
fn learning_keys_do_not_alert() {
    let mut events = Vec::new();
    for d in 0..6 {
        for i in 0..50 {
            let src = format!("{}.1.2.3", 40 + d);
            events.push(ev(T0 + d * DAY + i * 60, "AKIANEW", src));
        }
    }
    assert_quiet(&run(events));
}

#[test]
fn burst_of_twenty_times_is_found_once() {
    let mut rng = Rng(4);
    let mut events = office_key("AKIABURST", 30, 120.0, &["203.0.113.10"], &mut rng);
    // 20x the usual hourly rate squeezed into 15 minutes of a Tuesday.
    let start = T0 + 29 * DAY + 11 * HOUR;
    for i in 0..600 {
        events.push(ev(start + i * 900 / 600, "AKIABURST", "203.0.113.10"));
    }
    let findings = run(events);
    let spikes = of(&findings, Detector::RateSpike);
    assert_eq!(spikes.len(), 1, "{findings:#?}");
    let f = spikes[0];
    assert!(
        f.observed_at_ms() < (start + 300) * 1000,
        "alerts within the first bucket"
    );
    assert!(
        f.evidence.observed["requests"].as_u64().unwrap() >= f.evidence.threshold.as_u64().unwrap()
    );
    assert!(f.summary.contains("requests"));
    assert_eq!(findings.len(), 1, "{findings:#?}");
}

#[test]
fn ci_bursts_at_fixed_times_are_quiet() {
    let mut rng = Rng(5);
    let mut events = Vec::new();
    for d in 0..35 {
        for hour in [2, 14] {
            let start = T0 + d * DAY + hour * HOUR + rng.below(240) as i64;
            let n = 300 + rng.below(300) as i64;
            let runner = format!("192.0.2.{}", 10 + rng.below(200));
            for i in 0..n {
                events.push(ev(start + i * 240 / n, "AKIACI", runner.clone()));
            }
        }
    }
    assert_quiet(&run(events));
}

#[test]
fn slow_organic_growth_is_quiet() {
    let mut rng = Rng(6);
    let mut events = Vec::new();
    for d in 0..40 {
        let rate = 30.0 * 1.02f64.powi(d as i32);
        for h in 0..24 {
            for _ in 0..rng.around(rate) {
                let t = T0 + d * DAY + h * HOUR + rng.below(3600) as i64;
                events.push(ev(t, "AKIAGROW", "203.0.113.40"));
            }
        }
    }
    assert_quiet(&run(events));
}

#[test]
fn night_burst_on_a_day_key_is_found() {
    let mut rng = Rng(7);
    let mut events = office_key("AKIANIGHT", 30, 200.0, &["203.0.113.10"], &mut rng);
    let start = T0 + 29 * DAY + 3 * HOUR;
    for i in 0..400 {
        events.push(ev(start + i * 300 / 400, "AKIANIGHT", "203.0.113.10"));
    }
    assert_eq!(of(&run(events), Detector::RateSpike).len(), 1);
}

#[test]
fn access_denied_storm_is_found_and_throttling_noise_is_not() {
    let mut rng = Rng(8);
    let mut events = office_key("AKIADENIED", 30, 100.0, &["203.0.113.10"], &mut rng);
    assert_quiet(&run(events.clone()));
    let start = T0 + 29 * DAY + 15 * HOUR;
    for i in 0..300 {
        let mut e = ev(start + i * 2, "AKIADENIED", "203.0.113.10");
        e.fail = Some("AccessDenied");
        e.action = "ListUsers".into();
        events.push(e);
    }
    let findings = run(events);
    let errors = of(&findings, Detector::ErrorSpike);
    assert_eq!(errors.len(), 1, "{findings:#?}");
    assert_eq!(
        errors[0].evidence.observed["latest_error_code"],
        "AccessDenied"
    );
    assert_eq!(errors[0].severity, Severity::High);
}

#[test]
fn a_burst_of_rate_limits_is_the_providers_pacing_not_a_probe() {
    // An SDK retrying after a rate limit: 300 throttled calls in five
    // minutes on a key that never saw one. Neither a probe (error_spike)
    // nor more use (rate_spike): the provider served none of them. The same
    // burst refused (AccessDenied) is a probe.
    let mut rng = Rng(8);
    let base = office_key("AKIATHROTTLE", 30, 100.0, &["203.0.113.10"], &mut rng);
    let start = T0 + 29 * DAY + 15 * HOUR;
    let burst = |code: &'static str| {
        let mut events = base.clone();
        for i in 0..300 {
            let mut e = ev(start + i, "AKIATHROTTLE", "203.0.113.10");
            e.fail = Some(code);
            events.push(e);
        }
        run(events)
    };
    assert_quiet(&burst("ThrottlingException"));
    assert_quiet(&burst("SlowDown"));
    assert_quiet(&burst("ServiceUnavailable"));
    let refused = burst("AccessDenied");
    assert_eq!(of(&refused, Detector::ErrorSpike).len(), 1, "{refused:#?}");
}

#[test]
fn fanout_to_fifty_hosts_is_found() {
    let mut rng = Rng(9);
    let mut events = office_key(
        "AKIAFAN",
        30,
        60.0,
        &["203.0.113.10", "203.0.113.12"],
        &mut rng,
    );
    let start = T0 + 30 * DAY + 10 * HOUR + 5 * 60;
    for i in 0..50 {
        let src = format!("{}.{}.{}.{}", 11 + i * 4, 200 - i, i * 3, 7 + i);
        events.push(ev(start + i * 12, "AKIAFAN", src));
    }
    let findings = run(events);
    let fan = of(&findings, Detector::SourceFanout);
    assert_eq!(fan.len(), 1, "{findings:#?}");
    assert!(
        fan[0].observed_at_ms() <= (start + 10 * 12) * 1000,
        "alerts at the tenth host"
    );
    // The same attack also shows up as a new network, and its 50 calls in
    // ten minutes (about 30 in a bucket that expects 5) as a rate spike; no
    // other detectors pile on.
    assert!(findings.iter().all(|f| matches!(
        f.detector,
        Detector::SourceFanout | Detector::NewSource | Detector::RateSpike
    )));
}

#[test]
fn dormant_key_revived_is_found() {
    let mut events = Vec::new();
    for d in 0..4 {
        for i in 0..10 {
            events.push(ev(
                T0 + d * DAY + 10 * HOUR + i * 60,
                "AKIADORMANT",
                "203.0.113.9",
            ));
        }
    }
    let revival = T0 + 3 * DAY + 45 * DAY + 12 * HOUR;
    events.push(ev(revival, "AKIADORMANT", "203.0.113.9"));
    let findings = run(events);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.detector, Detector::DormantRevival);
    assert_eq!(f.evidence.observed["idle_days"], 45);
    assert!(f.summary.contains("45d"), "{}", f.summary);
}

#[test]
fn monthly_job_is_not_dormant() {
    let mut events = Vec::new();
    for month in 0..4 {
        for i in 0..20 {
            events.push(ev(
                T0 + month * 31 * DAY + i * 120,
                "AKIAMONTHLY",
                "203.0.113.9",
            ));
        }
    }
    assert_quiet(&run(events));
}

/// The monthly cost report: on the first of each month (31, 28 and 31 days
/// apart) a few calls on four services, and nothing in between.
fn cost_report(key: &str, months: usize) -> Vec<Ev> {
    let mut events = Vec::new();
    let mut day = 0;
    for gap in [31, 28, 31, 30].into_iter().take(months) {
        for (i, action) in [
            "ce:GetCostAndUsage",
            "organizations:ListAccounts",
            "s3:PutObject",
            "sts:GetCallerIdentity",
        ]
        .into_iter()
        .enumerate()
        {
            for j in 0..5 {
                let mut e = ev(
                    T0 + day * DAY + 6 * HOUR + (i as i64 * 5 + j) * 60,
                    key,
                    "203.0.113.9",
                );
                e.action = action.into();
                events.push(e);
            }
        }
        day += gap;
    }
    events
}

#[test]
fn a_monthly_jobs_calls_are_not_new_each_month() {
    assert_quiet(&run(cost_report("AKIACOSTREPORT", 4)));
}

#[test]
fn a_month_later_only_what_the_job_never_did_is_new() {
    let mut events = cost_report("AKIACOSTREPORT", 3);
    // The fourth run, 90 days in, also reads a bucket before the job writes
    // its report (a call the job never made, on the service it last used a
    // month ago) and mints a key.
    let run4 = T0 + 90 * DAY + 6 * HOUR;
    let mut read = ev(run4 + 7 * 60 + 30, "AKIACOSTREPORT", "203.0.113.9");
    read.action = "s3:GetObject".into();
    let mut mint = ev(run4 + 30 * 60, "AKIACOSTREPORT", "203.0.113.9");
    mint.action = "iam:CreateAccessKey".into();
    events.extend(cost_report("AKIACOSTREPORT", 4).into_iter().skip(60));
    events.extend([read, mint]);
    let findings = run(events);
    let new = of(&findings, Detector::NewAction);
    assert_eq!(new.len(), 2, "{findings:#?}");
    assert!(
        new[0].summary.contains("s3:GetObject"),
        "{}",
        new[0].summary
    );
    assert_eq!(new[0].severity, Severity::Medium, "{}", new[0].summary);
    assert!(
        new[1].summary.contains("iam:CreateAccessKey"),
        "{}",
        new[1].summary
    );
    assert_eq!(new[1].severity, Severity::High);
}

#[test]
fn a_service_last_used_beyond_a_month_is_one_it_never_used() {
    // Two runs 40 days apart: the second is not the same monthly job's.
    let mut events = cost_report("AKIALATEREPORT", 1);
    for mut e in cost_report("AKIALATEREPORT", 1) {
        e.t += 40 * DAY;
        events.push(e);
    }
    let findings = run(events);
    let new = of(&findings, Detector::NewAction);
    assert!(
        new.iter()
            .any(|f| f.summary.contains("on a service it never used")),
        "{findings:#?}"
    );
}

#[test]
fn a_month_of_silence_after_weeks_of_use_is_dormancy() {
    let mut events = Vec::new();
    for d in 0..10 {
        events.push(ev(T0 + d * DAY + 10 * HOUR, "AKIAMONTHOFF", "203.0.113.9"));
    }
    events.push(ev(
        T0 + 9 * DAY + 31 * DAY + 10 * HOUR,
        "AKIAMONTHOFF",
        "203.0.113.9",
    ));
    assert_eq!(of(&run(events), Detector::DormantRevival).len(), 1);
}

#[test]
fn scope_creep_is_found_with_severity_by_action() {
    let mut rng = Rng(10);
    let mut events = office_key("AKIASCOPE", 30, 60.0, &["203.0.113.10"], &mut rng);
    let t = T0 + 30 * DAY + 10 * HOUR;
    let mut e = ev(t, "AKIASCOPE", "203.0.113.10");
    e.action = "iam:CreateUser".into();
    events.push(e);
    let findings = run(events);
    let creep = of(&findings, Detector::NewAction);
    assert_eq!(creep.len(), 1, "{findings:#?}");
    assert_eq!(creep[0].severity, Severity::High);
    assert!(
        creep[0].summary.contains("iam:CreateUser"),
        "{}",
        creep[0].summary
    );
}

#[test]
fn allowlisted_network_updates_state_but_never_alerts() {
    let mut rng = Rng(11);
    let mut events = office_key("AKIACORP", 30, 60.0, &["203.0.113.10"], &mut rng);
    events.push(ev(T0 + 30 * DAY + 10 * HOUR, "AKIACORP", "10.20.30.40"));
    let mut cfg = Config::default();
    cfg.engine.allowlist_networks = vec!["10.0.0.0/8".parse().unwrap()];
    assert_quiet(&run_with(&cfg, events.clone()));
    assert_eq!(
        of(&run(events), Detector::NewSource).len(),
        1,
        "without the allowlist it alerts"
    );
}

#[test]
fn disabled_detector_stays_silent() {
    let mut rng = Rng(12);
    let mut events = office_key("AKIAOFF", 30, 60.0, &["203.0.113.10"], &mut rng);
    events.push(ev(T0 + 30 * DAY + 10 * HOUR, "AKIAOFF", "185.220.101.7"));
    let mut cfg = Config::default();
    cfg.detectors.new_source.enabled = false;
    assert!(of(&run_with(&cfg, events), Detector::NewSource).is_empty());
}

#[test]
fn principal_tracking_sees_fresh_temporary_keys() {
    // A role's temporary keys rotate hourly; each is too new to learn, the
    // principal is not.
    let mut events = Vec::new();
    for h in 0..(30 * 24) {
        let key = format!("ASIATEMP{h:06}");
        for i in 0..3 {
            let mut e = ev(T0 + h * HOUR + i * 600, &key, "203.0.113.10");
            e.principal = Some("arn:aws:sts::1:assumed-role/app/i-1".into());
            events.push(e);
        }
    }
    let mut e = ev(T0 + 30 * DAY + 600, "ASIASTOLEN", "185.220.101.7");
    e.principal = Some("arn:aws:sts::1:assumed-role/app/i-1".into());
    events.push(e);
    let mut keys_only = Config::default();
    keys_only.engine.entities = vec![Entity::KeyId];
    assert!(
        of(&run_with(&keys_only, events.clone()), Detector::NewSource).is_empty(),
        "keys alone cannot see it"
    );
    // The default tracks the principal.
    let findings = run(events);
    let by_principal = of(&findings, Detector::NewSource);
    assert_eq!(by_principal.len(), 1, "{findings:#?}");
    assert_eq!(by_principal[0].entity, Entity::Principal);
    assert_eq!(by_principal[0].key_id, "ASIASTOLEN");
}

#[test]
fn max_keys_bounds_memory_and_counts_refusals() {
    let mut cfg = Config::default();
    cfg.engine.max_keys = 10;
    let engine = Engine::new(&cfg);
    let mut out = Vec::new();
    for i in 0..25 {
        let e = ev(T0 + i, &format!("AKIA{i}"), "203.0.113.1");
        engine.process(&e.audit(), &mut out);
    }
    assert_eq!(engine.key_count(Entity::KeyId), 10);
    assert_eq!(engine.stats().keys_rejected.load(Ordering::Relaxed), 15);
    // Known keys keep being tracked.
    engine.process(&ev(T0 + 100, "AKIA3", "203.0.113.1").audit(), &mut out);
    assert_eq!(
        engine.with_key(Entity::KeyId, "AKIA3", |k| k.events),
        Some(2)
    );
}

#[test]
fn max_sources_bounds_each_key() {
    let mut cfg = Config::default();
    cfg.engine.max_sources_per_key = 8;
    let engine = Engine::new(&cfg);
    let mut out = Vec::new();
    for i in 0..100 {
        let e = ev(T0 + i, "AKIAMANY", format!("198.51.{i}.1"));
        engine.process(&e.audit(), &mut out);
    }
    assert_eq!(
        engine.with_key(Entity::KeyId, "AKIAMANY", |k| k.sources.entries().len()),
        Some(8)
    );
    assert_eq!(engine.stats().sources_evicted.load(Ordering::Relaxed), 92);
}

#[test]
fn replaying_the_same_events_gives_the_same_ids() {
    let mut rng = Rng(13);
    let mut events = office_key("AKIAREPLAY", 30, 60.0, &["203.0.113.10"], &mut rng);
    events.push(ev(T0 + 30 * DAY + 10 * HOUR, "AKIAREPLAY", "185.220.101.7"));
    let a: Vec<String> = run(events.clone()).into_iter().map(|f| f.id).collect();
    let b: Vec<String> = run(events).into_iter().map(|f| f.id).collect();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// A role whose sessions are named after whatever assumed it: every session
/// is one role's history, and the stolen session is judged from its first
/// event, naming both the key and the principal.
#[test]
fn a_new_session_is_judged_through_its_role_from_its_first_event() {
    let role = "arn:aws:sts::111122223333:assumed-role/deploy";
    let mut events = Vec::new();
    for h in 0..(30 * 24) {
        let key = format!("ASIADEPLOY{h:06}");
        for i in 0..3 {
            let mut e = ev(T0 + h * HOUR + i * 600, &key, "203.0.113.10");
            e.principal = Some(format!("{role}/i-{:04x}", h % 97));
            events.push(e);
        }
    }
    let mut e = ev(T0 + 30 * DAY + 600, "ASIATHIEF", "185.220.101.7");
    e.principal = Some(format!("{role}/attacker-picked-name"));
    events.push(e);
    let findings = run(events);
    let found = of(&findings, Detector::NewSource);
    assert_eq!(found.len(), 1, "{findings:#?}");
    let f = found[0];
    assert_eq!(f.entity, Entity::Principal);
    assert_eq!(f.key_id, "ASIATHIEF");
    assert!(
        f.summary.contains("ASIATHIEF") && f.summary.contains("assumed-role/deploy"),
        "{}",
        f.summary
    );
    assert_eq!(
        principal_identity("arn:aws:sts::1:assumed-role/deploy/i-0abc"),
        "arn:aws:sts::1:assumed-role/deploy"
    );
    assert_eq!(
        principal_identity("arn:aws:iam::1:user/alice"),
        "arn:aws:iam::1:user/alice"
    );
    // The first `:assumed-role/` wherever it is; a role without a session,
    // a trailing colon and text that is no ARN are their own identity.
    for (principal, identity) in [
        (
            "arn:aws-cn:sts::1:assumed-role/r/s/t",
            "arn:aws-cn:sts::1:assumed-role/r",
        ),
        ("team:assumed-role/ops/alice", "team:assumed-role/ops"),
        (
            "arn:aws:sts::1:assumed-role/deploy",
            "arn:aws:sts::1:assumed-role/deploy",
        ),
        (
            "arn:aws:sts::1:assumed-role:",
            "arn:aws:sts::1:assumed-role:",
        ),
        ("x:", "x:"),
        ("assumed-role/a/b", "assumed-role/a/b"),
    ] {
        assert_eq!(principal_identity(principal), identity, "{principal}");
    }
}

/// A key with a principal of its own: both baselines see the new network,
/// the user gets one finding (the key's).
#[test]
fn one_event_raises_one_finding_per_detector() {
    let mut rng = Rng(31);
    let mut events = office_key("AKIAPAIR", 30, 40.0, &["203.0.113.10"], &mut rng);
    for e in &mut events {
        e.principal = Some("arn:aws:iam::1:user/pair".into());
    }
    let mut e = ev(T0 + 30 * DAY + 10 * HOUR, "AKIAPAIR", "185.220.101.7");
    e.principal = Some("arn:aws:iam::1:user/pair".into());
    e.ua = "python-requests/2.31.0";
    events.push(e);
    let engine = Engine::new(&Config::default());
    let mut out = Vec::new();
    events.sort_by_key(|e| e.t);
    for e in &events {
        engine.process(&e.audit(), &mut out);
    }
    let found = of(&out, Detector::NewSource);
    assert_eq!(found.len(), 1, "{out:#?}");
    assert_eq!(found[0].entity, Entity::KeyId);
    let agents = of(&out, Detector::NewUserAgent);
    assert_eq!(agents.len(), 1, "{out:#?}");
    assert!(engine.stats().suppressed_duplicate.load(Ordering::Relaxed) >= 2);
}

/// Background traffic so keywatch has watched for longer than a learning
/// period: other identities on the office network.
fn org_background(days: i64) -> Vec<Ev> {
    let mut rng = Rng(77);
    let mut events = office_key("AKIAOTHER", days, 10.0, &["198.51.100.20"], &mut rng);
    for e in &mut events {
        e.principal = Some("arn:aws:iam::1:user/other".into());
    }
    events
}

fn iam(t: i64, key: &str, principal: &str, source: &str, action: &str) -> Ev {
    let mut e = ev(t, key, source);
    e.principal = Some(principal.into());
    e.action = format!("iam:{action}");
    e
}

/// A user created by an attacker and used at once: no history, so no
/// learning to wait for. High from a network nobody in the organisation
/// uses, medium from a known one; one finding per identity per cooldown.
#[test]
fn a_new_identity_minting_credentials_alerts_from_its_first_event() {
    let mut events = org_background(20);
    let t = T0 + 19 * DAY + 3 * HOUR;
    let p = "arn:aws:iam::1:user/backdoor";
    events.push(iam(t, "AKIANEWUSER", p, "185.220.101.7", "CreateAccessKey"));
    events.push(iam(
        t + 5,
        "AKIANEWUSER",
        p,
        "185.220.101.7",
        "AttachUserPolicy",
    ));
    let p2 = "arn:aws:iam::1:user/newhire";
    events.push(iam(
        t + 60,
        "AKIANEWHIRE",
        p2,
        "198.51.100.20",
        "CreateAccessKey",
    ));
    let findings = run(events);
    let found = of(&findings, Detector::NewIdentitySensitiveAction);
    assert_eq!(found.len(), 2, "{findings:#?}");
    let backdoor = found.iter().find(|f| f.key_id == "AKIANEWUSER").unwrap();
    assert_eq!(backdoor.severity, Severity::High);
    assert_eq!(backdoor.observed_at_ms(), t * 1000, "the very first event");
    assert_eq!(
        backdoor.entity,
        Entity::KeyId,
        "one finding, not key + principal"
    );
    assert_eq!(
        backdoor.evidence.observed["network_seen_in_organisation"],
        false
    );
    let newhire = found.iter().find(|f| f.key_id == "AKIANEWHIRE").unwrap();
    assert_eq!(newhire.severity, Severity::Medium);
}

/// In keywatch's own first learning period every identity is new to it;
/// none of them is new to the organisation.
#[test]
fn identities_seen_in_keywatchs_first_week_are_not_new() {
    let mut events = org_background(20);
    let p = "arn:aws:iam::1:user/admin";
    events.push(iam(
        T0 + 2 * DAY,
        "AKIAADMIN",
        p,
        "185.220.101.7",
        "CreateAccessKey",
    ));
    assert!(of(&run(events), Detector::NewIdentitySensitiveAction).is_empty());
}

/// A new key of a principal with a month of history, minting credentials
/// from a Tor exit: the principal's baseline judges it at once.
#[test]
fn a_new_key_of_a_known_principal_is_judged_by_the_principal() {
    let mut rng = Rng(5);
    let p = "arn:aws:iam::1:user/ops";
    let mut events = office_key("AKIAOPSOLD", 30, 20.0, &["203.0.113.10"], &mut rng);
    for e in &mut events {
        e.principal = Some(p.into());
    }
    let t = T0 + 30 * DAY + 9 * HOUR;
    events.push(iam(t, "AKIAOPSNEW", p, "185.220.101.7", "CreateAccessKey"));
    events.push(iam(
        t + 9,
        "AKIAOPSNEW",
        p,
        "185.220.101.7",
        "AttachUserPolicy",
    ));
    let findings = run(events);
    let by = |d| {
        of(&findings, d)
            .into_iter()
            .filter(|f| f.key_id == "AKIAOPSNEW")
            .collect::<Vec<_>>()
    };
    let source = by(Detector::NewSource);
    assert_eq!(source.len(), 1, "{findings:#?}");
    assert_eq!(source[0].entity, Entity::Principal);
    assert_eq!(source[0].observed_at_ms(), t * 1000);
    let action = by(Detector::NewAction);
    assert!(!action.is_empty(), "{findings:#?}");
    assert_eq!(action[0].severity, Severity::High);
    assert!(
        by(Detector::NewIdentitySensitiveAction).is_empty(),
        "the principal has a history: it is judged by it"
    );
}

/// A usage record of zero uses is valid and teaches nothing.
#[test]
fn a_zero_count_record_is_no_use() {
    let engine = Engine::new(&Config::default());
    let mut out = Vec::new();
    let zero = ev(T0, "AKIAZERO", "203.0.113.1");
    let mut e = zero.audit();
    e.count = 0;
    engine.process(&e, &mut out);
    assert_eq!(engine.key_count(Entity::KeyId), 0);
    assert_eq!(engine.stats().events.load(Ordering::Relaxed), 1);
    assert!(out.is_empty());
}

/// A key used every day for a month, then silent for 20 days: short of
/// `dormant_after`, far out of its own rhythm. A week off (a holiday) and a
/// weekend are not.
#[test]
fn a_daily_key_gone_quiet_is_out_of_its_rhythm() {
    let daily = |key: &str, days: i64| -> Vec<Ev> {
        (0..days)
            .flat_map(|d| (0..6).map(move |i| T0 + d * DAY + 9 * HOUR + i * 1200))
            .map(|t| ev(t, key, "203.0.113.10"))
            .collect()
    };
    let mut events = daily("AKIADAILY", 30);
    events.push(ev(T0 + 50 * DAY + 10 * HOUR, "AKIADAILY", "203.0.113.10"));
    let mut week_off = daily("AKIAHOLIDAY", 30);
    week_off.push(ev(T0 + 36 * DAY + 10 * HOUR, "AKIAHOLIDAY", "203.0.113.10"));
    events.extend(week_off);
    let findings = run(events);
    let found = of(&findings, Detector::DormantRevival);
    assert_eq!(found.len(), 1, "{findings:#?}");
    let f = found[0];
    assert_eq!(f.key_id, "AKIADAILY");
    assert_eq!(f.severity, Severity::Low);
    assert_eq!(f.evidence.observed["rule"], "rhythm");
    assert_eq!(f.evidence.threshold["dormant_after_s"], 30 * DAY);
    assert!(f.evidence.threshold["rhythm_s"].as_u64().unwrap() <= 8 * DAY as u64);
    assert!(f.summary.contains("longest gap"), "{}", f.summary);
}

/// Office hours with weekends off, then a fortnight's holiday: the rhythm
/// is six times the longest gap (a weekend), the holiday is inside it.
#[test]
fn an_office_key_back_from_a_holiday_fortnight_is_not_dormant() {
    let mut rng = Rng(8);
    let mut events = office_key("AKIAOFFICE", 40, 0.0, &["203.0.113.10"], &mut rng);
    // Weekdays only, a few calls each; weekends silent.
    for d in 0..40 {
        if d % 7 < 5 {
            events.push(ev(T0 + d * DAY + 10 * HOUR, "AKIAOFFICE", "203.0.113.10"));
        }
    }
    // Two weeks off after a Friday (day 39 is a Friday): back on day 53.
    events.push(ev(T0 + 53 * DAY + 10 * HOUR, "AKIAOFFICE", "203.0.113.10"));
    let findings = run(events);
    assert!(
        of(&findings, Detector::DormantRevival).is_empty(),
        "{findings:#?}"
    );
}

/// State written under larger caps (an older configuration, or a damaged
/// checkpoint) is cut to today's caps as it is restored, keeping what the
/// key used most recently: every later event pays only for what the
/// configuration says a key keeps.
#[test]
fn restored_tables_past_the_caps_keep_the_most_recently_used() {
    let mut wide = Config::default();
    wide.engine.max_sources_per_key = 200;
    wide.engine.max_values_per_key = 200;
    let before = Engine::new(&wide);
    let mut out = Vec::new();
    for i in 0..150i64 {
        let mut e = ev(
            T0 + i * 60,
            "AKIAWIDE",
            format!("198.51.{}.{}", i / 100, i % 100),
        );
        e.action = format!("Action{i}");
        before.process(&e.audit(), &mut out);
    }
    let snapshot = before.snapshot(Entity::KeyId);
    assert_eq!(snapshot[0].1.sources.entries().len(), 150);

    let engine = Engine::new(&Config::default());
    engine.restore(Entity::KeyId, snapshot);
    let (sources, actions, agents, newest, oldest) = engine
        .with_key(Entity::KeyId, "AKIAWIDE", |s: &KeyState| {
            let fresh = |kind| s.values.fresh_len(kind, s.last_seen, u32::MAX);
            let has = |ip: &str| {
                let id = super::source::SourceId::of(&Source::parse(Cow::Borrowed(ip)).unwrap());
                s.sources.entries().iter().any(|e| e.id == id)
            };
            (
                s.sources.entries().len(),
                fresh(ValueKind::Action),
                fresh(ValueKind::UserAgent),
                has("198.51.1.49"),
                has("198.51.0.0"),
            )
        })
        .unwrap();
    assert_eq!((sources, actions, agents), (64, 64, 1));
    assert!(newest && !oldest, "the most recent sources stay");
}

/// `explain` says which detectors are off: a switched-off detector reads
/// "disabled", never "armed", whatever the key has learned.
#[test]
fn explain_names_switched_off_detectors() {
    let mut rng = Rng(9);
    let mut events = office_key("AKIAEXPLAIN", 30, 60.0, &["203.0.113.10"], &mut rng);
    events.sort_by_key(|e| e.t);
    let explained = |cfg: &Config| {
        let engine = Engine::new(cfg);
        let mut out = Vec::new();
        for e in &events {
            engine.process(&e.audit(), &mut out);
        }
        engine.explain(Entity::KeyId, "AKIAEXPLAIN").unwrap()["detectors"].clone()
    };
    let on = explained(&Config::default());
    for d in ["new_action", "rate_spike", "source_fanout"] {
        assert!(
            on[d].as_str().is_some_and(|t| t.starts_with("armed")),
            "{d}: {on}"
        );
    }
    let mut cfg = Config::default();
    cfg.detectors.new_action.enabled = false;
    cfg.detectors.rate_spike.enabled = false;
    cfg.detectors.source_fanout.enabled = false;
    let off = explained(&cfg);
    for d in ["new_action", "rate_spike", "source_fanout"] {
        assert_eq!(off[d], "disabled", "{d}: {off}");
    }
    assert!(
        off["new_user_agent"]
            .as_str()
            .is_some_and(|t| t.starts_with("armed")),
        "{off}"
    );
}
