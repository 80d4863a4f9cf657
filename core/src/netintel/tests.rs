//! Network intelligence against the fixture files in `tests/data/netintel/`
//! (MaxMind DBs written by its `make_mmdb.py`, cloud ranges and lists in the
//! published formats), and the scenarios a user notices: cloud NAT churn
//! stays silent; another continent an hour later is impossible travel; a
//! workload credential on a residential ISP is found through its role; a Tor
//! exit is a listed source from the first use. Each quiet rule has an
//! attacker's test naming the evasion it leaves.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::NetIntelConfig;
use super::testing::*;
use super::*;
use crate::config::{Config, ListConfig};
use crate::engine::{Detector, Engine, Finding, Severity};
use crate::metrics::Metrics;

fn tables() -> Arc<Tables> {
    NetIntel::open(&fixture_config(), None)
        .unwrap()
        .snapshot()
        .clone()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn run(events: Vec<Ev>) -> Vec<Finding> {
    run_on(&engine(true), events)
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn lookup_reads_place_owner_cloud_and_lists() {
    let t = tables();
    let berlin = t.lookup(ip("81.0.3.4"));
    assert_eq!(berlin.country_str(), Some("DE"));
    assert_eq!(berlin.asn, 3320);
    assert!(berlin.located && berlin.accuracy_km == 20);
    assert!((berlin.lat - 52.52).abs() < 0.01 && (berlin.lon - 13.40).abs() < 0.01);
    let ec2 = t.lookup(ip("3.81.2.3"));
    assert_eq!(t.cloud_label(ec2.cloud), Some("aws:ec2:us-east-1"));
    assert!(!t.placed(&ec2), "a cloud range is not a person's place");
    assert_eq!(
        t.cloud_label(t.lookup(ip("34.81.0.1")).cloud),
        Some("gcp:google_cloud:asia-east1")
    );
    assert_eq!(
        t.cloud_label(t.lookup(ip("13.69.1.1")).cloud),
        Some("azure:azurecloud:westeurope")
    );
    assert_eq!(
        t.cloud_label(t.lookup(ip("2600:1f18::1")).cloud),
        Some("aws:ec2:us-east-1")
    );
    let tor = t.lookup(ip("185.220.101.8"));
    assert_ne!(t.alerting(tor.lists), 0);
    let vpn = t.lookup(ip("198.51.100.20"));
    assert_ne!(vpn.lists, 0);
    assert_eq!(
        t.alerting(vpn.lists),
        0,
        "a VPN list explains, it does not alert"
    );
    assert_eq!(t.lookup(ip("10.0.0.1")), NetInfo::default());
    let d = t.describe(ip("101.0.0.5"));
    assert_eq!(d["country"], "AU");
    assert_eq!(d["city"], "Sydney");
    assert_eq!(d["asn"], 1221);
    assert_eq!(d["org"], "Telstra Corporation Ltd");
    assert_eq!(d["accuracy_km"], 50);
    assert_eq!(d["class"], "isp");
    assert_eq!(t.describe(ip("45.0.1.1"))["class"], "hosting");
    assert_eq!(t.describe(ip("3.81.2.3"))["cloud"], "aws:ec2:us-east-1");
    assert_eq!(t.entries[2], ("cloud", 8));
}

#[test]
fn organisation_names_class_owners() {
    assert_eq!(class_of_org("DIGITALOCEAN-ASN"), OwnerClass::Hosting);
    assert_eq!(class_of_org("Mullvad VPN AB"), OwnerClass::Vpn);
    assert_eq!(
        class_of_org("Comcast Cable Communications, LLC"),
        OwnerClass::Isp
    );
    assert_eq!(class_of_org(""), OwnerClass::Unknown);
}

#[test]
fn great_circle_distances() {
    // Berlin - Sydney is about 16,000 km; Berlin - Munich about 500.
    let far = distance_km(52.52, 13.40, -33.87, 151.21);
    assert!((15_900.0..16_200.0).contains(&far), "{far}");
    let near = distance_km(52.52, 13.40, 48.14, 11.58);
    assert!((480.0..520.0).contains(&near), "{near}");
}

#[test]
fn cloud_nat_churn_across_16s_of_one_provider_stays_silent() {
    let ranges = ["3.80.0.0", "3.208.0.0", "54.144.0.0"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut events = Vec::new();
    for i in 0..(30 * 12) {
        let r = rng.next();
        let base: std::net::Ipv4Addr = ranges[(r % 3) as usize].parse().unwrap();
        // Anywhere in the /12 (/14): a different /16 and /24 most times.
        let span = if r % 3 == 2 { 1 << 18 } else { 1 << 20 };
        let addr = std::net::Ipv4Addr::from(u32::from(base) + ((r >> 8) % span) as u32);
        events.push(ev(T0 + i * 2 * HOUR, "AKIANATCHURN", &addr.to_string()));
    }
    let found = run(events);
    assert!(
        of(&found, Detector::NewSource).is_empty()
            && of(&found, Detector::ImpossibleTravel).is_empty()
            && of(&found, Detector::CloudCredentialOutsideCloud).is_empty(),
        "{:#?}",
        found
            .iter()
            .map(|f| (&f.detector, &f.summary))
            .collect::<Vec<_>>()
    );
}

/// A service set up on two EC2 networks in two /16s that later gets a NAT
/// address in a third /16 of the same region: the network rules alone call
/// it high (no new network in four weeks); the cloud ranges know it is
/// the same pool.
#[test]
fn slow_cloud_nat_churn_is_silent_only_with_the_cloud_ranges() {
    // Four weeks of the same two networks: new ones are rare for the key.
    let mut events: Vec<Ev> = (0..56)
        .map(|i| {
            let source = if i % 2 == 0 {
                "3.81.0.10"
            } else {
                "3.210.4.20"
            };
            ev(T0 + i * 12 * HOUR, "AKIASLOWNAT", source)
        })
        .collect();
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIASLOWNAT", "54.146.9.9"));
    let plain = run_on(
        &engine(false),
        events.iter().map(|e| ev(e.t, &e.key, &e.source)).collect(),
    );
    let new = of(&plain, Detector::NewSource);
    assert_eq!(new.len(), 1, "{plain:#?}");
    assert_eq!(new[0].severity, Severity::High);
    let enriched = run(events);
    assert!(
        of(&enriched, Detector::NewSource).is_empty(),
        "{enriched:#?}"
    );
}

/// A role's sessions are many people: two sessions far apart are not a traveller.
#[test]
fn a_roles_sessions_in_two_places_are_not_travel() {
    let role = "arn:aws:sts::123456789012:assumed-role/Admin";
    let mut events = Vec::new();
    for i in 0..10 {
        let mut e = ev(T0 + i * HOUR, &format!("ASIAALICE{i}"), "81.0.7.10");
        e.principal = Some(format!("{role}/alice"));
        events.push(e);
        let mut e = ev(T0 + i * HOUR + 60, &format!("ASIABOB{i}"), "101.0.0.5");
        e.principal = Some(format!("{role}/bob"));
        events.push(e);
    }
    assert!(of(&run(events), Detector::ImpossibleTravel).is_empty());
}

#[test]
fn another_continent_an_hour_later_is_impossible_travel() {
    let mut events = settled_in_berlin("AKIATRAVEL", 10);
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIATRAVEL", "101.0.0.5"));
    let found = run(events);
    let travel = of(&found, Detector::ImpossibleTravel);
    assert_eq!(travel.len(), 1, "{found:#?}");
    let f = travel[0];
    assert_eq!(f.severity, Severity::High);
    let o = &f.evidence.observed;
    assert_eq!(o["from"]["place"]["city"], "Berlin");
    assert_eq!(o["to"]["place"]["city"], "Sydney");
    assert!(o["speed_kmh"].as_f64().unwrap() > 10_000.0, "{o}");
    assert_eq!(o["elapsed_s"], 3600);
    let network = f.evidence.network.as_ref().unwrap();
    assert_eq!(network["country"], "AU");
    assert_eq!(network["org"], "Telstra Corporation Ltd");
    assert!(
        f.summary.contains("Sydney, AU") && f.summary.contains("Berlin, DE"),
        "{}",
        f.summary
    );
    // new_source judges the same use by its place: a new country.
    let new = of(&found, Detector::NewSource);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].severity, Severity::High);
    assert!(new[0].evidence.observed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "new_country"));
}

#[test]
fn a_new_network_inside_the_keys_own_asn_is_low_and_waits_for_a_call_the_key_does_not_make() {
    let mut events = settled_in_berlin("AKIAASN", 10);
    let last = events.last().unwrap().t;
    // Munich, same ISP (AS3320): a new /24 in an ASN the key always uses,
    // on a key ten days old. Its usual call says nothing yet.
    events.push(ev(last + DAY, "AKIAASN", "81.1.9.9"));
    let held = run(events.iter().map(|e| ev(e.t, &e.key, &e.source)).collect());
    assert!(of(&held, Detector::NewSource).is_empty(), "{held:#?}");
    // A call the key never made, from it ten minutes later: low.
    events.push(ev(last + DAY + 600, "AKIAASN", "81.1.9.9").calling("ListBuckets"));
    let found = run(events);
    let new = of(&found, Detector::NewSource);
    assert_eq!(new.len(), 1, "{found:#?}");
    assert_eq!(new[0].severity, Severity::Low);
    assert_eq!(
        new[0].evidence.observed["corroboration"]["rule"], "new_action",
        "{:#?}",
        new[0]
    );
    assert!(
        of(&found, Detector::ImpossibleTravel).is_empty(),
        "Berlin to Munich in a day is a train ride"
    );
}

#[test]
fn a_workload_credential_from_a_residential_isp_is_found_through_its_role() {
    let role = "arn:aws:sts::123456789012:assumed-role/app-server/i-0abc";
    let mut events = Vec::new();
    // A new session key every hour for two days, always from EC2.
    for i in 0..48 {
        let mut e = ev(
            T0 + i * HOUR,
            &format!("ASIAWORKLOAD{i:04}"),
            &format!("3.81.{}.{}", i % 7, 10 + i % 50),
        );
        e.principal = Some(role.to_owned());
        events.push(e);
    }
    let mut stolen = ev(T0 + 48 * HOUR + 600, "ASIAWORKLOAD0047", "24.0.3.3");
    stolen.principal = Some(role.to_owned());
    events.push(stolen);
    let found = run(events);
    let outside = of(&found, Detector::CloudCredentialOutsideCloud);
    assert_eq!(outside.len(), 1, "{found:#?}");
    let f = outside[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.entity, crate::config::Entity::Principal);
    assert_eq!(f.evidence.baseline["clouds"][0], "aws:ec2:us-east-1");
    let network = f.evidence.network.as_ref().unwrap();
    assert_eq!(network["org"], "Comcast Cable Communications, LLC");
    assert_eq!(network["class"], "isp");
    assert!(network.get("cloud").is_none());
}

#[test]
fn a_tor_exit_is_a_listed_source_from_the_first_use() {
    let found = run(vec![
        ev(T0, "AKIANEWKEY", "185.220.101.7"),
        ev(T0 + 60, "AKIANEWKEY", "185.220.101.8"),
        ev(T0 + 120, "AKIAOFFICE", "198.51.100.20"),
        ev(T0 + 180, "AKIATHREAT", "192.0.2.66"),
    ]);
    let listed = of(&found, Detector::ListedSource);
    assert_eq!(
        listed.len(),
        2,
        "one per key and list in a cooldown, none for a VPN: {found:#?}"
    );
    assert_eq!(listed[0].key_id, "AKIANEWKEY");
    assert_eq!(listed[0].severity, Severity::Medium);
    assert_eq!(listed[0].evidence.observed["lists"][0]["kind"], "tor");
    assert_eq!(
        listed[0].evidence.network.as_ref().unwrap()["lists"][0]["label"],
        "tor-exits"
    );
    assert_eq!(listed[1].key_id, "AKIATHREAT");
    assert_eq!(listed[1].severity, Severity::High);
}

#[test]
fn without_files_the_network_detectors_are_silent_and_evidence_unchanged() {
    let mut events = settled_in_berlin("AKIAPLAIN", 10);
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIAPLAIN", "101.0.0.5"));
    events.push(ev(last + 2 * HOUR, "AKIAPLAIN", "185.220.101.7").calling("ListBuckets"));
    let found = run_on(&engine(false), events);
    assert!(
        !found.is_empty(),
        "a call the key never made from a new network"
    );
    assert!(found.iter().all(|f| f.evidence.network.is_none()));
    assert!(found.iter().all(|f| !matches!(
        f.detector,
        Detector::ImpossibleTravel | Detector::CloudCredentialOutsideCloud | Detector::ListedSource
    )));
    let json = serde_json::to_value(&found[0]).unwrap();
    assert!(json["evidence"].get("network").is_none());
}

/// Attacker's test for the cloud pool rule: a thief who rents an instance in
/// the provider and region a churning key uses is silent for `new_source`
/// (accepted: that is what NAT churn looks like); another region is not.
#[test]
fn attacker_in_the_keys_own_cloud_region_is_the_pool_rules_door() {
    let mut events = Vec::new();
    for i in 0..(14 * 6) {
        events.push(ev(
            T0 + i * 4 * HOUR,
            "AKIAPOOL",
            &format!("3.{}.{}.7", 80 + (i % 3) * 5, i % 200),
        ));
    }
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIAPOOL", "54.145.200.1"));
    let same_region = run(events);
    assert!(
        of(&same_region, Detector::NewSource).is_empty(),
        "{same_region:#?}"
    );

    let mut events = Vec::new();
    for i in 0..(14 * 6) {
        events.push(ev(
            T0 + i * 4 * HOUR,
            "AKIAPOOL",
            &format!("3.{}.{}.7", 80 + (i % 3) * 5, i % 200),
        ));
    }
    events.push(ev(last + HOUR, "AKIAPOOL", "13.48.0.9"));
    let other_region = run(events);
    let new = of(&other_region, Detector::NewSource);
    assert_eq!(new.len(), 1, "{other_region:#?}");
    assert_eq!(new[0].severity, Severity::Medium);
    assert_eq!(
        new[0].evidence.network.as_ref().unwrap()["cloud"],
        "aws:ec2:eu-north-1"
    );
}

/// Attacker's test for travel's exclusions: from a VPN, a hosting provider
/// or Tor there is no place to judge (accepted, as Datadog does); the same
/// uses are still found by `new_source` and `listed_source`.
#[test]
fn attacker_behind_a_vpn_or_hosting_provider_evades_travel_only() {
    for (source, other) in [
        ("198.51.100.20", None),
        ("45.0.3.3", Some(Detector::NewSource)),
        ("185.220.101.9", Some(Detector::ListedSource)),
    ] {
        let mut events = settled_in_berlin("AKIAHIDDEN", 10);
        let last = events.last().unwrap().t;
        events.push(ev(last + 600, "AKIAHIDDEN", source));
        let found = run(events);
        assert!(
            of(&found, Detector::ImpossibleTravel).is_empty(),
            "{source}: {found:#?}"
        );
        if let Some(d) = other {
            let hit = of(&found, d);
            assert_eq!(hit.len(), 1, "{source}: {found:#?}");
            assert_eq!(hit[0].severity.max(Severity::Medium), hit[0].severity);
        }
    }
}

/// Attacker's test for the cloud-only rule: once a key has been used
/// outside the cloud within `forget_after`, a use from outside no longer
/// alerts (accepted: the key is no longer a cloud-only credential;
/// `new_source` still judges a new network or ASN).
#[test]
fn a_key_already_used_outside_the_cloud_is_the_cloud_rules_door() {
    let mut events: Vec<Ev> = (0..40)
        .map(|i| ev(T0 + i * HOUR, "AKIACI", &format!("3.81.0.{}", i % 5 + 1)))
        .collect();
    events.push(ev(T0 + 40 * HOUR, "AKIACI", "24.0.3.3"));
    events.push(ev(T0 + 41 * HOUR, "AKIACI", "3.81.0.1"));
    events.push(ev(T0 + 30 * DAY, "AKIACI", "101.0.0.5"));
    let found = run(events);
    let outside = of(&found, Detector::CloudCredentialOutsideCloud);
    assert_eq!(outside.len(), 1, "{found:#?}");
    assert_eq!(outside[0].severity, Severity::Medium, "a long-lived key");
    assert!(outside[0].observed_at.starts_with("2026-01-06"));
}

#[test]
fn the_key_view_shows_its_network_memory() {
    let engine = engine(true);
    run_on(&engine, settled_in_berlin("AKIAVIEW", 2));
    let view = engine
        .explain(crate::config::Entity::KeyId, "AKIAVIEW")
        .unwrap();
    let net = &view["network"];
    assert_eq!(net["asns"][0], 3320);
    assert_eq!(net["countries"][0], "DE");
    assert_eq!(net["last_place"]["country"], "DE");
}

#[test]
fn a_repeated_source_is_answered_from_the_keys_cache() {
    let n = NetIntel::open(&fixture_config(), None).unwrap();
    let engine = Engine::with_parts(&Config::default(), None, Some(n.clone()));
    run_on(
        &engine,
        (0..10)
            .map(|i| ev(T0 + i, "AKIACACHE", "81.0.0.1"))
            .collect(),
    );
    let c = &n.inner.counters;
    assert_eq!((c.looked_up.get(), c.cached.get()), (1, 9));
}

#[test]
fn a_bad_file_at_reload_keeps_the_old_tables() {
    let dir = tempfile::tempdir().unwrap();
    let tor = dir.path().join("tor.txt");
    std::fs::write(&tor, "185.220.101.7\n").unwrap();
    let cfg = NetIntelConfig {
        lists: vec![ListConfig {
            path: tor.clone(),
            label: "tor".into(),
            kind: ListKind::Tor,
        }],
        ..Default::default()
    };
    let metrics = Metrics::new();
    let n = NetIntel::open(&cfg, Some(&metrics)).unwrap();
    let listed = |n: &NetIntel| n.snapshot().lookup(ip("185.220.101.7")).lists != 0;
    assert!(listed(&n));
    std::fs::write(&tor, "185.220.101.7\n999.1.1.1 # typo\n").unwrap();
    let err = n.reload_if_changed().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("tor.txt") && err.contains("line 2") && err.contains("999.1.1.1"),
        "{err}"
    );
    assert!(listed(&n), "the previous tables stay");
    assert_eq!(n.reloads(), (0, 1));
    assert!(
        n.reload_if_changed().is_none(),
        "a bad file is reported once"
    );
    let failed = metrics
        .netintel_reloads
        .with_label_values(&["failed"])
        .get();
    assert_eq!(failed, 1);
    std::fs::write(&tor, "185.220.101.99\n").unwrap();
    assert!(n.reload_if_changed().unwrap().is_ok());
    assert!(!listed(&n) && n.snapshot().lookup(ip("185.220.101.99")).lists != 0);
    assert_eq!(
        metrics.netintel_entries.with_label_values(&["list"]).get(),
        1
    );
    let missing = NetIntelConfig {
        city_db: Some(dir.path().join("nope.mmdb")),
        ..Default::default()
    };
    let err = NetIntel::open(&missing, None).unwrap_err().to_string();
    assert!(err.contains("nope.mmdb"), "{err}");
    let not_mmdb = NetIntelConfig {
        city_db: Some(tor),
        ..Default::default()
    };
    assert!(matches!(
        NetIntel::open(&not_mmdb, None),
        Err(NetIntelError::Mmdb { .. })
    ));
}

#[test]
fn the_block_cache_answers_exactly_what_a_lookup_does() {
    let t = tables();
    // Every address of /24s that are one answer throughout, and of /24s
    // split by a smaller network: halves of different owners in the MaxMind
    // DBs (81.2.5.0/25, 81.2.5.128/25), single Tor exits on a list, one
    // threat address; in both orders (the odd address first and last).
    for block in ["81.0.7", "81.2.5", "185.220.101", "192.0.2", "24.0.3"] {
        for order in [false, true] {
            let fresh = tables();
            for i in 0..256u32 {
                let i = if order { 255 - i } else { i };
                let a = ip(&format!("{block}.{i}"));
                assert_eq!(fresh.lookup_blocks(a), fresh.lookup_uncached(a), "{a}");
                assert_eq!(fresh.lookup_blocks(a), t.lookup_uncached(a), "{a} again");
                assert_eq!(fresh.lookup(a), t.lookup_uncached(a), "{a} flattened");
            }
        }
    }
    // What a user notices: each half of a split /24 keeps its own owner and
    // place, whichever was asked first.
    let hamburg = t.lookup(ip("81.2.5.1"));
    let dresden = t.lookup(ip("81.2.5.200"));
    assert_eq!((hamburg.asn, dresden.asn), (3320, 6805));
    assert!(hamburg.lat > dresden.lat);
    assert_eq!(t.lookup(ip("81.2.5.2")), hamburg);
    assert_ne!(t.lookup(ip("185.220.101.7")).lists, 0, "a Tor exit");
    assert_eq!(t.lookup(ip("185.220.101.6")).lists, 0, "its neighbour");
    assert_ne!(t.lookup(ip("185.220.101.8")).lists, 0);
    // IPv6: answers by /64, exact too.
    for a in ["2600:1f18::1", "2600:1f18::2", "2001:db8::1"] {
        assert_eq!(t.lookup(ip(a)), t.lookup_uncached(a.parse().unwrap()));
    }
}

#[test]
fn a_reload_starts_the_block_cache_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let tor = dir.path().join("tor.txt");
    std::fs::write(&tor, "185.220.101.0/24\n").unwrap();
    let cfg = NetIntelConfig {
        lists: vec![ListConfig {
            path: tor.clone(),
            label: "tor".into(),
            kind: ListKind::Tor,
        }],
        ..Default::default()
    };
    let n = NetIntel::open(&cfg, None).unwrap();
    assert_ne!(n.snapshot().lookup(ip("185.220.101.50")).lists, 0);
    // The list shrinks to one address (and its size changes, so the reload
    // sees it): the rest of the /24 is no longer listed.
    std::fs::write(&tor, "185.220.101.7\n# one exit left\n").unwrap();
    n.reload_if_changed().unwrap().unwrap();
    assert_eq!(n.snapshot().lookup(ip("185.220.101.50")).lists, 0);
    assert_ne!(n.snapshot().lookup(ip("185.220.101.7")).lists, 0);
}

/// The real GeoLite2-City (the `maxminddb-geolite2` package), when present.
fn geolite2_city() -> Option<PathBuf> {
    let path = std::env::var_os("KEYWATCH_GEOLITE2_CITY").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/ci-tools/python/_maxminddb_geolite2/GeoLite2-City.mmdb")
        },
        PathBuf::from,
    );
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: no GeoLite2-City (set KEYWATCH_GEOLITE2_CITY)");
        None
    }
}

/// The real GeoLite2-City, when present: the block cache's answers and
/// the trees' agree for addresses that share /24s.
#[test]
fn the_block_cache_is_exact_on_the_real_geolite2_city() {
    let Some(path) = geolite2_city() else { return };
    let cfg = NetIntelConfig {
        city_db: Some(path),
        ..Default::default()
    };
    let n = NetIntel::open(&cfg, None).unwrap();
    let t = n.snapshot();
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut differ = 0;
    for _ in 0..2000 {
        let base = (rng.next() as u32) & 0xFFFF_FF00;
        let first = IpAddr::from(std::net::Ipv4Addr::from(base | (rng.next() as u32 & 0xFF)));
        let answer = t.lookup_blocks(first);
        for _ in 0..8 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(base | (rng.next() as u32 & 0xFF)));
            let exact = t.lookup_uncached(a);
            assert_eq!(t.lookup_blocks(a), exact, "{a} after {first}");
            differ += usize::from(exact != answer);
        }
    }
    eprintln!("{differ} of 16000 addresses answered unlike the first of their /24");
}

/// What checking the flattened IPv4 table against the trees saw.
#[derive(Debug, Default)]
struct Seen {
    compared: usize,
    located: usize,
    asn: usize,
    cloud: usize,
    lists: usize,
}

/// Compares the flattened IPv4 table ([`Tables::lookup`]) with the trees
/// and range tables ([`Tables::lookup_uncached`]) at `random` random
/// addresses, and at both sides of the first and last address of every
/// `every`-th network of each MaxMind DB, every cloud and list interval
/// and every `every`-th interval of the flattened table itself (where an
/// off-by-one would show).
fn assert_flat_is_exact(t: &Tables, random: usize, every: usize) -> Seen {
    assert!(t.v4.is_some(), "IPv4 is flattened");
    let mut seen = Seen::default();
    let mut check = |a: u32| {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(a));
        let (flat, exact) = (t.lookup(ip), t.lookup_uncached(ip));
        assert_eq!(flat, exact, "{ip}: flattened table against the trees");
        seen.compared += 1;
        seen.located += usize::from(exact.located);
        seen.asn += usize::from(exact.asn != 0);
        seen.cloud += usize::from(exact.cloud != 0);
        seen.lists += usize::from(exact.lists != 0);
    };
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..random {
        check(rng.next() as u32);
    }
    let mut edges = |start: u32, end: u32| {
        for a in [start.wrapping_sub(1), start, end, end.wrapping_add(1)] {
            check(a);
        }
    };
    for r in [t.city.as_ref(), t.asn.as_ref().and_then(|o| o.mmdb())]
        .into_iter()
        .flatten()
    {
        let all = r
            .within("0.0.0.0/0".parse().unwrap(), Default::default())
            .unwrap();
        for found in all.step_by(every) {
            let net = found.unwrap().network().unwrap();
            if let (IpAddr::V4(s), IpAddr::V4(e)) = (net.network(), net.broadcast()) {
                edges(u32::from(s), u32::from(e));
            }
        }
    }
    for steps in [
        t.cloud.v4_steps().iter().map(|s| s.0).collect::<Vec<_>>(),
        t.lists.v4_steps().iter().map(|s| s.0).collect(),
    ] {
        for s in steps {
            edges(s, s);
        }
    }
    for s in t.v4.as_ref().unwrap().starts().into_iter().step_by(every) {
        edges(s, s);
    }
    seen
}

#[test]
fn the_flattened_ipv4_table_answers_exactly_what_the_trees_do() {
    let t = tables();
    let seen = assert_flat_is_exact(&t, 20_000, 1);
    assert!(
        seen.located > 0 && seen.asn > 0 && seen.cloud > 0 && seen.lists > 0,
        "{seen:?}"
    );
    // Fewer tables, and none: the flattened table still answers as they do.
    for cfg in [
        NetIntelConfig {
            lists: fixture_config().lists,
            ..Default::default()
        },
        NetIntelConfig {
            asn_db: Some(fixture("asn.mmdb")),
            ..Default::default()
        },
    ] {
        let n = NetIntel::open(&cfg, None).unwrap();
        assert_flat_is_exact(&n.snapshot(), 2_000, 1);
    }
    // The other tree shapes: an IPv4-only city database, and an IPv6 ASN
    // database without an IPv4 subtree, whose one record (::/1) answers
    // every IPv4 address.
    let n = NetIntel::open(
        &NetIntelConfig {
            city_db: Some(fixture("city-v4.mmdb")),
            asn_db: Some(fixture("asn-v6.mmdb")),
            ..fixture_config()
        },
        None,
    )
    .unwrap();
    let t = n.snapshot();
    let seen = assert_flat_is_exact(&t, 20_000, 1);
    assert_eq!(seen.asn, seen.compared, "{seen:?}");
    let berlin = t.lookup(ip("81.0.3.4"));
    assert_eq!((berlin.country_str(), berlin.asn), (Some("DE"), 64496));
    assert_eq!(t.lookup(ip("10.0.0.1")).asn, 64496);
}

/// The real GeoLite2-City with the fixture ASN DB, cloud ranges and lists,
/// when present: the flattened table answers as the trees do at 200,000
/// random addresses and at the edges of 1 network in 8 and of 1 flattened
/// interval in 8.
#[test]
fn the_flattened_ipv4_table_is_exact_on_the_real_geolite2_city() {
    let Some(path) = geolite2_city() else { return };
    let cfg = NetIntelConfig {
        city_db: Some(path),
        ..fixture_config()
    };
    let n = NetIntel::open(&cfg, None).unwrap();
    let t = n.snapshot();
    let seen = assert_flat_is_exact(&t, 200_000, 8);
    eprintln!("{seen:?}; {:?}", t.flat_v4_stats().unwrap());
    assert!(seen.compared > 1_000_000, "{seen:?}");
    assert!(seen.located > seen.compared / 2, "{seen:?}");
}

/// Attacker's test for the "places already jump" rule: a key used from a
/// Berlin and a Chicago office within the hour every day (its places jump
/// faster than a traveller) is not one traveller's; a thief in Sydney an hour after a
/// Berlin use is not impossible travel (accepted: `new_source` still finds
/// the new country, high). The door closes `forget_after` (30 days) after
/// the key's last jump: then Sydney is impossible travel again.
#[test]
fn a_key_whose_places_already_jump_is_the_travel_rules_door() {
    // Three weeks and a day of two offices: new networks are rare for it.
    let mut events = two_offices("AKIAJUMPS", 22);
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIAJUMPS", "81.0.7.10"));
    events.push(ev(last + 2 * HOUR, "AKIAJUMPS", "101.0.0.5"));
    let engine = engine(true);
    let found = run_on(&engine, events);
    assert!(
        of(&found, Detector::ImpossibleTravel).is_empty(),
        "{found:#?}"
    );
    let new = of(&found, Detector::NewSource);
    assert_eq!(new.len(), 1, "{found:#?}");
    assert_eq!(new[0].severity, Severity::High);
    let view = engine
        .explain(crate::config::Entity::KeyId, "AKIAJUMPS")
        .unwrap();
    assert!(
        view["network"]["places_jumped_at"].is_string(),
        "the key view says why: {view}"
    );

    // Berlin only for the 31 days after the offices: the door has closed.
    let mut events = two_offices("AKIAJUMPED", 10);
    let start = T0 + 10 * DAY;
    events.extend((0..31 * 4).map(|i| {
        ev(
            start + i * 6 * HOUR,
            "AKIAJUMPED",
            &format!("81.0.7.{}", 10 + i % 5),
        )
    }));
    let last = events.last().unwrap().t;
    events.push(ev(last + HOUR, "AKIAJUMPED", "101.0.0.5"));
    let found = run(events);
    assert_eq!(
        of(&found, Detector::ImpossibleTravel).len(),
        1,
        "{found:#?}"
    );
}

/// `dir` holding what `keywatch netintel update` writes: ip-location-db's
/// country database (a top-level `country_code`, no coordinates), an ASN
/// range file and AWS's ranges.
fn update_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("country-code.mmdb", config::dir_files::COUNTRY),
        ("asn-ranges.csv", config::dir_files::ASN_CSV),
        ("ip-ranges.json", "cloud-aws.json"),
    ] {
        std::fs::copy(fixture(from), dir.path().join(to)).unwrap();
    }
    dir
}

#[test]
fn the_files_netintel_update_writes_give_country_owner_and_cloud() {
    let dir = update_dir();
    let cfg = NetIntelConfig {
        dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let t = NetIntel::open(&cfg, None).unwrap().snapshot().clone();
    let berlin = t.lookup(ip("81.0.3.4"));
    assert_eq!((berlin.country_str(), berlin.asn), (Some("DE"), 3320));
    assert!(!berlin.located, "a country database has no coordinates");
    let d = t.describe(ip("24.0.1.1"));
    assert_eq!(d["country"], "US");
    assert_eq!(d["org"], "Comcast Cable Communications, LLC");
    assert_eq!(d["class"], "isp");
    assert_eq!(
        t.cloud_label(t.lookup(ip("3.81.2.3")).cloud),
        Some("aws:ec2:us-east-1")
    );
    // The two halves of one /24 of different owners answer on their own,
    // in the flattened IPv4 table and in the tables themselves.
    for (a, asn) in [("81.2.5.1", 3320), ("81.2.5.200", 6805)] {
        assert_eq!(t.lookup(ip(a)).asn, asn, "{a}");
        assert_eq!(t.lookup_uncached(ip(a)).asn, asn, "{a}");
    }
    assert_eq!(t.lookup(ip("2001:db8:5::1")).asn, 64496, "IPv6 ranges");
    assert_eq!(
        t.lookup(ip("9.9.9.9")),
        NetInfo::default(),
        "outside every file"
    );
}

#[test]
fn a_roaming_key_used_from_another_country_is_a_new_country_with_the_update_files() {
    let dir = update_dir();
    let cfg = NetIntelConfig {
        dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let engine = Engine::with_parts(
        &Config::default(),
        None,
        Some(NetIntel::open(&cfg, None).unwrap()),
    );
    let mut events = settled_in_berlin("AKIAROAM", 14);
    let last = events.last().unwrap().t;
    // Munich: a new network in the key's own country and ISP.
    events.push(ev(last + DAY, "AKIAROAM", "81.1.9.9"));
    // Sydney, a day later: a country the key never used.
    events.push(ev(last + 2 * DAY, "AKIAROAM", "101.0.4.4"));
    let found = run_on(&engine, events);
    // Munich, with the key's usual call, on a key two weeks old: held, and
    // dropped. Sydney is a place the key never used: raised at once.
    let new = of(&found, Detector::NewSource);
    assert_eq!(new.len(), 1, "{found:#?}");
    let rules = new[0].evidence.observed["rules"].to_string();
    assert_eq!(new[0].severity, Severity::High);
    assert!(rules.contains("new_country"), "{rules}");
    assert_eq!(new[0].evidence.network.as_ref().unwrap()["country"], "AU");
}

#[test]
fn a_database_that_appears_in_the_dir_is_loaded_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NetIntelConfig {
        dir: Some(dir.path().join("netintel")),
        ..Default::default()
    };
    assert!(cfg.enabled());
    // Before the first update: nothing known, nothing fails.
    let intel = NetIntel::open(&cfg, None).unwrap();
    assert_eq!(intel.snapshot().lookup(ip("81.0.3.4")).country_str(), None);
    assert!(intel.reload_if_changed().is_none(), "nothing changed");
    std::fs::create_dir(dir.path().join("netintel")).unwrap();
    std::fs::copy(
        fixture("country-code.mmdb"),
        dir.path().join("netintel").join(config::dir_files::COUNTRY),
    )
    .unwrap();
    assert!(matches!(intel.reload_if_changed(), Some(Ok(()))));
    assert_eq!(
        intel.snapshot().lookup(ip("81.0.3.4")).country_str(),
        Some("DE")
    );
    // A file set by hand wins over the directory's.
    let explicit = NetIntelConfig {
        city_db: Some(fixture("city.mmdb")),
        ..cfg.clone()
    };
    assert_eq!(explicit.in_force().city_db, Some(fixture("city.mmdb")));
    assert_eq!(
        cfg.in_force().city_db,
        Some(dir.path().join("netintel").join(config::dir_files::COUNTRY))
    );
}

#[test]
fn files_older_than_max_age_are_named() {
    let dir = update_dir();
    let cfg = NetIntelConfig {
        dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let now = std::time::SystemTime::now();
    assert!(cfg.stale_files(now).is_empty(), "just written");
    let old = now - std::time::Duration::from_secs(40 * 86_400);
    let asn = dir.path().join(config::dir_files::ASN_CSV);
    std::fs::File::options()
        .write(true)
        .open(&asn)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let stale = cfg.stale_files(now);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].0, asn);
    assert!(stale[0].1.as_secs() >= 40 * 86_400);
}
