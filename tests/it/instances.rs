//! Two `keywatch run` daemons (in-process, on librdkafka's mock cluster)
//! sharing one events topic in one consumer group (each owns one of its two
//! partitions), one findings topic their Kafka alert sinks write, and one
//! feedback topic: each console lists the findings of both instances, and
//! an `expected` verdict given on the instance that did not raise the
//! finding silences the next same use on the instance that owns the key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use keywatch::config::{
    Config, Entity, HumanDuration, KafkaSinkConfig, Secret, SinkConfig, SinkKind,
};
use keywatch::daemon::{self, Daemon};

use crate::helpers::free_loopback_addr;

const TOKEN: &str = "t0ken-of-sixteen+";
/// 2026-01-05T00:00:00Z, in seconds.
const T0: i64 = 1_767_571_200;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const USUAL: &str = "203.0.113.10";

/// The keys of each partition: one to teach, one as the control.
const KEYS: [[&str; 2]; 2] = [
    ["AKIAP0TAUGHT", "AKIAP0CONTROL"],
    ["AKIAP1TAUGHT", "AKIAP1CONTROL"],
];

struct Instance {
    name: &'static str,
    daemon: Daemon,
    base: String,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(name: &'static str, bootstrap: &str) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.kafka.brokers = bootstrap.to_owned();
        cfg.kafka.topics = vec!["audit".into()];
        cfg.kafka.group_id = "keywatch-two".into();
        cfg.kafka.commit_interval = HumanDuration::secs(1);
        cfg.kafka.startup_timeout = HumanDuration::secs(10);
        for (k, v) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ] {
            cfg.kafka.properties.insert(k.into(), v.into());
        }
        let addr = free_loopback_addr();
        cfg.http.listen = addr.clone();
        cfg.http.api_token = Some(Secret::resolve(TOKEN).unwrap());
        cfg.checkpoint.dir = dir.path().join("checkpoints");
        cfg.alerts.dead_letter_path = dir.path().join("dead-letter.jsonl");
        cfg.alerts
            .sinks
            .push(SinkConfig::new(SinkKind::Kafka(KafkaSinkConfig {
                brokers: bootstrap.to_owned(),
                topic: "keywatch-findings".into(),
                properties: Default::default(),
                secret_properties: Default::default(),
            })));
        cfg.store.path = dir.path().join("findings.db");
        cfg.store.feedback_topic = "keywatch-feedback".into();
        cfg.store.findings_topic = "keywatch-findings".into();
        cfg.validate().unwrap();
        let d = Daemon::new(&cfg).unwrap();
        let stop = CancellationToken::new();
        let done = tokio::spawn(daemon::run(cfg, d.clone(), stop.clone().cancelled_owned()));
        Instance {
            name,
            daemon: d,
            base: format!("http://{addr}"),
            stop,
            done,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = reqwest::get(format!("{}{path}", self.base)).await;
        match r {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The ids of the `new_source` findings its API lists, by key.
    async fn new_source(&self) -> BTreeMap<String, Vec<String>> {
        let page = self
            .get("/api/v1/findings?detector=new_source&limit=100")
            .await;
        let mut out = BTreeMap::<String, Vec<String>>::new();
        for f in page["findings"].as_array().into_iter().flatten() {
            out.entry(f["key_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(f["id"].as_str().unwrap().to_owned());
        }
        out
    }

    fn owns(&self, key: &str) -> bool {
        self.daemon.engine.explain(Entity::KeyId, key).is_some()
    }

    /// Findings read from the findings topic, by result.
    fn ingested(&self, result: &str) -> u64 {
        self.daemon
            .metrics
            .store_ingested
            .with_label_values(&[result])
            .get()
    }

    async fn stop(self) {
        self.stop.cancel();
        let r = tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("the daemon stops");
        r.unwrap().unwrap();
    }
}

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn event(key: &str, t: i64, source: &str) -> String {
    json!({
        "time": t, "key_id": key, "source": source,
        "user_agent": "aws-cli/2.15.0", "action": "s3:GetObject",
    })
    .to_string()
}

/// Each partition's keys used hourly from their usual network, `from..to`,
/// then once each from `source` at `to` (the key to teach first).
fn traffic(p: &ThreadedProducer<DefaultProducerContext>, from: i64, to: i64, source: &str) {
    for (partition, keys) in KEYS.iter().enumerate() {
        let mut t = from;
        let send = |key: &str, t: i64, source: &str| {
            let payload = event(key, t, source);
            let record = BaseRecord::to("audit")
                .partition(partition as i32)
                .key(key)
                .payload(&payload);
            p.send(record).map_err(|(e, _)| e).unwrap();
        };
        while t < to {
            for key in keys {
                send(key, t, USUAL);
            }
            t += HOUR;
        }
        for key in keys {
            send(key, to, source);
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_console_lists_every_instances_findings_and_a_verdict_reaches_the_owner() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 2, 1).unwrap();
    cluster.create_topic("keywatch-findings", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let a = Instance::start("A", &bootstrap).await;
    let b = Instance::start("B", &bootstrap).await;
    until("each instance to own one partition", 60, || async {
        a.daemon.metrics.partitions_owned.get() == 1 && b.daemon.metrics.partitions_owned.get() == 1
    })
    .await;

    // 20 settled days, then every key used from a new network: each
    // instance raises the findings of the partition it owns.
    let p = producer(&bootstrap);
    traffic(&p, T0, T0 + 20 * DAY, "198.51.100.7");
    let all_keys: Vec<&str> = KEYS.iter().flatten().copied().collect();
    for inst in [&a, &b] {
        until(
            &format!("{} to list the four new_source findings", inst.name),
            90,
            || async {
                let listed = inst.new_source().await;
                all_keys
                    .iter()
                    .all(|k| listed.get(*k).is_some_and(|v| v.len() == 1))
            },
        )
        .await;
    }
    let owner = |key: &str| -> (&Instance, &Instance) {
        match (a.owns(key), b.owns(key)) {
            (true, false) => (&a, &b),
            (false, true) => (&b, &a),
            other => panic!("{key} is owned by exactly one instance: {other:?}"),
        }
    };
    // Each instance raised two of the four and read the other two from the
    // findings topic; the same finding has the same id in both consoles.
    for inst in [&a, &b] {
        let own = all_keys.iter().filter(|k| inst.owns(k)).count();
        assert_eq!(own, 2, "{} owns one partition's two keys", inst.name);
        assert!(inst.ingested("inserted") >= 2, "{}", inst.name);
    }
    assert_eq!(a.new_source().await, b.new_source().await);
    let ids = a.new_source().await;

    // Each partition's key to teach is marked `expected` on the instance
    // that does not own it.
    for [taught, _] in KEYS {
        let (owner_of, other) = owner(taught);
        let (page, f) = (
            other
                .get(&format!("/api/v1/findings/{}", ids[taught][0]))
                .await,
            &ids[taught][0],
        );
        assert_eq!(page["key_id"], taught, "{page}");
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/findings/{f}/verdict", other.base))
            .bearer_auth(TOKEN)
            .json(&json!({"status": "expected", "by": "erin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        until(
            &format!("{} (owner of {taught}) to be taught", owner_of.name),
            30,
            || async {
                !owner_of
                    .daemon
                    .engine
                    .teachings(Entity::KeyId, taught)
                    .is_empty()
            },
        )
        .await;
        assert_eq!(
            owner_of.daemon.engine.teachings(Entity::KeyId, taught)[0].by,
            "erin"
        );
    }

    // Messages on the findings topic that are not findings: counted and
    // skipped by both instances, which go on reading.
    for junk in ["{not json", r#"{"id": "x", "summary": "hello"}"#] {
        p.send(
            BaseRecord::<str, str>::to("keywatch-findings")
                .partition(0)
                .payload(junk),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    // 40 more usual days (the new network is forgotten), then every key is
    // used from that network again: only the control keys alert, on their
    // owner and, through the findings topic, on the other console.
    traffic(&p, T0 + 20 * DAY + HOUR, T0 + 60 * DAY, "198.51.100.9");
    for inst in [&a, &b] {
        until(
            &format!("{} to list the control keys' second findings", inst.name),
            120,
            || async {
                let listed = inst.new_source().await;
                KEYS.iter()
                    .all(|[_, control]| listed.get(*control).is_some_and(|v| v.len() == 2))
            },
        )
        .await;
    }
    // The taught keys' uses were produced before the controls' on the same
    // partitions, so they were judged already; give the findings topic a
    // moment to bring anything it still carries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for inst in [&a, &b] {
        let listed = inst.new_source().await;
        for [taught, _] in KEYS {
            assert_eq!(
                listed[taught].len(),
                1,
                "{taught} raised nothing new on {}: {listed:?}",
                inst.name
            );
        }
        let taught_here = inst
            .daemon
            .engine
            .stats()
            .suppressed_taught
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(taught_here >= 1, "{} held a taught use back", inst.name);
    }
    for inst in [&a, &b] {
        let text = reqwest::get(format!("{}/metrics", inst.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for series in [
            r#"keywatch_store_ingest_rejected_total{reason="not_json"} 1"#,
            r#"keywatch_store_ingest_rejected_total{reason="not_an_alert"} 1"#,
        ] {
            assert!(text.contains(series), "{}: no {series}", inst.name);
        }
        // The other instance's three findings (two, then its control key's
        // second); its own three came back from the topic and were known.
        assert_eq!(inst.ingested("inserted"), 3, "{}", inst.name);
        assert!(inst.ingested("known") >= 3, "{}", inst.name);
    }
    drop(p);
    a.stop().await;
    b.stop().await;
}
