//! Memory per tracked key at scale, measured with a counting allocator.
//!
//! `cargo bench --bench memory` (add `-- KEYS` to change the key count,
//! default 1,000,000). Each key gets typical state: a few days of use from
//! one or two addresses of one network, one SDK, three actions, occasional
//! failures. Run by hand; under `cargo test` it checks 10,000 keys only.
//!
//! `-- --netintel` configures every kind of enrichment file (the fixture
//! city and ASN MaxMind DBs, cloud ranges and lists of
//! `tests/data/netintel/`), so each key also holds its network memory: one
//! ASN, one country and its latest place. The addresses are the same either
//! way (81.0.0.0/15, which the fixtures place in Berlin and Munich, AS3320).

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Instant;

use keywatch_core::config::{Config, Entity, ListConfig, ListKind, NetIntelConfig};
use keywatch_core::decode::{AuditEvent, Outcome, Source};
use keywatch_core::engine::Engine;
use keywatch_core::netintel::NetIntel;

#[path = "../../benches/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::LIVE;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let keys: u64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench_mode { 1_000_000 } else { 10_000 });
    let with_files = std::env::args().any(|a| a == "--netintel");
    let mut cfg = Config::default();
    cfg.engine.max_keys = keys as usize + 1;
    let fixture = |name: &str| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/netintel")
            .join(name)
    };
    // Loaded before counting: the tables are shared, not per key.
    let netintel = with_files.then(|| {
        let files = NetIntelConfig {
            city_db: Some(fixture("city.mmdb")),
            asn_db: Some(fixture("asn.mmdb")),
            cloud_ranges: vec![fixture("ip-ranges.json"), fixture("cloud.json")],
            lists: vec![ListConfig {
                path: fixture("tor-exits.txt"),
                label: "tor".into(),
                kind: ListKind::Tor,
            }],
            ..Default::default()
        };
        NetIntel::open(&files, None).expect("fixtures")
    });
    let engine = Engine::with_parts(&cfg, None, netintel);
    let before = LIVE.load(Ordering::Relaxed);
    let rss_before = rss_kib();
    let started = Instant::now();
    let actions = ["GetObject", "PutObject", "ListBucket"];
    let mut out = Vec::new();
    let mut key = String::new();
    let mut events = 0u64;
    let t0: i64 = 1_767_571_200;
    for k in 0..keys {
        use std::fmt::Write;
        key.clear();
        let _ = write!(key, "AKIA{k:016X}");
        // 512 /24s of 81.0.0.0/15.
        let net = 0x51_0000 | (k % 512) as u32;
        for i in 0..12u32 {
            let host = 10 + (k as u32 + i / 6) % 2;
            let ip = std::net::Ipv4Addr::from((net << 8) | host);
            let ev = AuditEvent {
                time_ms: (t0 + (i as i64) * 6 * 3600 + (k % 3600) as i64) * 1000,
                key_id: Cow::Borrowed(&key),
                principal: None,
                source: Some(Source::Ip(ip.into())),
                user_agent: Some(Cow::Borrowed("aws-cli/2.15.0 Python/3.11.6")),
                action: Some(Cow::Borrowed(actions[(i % 3) as usize])),
                action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
                outcome: if i == 7 {
                    Outcome::Failure {
                        code: Some(Cow::Borrowed("AccessDenied")),
                    }
                } else {
                    Outcome::Success
                },
                region: None,
                count: 1,
            };
            engine.process(&ev, &mut out);
            events += 1;
        }
    }
    let heap = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let rss = (rss_kib().saturating_sub(rss_before)) as f64 * 1024.0;
    println!(
        "keys {keys}{}, events {events} in {:.1}s: heap {:.1} MiB = {:.0} B/key; RSS growth {:.0} B/key; key state struct {} B in place",
        if with_files {
            " with netintel files"
        } else {
            ""
        },
        started.elapsed().as_secs_f64(),
        heap / (1 << 20) as f64,
        heap / keys as f64,
        rss / keys as f64,
        std::mem::size_of::<keywatch_core::engine::KeyState>(),
    );
    assert_eq!(engine.key_count(Entity::KeyId) as u64, keys);
    if with_files {
        let view = engine
            .explain(Entity::KeyId, "AKIA0000000000000000")
            .expect("a key");
        assert_eq!(view["network"]["asns"][0], 3320, "{view}");
    }
}
