use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use chrono::{DateTime, Datelike};

use super::catalog::{ESCALATION, REGIONS};
use super::net::{ATTACKER_NETWORKS, FANOUT_OCTETS, PUBLIC_OCTETS};
use super::traffic::{is_local_weekend, local_minute, weekday, ErrorKind, DAY_MS, MINUTE_MS};
use super::*;
use crate::decode::{Decoder, Outcome, Source};

/// 2026-03-01T00:00:00Z, a Sunday.
const START: i64 = 1_772_323_200_000;

fn config(keys: usize, days: u32, volume: f64, attacks: bool) -> GenConfig {
    GenConfig {
        seed: 7,
        keys,
        start_ms: START,
        days,
        attacks,
        format: Format::Generic,
        volume,
        attack_set: AttackSet::Full,
    }
}

/// One full-length scenario shared by the behaviour tests: every archetype
/// once or more, every attack, 50 days at 0.3 volume.
struct Fixture {
    scenario: Scenario,
    calls: Vec<Call>,
    by_key: Vec<Vec<Call>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let scenario = Scenario::new(config(16, 50, 0.3, true));
        let calls: Vec<Call> = scenario.calls().collect();
        let mut by_key = vec![Vec::new(); scenario.keys.len()];
        for c in &calls {
            by_key[c.key as usize].push(c.clone());
        }
        Fixture {
            scenario,
            calls,
            by_key,
        }
    })
}

impl Fixture {
    /// Calls of every key of an archetype (normal keys only), per key.
    fn archetype(&self, archetype: Archetype) -> Vec<(&key::Key, &[Call])> {
        let keys = &self.scenario.keys[..self.scenario.normal];
        let found: Vec<_> = keys
            .iter()
            .zip(&self.by_key)
            .filter(|(k, _)| k.archetype == archetype)
            .map(|(k, c)| (k, c.as_slice()))
            .collect();
        assert!(!found.is_empty(), "no {archetype:?} key");
        found
    }

    /// The attacked key's calls, split at the attack: before, during, after.
    fn attack(&self, kind: AttackKind) -> (&Attack, [Vec<&Call>; 3]) {
        let s = &self.scenario;
        let attack = s
            .attacks()
            .iter()
            .find(|a| a.kind == kind)
            .expect("injected");
        let index = s.attack_key(attack).expect("attack key exists");
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for c in &self.by_key[index] {
            let part = if c.time_ms < attack.start_ms {
                0
            } else if c.time_ms <= attack.end_ms {
                1
            } else {
                2
            };
            parts[part].push(c);
        }
        (attack, parts)
    }
}

fn net24(ip: Ipv4Addr) -> [u8; 3] {
    let [a, b, c, _] = ip.octets();
    [a, b, c]
}

fn net16(ip: Ipv4Addr) -> [u8; 2] {
    let [a, b, _, _] = ip.octets();
    [a, b]
}

fn day_of(t: i64) -> i64 {
    (t - START).div_euclid(DAY_MS)
}

/// Most calls in any window of `width` ms.
fn busiest(calls: &[&Call], width: i64) -> usize {
    let mut times: Vec<i64> = calls.iter().map(|c| c.time_ms).collect();
    times.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn count_by_day(calls: &[Call]) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for c in calls {
        *out.entry(day_of(c.time_ms)).or_insert(0) += 1;
    }
    out
}

#[test]
fn same_seed_same_events_in_both_formats() {
    for format in [Format::Generic, Format::CloudTrail] {
        let cfg = GenConfig {
            format,
            ..config(16, 3, 0.2, true)
        };
        let a: Vec<GenEvent> = Scenario::new(cfg.clone()).events().collect();
        let b: Vec<GenEvent> = Scenario::new(cfg.clone()).events().collect();
        assert!(a.len() > 1_000, "{} events", a.len());
        assert_eq!(a, b);
        let other: Vec<GenEvent> = Scenario::new(GenConfig { seed: 8, ..cfg })
            .events()
            .collect();
        assert_ne!(a, other);
    }
}

#[test]
fn attacks_leave_normal_keys_untouched() {
    let without: Vec<GenEvent> = Scenario::new(config(16, 4, 0.2, false)).events().collect();
    let with = Scenario::new(config(16, 4, 0.2, true));
    let normal: HashSet<String> = with.normal_keys().into_iter().collect();
    let filtered: Vec<GenEvent> = with
        .events()
        .filter(|e| normal.contains(&e.key_id))
        .collect();
    assert_eq!(without, filtered);
    assert!(with.events().any(|e| !normal.contains(&e.key_id)));
}

#[test]
fn events_are_in_time_order_inside_the_scenario() {
    let f = fixture();
    assert!(f.calls.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    let end = START + 50 * DAY_MS;
    assert!(f.calls.iter().all(|c| (START..end).contains(&c.time_ms)));
    let events: Vec<GenEvent> = Scenario::new(config(40, 3, 0.3, true)).events().collect();
    assert!(events.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
}

#[test]
fn episodes_crossing_midnight_are_kept_exactly_once() {
    let s = Scenario::new(config(160, 4, 0.2, false));
    let scenario_window = s.span.start_ms..s.span.end_ms();
    let mut generated = vec![Vec::new(); s.keys.len()];
    for c in s.calls() {
        generated[c.key as usize].push(c);
    }
    let mut spilled = 0;
    for (index, key) in (0u32..).zip(&s.keys) {
        let mut expected = Vec::new();
        for day in 0..4 {
            s.steady(index, key, day, &mut expected);
            let mut episodes = Vec::new();
            s.episodes(index, key, day, &mut episodes);
            let own_day = s.span.day_start(day)..s.span.day_start(day + 1);
            spilled += episodes
                .iter()
                .filter(|c| !own_day.contains(&c.time_ms))
                .count();
            expected.extend(
                episodes
                    .into_iter()
                    .filter(|c| scenario_window.contains(&c.time_ms)),
            );
        }
        let actual = &mut generated[index as usize];
        let order = |c: &Call| (c.time_ms, c.nonce);
        expected.sort_by_key(order);
        actual.sort_by_key(order);
        assert_eq!(*actual, expected, "key {index} ({:?})", key.archetype);
    }
    // Far-from-UTC batch jobs and late evenings do cross midnight.
    assert!(spilled > 100, "{spilled} calls past their day");
}

#[test]
fn every_archetype_is_present_and_used() {
    let f = fixture();
    let present: HashSet<Archetype> = f.scenario.keys[..f.scenario.normal]
        .iter()
        .map(|k| k.archetype)
        .collect();
    assert_eq!(present, Archetype::ALL.into_iter().collect());
    let brand_new = f
        .scenario
        .attacks()
        .iter()
        .find(|a| a.kind == AttackKind::NewIdentity)
        .and_then(|a| f.scenario.attack_key(a));
    for (index, calls) in f.by_key.iter().enumerate() {
        let key = &f.scenario.keys[index];
        if Some(index) == brand_new {
            // An identity with no history: its attack is all it ever did.
            assert!(calls.len() >= 4);
            continue;
        }
        assert!(
            calls.len() >= 10,
            "{:?} has {} calls",
            key.archetype,
            calls.len()
        );
    }
    // Lookup by key id, and the first ten keys already cover everything.
    let small = Scenario::new(config(10, 1, 0.1, false));
    let kinds: HashSet<_> = small
        .normal_keys()
        .iter()
        .map(|k| small.archetype(k).unwrap())
        .collect();
    assert_eq!(kinds.len(), Archetype::ALL.len());
    assert_eq!(small.archetype("AKIANOTAKEY"), None);
}

#[test]
fn key_ids_and_principals_look_like_aws() {
    let s = &fixture().scenario;
    let mut ids = HashSet::new();
    for k in &s.keys {
        let id = &k.identity.key_id;
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert!(ids.insert(id.clone()), "duplicate {id}");
        let arn = &k.identity.arn;
        assert!(
            arn.starts_with("arn:aws:iam::") && arn.contains(":user/"),
            "{arn}"
        );
        assert_eq!(k.identity.account_id.len(), 12);
    }
    let names: HashSet<_> = s.keys.iter().map(|k| &k.identity.user_name).collect();
    assert_eq!(names.len(), s.keys.len(), "user names are unique");
}

#[test]
fn attack_truth_is_ordered_and_after_weeks_of_learning() {
    let s = &fixture().scenario;
    let kinds: Vec<AttackKind> = s.attacks().iter().map(|a| a.kind).collect();
    assert_eq!(kinds, AttackKind::ALL);
    let normal: HashSet<String> = s.normal_keys().into_iter().collect();
    assert_eq!(normal.len(), 16);
    for a in s.attacks() {
        assert!(!normal.contains(&a.key_id));
        assert_eq!(a.detector, a.kind.detector());
        assert!(day_of(a.start_ms) >= 35, "{a:?}");
        assert!(a.start_ms <= a.end_ms && a.end_ms < START + 50 * DAY_MS);
        assert!(!a.description.is_empty());
    }
    let truth = serde_json::to_value(s.attacks()).unwrap();
    assert_eq!(truth[0]["kind"], "stolen_key_new_network");
    assert_eq!(truth[0]["detector"], "new_source");
    assert!(truth[2]["start_ms"].is_i64());

    // Shorter scenarios: no dormant revival below 50 days, attacks in the
    // last quarter.
    let short = Scenario::new(GenConfig {
        attack_set: AttackSet::Classic,
        ..config(0, 20, 0.3, true)
    });
    let kinds: Vec<AttackKind> = short.attacks().iter().map(|a| a.kind).collect();
    assert!(!kinds.contains(&AttackKind::DormantRevival));
    assert_eq!(kinds.len(), 5);
    let short = Scenario::new(config(0, 20, 0.3, true));
    let kinds: Vec<AttackKind> = short.attacks().iter().map(|a| a.kind).collect();
    for long_only in [
        AttackKind::DormantRevival,
        AttackKind::RoamedThenStolen,
        AttackKind::QuietDaily,
    ] {
        assert!(!kinds.contains(&long_only));
    }
    assert_eq!(kinds.len(), AttackKind::ALL.len() - 3);
    assert!(short.attacks().iter().all(|a| day_of(a.start_ms) >= 15));
    assert!(Scenario::new(config(0, 20, 0.3, false))
        .attacks()
        .is_empty());
}

#[test]
fn attack_calls_are_inside_their_window_and_generated() {
    let f = fixture();
    let s = &f.scenario;
    for a in s.attacks() {
        let index = s.attack_key(a).unwrap() as u32;
        let planned: Vec<&Call> = s.attack_calls.iter().filter(|c| c.key == index).collect();
        assert!(!planned.is_empty());
        assert!(planned
            .iter()
            .all(|c| (a.start_ms..=a.end_ms).contains(&c.time_ms)));
        assert_eq!(planned.first().unwrap().time_ms, a.start_ms);
        assert_eq!(planned.last().unwrap().time_ms, a.end_ms);
        let emitted = f.by_key[index as usize]
            .iter()
            .filter(|c| planned.contains(c))
            .count();
        assert_eq!(emitted, planned.len(), "{:?} calls all emitted", a.kind);
    }
}

#[test]
fn stolen_key_comes_from_a_never_seen_network() {
    let (a, [before, during, after]) = fixture().attack(AttackKind::StolenKeyNewNetwork);
    let usual: HashSet<[u8; 3]> = before.iter().map(|c| net24(c.source)).collect();
    assert_eq!(usual.len(), 1, "weeks of use from one /24");
    assert!(before.len() >= 200);
    let usual16: HashSet<[u8; 2]> = before.iter().map(|c| net16(c.source)).collect();
    let foreign: Vec<&&Call> = during
        .iter()
        .chain(&after)
        .filter(|c| !usual16.contains(&net16(c.source)))
        .collect();
    assert!((20..=60).contains(&foreign.len()), "{}", foreign.len());
    assert!(foreign
        .iter()
        .all(|c| (a.start_ms..=a.end_ms).contains(&c.time_ms)));
    assert!(a.end_ms - a.start_ms <= 60 * MINUTE_MS);
    let recon: HashSet<&str> = foreign.iter().map(|c| c.action.name).collect();
    assert!(recon.contains("sts:GetCallerIdentity"));
    assert!(recon.iter().any(|n| n.starts_with("iam:")));
    assert!(ATTACKER_NETWORKS.contains(&net24(foreign[0].source)));
}

#[test]
fn burst_is_twenty_times_the_normal_peak() {
    let (a, [before, during, _]) = fixture().attack(AttackKind::Burst);
    assert!(a.end_ms - a.start_ms < 15 * MINUTE_MS);
    let normal_peak = busiest(&before, 15 * MINUTE_MS);
    // Noise makes the busiest normal window exceed the mean peak; still far above.
    assert!(
        during.len() >= 8 * normal_peak,
        "{} in the burst vs {normal_peak} at the busiest normal 15 minutes",
        during.len()
    );
    let usual: HashSet<Ipv4Addr> = before.iter().map(|c| c.source).collect();
    assert!(during.iter().all(|c| usual.contains(&c.source)));
}

#[test]
fn dormant_key_sleeps_forty_five_days() {
    let (a, [before, during, after]) = fixture().attack(AttackKind::DormantRevival);
    let last_use = before
        .iter()
        .map(|c| c.time_ms)
        .max()
        .expect("used early on");
    assert!(day_of(last_use) < 5);
    assert!(
        before
            .iter()
            .map(|c| day_of(c.time_ms))
            .collect::<HashSet<_>>()
            .len()
            >= 3
    );
    assert!(a.start_ms - last_use >= 45 * DAY_MS);
    assert!((3..=8).contains(&during.len()));
    assert!(after.is_empty());
}

#[test]
fn error_storm_is_hundreds_of_denials_in_ten_minutes() {
    let (a, [before, during, _]) = fixture().attack(AttackKind::ErrorStorm);
    assert!(a.end_ms - a.start_ms <= 10 * MINUTE_MS);
    let denied = during
        .iter()
        .filter(|c| c.error == Some(ErrorKind::AccessDenied))
        .count();
    assert!((200..=500).contains(&denied), "{denied}");
    let failures: Vec<&Call> = before
        .iter()
        .copied()
        .filter(|c| c.error.is_some())
        .collect();
    assert!(busiest(&failures, 10 * MINUTE_MS) <= 5);
    let usual: HashSet<Ipv4Addr> = before.iter().map(|c| c.source).collect();
    assert!(during.iter().all(|c| usual.contains(&c.source)));
}

#[test]
fn fanout_spreads_over_fifty_networks_in_ten_minutes() {
    let (a, [before, during, _]) = fixture().attack(AttackKind::Fanout);
    assert!(a.end_ms - a.start_ms <= 10 * MINUTE_MS);
    let hosts: HashSet<Ipv4Addr> = during.iter().map(|c| c.source).collect();
    let nets: HashSet<[u8; 2]> = during.iter().map(|c| net16(c.source)).collect();
    assert!(hosts.len() >= 50 && nets.len() >= 50);
    let usual: HashSet<Ipv4Addr> = before.iter().map(|c| c.source).collect();
    assert!(usual.len() <= 2);
}

#[test]
fn scope_creep_calls_iam_for_the_first_time() {
    let (a, [before, during, after]) = fixture().attack(AttackKind::ScopeCreep);
    let usual: HashSet<&str> = before.iter().map(|c| c.action.name).collect();
    assert!(usual.len() <= 4);
    assert!(usual.iter().all(|n| !n.starts_with("iam:")));
    let escalation: Vec<&&Call> = during
        .iter()
        .filter(|c| ESCALATION.contains(&c.action))
        .collect();
    assert!((3..=6).contains(&escalation.len()));
    assert!(after.iter().all(|c| !c.action.name.starts_with("iam:")));
    assert!(a.end_ms - a.start_ms < 10 * MINUTE_MS);
    let sources: HashSet<Ipv4Addr> = before.iter().map(|c| c.source).collect();
    assert!(escalation.iter().all(|c| sources.contains(&c.source)));
}

#[test]
fn normal_keys_never_look_like_an_attack_tool() {
    let f = fixture();
    for calls in &f.by_key[..f.scenario.normal] {
        for c in calls {
            assert!(!ATTACKER_NETWORKS.contains(&net24(c.source)), "{c:?}");
            assert!(!FANOUT_OCTETS.contains(&c.source.octets()[0]), "{c:?}");
            assert!(!ESCALATION.contains(&c.action), "{c:?}");
        }
    }
    // The address pools are disjoint by construction.
    assert!(PUBLIC_OCTETS.iter().all(|o| !FANOUT_OCTETS.contains(o)));
    assert!(ATTACKER_NETWORKS
        .iter()
        .all(|n| !PUBLIC_OCTETS.contains(&n[0]) && !FANOUT_OCTETS.contains(&n[0])));
}

#[test]
fn ci_bursts_run_at_fixed_times_from_churning_runners() {
    for (_, calls) in fixture().archetype(Archetype::CiDeploy) {
        // Split into bursts at gaps of more than ten minutes; keep real runs.
        let mut bursts: Vec<Vec<&Call>> = Vec::new();
        for c in calls {
            match bursts.last_mut() {
                Some(b) if c.time_ms - b.last().unwrap().time_ms <= 10 * MINUTE_MS => b.push(c),
                _ => bursts.push(vec![c]),
            }
        }
        bursts.retain(|b| b.len() >= 5);
        // Every run starts within a few minutes of its slot, every day.
        let mut slots: Vec<f64> = Vec::new();
        for b in &bursts {
            let minute = local_minute(b[0].time_ms, 0);
            match slots.iter().find(|s| (minute - **s).abs() <= 5.0) {
                Some(_) => {}
                None => slots.push(minute),
            }
        }
        assert!((2..=3).contains(&slots.len()), "slots {slots:?}");
        assert_eq!(bursts.len(), 50 * slots.len(), "one run per slot per day");
        let mut runners = HashSet::new();
        let mut nets = HashSet::new();
        for b in &bursts {
            let length = b.last().unwrap().time_ms - b[0].time_ms;
            assert!(length <= 7 * MINUTE_MS, "{length}");
            // One runner per run (a health check may land next to it).
            let mut sources: HashMap<Ipv4Addr, usize> = HashMap::new();
            for c in b {
                *sources.entry(c.source).or_insert(0) += 1;
            }
            let (runner, n) = sources.iter().max_by_key(|(_, n)| **n).unwrap();
            assert!(*n + 2 >= b.len(), "one runner per run: {sources:?}");
            runners.insert(*runner);
            nets.extend(sources.keys().map(|s| net24(*s)));
        }
        assert_eq!(nets.len(), 1, "runners stay in one /24");
        assert!(
            runners.len() >= bursts.len() / 2,
            "a fresh runner most runs"
        );
        let big = bursts.iter().filter(|b| b.len() >= 45).count();
        assert!(big >= bursts.len() * 3 / 4);
    }
}

#[test]
fn dhcp_sources_churn_inside_one_24() {
    for (_, calls) in fixture().archetype(Archetype::DhcpChurn) {
        let nets: HashSet<[u8; 3]> = calls.iter().map(|c| net24(c.source)).collect();
        assert_eq!(nets.len(), 1);
        let addresses: HashSet<Ipv4Addr> = calls.iter().map(|c| c.source).collect();
        assert!(addresses.len() >= 20, "{} leases", addresses.len());
        let mut by_day: BTreeMap<i64, HashSet<Ipv4Addr>> = BTreeMap::new();
        for c in calls {
            by_day
                .entry(day_of(c.time_ms))
                .or_default()
                .insert(c.source);
        }
        assert_eq!(by_day.len(), 50, "used every day");
        let firsts: Vec<Ipv4Addr> = calls
            .iter()
            .fold(BTreeMap::new(), |mut m, c| {
                m.entry(day_of(c.time_ms)).or_insert(c.source);
                m
            })
            .into_values()
            .collect();
        let changed = firsts.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changed >= 20, "address changed on {changed} of 49 days");
    }
}

#[test]
fn office_hours_follow_the_clock_and_the_week() {
    for (key, calls) in fixture().archetype(Archetype::OfficeHours) {
        let offset = REGIONS[usize::from(key.habits.region)].utc_offset_min;
        let night = calls
            .iter()
            .filter(|c| local_minute(c.time_ms, offset) < 6.0 * 60.0)
            .count();
        assert!(
            night * 50 < calls.len(),
            "{night} of {} at night",
            calls.len()
        );
        let (mut weekend, mut weekday) = (0, 0);
        for c in calls {
            if is_local_weekend(c.time_ms, offset) {
                weekend += 1;
            } else {
                weekday += 1;
            }
        }
        // 14 or 15 weekend days in 50, 35 or 36 weekdays.
        let ratio = (weekend as f64 / 14.5) / (weekday as f64 / 35.5);
        assert!((0.1..0.35).contains(&ratio), "weekend ratio {ratio}");
        let hosts: HashSet<Ipv4Addr> = calls.iter().map(|c| c.source).collect();
        let nets: HashSet<[u8; 3]> = hosts.iter().map(|h| net24(*h)).collect();
        assert!(hosts.len() <= 3 && nets.len() == 1);
        let actions: HashSet<&str> = calls.iter().map(|c| c.action.name).collect();
        assert!((3..=8).contains(&actions.len()));
        let errors = calls.iter().filter(|c| c.error.is_some()).count();
        assert!(errors * 50 < calls.len(), "{errors} errors");
    }
}

#[test]
fn multi_region_keys_use_five_networks_every_day() {
    for (_, calls) in fixture().archetype(Archetype::MultiRegion) {
        let mut net_of_region: HashMap<u8, HashSet<[u8; 2]>> = HashMap::new();
        let mut regions_by_day: BTreeMap<i64, HashSet<u8>> = BTreeMap::new();
        for c in calls {
            net_of_region
                .entry(c.region)
                .or_default()
                .insert(net16(c.source));
            regions_by_day
                .entry(day_of(c.time_ms))
                .or_default()
                .insert(c.region);
        }
        assert_eq!(net_of_region.len(), 5);
        assert!(
            net_of_region.values().all(|n| n.len() == 1),
            "one /16 per region"
        );
        let nets: HashSet<_> = net_of_region.values().flatten().collect();
        assert_eq!(nets.len(), 5);
        assert_eq!(regions_by_day.len(), 50);
        assert!(regions_by_day.values().all(|r| r.len() == 5));
    }
}

#[test]
fn growth_compounds_over_the_scenario() {
    for (_, calls) in fixture().archetype(Archetype::Growth) {
        let per_day = count_by_day(calls);
        let first: usize = per_day.range(0..7).map(|(_, n)| n).sum();
        let last: usize = per_day.range(43..50).map(|(_, n)| n).sum();
        let ratio = last as f64 / first as f64;
        assert!((2.0..3.4).contains(&ratio), "growth {ratio}");
        let hosts: HashSet<Ipv4Addr> = calls.iter().map(|c| c.source).collect();
        let early: HashSet<Ipv4Addr> = calls
            .iter()
            .filter(|c| day_of(c.time_ms) < 7)
            .map(|c| c.source)
            .collect();
        assert!(hosts.len() > early.len(), "the fleet grows");
        assert_eq!(
            hosts
                .iter()
                .map(|h| net24(*h))
                .collect::<HashSet<_>>()
                .len(),
            1
        );
    }
}

#[test]
fn low_volume_keys_make_a_handful_of_calls() {
    for (_, calls) in fixture().archetype(Archetype::LowVolume) {
        let mean = calls.len() as f64 / 50.0;
        assert!((0.3..6.0).contains(&mean), "{mean} a day at volume 0.3");
        let hosts: HashSet<Ipv4Addr> = calls.iter().map(|c| c.source).collect();
        assert!(hosts.len() <= 2);
    }
}

#[test]
fn roaming_person_meets_new_networks_every_week_or_so() {
    for (_, calls) in fixture().archetype(Archetype::Roaming) {
        let mut first_seen: HashMap<[u8; 2], i64> = HashMap::new();
        for c in calls {
            first_seen
                .entry(net16(c.source))
                .or_insert(day_of(c.time_ms));
        }
        let late = first_seen.values().filter(|d| **d >= 14).count();
        assert!(late >= 3, "{late} networks first seen after two weeks");
        assert!(first_seen.len() <= 6 + 50 / 5);
    }
}

#[test]
fn nightly_batch_runs_at_three_and_bigger_on_sundays() {
    for (key, calls) in fixture().archetype(Archetype::NightlyBatch) {
        let region_offset = REGIONS[usize::from(key.habits.region)].utc_offset_min;
        let offset = [0, region_offset]
            .into_iter()
            .find(|o| {
                calls
                    .iter()
                    .all(|c| (180.0..270.0).contains(&local_minute(c.time_ms, *o)))
            })
            .expect("every call between 03:00 and 04:30 in the scheduler's timezone");
        let mut sunday = Vec::new();
        let mut other = Vec::new();
        let mut per_local_day: BTreeMap<i64, usize> = BTreeMap::new();
        for c in calls {
            *per_local_day
                .entry(day_of(c.time_ms + i64::from(offset) * MINUTE_MS))
                .or_insert(0) += 1;
        }
        for (day, n) in per_local_day {
            if weekday(START + day * DAY_MS) == 6 {
                sunday.push(n as f64);
            } else {
                other.push(n as f64);
            }
        }
        let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(avg(&sunday) > 2.0 * avg(&other));
        assert!(other.iter().all(|n| *n >= 100.0), "a large job every night");
    }
}

#[test]
fn monthly_keys_are_used_on_the_first_only() {
    for (_, calls) in fixture().archetype(Archetype::Monthly) {
        let days: BTreeSet<u32> = calls
            .iter()
            .map(|c| DateTime::from_timestamp_millis(c.time_ms).unwrap().day())
            .collect();
        assert_eq!(days, BTreeSet::from([1]));
        let by_day = count_by_day(calls);
        assert_eq!(by_day.keys().copied().collect::<Vec<_>>(), [0, 31]);
    }
}

#[test]
fn daily_peak_tops_out_at_ten() {
    for (key, calls) in fixture().archetype(Archetype::DailyPeak) {
        let offset = REGIONS[usize::from(key.habits.region)].utc_offset_min;
        let mut buckets: HashMap<(i64, i64), usize> = HashMap::new();
        for c in calls {
            let local = c.time_ms + i64::from(offset) * MINUTE_MS;
            *buckets
                .entry((day_of(local), local.rem_euclid(DAY_MS) / (5 * MINUTE_MS)))
                .or_insert(0) += 1;
        }
        let mut days_checked = 0;
        for day in 1..49 {
            let local_midnight = START + day * DAY_MS - i64::from(offset) * MINUTE_MS;
            if is_local_weekend(local_midnight + 12 * 60 * MINUTE_MS, offset) {
                continue;
            }
            let (top, n) = (0..288)
                .map(|b| (b, buckets.get(&(day, b)).copied().unwrap_or(0)))
                .max_by_key(|(_, n)| *n)
                .unwrap();
            let noon = buckets.get(&(day, 144)).copied().unwrap_or(0);
            assert!(
                (117..=123).contains(&top),
                "day {day}: busiest bucket {top}"
            );
            assert!(n >= 4 * noon.max(1), "peak {n} vs noon {noon}");
            days_checked += 1;
        }
        assert!(days_checked >= 30);
        let throttled = calls
            .iter()
            .filter(|c| c.error == Some(ErrorKind::Throttled))
            .collect::<Vec<_>>();
        let at_peak = throttled
            .iter()
            .filter(|c| (570.0..630.0).contains(&local_minute(c.time_ms, offset)))
            .count();
        assert!(
            at_peak * 2 > throttled.len(),
            "throttling comes with the peak"
        );
    }
}

#[test]
fn volume_scales_the_rates() {
    let count = |volume| Scenario::new(config(16, 3, volume, false)).calls().count() as f64;
    let ratio = count(0.4) / count(0.2);
    assert!((1.7..2.3).contains(&ratio), "{ratio}");
    assert_eq!(
        Scenario::new(config(16, 3, f64::NAN, false))
            .calls()
            .count(),
        0
    );
}

/// Decodes every line with the project's own profile and checks it says
/// what was generated.
fn round_trip(format: Format, profile: &str) -> Vec<serde_json::Value> {
    let scenario = Scenario::new(GenConfig {
        format,
        ..config(16, 2, 0.1, true)
    });
    let decoder = Decoder::for_profile(profile, &BTreeMap::new()).unwrap();
    let mut records = Vec::new();
    for (event, call) in scenario.events().zip(scenario.calls()) {
        assert!(!event.json.contains('\n'));
        let mut decoded = Vec::new();
        decoder
            .decode(event.json.as_bytes(), |r| decoded.push(r))
            .unwrap();
        let [Ok(e)] = decoded.as_slice() else {
            panic!("one event per line: {}", event.json);
        };
        assert_eq!(e.key_id, event.key_id.as_str());
        assert_eq!(e.source, Some(Source::Ip(IpAddr::V4(call.source))));
        assert_eq!(e.is_failure(), call.error.is_some());
        if let Outcome::Failure { code } = &e.outcome {
            // Okta's outcome names no code.
            assert!(format == Format::Okta || code.as_deref().is_some_and(|c| !c.is_empty()));
        }
        assert_eq!(e.principal.as_deref(), Some(identity_arn(&event.json)));
        match format {
            Format::Generic | Format::Azure | Format::Okta => {
                assert_eq!(e.time_ms, call.time_ms);
                assert_eq!(e.action.as_deref(), Some(call.action.name));
            }
            Format::Gcp => {
                assert_eq!(e.time_ms, call.time_ms);
                assert_eq!(e.action_display().as_deref(), Some(call.action.name));
            }
            Format::CloudTrail => {
                assert_eq!(e.time_ms, call.time_ms - call.time_ms.rem_euclid(1000));
                assert_eq!(e.action.as_deref(), Some(call.action.event_name()));
            }
        }
        assert_eq!(event.time_ms, call.time_ms);
        records.push(serde_json::from_str(&event.json).unwrap());
    }
    assert!(records.len() > 500);
    records
}

#[test]
fn generic_lines_carry_the_generic_fields() {
    for r in round_trip(Format::Generic, "generic") {
        let obj = r.as_object().unwrap();
        let failed = r["outcome"] == "failure";
        assert!(failed || r["outcome"] == "success");
        assert_eq!(obj.contains_key("error_code"), failed);
        for field in [
            "time",
            "key_id",
            "principal",
            "source",
            "user_agent",
            "action",
            "region",
        ] {
            assert!(
                obj[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {r}"
            );
        }
        let time = r["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-03-01T10:00:00.250Z".len(), "{time}");
        assert!(time.ends_with('Z'));
        assert!(r["action"].as_str().unwrap().contains(':'));
        assert!(REGIONS.iter().any(|x| x.name == r["region"]));
    }
}

#[test]
fn cloudtrail_records_look_like_cloudtrail() {
    let records = round_trip(Format::CloudTrail, "cloudtrail");
    let mut bytes = 0;
    for r in &records {
        let obj = r.as_object().unwrap();
        let size = r.to_string().len();
        bytes += size;
        // Denials carry a long errorMessage, as in real records.
        let limit = if obj.contains_key("errorMessage") {
            1600
        } else {
            1100
        };
        assert!((450..limit).contains(&size), "{size}: {r}");
        for field in [
            "eventVersion",
            "eventTime",
            "eventSource",
            "eventName",
            "awsRegion",
            "sourceIPAddress",
            "userAgent",
            "requestID",
            "eventID",
            "eventType",
            "recipientAccountId",
        ] {
            assert!(obj[field].is_string(), "{field}: {r}");
        }
        assert!(obj["responseElements"].is_null());
        assert!(obj.contains_key("requestParameters"));
        assert!(r["readOnly"].is_boolean() && r["managementEvent"].is_boolean());
        let who = &r["userIdentity"];
        assert_eq!(who["accountId"], r["recipientAccountId"]);
        if who["type"] == "AssumedRole" {
            // A role's STS session: its own key, the role and session in the ARN.
            assert!(who["accessKeyId"].as_str().unwrap().starts_with("ASIA"));
            assert!(who["arn"].as_str().unwrap().contains(":assumed-role/"));
            assert!(who["userName"].is_null());
            continue;
        }
        assert_eq!(who["type"], "IAMUser");
        assert!(who["accessKeyId"].as_str().unwrap().starts_with("AKIA"));
        assert!(who["principalId"].as_str().unwrap().starts_with("AIDA"));
        assert!(who["arn"]
            .as_str()
            .unwrap()
            .ends_with(who["userName"].as_str().unwrap()));
        assert_eq!(
            r["eventTime"].as_str().unwrap().len(),
            "2026-03-01T10:00:00Z".len()
        );
        assert!(r["eventSource"]
            .as_str()
            .unwrap()
            .ends_with(".amazonaws.com"));
        assert_eq!(
            obj.contains_key("errorCode"),
            obj.contains_key("errorMessage")
        );
        let id = r["eventID"].as_str().unwrap();
        assert_eq!(
            id.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        if r["eventSource"] == "iam.amazonaws.com" {
            assert_eq!(r["awsRegion"], "us-east-1");
        }
    }
    let mean = bytes / records.len();
    assert!((600..=900).contains(&mean), "mean record {mean} bytes");
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), records.len(), "event ids are unique");
}

#[test]
fn events_from_a_time_are_the_scenario_from_that_time() {
    let s = Scenario::new(GenConfig {
        keys: 16,
        days: 3,
        volume: 0.1,
        attacks: false,
        ..GenConfig::default()
    });
    let from = s.config().start_ms + 36 * 3_600_000;
    let all: Vec<GenEvent> = s.events().filter(|e| e.time_ms >= from).collect();
    assert!(!all.is_empty());
    assert_eq!(s.events_from(from).collect::<Vec<_>>(), all);
}

#[test]
fn retimed_attacks_move_with_their_truth() {
    let mut s = Scenario::new(GenConfig {
        attack_set: AttackSet::Classic,
        ..GenConfig::default()
    });
    let before: Vec<i64> = s.attacks().iter().map(|a| a.end_ms - a.start_ms).collect();
    let at = s.config().start_ms + 20 * 86_400_000;
    s.retime_attacks(at, 60_000, 10.0);
    for (i, a) in s.attacks().iter().enumerate() {
        assert_eq!(a.start_ms, at + i as i64 * 60_000, "{a:?}");
        assert!((a.end_ms - a.start_ms - before[i] / 10).abs() <= 1, "{a:?}");
    }
    let first = &s.attacks()[0];
    let seen: Vec<GenEvent> = s
        .events_from(at)
        .take_while(|e| e.time_ms <= first.end_ms)
        .filter(|e| e.key_id == first.key_id && e.time_ms >= first.start_ms)
        .collect();
    assert_eq!(seen.first().map(|e| e.time_ms), Some(at));
    assert_eq!(seen.last().map(|e| e.time_ms), Some(first.end_ms));
}

/// A finding as the twin comparison sees it: id, detector, severity, key,
/// principal and time.
type Replayed = (
    String,
    &'static str,
    &'static str,
    String,
    Option<String>,
    i64,
);

/// The findings of replaying `format`'s rendering of one fleet with its own
/// profile.
fn replayed(format: Format) -> Vec<Replayed> {
    use crate::config::Config;
    use crate::replay::{replay, Input};
    let scenario = Scenario::new(GenConfig {
        format,
        attack_set: AttackSet::Classic,
        ..config(10, 50, 0.05, true)
    });
    let mut bytes = Vec::new();
    for ev in scenario.events() {
        bytes.extend_from_slice(ev.json.as_bytes());
        bytes.push(b'\n');
    }
    let mut cfg = Config::default();
    cfg.decode.profile = format.profile().to_owned();
    let mut out = Vec::new();
    let summary = replay(&cfg, &[Input::bytes(format.profile(), bytes)], |f| {
        out.push((
            f.id.clone(),
            f.detector.as_str(),
            f.severity.as_str(),
            f.key_id.clone(),
            f.principal.clone(),
            f.observed_at_ms(),
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        summary.skipped.values().sum::<u64>(),
        0,
        "{format:?}: {:?}",
        summary.skipped
    );
    out
}

#[test]
fn every_format_replays_to_the_findings_of_its_generic_twin() {
    let generic = replayed(Format::Generic);
    let detectors: BTreeSet<&str> = generic.iter().map(|f| f.1).collect();
    // 38 findings of 7 detectors when this was written.
    assert!(generic.len() >= 20 && detectors.len() >= 5, "{generic:?}");
    let others = std::thread::scope(|s| {
        let runs: Vec<_> = [Format::Gcp, Format::Azure, Format::Okta]
            .map(|format| (format, s.spawn(move || replayed(format))))
            .into_iter()
            .collect();
        runs.into_iter()
            .map(|(format, run)| (format, run.join().unwrap()))
            .collect::<Vec<_>>()
    });
    for (format, findings) in others {
        assert_eq!(findings, generic, "{format:?}");
    }
}

/// The principal ARN written in a generated record, wherever its format keeps it.
fn identity_arn(json: &str) -> &str {
    let at = json.find("arn:aws:").expect("an ARN");
    let end = json[at..].find('"').unwrap();
    &json[at..at + end]
}

#[test]
fn provider_formats_are_shaped_as_the_provider_writes_them() {
    for format in [Format::Gcp, Format::Azure, Format::Okta] {
        round_trip(format, format.profile());
    }
    let scenario = |format| {
        Scenario::new(GenConfig {
            format,
            ..config(16, 2, 0.1, true)
        })
    };
    for format in [Format::Gcp, Format::Azure, Format::Okta] {
        let mut failures = 0;
        for (event, call) in scenario(format).events().zip(scenario(format).calls()) {
            let r: serde_json::Value = serde_json::from_str(&event.json).unwrap();
            let failed = call.error.is_some();
            failures += usize::from(failed);
            match format {
                Format::Gcp => {
                    let p = &r["protoPayload"];
                    assert_eq!(
                        p["@type"],
                        "type.googleapis.com/google.cloud.audit.AuditLog"
                    );
                    assert_eq!(
                        p["authenticationInfo"]["serviceAccountKeyName"],
                        event.key_id.as_str()
                    );
                    assert_eq!(p["status"]["code"].is_u64(), failed, "{r}");
                    assert!(r["logName"]
                        .as_str()
                        .unwrap()
                        .contains("cloudaudit.googleapis.com%2F"));
                }
                Format::Azure => {
                    assert_eq!(r["category"], "ServicePrincipalSignInLogs");
                    assert_eq!(
                        r["properties"]["servicePrincipalCredentialKeyId"],
                        event.key_id.as_str()
                    );
                    assert_eq!(r["resultType"] != "0", failed, "{r}");
                    assert_eq!(
                        r["time"].as_str().unwrap().len(),
                        "2026-02-09T08:14:03.4426391Z".len()
                    );
                }
                Format::Okta => {
                    assert_eq!(
                        r["transaction"]["detail"]["requestApiTokenId"],
                        event.key_id.as_str()
                    );
                    assert_eq!(r["outcome"]["result"] != "SUCCESS", failed, "{r}");
                    assert_eq!(r["client"]["ipAddress"], call.source.to_string());
                }
                _ => unreachable!(),
            }
        }
        assert!(failures > 0, "{format:?} has failures to render");
    }
}
