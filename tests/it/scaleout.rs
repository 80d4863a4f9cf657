//! Scale-out with real processes on a real broker: `keywatch run` instances
//! in one consumer group on tansu share a 12-partition topic while traffic
//! flows; one is killed with SIGKILL, a new one joins, one is scaled down
//! gracefully. Each partition's state moves with it through the changelog
//! topic: at the end the union of the live instances' key states equals a
//! clean single-instance pass, and every injected attack was alerted under
//! one id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use keywatch::config::{Config, Entity};
use keywatch::engine::Engine;

use crate::helpers::*;
use crate::tansu::{tansu_and_python, Tansu};

const GROUP_PARTITIONS: i64 = 12;

/// One `keywatch run` process with its own state directory and alert file.
struct Member {
    name: &'static str,
    child: Child,
    log: PathBuf,
    alerts: PathBuf,
    addr: Option<String>,
}

impl Member {
    fn start(name: &'static str, root: &Path, brokers: &str) -> Member {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let alerts = dir.join("alerts.jsonl");
        let cfg = dir.join("keywatch.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[kafka]
brokers = "{brokers}"
topics = ["audit"]
group_id = "keywatch-scale"
startup_timeout = "20s"
shutdown_timeout = "30s"
commit_interval = "1s"

[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[http]
listen = "127.0.0.1:0"

[checkpoint]
dir = "{state}"
interval = "1s"

[alerts]
dead_letter_path = "{dl}"

[[alerts.sinks]]
type = "file"
path = "{alerts}"
"#,
                state = dir.join("checkpoints").display(),
                dl = dir.join("dead-letter.jsonl").display(),
                alerts = alerts.display(),
            ),
        )
        .unwrap();
        let log = dir.join("keywatch.log");
        let child = keywatch()
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .env(
                "KEYWATCH_LOG",
                std::env::var("KEYWATCH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Member {
            name,
            child,
            log,
            alerts,
            addr: None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP address it printed at start.
    fn addr(&mut self) -> String {
        if self.addr.is_none() {
            let started = Instant::now();
            loop {
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains("serving /metrics")) {
                    let addr = line.split("addr=").nth(1).unwrap().trim().to_owned();
                    self.addr = Some(addr);
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{} never served HTTP:\n{log}",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.addr.clone().unwrap()
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        let addr = self.addr();
        http_get(&addr, path).unwrap_or((0, String::new()))
    }

    /// A metric's value (0 when absent or unreachable).
    fn metric(&mut self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn owned(&mut self) -> i64 {
        self.metric("keywatch_kafka_partitions_owned") as i64
    }

    fn alerts(&self) -> Vec<serde_json::Value> {
        let Ok(f) = std::fs::File::open(&self.alerts) else {
            return Vec::new();
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            // The findings' alerts: incident events beside them (`"type":
            // "incident"`) are checked in alerts.rs.
            .filter(|a| a.get("type").is_none())
            .collect()
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        sigterm(&mut self.child)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(
    what: &str,
    members: &mut [&mut Member],
    mut done: impl FnMut(&mut [&mut Member]) -> bool,
) {
    let started = Instant::now();
    while !done(members) {
        if started.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("--- {}\n{}", m.name, m.log()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `members` share every partition, each owning some, and the
/// group has stayed so for three seconds (a cooperative rebalance takes two
/// rounds; tansu 0.6 can hand a partition to a new member before its owner
/// let go of it when rebalances overlap, so membership changes wait for the
/// group to settle — traffic keeps flowing meanwhile).
fn wait_settled(what: &str, members: &mut [&mut Member]) {
    let mut since: Option<Instant> = None;
    wait_until(what, members, |m| {
        let owned: Vec<i64> = m.iter_mut().map(|m| m.owned()).collect();
        let ok = owned.iter().all(|&n| n > 0) && owned.iter().sum::<i64>() == GROUP_PARTITIONS;
        if !ok {
            since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(3)
    });
}

/// The fields of a key's state that a clean pass fixes, whatever the
/// instance's own watermark. Learned peaks (f32) are compared to 7
/// significant digits: their decimal text does not round-trip bit for bit
/// through JSON.
fn settled(explained: &serde_json::Value) -> serde_json::Value {
    let b = &explained["baseline"];
    let f = |v: &serde_json::Value| format!("{:.6e}", v.as_f64().unwrap_or(f64::NAN));
    serde_json::json!({
        "events": explained["events"],
        "first_seen": explained["first_seen"],
        "last_seen": explained["last_seen"],
        "active_days": explained["active_days"],
        "sources_remembered": b["sources_remembered"],
        "peak_requests_per_bucket": f(&b["peak_requests_per_bucket"]),
        "peak_failures_per_bucket": f(&b["peak_failures_per_bucket"]),
        "peak_new_networks_per_window": f(&b["peak_new_networks_per_window"]),
        "longest_idle_gap_s": b["longest_idle_gap_s"],
        "hour_of_day_baseline": b["hour_of_day_baseline"],
    })
}

/// The scenario, a clean single pass over it, and its ground truth.
struct Scenario {
    lines: Vec<String>,
    cuts: [usize; 5],
    clean: Engine,
    found: Vec<keywatch::engine::Finding>,
    keys: Vec<String>,
    truth: serde_json::Value,
}

impl Scenario {
    fn load() -> Scenario {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let lines: Vec<String> = {
            let f = flate2::read::GzDecoder::new(
                std::fs::File::open(data.join("scenario.jsonl.gz")).unwrap(),
            );
            std::io::BufReader::new(f)
                .lines()
                .map(Result::unwrap)
                .filter(|l| !l.trim().is_empty())
                .collect()
        };
        // Four parts in event-time order (the attacks are in the last two).
        let n = lines.len();
        let cuts = [0, n * 2 / 5, n * 3 / 5, n * 4 / 5, n];
        let clean = Engine::new(&Config::default());
        let decoder = keywatch::decode::Decoder::for_profile("generic", &BTreeMap::new()).unwrap();
        let mut found = Vec::new();
        for line in &lines {
            decoder
                .decode(line.as_bytes(), |r| clean.process(&r.unwrap(), &mut found))
                .unwrap();
        }
        let mut keys = Vec::new();
        clean.for_each_key(Entity::KeyId, |k, _| keys.push(k.to_owned()));
        keys.sort();
        let truth =
            serde_json::from_slice(&std::fs::read(data.join("truth.json")).unwrap()).unwrap();
        Scenario {
            lines,
            cuts,
            clean,
            found,
            keys,
            truth,
        }
    }
}

/// A partition and when a member held it.
type Holding = (String, DateTime<Utc>, DateTime<Utc>);

/// When each member held each partition, from its own log ("partitions
/// assigned/revoked ... list=..."), up to `until` (a kill) or now.
fn holdings(
    m: &Member,
    until: Option<DateTime<Utc>>,
) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let end = until.unwrap_or_else(Utc::now);
    let mut open: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut out = Vec::new();
    for line in m.log().lines() {
        let assigned = line.contains("partitions assigned");
        if !assigned && !line.contains("partitions revoked") {
            continue;
        }
        let Some(at) = line
            .split_whitespace()
            .next()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
        else {
            continue;
        };
        let list = line.split("list=").nth(1).unwrap_or("").trim();
        for p in list.split(',').filter(|p| !p.is_empty()) {
            if assigned {
                open.entry(p.to_owned()).or_insert(at);
            } else if let Some(from) = open.remove(p) {
                out.push((p.to_owned(), from, at));
            }
        }
    }
    out.extend(open.into_iter().map(|(p, from)| (p, from, end)));
    out
}

/// A partition two members held at the same time, if any.
fn overlap(members: &[(&Member, Option<DateTime<Utc>>)]) -> Option<String> {
    let held: Vec<(&str, Vec<Holding>)> = members
        .iter()
        .map(|(m, until)| (m.name, holdings(m, *until)))
        .collect();
    for (i, (x, xs)) in held.iter().enumerate() {
        for (y, ys) in &held[i + 1..] {
            for (p, a0, a1) in xs {
                for (q, b0, b1) in ys {
                    if p == q && a0 < b1 && b0 < a1 {
                        return Some(format!("{p} held by {x} ({a0}..{a1}) and {y} ({b0}..{b1})"));
                    }
                }
            }
        }
    }
    None
}

#[test]
fn partitions_and_their_state_move_between_instances_while_traffic_flows() {
    if !tansu_and_python() {
        return;
    }
    let s = Scenario::load();
    let tansu = Tansu::start();
    tansu.create_topic("audit", GROUP_PARTITIONS as u32);
    // KEYWATCH_KEEP_TEST_DIR=1 keeps the members' logs, configs and state;
    // KEYWATCH_TEST_LOG sets their log filter (default `info`).
    let keep = std::env::var_os("KEYWATCH_KEEP_TEST_DIR").is_some();
    let root = tempfile::Builder::new()
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("keeping {}", root.path().display());
    }

    let cuts = s.cuts;
    let parts: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = root.path().join(format!("part{i}.jsonl"));
            std::fs::write(&path, s.lines[cuts[i]..cuts[i + 1]].join("\n")).unwrap();
            path
        })
        .collect();
    let (clean, found, keys) = (&s.clean, &s.found, &s.keys);

    let brokers = tansu.addr.clone();
    let mut a = Member::start("a", root.path(), &brokers);
    let mut b = Member::start("b", root.path(), &brokers);
    let mut c = Member::start("c", root.path(), &brokers);
    wait_settled(
        "three members to share the partitions",
        &mut [&mut a, &mut b, &mut c],
    );

    // Traffic flows; c dies mid-stream without a word.
    assert_eq!(
        tansu.produce("audit", &parts[0]),
        (cuts[1] - cuts[0]) as u64
    );
    std::thread::sleep(Duration::from_millis(1_500));
    c.kill_9();
    let killed_at = Utc::now();
    assert_eq!(
        tansu.produce("audit", &parts[1]),
        (cuts[2] - cuts[1]) as u64
    );
    // Once c's session lapses, a and b take its partitions over from the changelog.
    wait_settled("a and b to own c's partitions", &mut [&mut a, &mut b]);

    // A new member joins while traffic flows; then a leaves gracefully,
    // mid-stream.
    let mut d = Member::start("d", root.path(), &brokers);
    std::thread::scope(|s| {
        let producing = s.spawn(|| tansu.produce("audit", &parts[2]));
        wait_settled("d to join", &mut [&mut a, &mut b, &mut d]);
        assert_eq!(producing.join().unwrap(), (cuts[3] - cuts[2]) as u64);
    });
    std::thread::scope(|s| {
        let producing = s.spawn(|| tansu.produce("audit", &parts[3]));
        std::thread::sleep(Duration::from_millis(500));
        let stopped = a.sigterm();
        assert!(
            stopped.success(),
            "a did not scale down cleanly ({stopped}); the end of its log:\n{}",
            tail(&a.log(), 40)
        );
        assert!(a.log().contains("handed off partitions"), "{}", a.log());
        wait_settled("b and d to own a's partitions", &mut [&mut b, &mut d]);
        assert_eq!(producing.join().unwrap(), (cuts[4] - cuts[3]) as u64);
    });

    // tansu 0.6's group coordinator can give a partition to a second
    // member before the first let go of it (seen after the kill, and when
    // rebalances overlap). Both then apply the partition's events, each to
    // its own copy of the state: the states must still come out exact, and
    // an alert found by both may be delivered by both.
    let broken = overlap(&[(&a, None), (&b, None), (&c, Some(killed_at)), (&d, None)]);
    if let Some(o) = &broken {
        eprintln!("tansu gave one partition to two members at once: {o}");
    }

    // The union of b's and d's states equals the clean pass, each key on one.
    let expected: BTreeMap<String, serde_json::Value> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                settled(&clean.explain(Entity::KeyId, k).unwrap()),
            )
        })
        .collect();
    let mut last_diff = String::new();
    let started = Instant::now();
    loop {
        let mut union: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for m in [&mut b, &mut d] {
            for k in keys {
                let (status, body) = m.get(&format!("/api/v1/keys/{k}"));
                if status == 200 {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    union.entry(k.clone()).or_default().push(settled(&v));
                }
            }
        }
        let doubled: Vec<&String> = union
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        let got: BTreeMap<String, serde_json::Value> = union
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.first()?.clone())))
            .collect();
        let ready = [&mut b, &mut d]
            .into_iter()
            .all(|m| m.get("/readyz").0 == 200);
        if doubled.is_empty() && ready && got == expected {
            break;
        }
        last_diff = format!(
            "held twice: {doubled:?}\nready: {ready}\ndiffering keys: {:#?}",
            keys.iter()
                .filter(|k| got.get(*k) != expected.get(*k))
                .map(|k| (k, got.get(k), expected.get(k)))
                .collect::<Vec<_>>()
        );
        if started.elapsed() > Duration::from_secs(120) {
            panic!(
                "the instances' states never matched a clean pass (overlap: {broken:?})\n{last_diff}\n--- b\n{}\n--- d\n{}",
                b.log(),
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = last_diff;
    let restored: f64 = [&mut b, &mut d]
        .into_iter()
        .map(|m| m.metric("keywatch_state_restores_total{from=\"changelog\"}"))
        .sum();
    assert!(
        restored >= 1.0,
        "partitions were restored from the changelog"
    );

    // Every attack alerted, under one id; an id delivered by a survivor or
    // handed off gracefully is never delivered again. (An alert c delivered
    // after its last snapshot may come again from the instance that replays
    // c's partition: that is the kill -9 window, and it keeps its id. So
    // may one found by two members tansu let hold a partition at once.)
    let truth = &s.truth;
    let by_member: Vec<(&str, Vec<serde_json::Value>)> = [&a, &b, &c, &d]
        .iter()
        .map(|m| (m.name, m.alerts()))
        .collect();
    for attack in truth["attacks"].as_array().unwrap() {
        let (key, detector) = (&attack["key_id"], &attack["detector"]);
        let ids: BTreeSet<&str> = by_member
            .iter()
            .flat_map(|(_, alerts)| alerts.iter())
            .filter(|x| x["key_id"] == *key && x["detector"] == *detector)
            .map(|x| x["id"].as_str().unwrap())
            .collect();
        // What was alerted: a run's record of folded findings is not.
        let clean_ids: BTreeSet<&str> = found
            .iter()
            .filter(|f| f.folded.is_none())
            .filter(|f| f.key_id == *key && f.detector.as_str() == *detector)
            .map(|f| f.id.as_str())
            .collect();
        assert!(!ids.is_empty(), "{key} {detector}: not alerted");
        assert_eq!(
            ids, clean_ids,
            "{key} {detector}: the same alert ids as a single clean pass"
        );
    }
    let mut deliveries: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, alerts) in &by_member {
        for x in alerts {
            deliveries
                .entry(x["id"].as_str().unwrap())
                .or_default()
                .push(name);
        }
    }
    for (id, by) in &deliveries {
        let survivors = by.iter().filter(|n| **n != "c").count();
        assert!(
            by.len() == 1 || (by.len() == 2 && (survivors == 1 || broken.is_some())),
            "alert {id} delivered more than once: by {by:?}\n--- b\n{}\n--- d\n{}",
            b.log(),
            d.log()
        );
    }
    // On normal keys, only what a replay of the same events finds (the
    // roaming laptop's low new_source, a new network on 11% of its days).
    let normal = truth["normal_keys"].as_object().unwrap();
    let replayed =
        replay_ids(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenario.jsonl.gz"));
    let noisy: Vec<_> = by_member
        .iter()
        .flat_map(|(_, alerts)| alerts.iter())
        .filter(|x| normal.contains_key(x["key_id"].as_str().unwrap()))
        .filter(|x| !replayed.contains(x["id"].as_str().unwrap()) || x["severity"] != "low")
        .collect();
    assert!(
        noisy.is_empty(),
        "moving partitions raised alerts on normal keys: {noisy:#?}"
    );

    for m in [&mut b, &mut d] {
        let stopped = m.sigterm();
        assert!(
            stopped.success(),
            "{} did not stop cleanly ({stopped}); the end of its log:\n{}",
            m.name,
            tail(&m.log(), 40)
        );
    }
}
