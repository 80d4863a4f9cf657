//! Durable state with real processes and real crashes: `keywatch run` is
//! killed with SIGKILL at arbitrary moments while it consumes, restarted each
//! time, and at the end its state equals a clean single pass over the same
//! events — no event lost, none applied twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use keywatch::checkpoint::{Origins, Store};
use keywatch::config::{Config, Entity};
use keywatch::engine::Engine;

use crate::helpers::*;

const TOPIC: &str = "audit";
const PARTITIONS: i32 = 6;

/// `keys` keys, `per_key` events each, a minute apart, sources varying.
fn events(keys: usize, per_key: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..per_key {
        for k in 0..keys {
            let key = format!("AKIADUR{k:03}");
            let t = 1_767_571_200 + (i as i64) * 60;
            let host = (i / 97 + k) % 5;
            out.push((
                key.clone(),
                // Four roles, each with keys on several partitions.
                format!(r#"{{"time":{t},"key_id":"{key}","principal":"arn:aws:iam::123456789012:role/dur{}","source":"198.51.{k}.{host}","action":"s3:GetObject"}}"#, k % 4),
            ));
        }
    }
    out
}

/// `keywatch.toml` in `dir`: the mock cluster's topic, offsets committed
/// every second, state in `dir/state` with `[checkpoint]` lines `checkpoint`.
fn write_config(
    dir: &Path,
    bootstrap: &str,
    group: &str,
    checkpoint: &str,
    changelog: bool,
) -> std::path::PathBuf {
    let cfg = dir.join("keywatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{group}"
commit_interval = "1s"
startup_timeout = "10s"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[http]
listen = "127.0.0.1:0"
[checkpoint]
dir = "{}"
{checkpoint}
[changelog]
enabled = {changelog}
"#,
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &Path, log: &Path) -> KillOnDrop {
    KillOnDrop(
        keywatch()
            .arg("run")
            .arg("-c")
            .arg(cfg)
            .env("KEYWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Events covered by the newest checkpoint written after `since_ms`.
fn resumed_total(store: &Store, since_ms: i64) -> i64 {
    store
        .list()
        .last()
        .and_then(|p| keywatch::checkpoint::load(p).ok())
        .filter(|cp| cp.written_at_ms > since_ms)
        .map_or(0, |cp| cp.sections.iter().filter_map(|s| s.resume).sum())
}

fn wait_for_log(log: &Path, text: &str) {
    let started = Instant::now();
    while !std::fs::read_to_string(log).unwrap().contains(text) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {text:?} in: {}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_at_any_moment_loses_nothing_and_counts_nothing_twice() {
    kill_9_at_any_moment(true);
}

#[test]
fn kill_9_without_the_changelog_counts_no_principal_twice() {
    kill_9_at_any_moment(false);
}

/// Keys and principals after four `kill -9`s and a graceful stop equal a
/// clean single pass; `changelog`: with the changelog topic (the default)
/// or from the local checkpoints alone.
fn kill_9_at_any_moment(changelog: bool) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = write_config(
        dir.path(),
        &bootstrap,
        "durability",
        "interval = \"1s\"\nkeep = 3",
        changelog,
    );

    // Traffic arrives over ~30 seconds while the daemon is killed and restarted.
    let msgs = events(30, 800);
    let total = msgs.len() as i64;
    let producer_msgs = msgs.clone();
    let producer_bootstrap = bootstrap.clone();
    let producing = std::thread::spawn(move || {
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &producer_bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for chunk in producer_msgs.chunks(1_000) {
            for (key, payload) in chunk {
                while p
                    .send(BaseRecord::to(TOPIC).key(key).payload(payload))
                    .is_err()
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            p.flush(Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_millis(1_000));
        }
    });

    // Killed at irregular moments once it consumes (a restarted member
    // waits out the dead one's session before it gets partitions).
    for (round, wait_ms) in [700u64, 2_300, 300, 1_500].into_iter().enumerate() {
        let log = dir.path().join(format!("run{round}.log"));
        let mut child = start(&cfg, &log);
        wait_for_log(&log, "partitions assigned");
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    producing.join().unwrap();

    let log = dir.path().join("final.log");
    let since = chrono::Utc::now().timestamp_millis();
    let mut child = start(&cfg, &log);
    wait_for_log(&log, "partitions assigned");
    let store = Store::open(&state, 3).unwrap();
    let started = Instant::now();
    while resumed_total(&store, since) < total {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never caught up: {} of {total}\n{}",
            resumed_total(&store, since),
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        sigterm(&mut child).success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    // With the changelog on (the default), the local checkpoint is held
    // until its partitions are assigned, then the newer of it and the
    // changelog's snapshot is loaded.
    if changelog {
        assert!(text.contains("partition state restored"), "{text}");
    }

    // The final (graceful) checkpoint against a clean single pass.
    let (_, cp) = store.load_newest().unwrap();
    assert_eq!(
        cp.sections.iter().filter_map(|s| s.resume).sum::<i64>(),
        total
    );
    let survived = Engine::new(&Config::default());
    cp.restore(&survived, &Origins::default());
    let clean = Engine::new(&Config::default());
    let decoder = keywatch::decode::Decoder::for_profile("generic", &BTreeMap::new()).unwrap();
    let mut found = Vec::new();
    for (_, payload) in &msgs {
        decoder
            .decode(payload.as_bytes(), |r| {
                clean.process(&r.unwrap(), &mut found)
            })
            .unwrap();
    }
    for k in 0..30 {
        let key = format!("AKIADUR{k:03}");
        let a = clean.with_key(Entity::KeyId, &key, |s| {
            (s.events, s.last_seen, s.sources.clone())
        });
        let b = survived.with_key(Entity::KeyId, &key, |s| {
            (s.events, s.last_seen, s.sources.clone())
        });
        assert_eq!(
            a, b,
            "{key}: per-key count, last seen and sources equal a clean pass"
        );
    }
    for r in 0..4 {
        let role = format!("arn:aws:iam::123456789012:role/dur{r}");
        let count = |e: &Engine| e.with_key(Entity::Principal, &role, |s| (s.events, s.last_seen));
        assert_eq!(
            count(&clean),
            count(&survived),
            "{role}: a principal's events across partitions counted once (changelog {changelog})"
        );
    }

    // Graceful shutdown also committed the group's offsets.
    let committed = committed_offsets(&bootstrap, "durability", TOPIC, PARTITIONS);
    if !changelog {
        // The rest (a damaged checkpoint) is the same either way.
        assert_eq!(committed, total, "committed offsets cover every event");
        return;
    }
    assert_eq!(committed, total, "committed offsets cover every event");

    // A damaged newest checkpoint: the next start uses the one before and says so.
    let newest = store.list().pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    let log = dir.path().join("corrupt.log");
    let mut child = start(&cfg, &log);
    wait_for_log(&log, "serving /metrics");
    sigterm(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("checkpoint unreadable; trying the previous one"),
        "{text}"
    );
    assert!(text.contains("checksum"), "{text}");
}

#[test]
fn kill_9_before_the_first_checkpoint_loses_nothing_the_group_committed() {
    // Offsets are committed as events are applied (every second here), the
    // first checkpoint only after `checkpoint.interval` (a minute by
    // default, an hour here): a kill in between left committed offsets past
    // any state, and the restart began there.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = write_config(
        dir.path(),
        &bootstrap,
        "before-checkpoint",
        "interval = \"1h\"\nmax_age = \"2h\"",
        false,
    );
    let msgs = events(10, 300);
    let total = msgs.len() as i64;
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for (key, payload) in &msgs {
        p.send(BaseRecord::to(TOPIC).key(key).payload(payload))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();

    let log = dir.path().join("first.log");
    let mut child = start(&cfg, &log);
    let started = Instant::now();
    while committed_offsets(&bootstrap, "before-checkpoint", TOPIC, PARTITIONS) < total {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never committed everything: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        Store::open(&state, 3).unwrap().list().is_empty(),
        "no checkpoint yet"
    );

    let log = dir.path().join("second.log");
    let mut child = start(&cfg, &log);
    wait_for_log(&log, "reading it from its earliest retained event");
    let since = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(Duration::from_secs(3));
    assert!(sigterm(&mut child).success());
    let store = Store::open(&state, 3).unwrap();
    assert_eq!(
        resumed_total(&store, since),
        total,
        "the final checkpoint covers every event"
    );
    let (_, cp) = store.load_newest().unwrap();
    let survived = Engine::new(&Config::default());
    cp.restore(&survived, &Origins::default());
    for k in 0..10 {
        let key = format!("AKIADUR{k:03}");
        assert_eq!(
            survived.with_key(Entity::KeyId, &key, |s| s.events),
            Some(300),
            "{key}: every event, once"
        );
    }
}
