//! Network intelligence end to end through `keywatch replay`: the fixture
//! files (committed), and a real GeoLite2-City database (2018, from the
//! `maxminddb-geolite2` pip package that `.ci/test` installs).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::helpers::*;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/netintel")
        .join(name)
        .display()
        .to_string()
}

/// A key used from `home` every six hours for ten days, then from `away`
/// an hour after its last use; JSON Lines in the generic profile.
fn travel_events(path: &Path, key: &str, home: &str, away: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    let t0 = 1_767_571_200i64;
    let line = |t: i64, source: &str| {
        format!(
            r#"{{"time":"{}","key_id":"{key}","source":"{source}","action":"GetObject","user_agent":"aws-cli/2.15.0"}}"#,
            chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339()
        )
    };
    for i in 0..40 {
        writeln!(f, "{}", line(t0 + i * 6 * 3600, home)).unwrap();
    }
    writeln!(f, "{}", line(t0 + 39 * 6 * 3600 + 3600, away)).unwrap();
}

fn replay(config: &Path, events: &Path) -> Vec<serde_json::Value> {
    let o = run(keywatch().args(["replay", "-c"]).arg(config).arg(events));
    assert!(o.status.success(), "{}", stderr(&o));
    json_lines(&stdout(&o))
}

#[test]
fn replay_with_the_fixture_files_enriches_findings_and_finds_a_tor_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"[netintel]
city_db = "{}"
asn_db = "{}"
cloud_ranges = ["{}"]
[[netintel.lists]]
path = "{}"
label = "tor-exits"
kind = "tor"
"#,
            fixture("city.mmdb"),
            fixture("asn.mmdb"),
            fixture("ip-ranges.json"),
            fixture("tor-exits.txt")
        ),
    )
    .unwrap();
    let events = tmp.path().join("events.jsonl");
    travel_events(&events, "AKIATOR", "81.0.7.10", "185.220.101.7");
    let found = replay(&config, &events);
    let listed: Vec<_> = found
        .iter()
        .filter(|f| f["detector"] == "listed_source")
        .collect();
    assert_eq!(listed.len(), 1, "{found:#?}");
    let network = &listed[0]["evidence"]["network"];
    assert_eq!(network["lists"][0]["label"], "tor-exits");
    assert_eq!(network["country"], "DE");
    assert_eq!(network["asn"], 208294);
    assert!(
        found.iter().all(|f| f["detector"] != "impossible_travel"),
        "a Tor exit is not a place: {found:#?}"
    );

    // A bad file stops the start, naming it: exit 64.
    std::fs::write(tmp.path().join("bad.txt"), "not-an-address\n").unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[[netintel.lists]]\npath = \"{}\"\nlabel = \"x\"\nkind = \"threat\"\n",
            tmp.path().join("bad.txt").display()
        ),
    )
    .unwrap();
    let o = run(keywatch().args(["replay", "-c"]).arg(&bad).arg(&events));
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.txt") && stderr(&o).contains("line 1"),
        "{}",
        stderr(&o)
    );
}

/// The real GeoLite2-City database the `maxminddb-geolite2` pip package ships.
fn geolite2_city() -> Option<PathBuf> {
    let path = std::env::var_os("KEYWATCH_GEOLITE2_CITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/ci-tools/python/_maxminddb_geolite2/GeoLite2-City.mmdb")
        });
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing under CI=true (.ci/test installs maxminddb-geolite2)",
            path.display()
        );
    }
    eprintln!(
        "skipped: {} not found (.ci/test installs the maxminddb-geolite2 pip package)",
        path.display()
    );
    None
}

#[test]
fn a_real_geolite2_city_database_finds_another_continent_an_hour_later() {
    let Some(db) = geolite2_city() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!("[netintel]\ncity_db = \"{}\"\n", db.display()),
    )
    .unwrap();
    let events = tmp.path().join("events.jsonl");
    // Germany (Deutsche Telekom), then Australia (Telstra) an hour later.
    travel_events(&events, "AKIAREALGEO", "80.133.10.20", "1.128.0.1");
    let found = replay(&config, &events);
    let travel: Vec<_> = found
        .iter()
        .filter(|f| f["detector"] == "impossible_travel")
        .collect();
    assert_eq!(travel.len(), 1, "{found:#?}");
    let t = travel[0];
    assert_eq!(t["severity"], "high");
    assert_eq!(t["evidence"]["observed"]["from"]["place"]["country"], "DE");
    assert_eq!(t["evidence"]["network"]["country"], "AU");
    assert!(t["evidence"]["observed"]["speed_kmh"].as_f64().unwrap() > 5000.0);
}
