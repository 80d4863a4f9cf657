//! The Kafka source against librdkafka's mock cluster: a real Kafka protocol
//! broker in-process, with broker failures and injected request errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

use keywatch::changelog::{Changelog, PartitionState};
use keywatch::checkpoint::{Checkpointer, Origins};
use keywatch::config::{Config, Entity, HumanDuration};
use keywatch::engine::{Engine, Finding};
use keywatch::metrics::Metrics;
use keywatch::pipeline::Pipeline;
use keywatch::source::kafka::{ChangelogSetup, Durable, KafkaSource, SourceStatus};

use crate::helpers::committed_offsets;

/// One keywatch consumer running on its own thread.
struct Instance {
    engine: Engine,
    metrics: Arc<Metrics>,
    status: Arc<SourceStatus>,
    findings: Arc<Mutex<Vec<Finding>>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

fn config(bootstrap: &str, topic: &str, dead_letter: &str) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = bootstrap.to_owned();
    cfg.kafka.topics = vec![topic.to_owned()];
    cfg.kafka.group_id = "keywatch-it".to_owned();
    cfg.kafka.dead_letter_topic = dead_letter.to_owned();
    cfg.kafka.commit_interval = HumanDuration::secs(1);
    cfg.kafka.startup_timeout = HumanDuration::secs(10);
    cfg.kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    cfg.kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    cfg
}

impl Instance {
    fn start(cfg: &Config) -> anyhow::Result<Instance> {
        Instance::start_with(cfg, false)
    }

    /// With `changelog`, partition state moves through the changelog topic
    /// (snapshots every `checkpoint.interval`, no local checkpoint files).
    fn start_with(cfg: &Config, changelog: bool) -> anyhow::Result<Instance> {
        let engine = Engine::new(cfg);
        let metrics = Arc::new(Metrics::new());
        let findings = Arc::new(Mutex::new(Vec::new()));
        let sink = findings.clone();
        // `apply_threads = 1` applies on the polling thread; otherwise at
        // least two apply threads (the default on a multi-core machine), so
        // the tests also prove the lanes keep each partition's order and
        // offsets.
        let on_finding: keywatch::pipeline::FindingHandler =
            Arc::new(move |f: &Finding| sink.lock().unwrap().push(f.clone()));
        let pipelines = match cfg.kafka.apply_threads {
            1 => 1,
            _ => cfg.kafka.pipelines().max(3),
        };
        let pipelines = (0..pipelines)
            .map(|_| Pipeline::new(cfg, engine.clone(), metrics.clone(), on_finding.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let status = Arc::new(SourceStatus::default());
        let durable = if changelog {
            let origins = Arc::new(Origins::default());
            let checkpointer = Checkpointer::start(
                None,
                engine.clone(),
                origins.clone(),
                metrics.clone(),
                cfg.checkpoint.interval.0,
                Arc::new(AtomicI64::new(0)),
            )?;
            Durable {
                origins,
                checkpointer: Some(checkpointer),
                changelog: Some(ChangelogSetup {
                    cfg: cfg.changelog.clone(),
                    engine: engine.clone(),
                    alerts: None,
                    parked: None,
                }),
                ..Durable::default()
            }
        } else {
            Durable::default()
        };
        let source = KafkaSource::connect(
            &cfg.kafka,
            pipelines,
            metrics.clone(),
            status.clone(),
            durable,
        )?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut source = source;
            source.run(&token);
        });
        Ok(Instance {
            engine,
            metrics,
            status,
            findings,
            stop,
            thread: Some(thread),
        })
    }

    fn applied(&self) -> u64 {
        self.status.messages.load(Ordering::Relaxed)
    }

    fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn events_of(&self, key: &str) -> u64 {
        self.engine
            .with_key(Entity::KeyId, key, |k| k.events as u64)
            .unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produces `(key, payload)` pairs keyed by key id, as `keywatch gen` does.
fn produce(bootstrap: &str, topic: &str, messages: &[(String, String)]) {
    let p = producer(bootstrap);
    for (key, payload) in messages {
        loop {
            match p.send(BaseRecord::to(topic).key(key).payload(payload)) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// `keys` keys, `per_key` events each, one minute apart per key, interleaved.
fn events(keys: usize, per_key: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..per_key {
        for k in 0..keys {
            let key = format!("AKIAIT{k:04}");
            let t = 1_767_571_200 + (i as i64) * 60 + k as i64;
            out.push((
                key.clone(),
                format!(
                    r#"{{"time":{t},"key_id":"{key}","source":"203.0.113.{}","action":"s3:GetObject"}}"#,
                    k % 200
                ),
            ));
        }
    }
    out
}

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(3).unwrap();
    c.create_topic(topic, partitions, 1).unwrap();
    c
}

#[test]
fn produced_events_give_the_same_findings_as_replay() {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenario.jsonl.gz");
    let input = keywatch::replay::Input::path(&data);
    let cfg = Config::default();
    let mut replayed = BTreeSet::new();
    keywatch::replay::replay(&cfg, std::slice::from_ref(&input), |f| {
        replayed.insert(f.id.clone());
        Ok(())
    })
    .unwrap();
    assert!(replayed.len() >= 6);

    let c = cluster("audit", 4);
    let bootstrap = c.bootstrap_servers();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&data).unwrap()),
        &mut text,
    )
    .unwrap();
    let messages: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key_id"].as_str().unwrap().to_owned(), l.to_owned())
        })
        .collect();
    let total = messages.len() as u64;
    let inst = Instance::start(&config(&bootstrap, "audit", "")).unwrap();
    // The mock broker keeps only ~10k messages per partition: produce in
    // chunks the consumer keeps up with.
    for (n, chunk) in messages.chunks(5_000).enumerate() {
        produce(&bootstrap, "audit", chunk);
        let sent = ((n + 1) * 5_000).min(messages.len()) as u64;
        wait_until("the consumer to keep up", Duration::from_secs(60), || {
            inst.applied() + 2_000 >= sent
        });
    }
    wait_until("all events", Duration::from_secs(60), || {
        inst.applied() >= total
    });
    let found: BTreeSet<String> = inst
        .findings
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.id.clone())
        .collect();
    assert_eq!(
        found, replayed,
        "same findings, same ids, as a replay of the same events"
    );
}

#[test]
fn restart_resumes_from_committed_offsets_without_loss_or_repeat() {
    let c = cluster("restart", 3);
    let bootstrap = c.bootstrap_servers();
    let msgs = events(20, 150);
    produce(&bootstrap, "restart", &msgs);
    let mut cfg = config(&bootstrap, "restart", "");
    // The first instance applies on its polling thread, the second on apply
    // threads: both store exactly what they applied.
    cfg.kafka.apply_threads = 1;
    let mut first = Instance::start(&cfg).unwrap();
    wait_until("a third of the events", Duration::from_secs(60), || {
        first.applied() >= 1000
    });
    first.stop();
    cfg.kafka.apply_threads = 0;
    let second = Instance::start(&cfg).unwrap();
    wait_until("the rest", Duration::from_secs(60), || {
        first.applied() + second.applied() >= msgs.len() as u64
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        first.applied() + second.applied(),
        msgs.len() as u64,
        "nothing applied twice"
    );
    for k in 0..20 {
        let key = format!("AKIAIT{k:04}");
        assert_eq!(first.events_of(&key) + second.events_of(&key), 150, "{key}");
    }
}

#[test]
fn records_deleted_before_a_restart_are_reported_not_silently_skipped() {
    let c = cluster("retained", 1);
    let bootstrap = c.bootstrap_servers();
    produce(&bootstrap, "retained", &events(10, 20));
    let cfg = config(&bootstrap, "retained", "");
    let mut first = Instance::start(&cfg).unwrap();
    wait_until("the first 200 events", Duration::from_secs(60), || {
        first.applied() >= 200
    });
    first.stop();
    // While keywatch is down, the broker's retention (the mock keeps 5 MB
    // per partition) deletes what it had not read yet.
    let pad = "x".repeat(400);
    let more: Vec<(String, String)> = (0..30_000)
        .map(|i| {
            let key = format!("AKIAPAD{:04}", i % 50);
            let t = 1_767_600_000 + i as i64;
            (
                key.clone(),
                format!(r#"{{"time":{t},"key_id":"{key}","source":"198.51.100.7","user_agent":"{pad}"}}"#),
            )
        })
        .collect();
    produce(&bootstrap, "retained", &more);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (low, high) = probe
        .fetch_watermarks("retained", 0, Duration::from_secs(10))
        .unwrap();
    assert!(
        low > 200,
        "the mock broker deleted the first records (earliest {low})"
    );

    let second = Instance::start(&cfg).unwrap();
    wait_until("the retained records", Duration::from_secs(60), || {
        second.applied() >= (high - low) as u64
    });
    let lost = second
        .metrics
        .source_offsets_lost
        .with_label_values(&["retained", "0"])
        .get();
    assert_eq!(lost, (low - 200) as u64, "the deleted records are counted");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        second.applied(),
        (high - low) as u64,
        "every record the broker still had is applied, once"
    );
}

#[test]
fn broker_failures_and_request_errors_do_not_stop_consumption() {
    let c = cluster("flaky", 3);
    let bootstrap = c.bootstrap_servers();
    let msgs = events(10, 300);
    produce(&bootstrap, "flaky", &msgs[..1500]);
    let inst = Instance::start(&config(&bootstrap, "flaky", "")).unwrap();
    wait_until("first events", Duration::from_secs(60), || {
        inst.applied() >= 500
    });
    for broker in 1..=3 {
        c.broker_down(broker).unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    for broker in 1..=3 {
        c.broker_up(broker).unwrap();
    }
    c.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        ],
    );
    produce(&bootstrap, "flaky", &msgs[1500..]);
    // With the coordinator down a revoke's commit can fail, so a partition
    // may be fetched again from an older offset; each key still counts each
    // of its events once (it remembers the last position it applied).
    wait_until("every key's events", Duration::from_secs(90), || {
        (0..10).all(|k| inst.events_of(&format!("AKIAIT{k:04}")) >= 300)
    });
    std::thread::sleep(Duration::from_millis(500));
    for k in 0..10 {
        assert_eq!(
            inst.events_of(&format!("AKIAIT{k:04}")),
            300,
            "exactly once"
        );
    }
}

#[test]
fn two_instances_share_partitions_each_event_once_in_order() {
    let c = cluster("shared", 12);
    let bootstrap = c.bootstrap_servers();
    let msgs = events(48, 100);
    let (early, late) = msgs.split_at(1600);
    produce(&bootstrap, "shared", early);
    let cfg = config(&bootstrap, "shared", "");
    let a = Instance::start(&cfg).unwrap();
    // Until b joins, a's offsets are committed only by its periodic commit:
    // the mock cluster refuses commits while a member joins (a real broker
    // takes a revoke-time commit of the current generation), so b waits for
    // it, or it would read again what a applied since.
    wait_until(
        "a to commit the first third",
        Duration::from_secs(60),
        || {
            a.applied() >= 1600
                && committed_offsets(&bootstrap, "keywatch-it", "shared", 12) >= 1600
        },
    );
    let b = Instance::start(&cfg).unwrap();
    // The group rebalances: some of a's partitions move to b (a commits
    // what it applied before letting them go).
    wait_until("b to own partitions", Duration::from_secs(60), || {
        b.metrics.partitions_owned.get() > 0
    });
    produce(&bootstrap, "shared", late);
    wait_until("everything", Duration::from_secs(90), || {
        a.applied() + b.applied() >= msgs.len() as u64
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.applied() > 0, "the second member got partitions");
    assert_eq!(a.applied() + b.applied(), msgs.len() as u64);
    let mut per_key = BTreeMap::new();
    for k in 0..48 {
        let key = format!("AKIAIT{k:04}");
        per_key.insert(key.clone(), a.events_of(&key) + b.events_of(&key));
    }
    assert!(per_key.values().all(|&n| n == 100), "{per_key:?}");
    for inst in [&a, &b] {
        assert_eq!(
            inst.engine.stats().out_of_order.load(Ordering::Relaxed),
            0,
            "every key's events applied in order"
        );
    }
}

/// Per-key event counts across instances, and the keys held by more than one.
fn union_counts(instances: &[&Instance], keys: usize) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut doubled = Vec::new();
    for k in 0..keys {
        let key = format!("AKIAIT{k:04}");
        let held: Vec<u64> = instances
            .iter()
            .filter_map(|i| i.engine.with_key(Entity::KeyId, &key, |s| s.events as u64))
            .collect();
        if held.len() > 1 {
            doubled.push(key.clone());
        }
        counts.insert(key, held.iter().sum());
    }
    (counts, doubled)
}

#[test]
fn partition_state_moves_with_the_partition() {
    let c = cluster("moving", 6);
    let bootstrap = c.bootstrap_servers();
    let (keys, per_key) = (24, 60);
    let msgs = events(keys, per_key);
    let (first, rest) = msgs.split_at(keys * 20);
    let (second, third) = rest.split_at(keys * 20);
    let mut cfg = config(&bootstrap, "moving", "");
    cfg.checkpoint.interval = HumanDuration::secs(1);
    produce(&bootstrap, "moving", first);
    let mut a = Instance::start_with(&cfg, true).unwrap();
    wait_until("a applies the first third", Duration::from_secs(60), || {
        a.applied() >= first.len() as u64
    });
    // b joins: some partitions move from a to b, with their keys.
    let b = Instance::start_with(&cfg, true).unwrap();
    wait_until(
        "the group to settle on both",
        Duration::from_secs(60),
        || {
            let (pa, pb) = (
                a.metrics.partitions_owned.get(),
                b.metrics.partitions_owned.get(),
            );
            pa > 0 && pb > 0 && pa + pb == 6
        },
    );
    produce(&bootstrap, "moving", second);
    wait_until("the second third", Duration::from_secs(60), || {
        union_counts(&[&a, &b], keys).0.values().all(|&n| n == 40)
    });
    let (counts, doubled) = union_counts(&[&a, &b], keys);
    assert!(
        doubled.is_empty(),
        "a key's state lives on one instance: {doubled:?}"
    );
    assert!(counts.values().all(|&n| n == 40), "{counts:?}");
    let moved = b
        .metrics
        .state_restores
        .with_label_values(&["changelog"])
        .get();
    assert!(
        moved > 0,
        "b restored the partitions it took over from the changelog"
    );
    assert!(
        a.metrics
            .state_snapshots
            .with_label_values(&["revoke", "ok"])
            .get()
            > 0,
        "a wrote final snapshots of the partitions it gave up"
    );
    assert!(b.engine.key_count(Entity::KeyId) > 0 && a.engine.key_count(Entity::KeyId) < keys);

    // a leaves gracefully: every partition, and every key, ends up on b.
    a.stop();
    wait_until("b to own every partition", Duration::from_secs(60), || {
        b.metrics.partitions_owned.get() == 6 && b.status.catching_up.load(Ordering::Relaxed) == 0
    });
    produce(&bootstrap, "moving", third);
    wait_until("everything on b", Duration::from_secs(60), || {
        union_counts(&[&b], keys)
            .0
            .values()
            .all(|&n| n == per_key as u64)
    });
    assert_eq!(b.engine.key_count(Entity::KeyId), keys);
    for k in 0..keys {
        let key = format!("AKIAIT{k:04}");
        let (last, sources) = b
            .engine
            .with_key(Entity::KeyId, &key, |s| {
                (s.last_seen, s.sources.entries().len())
            })
            .unwrap();
        let expected = 1_767_571_200 + (per_key as u32 - 1) * 60 + k as u32;
        assert_eq!(
            (last, sources),
            (expected, 1),
            "{key}: last seen and sources survive both moves"
        );
    }
    assert_eq!(
        b.engine.stats().out_of_order.load(Ordering::Relaxed),
        0,
        "no key saw its events twice or out of order"
    );
}

#[test]
fn the_newest_snapshot_is_restored_and_older_ones_are_deleted() {
    let c = cluster("audit", 4);
    let bootstrap = c.bootstrap_servers();
    let mut cfg = config(&bootstrap, "audit", "");
    cfg.changelog.chunk_bytes = 16_384;
    // Three writers that do not know each other's snapshots (three instances).
    let writer = || Changelog::connect(&cfg.kafka, &cfg.changelog, 4).unwrap();
    let (x, y, z) = (writer(), writer(), writer());
    let engine = Engine::new(&cfg);
    let mut out = Vec::new();
    let decoder = keywatch::decode::Decoder::for_profile("generic", &BTreeMap::new()).unwrap();
    for k in 0..400 {
        let line = format!(
            r#"{{"time":1767571200,"key_id":"AKIASNAP{k:04}","source":"198.51.100.{}"}}"#,
            k % 200
        );
        decoder
            .decode(line.as_bytes(), |r| engine.process(&r.unwrap(), &mut out))
            .unwrap();
    }
    let state = |resume: i64, written_at_ms: i64| PartitionState {
        topic: "audit".into(),
        partition: 2,
        resume,
        written_at_ms,
        keys: engine.snapshot(Entity::KeyId),
        delivered: vec![("pager".into(), vec![resume as u128])],
        ..PartitionState::default()
    };
    let timeout = Duration::from_secs(10);
    assert_eq!(x.write(&[state(100, 1)], timeout).ok, 1);
    assert_eq!(y.write(&[state(300, 3)], timeout).ok, 1);
    assert_eq!(x.write(&[state(200, 2)], timeout).ok, 1);
    // Another deployment (its own group) shares the changelog topic.
    let mut theirs = cfg.kafka.clone();
    theirs.group_id = "another-deployment".into();
    let stranger = Changelog::connect(&theirs, &cfg.changelog, 4).unwrap();
    assert_eq!(stranger.write(&[state(900, 9)], timeout).ok, 1);

    let got = z.read(&[("audit".to_owned(), 2)], timeout).unwrap();
    let restored = &got[&("audit".to_owned(), 2)].state;
    assert_eq!(
        restored.resume, 300,
        "the snapshot of this group that reflects the most wins; another group's is not restored"
    );
    assert_eq!(restored.keys.len(), 400);
    assert_eq!(
        restored.delivered,
        vec![("pager".to_owned(), vec![300u128])]
    );
    assert!(z
        .read(&[("audit".to_owned(), 1)], timeout)
        .unwrap()
        .is_empty());

    // The reader deleted the snapshots it superseded: only 300's chunks
    // remain without a tombstone after them.
    std::thread::sleep(Duration::from_millis(500));
    let raw: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "changelog-probe")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&cfg.changelog.topic, 2, rdkafka::Offset::Beginning)
        .unwrap();
    raw.assign(&tpl).unwrap();
    let mut live: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        match raw.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
                live.insert(key, m.payload().is_some());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => break,
            Some(Err(e)) => panic!("{e}"),
        }
    }
    let alive = |group: &str| -> BTreeSet<u64> {
        live.iter()
            .filter(|(k, &v)| v && k.starts_with(&format!("{group}/")))
            .map(|(k, _)| u64::from_str_radix(k.rsplit('/').nth(1).unwrap(), 16).unwrap())
            .collect()
    };
    assert_eq!(
        alive(&cfg.kafka.group_id).len(),
        1,
        "one snapshot of this group left: {live:?}"
    );
    assert_eq!(
        alive("another-deployment").len(),
        1,
        "another group's snapshot is left alone: {live:?}"
    );
    assert!(live.len() > 3, "chunked under chunk_bytes: {live:?}");
}

#[test]
fn a_key_arriving_on_a_second_partition_is_counted() {
    let c = cluster("unkeyed", 2);
    let bootstrap = c.bootstrap_servers();
    let p = producer(&bootstrap);
    // A producer that does not key by key id: one key's events on both partitions.
    for (i, partition) in [0, 1, 0, 1].into_iter().enumerate() {
        let payload = format!(
            r#"{{"time":{},"key_id":"AKIAROAMING","source":"203.0.113.9"}}"#,
            1_767_571_200 + i * 60
        );
        p.send(
            BaseRecord::<(), _>::to("unkeyed")
                .partition(partition)
                .payload(&payload),
        )
        .unwrap();
    }
    p.send(
        BaseRecord::<(), _>::to("unkeyed")
            .partition(0)
            .payload(r#"{"time":1767571200,"key_id":"AKIAKEYED"}"#),
    )
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let inst = Instance::start(&config(&bootstrap, "unkeyed", "")).unwrap();
    wait_until("the moves to be counted", Duration::from_secs(30), || {
        inst.applied() >= 5 && inst.metrics.key_partition_moves.get() > 0
    });
    assert!(
        inst.metrics
            .render()
            .contains("keywatch_key_partition_moves_total"),
        "exported"
    );
    assert_eq!(inst.events_of("AKIAROAMING"), 4, "its events still count");
}

#[test]
fn undecodable_messages_land_in_the_dead_letter_topic() {
    let c = cluster("in", 2);
    c.create_topic("dlq", 1, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let good = r#"{"time":1767571200,"key_id":"AKIAGOOD"}"#;
    let bad_json = "{\"time\": 17675712";
    let bad_record =
        r#"[{"time":1767571200,"key_id":"AKIAGOOD"},{"time":"later","key_id":"AKIAX"}]"#;
    let no_key = r#"{"time":1767571200,"eventName":"ServiceEvent"}"#;
    let msgs: Vec<(String, String)> = [good, bad_json, bad_record, no_key]
        .iter()
        .map(|m| ("k".to_owned(), m.to_string()))
        .collect();
    produce(&bootstrap, "in", &msgs);
    let inst = Instance::start(&config(&bootstrap, "in", "dlq")).unwrap();
    wait_until("all four", Duration::from_secs(30), || inst.applied() >= 4);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["dlq"]).unwrap();
    let mut dead = Vec::new();
    let start = Instant::now();
    while dead.len() < 2 && start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            dead.push((payload, headers));
        }
    }
    assert_eq!(dead.len(), 2, "exactly the two bad messages: {dead:?}");
    let (payload, headers) = dead
        .iter()
        .find(|(p, _)| p == bad_json)
        .expect("broken JSON forwarded unchanged");
    assert_eq!(payload, bad_json);
    assert_eq!(headers["keywatch-reason"], "truncated");
    assert_eq!(headers["keywatch-topic"], "in");
    assert!(headers["keywatch-offset"].parse::<i64>().is_ok());
    let (_, headers) = dead
        .iter()
        .find(|(p, _)| p == bad_record)
        .expect("bad record forwarded");
    assert_eq!(headers["keywatch-reason"], "bad_time");
    assert_eq!(headers["keywatch-invalid-records"], "1");
    assert_eq!(inst.events_of("AKIAGOOD"), 2, "good records still applied");
}

#[test]
fn startup_fails_fast_naming_the_problem() {
    let c = cluster("present", 1);
    let bootstrap = c.bootstrap_servers();
    let err = Instance::start(&config(&bootstrap, "absent", ""))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("topic `absent` does not exist"), "{err}");
    let mut cfg = config("127.0.0.1:1", "present", "");
    cfg.kafka.startup_timeout = HumanDuration::secs(1);
    let started = Instant::now();
    let err = Instance::start(&cfg).err().unwrap().to_string();
    assert!(err.contains("cannot reach Kafka at 127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
