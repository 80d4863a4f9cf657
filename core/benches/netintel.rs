//! Network intelligence: what one lookup costs, and what enrichment adds to
//! the engine's per-event cost.
//!
//! `cargo bench --bench netintel`. `lookup/fixtures*` looks up 4096 random
//! public IPv4 addresses in turn in the test fixtures (city + ASN MaxMind
//! DBs, cloud ranges, lists). `lookup/geolite2_city_*` look up, in a real
//! GeoLite2-City database when present (`KEYWATCH_GEOLITE2_CITY`, default:
//! the one the `maxminddb-geolite2` pip package ships, installed by
//! `.ci/test` into `target/ci-tools/python`) with the fixture ASN DB, cloud
//! ranges and list, two streams of 1M addresses: `random` public addresses
//! (nearly every one in a /24 not seen before) and a realistic `mix` (nine
//! in ten from 3000 busy /24s of skewed popularity, any host); each through
//! the flattened IPv4 table (what the engine calls), `_blocks` (the lookup
//! before it: the /24 answer cache, then the trees) and `_uncached` (the
//! trees and range tables alone), also interleaved in one run (`paired`).
//! `engine/*` applies the same stream of events (2000 keys, each mostly
//! from its own address, a new address one event in eight) to an engine
//! without and with the fixture files; `paired engine` (printed) also
//! with the real GeoLite2-City, interleaved.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use keywatch_core::config::{Config, ListConfig, ListKind, NetIntelConfig};
use keywatch_core::decode::{AuditEvent, Outcome, Source};
use keywatch_core::engine::Engine;
use keywatch_core::metrics::Metrics;
use keywatch_core::netintel::{NetInfo, NetIntel, Tables};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/netintel")
        .join(name)
}

fn fixtures() -> NetIntelConfig {
    NetIntelConfig {
        city_db: Some(fixture("city.mmdb")),
        asn_db: Some(fixture("asn.mmdb")),
        cloud_ranges: vec![fixture("ip-ranges.json"), fixture("cloud.json")],
        lists: vec![ListConfig {
            path: fixture("tor-exits.txt"),
            label: "tor".into(),
            kind: ListKind::Tor,
        }],
        ..Default::default()
    }
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

    fn public_v4(&mut self) -> IpAddr {
        loop {
            let a = Ipv4Addr::from(self.next() as u32);
            if a.octets()[0] >= 1 && a.octets()[0] < 224 && !a.is_private() && !a.is_loopback() {
                return IpAddr::V4(a);
            }
        }
    }
}

/// The real GeoLite2-City, when present.
fn geolite2_city() -> Option<PathBuf> {
    let real = std::env::var_os("KEYWATCH_GEOLITE2_CITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/ci-tools/python/_maxminddb_geolite2/GeoLite2-City.mmdb")
        });
    if real.exists() {
        Some(real)
    } else {
        println!("geolite2 benches skipped: {} not found", real.display());
        None
    }
}

/// Addresses as traffic has them: most from a few thousand busy /24s
/// (offices, NAT pools, ISPs' customer ranges: a skewed popularity, any
/// host of the /24), one in ten from anywhere.
fn realistic_mix(rng: &mut Rng, n: usize) -> Vec<IpAddr> {
    let busy: Vec<u32> = (0..3000)
        .map(|_| match rng.public_v4() {
            IpAddr::V4(a) => u32::from(a) & 0xFFFF_FF00,
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    (0..n)
        .map(|_| {
            if rng.next() % 10 == 0 {
                return rng.public_v4();
            }
            // Skewed: the square of a uniform draw favours the first /24s.
            let u = (rng.next() % 1000) as usize;
            let net = busy[u * u * busy.len() / 1_000_000];
            IpAddr::V4(Ipv4Addr::from(net | (2 + (rng.next() % 253) as u32)))
        })
        .collect()
}

/// The ways to look an address up, measured against each other: `flat`
/// ([`Tables::lookup`]: IPv4 from the flattened table), `blocks` (the
/// lookup before it: the /24 block cache, then the trees) and `trees` (the
/// MaxMind trees and range tables alone).
const WAYS: [&str; 3] = ["flat", "blocks", "trees"];

fn look(tables: &Tables, way: usize, a: IpAddr) -> NetInfo {
    match way {
        0 => tables.lookup(a),
        1 => tables.lookup_blocks(a),
        _ => tables.lookup_uncached(a),
    }
}

/// The ways interleaved: on a shared machine the load drifts between
/// criterion's benchmarks, so each round times 64k lookups of each way
/// back to back over the same addresses, in a rotating order (the caches
/// of one load stay warm through the stream, as in a running daemon), and
/// the medians of the rounds are compared.
fn paired(cfg: &NetIntelConfig, random: &[IpAddr], mix: &[IpAddr]) {
    const CHUNK: usize = 1 << 16;
    for (name, stream) in [("random", random), ("mix", mix)] {
        let n = NetIntel::open(cfg, None).expect("GeoLite2-City");
        let tables = n.snapshot();
        let mut times: [Vec<f64>; 3] = Default::default();
        for round in 0..stream.len() / CHUNK {
            let part = &stream[round * CHUNK..(round + 1) * CHUNK];
            for k in 0..3 {
                let way = (round + k) % 3;
                let t = std::time::Instant::now();
                for a in part {
                    std::hint::black_box(look(&tables, way, *a));
                }
                times[way].push(t.elapsed().as_nanos() as f64 / CHUNK as f64);
            }
        }
        let rounds = times[0].len();
        let medians = times.map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        println!(
            "paired {name}: {} rounds of {CHUNK}, median ns per lookup: {} {:.0}, {} {:.0}, {} {:.0}; flat/blocks {:.2}, flat/trees {:.2}",
            rounds,
            WAYS[0],
            medians[0],
            WAYS[1],
            medians[1],
            WAYS[2],
            medians[2],
            medians[0] / medians[1],
            medians[0] / medians[2],
        );
    }
}

fn lookups(c: &mut Criterion) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let addrs: Vec<IpAddr> = (0..4096).map(|_| rng.public_v4()).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    let fixture = NetIntel::open(&fixtures(), None).expect("fixtures");
    let tables = fixture.snapshot();
    let mut i = 0;
    g.bench_function("fixtures_city_asn_cloud_lists", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            tables.lookup(addrs[i])
        })
    });
    if let Some(real) = geolite2_city() {
        // The real GeoLite2-City with the fixture ASN DB, cloud ranges and list.
        let cfg = NetIntelConfig {
            city_db: Some(real),
            ..fixtures()
        };
        let t = std::time::Instant::now();
        let n = NetIntel::open(&cfg, None).expect("GeoLite2-City");
        let load = t.elapsed();
        let tables = n.snapshot();
        let flat = tables.flat_v4_stats().expect("flattened");
        let located = addrs.iter().filter(|a| tables.lookup(**a).located).count();
        println!(
            "GeoLite2-City + fixtures: loaded in {} ms, of which flattening IPv4 {} ms: {} intervals, {} distinct answers, {:.1} MiB; {located} of {} addresses located",
            load.as_millis(),
            flat.build.as_millis(),
            flat.intervals,
            flat.answers,
            flat.bytes as f64 / (1 << 20) as f64,
            addrs.len()
        );
        // Random public addresses, 1M of them (far more /24s than the block
        // cache holds, so nearly every lookup misses it), and the mix.
        const N: usize = 1 << 20;
        let random: Vec<IpAddr> = (0..N).map(|_| rng.public_v4()).collect();
        let mix = realistic_mix(&mut rng, N);
        paired(&cfg, &random, &mix);
        for (name, stream) in [("random", &random), ("mix", &mix)] {
            for (way, suffix) in [(0, ""), (1, "_blocks"), (2, "_uncached")] {
                // A fresh load each time: the caches start empty, as after a reload.
                let n = NetIntel::open(&cfg, None).expect("GeoLite2-City");
                let tables = n.snapshot();
                let mut i = 0;
                g.bench_function(format!("geolite2_city_{name}{suffix}"), |b| {
                    b.iter(|| {
                        i = (i + 1) & (N - 1);
                        look(&tables, way, stream[i])
                    })
                });
            }
        }
    }
    g.finish();
}

struct Ev {
    t: i64,
    key: String,
    source: String,
}

fn events() -> Vec<Ev> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let keys: Vec<String> = (0..2000).map(|k| format!("AKIABENCH{k:08}")).collect();
    let mut home: Vec<IpAddr> = (0..2000).map(|_| rng.public_v4()).collect();
    (0..100_000)
        .map(|i| {
            let k = (rng.next() % 2000) as usize;
            if rng.next() % 8 == 0 {
                home[k] = rng.public_v4();
            }
            Ev {
                t: 1_767_571_200 + i * 5,
                key: keys[k].clone(),
                source: home[k].to_string(),
            }
        })
        .collect()
}

fn apply(engine: &Engine, evs: &[Ev]) -> usize {
    let mut out = Vec::new();
    for e in evs {
        let ev = AuditEvent {
            time_ms: e.t * 1000,
            key_id: Cow::Borrowed(&e.key),
            principal: None,
            source: Source::parse(Cow::Borrowed(&e.source)),
            user_agent: Some(Cow::Borrowed("aws-cli/2.15.0 Python/3.11.6 Linux/6.1")),
            action: Some(Cow::Borrowed("GetObject")),
            action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: Outcome::Success,
            region: None,
            count: 1,
        };
        engine.process(&ev, &mut out);
        out.clear();
    }
    evs.len()
}

/// The engine without files, with the fixtures and with the real
/// GeoLite2-City and the fixtures, each with IPv4 looked up in the
/// flattened table (what runs) and as before it (`blocks`), interleaved as
/// `paired` does: twenty rounds, each applying the events to a fresh engine
/// of each kind in a rotating order; the medians of the rounds compared.
fn engine_paired(evs: &[Ev]) {
    let cfg = Config::default();
    let mut kinds = vec![
        ("without files", None, true),
        ("fixtures", Some(fixtures()), true),
        ("fixtures, blocks", Some(fixtures()), false),
    ];
    if let Some(real) = geolite2_city() {
        let real = NetIntelConfig {
            city_db: Some(real),
            ..fixtures()
        };
        kinds.push(("GeoLite2-City + fixtures", Some(real.clone()), true));
        kinds.push(("GeoLite2-City + fixtures, blocks", Some(real), false));
    }
    let metrics: Vec<Metrics> = kinds.iter().map(|_| Metrics::new()).collect();
    let opened: Vec<Option<NetIntel>> = kinds
        .iter()
        .zip(&metrics)
        .map(|((_, c, flat), m)| {
            c.as_ref().map(|c| {
                let n = NetIntel::open(c, Some(m)).expect("files");
                n.snapshot().set_flat_v4(*flat);
                n
            })
        })
        .collect();
    const ROUNDS: usize = 20;
    let mut times = vec![Vec::new(); kinds.len()];
    for round in 0..ROUNDS {
        for k in 0..kinds.len() {
            let kind = (round + k) % kinds.len();
            let engine = Engine::with_parts(&cfg, None, opened[kind].clone());
            let t = std::time::Instant::now();
            std::hint::black_box(apply(&engine, evs));
            times[kind].push(t.elapsed().as_nanos() as f64 / evs.len() as f64);
        }
    }
    let medians: Vec<f64> = times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    for (i, (name, _, _)) in kinds.iter().enumerate() {
        let looked_up = metrics[i]
            .netintel_lookups
            .with_label_values(&["looked_up"])
            .get();
        println!(
            "paired engine {name}: {:.0} ns per event median, {:.2}x without files; {} lookups per {} events",
            medians[i],
            medians[i] / medians[0],
            looked_up / ROUNDS as u64,
            evs.len()
        );
    }
}

fn engine(c: &mut Criterion) {
    let evs = events();
    engine_paired(&evs);
    let cfg = Config::default();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.bench_function("without_netintel", |b| {
        b.iter_batched(
            || Engine::new(&cfg),
            |e| apply(&e, &evs),
            BatchSize::PerIteration,
        )
    });
    let n = NetIntel::open(&fixtures(), None).expect("fixtures");
    g.bench_function("with_netintel_fixtures", |b| {
        b.iter_batched(
            || Engine::with_parts(&cfg, None, Some(n.clone())),
            |e| apply(&e, &evs),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, lookups, engine);
criterion_main!(benches);
