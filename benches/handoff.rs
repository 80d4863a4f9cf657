//! Partition handoff at scale: how long one partition with N keys takes to
//! move between two instances through the changelog topic — the old owner's
//! final snapshot (take the keys out, encode, produce, wait for the broker)
//! and the new owner's restore (read the newest complete snapshot, decode,
//! load) — against the local checkpoint of the same keys written and
//! restored in the same run.
//!
//! `cargo bench --bench handoff [-- KEYS]` (default 100,000 keys, 5 moves)
//! against librdkafka's in-process mock broker, or a real one with
//! `KEYWATCH_BENCH_BROKERS=127.0.0.1:9092`. Under `cargo test`: 5,000 keys,
//! one move each way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::changelog::handoff::Owned;
use keywatch::changelog::{Changelog, Handoff};
use keywatch::checkpoint::{Checkpoint, Origins, Store};
use keywatch::config::{Config, Entity};
use keywatch::engine::{Engine, Position};
use keywatch::metrics::Metrics;

#[path = "support/events.rs"]
mod events;
use events::event;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

struct Side {
    engine: Engine,
    origins: Arc<Origins>,
    handoff: Handoff,
    metrics: Arc<Metrics>,
}

fn side(cfg: &Config) -> Side {
    let engine = Engine::new(cfg);
    let origins = Arc::new(Origins::default());
    let metrics = Arc::new(Metrics::new());
    let changelog = Changelog::connect(&cfg.kafka, &cfg.changelog, 12).expect("changelog");
    let handoff = Handoff::new(
        changelog,
        engine.clone(),
        origins.clone(),
        metrics.clone(),
        None,
        Duration::from_secs(60),
    );
    Side {
        engine,
        origins,
        handoff,
        metrics,
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("KEYWATCH_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench { 100_000 } else { 5_000 });
    let moves = if bench { 5 } else { 1 };
    let mock;
    let brokers = match std::env::var("KEYWATCH_BENCH_BROKERS") {
        Ok(b) => b,
        Err(_) => {
            mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
            mock.create_topic("audit", 12, 1).expect("topic");
            mock.bootstrap_servers()
        }
    };
    let mut cfg = Config::default();
    cfg.engine.max_keys = n + 1;
    cfg.kafka.brokers = brokers.clone();
    cfg.changelog.topic = format!("keywatch-state-bench-{}", std::process::id());

    let mut a = side(&cfg);
    let mut b = side(&cfg);
    let keys: Vec<String> = (0..n).map(|k| format!("AKIA{k:016X}")).collect();
    let origin = a.origins.index("audit", 0);
    let mut out = Vec::new();
    let t0 = 1_767_571_200_000i64;
    for (k, key) in keys.iter().enumerate() {
        for i in 0..12i64 {
            a.engine.process_at(
                &event(key, t0 + i * 6 * 3_600_000, (k as u32 + i as u32 / 6) % 2),
                Some(Position {
                    origin,
                    offset: (k as i64) * 12 + i,
                    record: 0,
                }),
                &mut out,
            );
        }
    }
    let resume = n as i64 * 12;

    // Baseline: the same keys through a local checkpoint.
    let dir = std::env::temp_dir().join(format!("keywatch-handoff-bench-{}", std::process::id()));
    let store = Store::open(&dir, 1).expect("store");
    let (mut cp_write, mut cp_restore) = (Vec::new(), Vec::new());
    for _ in 0..moves {
        let started = Instant::now();
        let cp = Checkpoint::capture(&a.engine, &a.origins, &HashMap::from([(origin, resume)]));
        store.write(&cp).expect("checkpoint");
        cp_write.push(started.elapsed());
        let started = Instant::now();
        let (_, cp) = store.load_newest().expect("readable");
        let restored = Engine::new(&cfg);
        cp.restore(&restored, &Origins::default());
        cp_restore.push(started.elapsed());
        assert_eq!(restored.key_count(Entity::KeyId), n);
    }
    let _ = std::fs::remove_dir_all(&dir);

    // The partition moves a -> b -> a -> ...
    let (mut release, mut acquire) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..moves {
        let from_origin = a.origins.index("audit", 0);
        let started = Instant::now();
        a.handoff.release(&[Owned {
            topic: "audit".into(),
            partition: 0,
            origin: from_origin,
            resume: Some(resume),
        }]);
        release.push(started.elapsed());
        assert_eq!(a.engine.key_count(Entity::KeyId), 0, "the keys left a");
        let started = Instant::now();
        let got = b.handoff.acquire(&[("audit".to_owned(), 0)]);
        acquire.push(started.elapsed());
        assert_eq!(got[0].resume, Some(resume));
        assert_eq!(b.engine.key_count(Entity::KeyId), n, "every key reached b");
        bytes = b.metrics.state_restore_bytes.get()
            / b.metrics
                .state_restores
                .with_label_values(&["changelog"])
                .get()
                .max(1);
        std::mem::swap(&mut a, &mut b);
    }
    let (rel, acq) = (median(release), median(acquire));
    let (cw, cr) = (median(cp_write), median(cp_restore));
    println!(
        "{n} keys in one partition ({} broker): final snapshot {rel:.0} ms + restore {acq:.0} ms = handoff {:.0} ms (median of {moves}); {:.1} MB on the changelog ({:.0} B/key)",
        if std::env::var("KEYWATCH_BENCH_BROKERS").is_ok() { "real" } else { "mock" },
        rel + acq,
        bytes as f64 / 1e6,
        bytes as f64 / n as f64,
    );
    println!(
        "baseline, same keys through a local checkpoint: write {cw:.0} ms + restore {cr:.0} ms = {:.0} ms; handoff / checkpoint = {:.2}x",
        cw + cr,
        (rel + acq) / (cw + cr)
    );
}
