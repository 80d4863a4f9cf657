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

/// A publisher on 127.0.0.1: an npm registry's metadata and tarballs, and
/// the cloud ranges, served from a map of paths the test may change.
struct Publisher {
    url: String,
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
}

impl Publisher {
    fn start() -> Publisher {
        use axum::response::IntoResponse;
        let files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
            Default::default();
        let served = files.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                    let body = served.lock().unwrap().get(uri.path()).cloned();
                    async move {
                        match body {
                            Some(b) => b.into_response(),
                            None => axum::http::StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                });
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Publisher { url, files }
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), body);
    }

    /// Publishes `package` at `version` with `files` (name, bytes) under
    /// `package/`; `integrity_of`: the bytes the registry's SHA-512 is of
    /// (the tarball itself when `None`).
    fn publish(
        &self,
        package: &str,
        version: &str,
        files: &[(&str, Vec<u8>)],
        integrity_of: Option<&[u8]>,
    ) {
        use base64::Engine as _;
        use sha2::Digest as _;
        let mut tgz = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for (name, bytes) in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, format!("package/{name}"), &bytes[..])
                    .unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap();
        }
        let digest = sha2::Sha512::digest(integrity_of.unwrap_or(&tgz));
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        let tarball = format!("/tarballs/{}-{version}.tgz", package.replace('/', "-"));
        let meta = serde_json::json!({
            "name": package,
            "dist-tags": {"latest": version},
            "versions": {version: {"dist": {"tarball": format!("{}{tarball}", self.url), "integrity": integrity}}},
        });
        self.put(
            &format!("/{}", package.replace('/', "%2f")),
            meta.to_string().into_bytes(),
        );
        self.put(&tarball, tgz);
    }
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// The two ip-location-db packages as the registry serves them, from the
/// fixtures (the country database and the ASN ranges in their layouts).
fn publish_current(p: &Publisher, version: &str) {
    let ranges = String::from_utf8(read_fixture("asn-ranges.csv")).unwrap();
    let (v6, v4): (Vec<&str>, Vec<&str>) = ranges.lines().partition(|l| l.contains(':'));
    p.publish(
        "@ip-location-db/geo-whois-asn-country-mmdb",
        version,
        &[
            (
                "package.json",
                br#"{"name":"x","license":"CC0-1.0"}"#.to_vec(),
            ),
            ("NRO_LICENSE", b"data from nro.net, CC BY 4.0".to_vec()),
            (
                "geo-whois-asn-country.mmdb",
                read_fixture("country-code.mmdb"),
            ),
        ],
        None,
    );
    p.publish(
        "@ip-location-db/asn",
        version,
        &[
            (
                "package.json",
                br#"{"name":"y","license":"CC-BY-4.0"}"#.to_vec(),
            ),
            (
                "DBIP-LICENSE",
                b"IP to ASN Lite by DB-IP, CC BY 4.0".to_vec(),
            ),
            ("asn-ipv4.csv", v4.join("\n").into_bytes()),
            ("asn-ipv6.csv", v6.join("\n").into_bytes()),
        ],
        None,
    );
    p.put("/aws/ip-ranges.json", read_fixture("ip-ranges.json"));
    p.put("/gcp/cloud.json", read_fixture("cloud.json"));
}

fn update(p: &Publisher, dir: &Path) -> std::process::Output {
    run(keywatch()
        .args(["netintel", "update", "--dir"])
        .arg(dir)
        .args(["--registry", &p.url])
        .args(["--aws-url", &format!("{}/aws/ip-ranges.json", p.url)])
        .args(["--gcp-url", &format!("{}/gcp/cloud.json", p.url)]))
}

#[test]
fn netintel_update_gives_a_fresh_install_country_and_owner_and_a_roaming_key_a_new_country() {
    let publisher = Publisher::start();
    publish_current(&publisher, "2.3.2026120701");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("netintel");
    let config = tmp.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!("[netintel]\ndir = \"{}\"\n", dir.display()),
    )
    .unwrap();

    // Before the first update, the configuration is valid and says so.
    let o = run(keywatch().args(["check-config", "-c"]).arg(&config));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds no database yet"),
        "{}",
        stderr(&o)
    );

    let o = update(&publisher, &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "country.mmdb",
        "asn.csv",
        "cloud-aws.json",
        "cloud-gcp.json",
        "country.LICENSE",
        "asn.LICENSE",
    ] {
        assert!(dir.join(name).is_file(), "{name} missing: {}", stderr(&o));
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sources.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["country"]["from"],
        "@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026120701"
    );
    assert_eq!(manifest["country"]["licence"], "CC0-1.0");
    assert_eq!(manifest["asn"]["entries"], 6);
    assert!(std::fs::read_to_string(dir.join("asn.LICENSE"))
        .unwrap()
        .contains("DB-IP"));

    // No file written by hand: a key at home in Germany used from Australia.
    let events = tmp.path().join("events.jsonl");
    travel_events(&events, "AKIAROAMING", "81.0.7.10", "101.0.4.4");
    let found = replay(&config, &events);
    let new_source: Vec<_> = found
        .iter()
        .filter(|f| f["detector"] == "new_source")
        .collect();
    assert_eq!(new_source.len(), 1, "{found:#?}");
    let f = new_source[0];
    assert_eq!(f["severity"], "high");
    assert!(
        f["evidence"]["observed"]["rules"]
            .to_string()
            .contains("new_country"),
        "{f:#}"
    );
    assert_eq!(f["evidence"]["network"]["country"], "AU");
    assert_eq!(f["evidence"]["network"]["org"], "Telstra Corporation Ltd");

    // check-config reads them and, once they are old, says so by name.
    let o = run(keywatch().args(["check-config", "-c"]).arg(&config));
    assert!(
        o.status.success() && !stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
    let country = dir.join("country.mmdb");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(45 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&country)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let o = run(keywatch().args(["check-config", "-c"]).arg(&config));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning")
            && stderr(&o).contains(&country.display().to_string())
            && stderr(&o).contains("45 days"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn netintel_update_keeps_the_current_files_when_a_download_is_tampered_with_or_broken() {
    let publisher = Publisher::start();
    publish_current(&publisher, "1.0.0");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("netintel");
    let o = update(&publisher, &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let country_before = std::fs::read(dir.join("country.mmdb")).unwrap();
    let asn_before = std::fs::read(dir.join("asn.csv")).unwrap();

    // A tarball that is not the one the registry vouches for.
    publisher.publish(
        "@ip-location-db/geo-whois-asn-country-mmdb",
        "1.0.1",
        &[("geo-whois-asn-country.mmdb", b"not a database".to_vec())],
        Some(b"another tarball"),
    );
    // A verified tarball whose ranges do not parse.
    publisher.publish(
        "@ip-location-db/asn",
        "1.0.1",
        &[
            (
                "asn-ipv4.csv",
                b"1.0.0.0,1.0.0.x,13335,Cloudflare\n".to_vec(),
            ),
            ("asn-ipv6.csv", Vec::new()),
        ],
        None,
    );
    let o = run(keywatch()
        .args(["netintel", "update", "--only", "country,asn", "--dir"])
        .arg(&dir)
        .args(["--registry", &publisher.url]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("country: not updated") && err.contains("integrity"),
        "{err}"
    );
    assert!(
        err.contains("asn: not updated") && err.contains("line 1") && err.contains("1.0.0.x"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("country.mmdb")).unwrap(),
        country_before
    );
    assert_eq!(std::fs::read(dir.join("asn.csv")).unwrap(), asn_before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A file far smaller than the one in force is refused unless forced.
    publisher.publish(
        "@ip-location-db/asn",
        "1.0.2",
        &[
            (
                "asn-ipv4.csv",
                b"81.0.0.0,81.0.0.255,3320,Deutsche Telekom AG\n".to_vec(),
            ),
            ("asn-ipv6.csv", Vec::new()),
        ],
        None,
    );
    let only_asn = |force: bool| {
        let mut cmd = keywatch();
        cmd.args(["netintel", "update", "--only", "asn", "--dir"])
            .arg(&dir)
            .args(["--registry", &publisher.url]);
        if force {
            cmd.arg("--force");
        }
        run(&mut cmd)
    };
    let o = only_asn(false);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds 1 entries where the current one holds 6"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(dir.join("asn.csv")).unwrap(), asn_before);
    let o = only_asn(true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(dir.join("asn.csv")).unwrap(), asn_before);
}
