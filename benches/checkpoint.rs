//! Checkpoints at scale: size and write time at 1M keys, restore time, and
//! the longest stall a checkpoint causes to event processing running beside
//! it (compared with the longest stall without one, in the same run).
//!
//! `cargo bench --bench checkpoint [-- KEYS]` (default 1,000,000). Under
//! `cargo test` it runs 20,000 keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::checkpoint::{Checkpoint, Origins, Store};
use keywatch::config::{Config, Entity};
use keywatch::engine::{Engine, Position};

#[path = "support/events.rs"]
mod events;
use events::event;

/// Applies events to random keys for `run_for`; returns the longest gap
/// between two consecutive applications.
fn hammer(engine: &Engine, keys: &[String], run_for: Duration, stop: &AtomicBool) -> Duration {
    let t0 = 1_767_571_200_000i64 + 2 * 86_400_000;
    let mut out = Vec::new();
    let mut worst = Duration::ZERO;
    let mut last = Instant::now();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < run_for && !stop.load(Ordering::Relaxed) {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = &keys[(i >> 33) as usize % keys.len()];
        engine.process(
            &event(k, t0 + (i % 1000) as i64, (i >> 40) as u32 % 4),
            &mut out,
        );
        out.clear();
        let now = Instant::now();
        worst = worst.max(now - last);
        last = now;
    }
    worst
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let mut cfg = Config::default();
    cfg.engine.max_keys = n + 1;
    let engine = Engine::new(&cfg);
    let keys: Vec<String> = (0..n).map(|k| format!("AKIA{k:016X}")).collect();
    let mut out = Vec::new();
    let t0 = 1_767_571_200_000i64;
    for (k, key) in keys.iter().enumerate() {
        for i in 0..12i64 {
            engine.process_at(
                &event(key, t0 + i * 6 * 3_600_000, (k as u32 + i as u32 / 6) % 2),
                Some(Position {
                    origin: 1,
                    offset: (k as i64) * 12 + i,
                    record: 0,
                }),
                &mut out,
            );
        }
    }
    let origins = Origins::default();
    origins.index("audit", 0);
    let dir = tempfile_dir();
    let store = Store::open(&dir, 2).unwrap();

    let started = Instant::now();
    let cp = Checkpoint::capture(&engine, &origins, &HashMap::from([(1, n as i64 * 12)]));
    let copy = started.elapsed();
    let written = store.write(&cp).unwrap();
    println!(
        "{n} keys: copy {:.0} ms, encode+write+fsync {:.0} ms, file {:.1} MB ({:.0} B/key)",
        copy.as_secs_f64() * 1e3,
        written.duration.as_secs_f64() * 1e3,
        written.bytes as f64 / 1e6,
        written.bytes as f64 / n as f64
    );
    drop(cp);

    let started = Instant::now();
    let (_, cp) = store.load_newest().unwrap();
    let read = started.elapsed();
    let restored = Engine::new(&cfg);
    cp.restore(&restored, &Origins::default());
    println!(
        "restore: read+verify+decode {:.0} ms, into the engine {:.0} ms total; {} keys",
        read.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3,
        restored.key_count(Entity::KeyId)
    );

    // The stall: processing beside a checkpoint vs processing alone.
    let engine = Arc::new(engine);
    let keys = Arc::new(keys);
    let stop = Arc::new(AtomicBool::new(false));
    let alone = hammer(&engine, &keys, Duration::from_secs(2), &stop);
    let (e, k, s) = (engine.clone(), keys.clone(), stop.clone());
    let worker = std::thread::spawn(move || hammer(&e, &k, Duration::from_secs(30), &s));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let cp = Checkpoint::capture(&engine, &origins, &HashMap::from([(1, 0)]));
    store.write(&cp).unwrap();
    let during = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let beside = worker.join().unwrap();
    println!(
        "longest gap between two events: {:.2} ms with a checkpoint ({:.0} ms) running beside, {:.2} ms without",
        beside.as_secs_f64() * 1e3,
        during.as_secs_f64() * 1e3,
        alone.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keywatch-ckpt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
