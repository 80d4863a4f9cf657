//! Decode + engine throughput against the ceiling: a bare `serde_json` parse
//! of the same bytes into a struct with the same fields (derive, borrowing),
//! and beside it a parse of each line into a `serde_json::Value`.
//!
//! `cargo bench --bench engine`. Events come from the traffic generator
//! (realistic keys, rhythms and attacks), ~100k per format: many light keys.
//! `decode_and_engine_with_netintel` is the same with every kind of
//! enrichment file configured (the real GeoLite2-City when present, see
//! `netintel_files`): its ratio to `decode_and_engine` is what the files
//! cost per event.
//! The `heavy_keys` groups are the other kind a user has: 80 busy keys, each
//! rotating through 96 networks (more than the 64 sources a key remembers,
//! so every key keeps learning and forgetting), 120 actions and 24 clients,
//! timed on 100k events after 14 days of history (300k events, untimed), as
//! generic records (`heavy_keys`) and as CloudTrail records
//! (`heavy_keys_cloudtrail`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Deserialize;

use keywatch_core::config::{Config, ListConfig, ListKind, NetIntelConfig};
use keywatch_core::decode::Decoder;
use keywatch_core::engine::Engine;
use keywatch_core::gen::{Format, GenConfig, Scenario};
use keywatch_core::metrics::Metrics;
use keywatch_core::netintel::NetIntel;
use keywatch_core::pipeline::Pipeline;

/// The generic profile's fields, parsed by serde's derive.
#[allow(dead_code)]
#[derive(Deserialize)]
struct BareGeneric<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    principal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    region: Option<Cow<'a, str>>,
    count: Option<u32>,
}

/// The CloudTrail profile's fields, parsed by serde's derive.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BareCloudTrail<'a> {
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    #[serde(borrow)]
    user_identity: BareIdentity<'a>,
    #[serde(borrow, rename = "sourceIPAddress")]
    source_ip_address: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aws_region: Option<Cow<'a, str>>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BareIdentity<'a> {
    #[serde(borrow)]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arn: Option<Cow<'a, str>>,
}

fn events(format: Format, n: usize) -> Vec<Vec<u8>> {
    let scenario = Scenario::new(GenConfig {
        keys: 400,
        days: 3,
        attacks: false,
        format,
        volume: 1.0,
        ..GenConfig::default()
    });
    scenario
        .events()
        .take(n)
        .map(|e| e.json.into_bytes())
        .collect()
}

/// Decodes `events` and applies them to `engine`, findings discarded.
fn apply(decoder: &Decoder, engine: Engine, events: &[Vec<u8>]) -> Engine {
    let mut out = Vec::new();
    for e in events {
        let _ = decoder.decode(e, |r| {
            if let Ok(ev) = r {
                engine.process(&ev, &mut out);
            }
        });
        out.clear();
    }
    engine
}

/// Decodes `events`, nothing applied: how many decoded.
fn decode_only(decoder: &Decoder, events: &[Vec<u8>]) -> usize {
    let mut n = 0usize;
    for e in events {
        let _ = decoder.decode(e, |r| n += r.is_ok() as usize);
    }
    n
}

/// Busy keys with long histories: `warm` events of history, then `n` more,
/// in time order, as generic records and as the same events in CloudTrail
/// records (what `benches/support/heavy_events.py` writes for the Kafka
/// benchmarks).
fn heavy_events(warm: usize, n: usize, cloudtrail: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use rand::{Rng, SeedableRng};
    const KEYS: usize = 80;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(18);
    let start = 1_767_571_200i64; // 2026-01-05
    let total = warm + n;
    // 14 days of history spread over `warm` events; the timed ones follow.
    let step = 14.0 * 86_400.0 / warm as f64;
    let all: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let k = rng.gen_range(0..KEYS);
            let t = start + (i as f64 * step) as i64;
            let net = rng.gen_range(0..96u32);
            let host = rng.gen_range(1..250u32);
            let action = rng.gen_range(0..120u32);
            let ua = rng.gen_range(0..24u32);
            let failed = rng.gen_bool(0.02);
            let source = format!("10.{}.{net}.{host}", net / 8);
            let time = keywatch_core::decode::time::format_rfc3339(t * 1000);
            if cloudtrail {
                let error = if failed { r#","errorCode":"AccessDenied""# } else { "" };
                format!(
                    r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/svc-{k}","accountId":"123456789012","accessKeyId":"AKIAHEAVY{k:011}"}},"eventTime":"{time}","eventSource":"svc{}.amazonaws.com","eventName":"Action{action}","awsRegion":"us-east-1","sourceIPAddress":"{source}","userAgent":"client-{ua}/1.{ua} (linux; x86_64)","requestParameters":{{"bucketName":"bucket-{k}"}},"responseElements":null,"eventID":"{i:032x}","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"123456789012"{error}}}"#,
                    action % 12,
                )
            } else {
                format!(
                    r#"{{"time":"{time}","key_id":"AKIAHEAVY{k:06}","principal":"arn:aws:iam::123456789012:user/svc-{k}","source":"{source}","user_agent":"client-{ua}/1.{ua} (linux)","action":"svc{}:Action{action}","outcome":"{}","region":"us-east-1"}}"#,
                    action % 12,
                    if failed { "failure" } else { "success" },
                )
            }
            .into_bytes()
        })
        .collect();
    let (history, timed) = all.split_at(warm);
    (history.to_vec(), timed.to_vec())
}

/// `heavy_keys` (generic records) and `heavy_keys_cloudtrail` (the same
/// events as CloudTrail records, the issue's own kind of topic).
fn heavy_keys(c: &mut Criterion) {
    for (name, profile, cloudtrail, bare) in [
        (
            "heavy_keys",
            "generic",
            false,
            bare_generic as fn(&[u8]) -> usize,
        ),
        ("heavy_keys_cloudtrail", "cloudtrail", true, bare_cloudtrail),
    ] {
        let (history, events) = heavy_events(300_000, 100_000, cloudtrail);
        assert_parses(name, bare, &events);
        let decoder = Decoder::for_profile(profile, &BTreeMap::new()).unwrap();
        let cfg = Config::default();
        let warmed = || apply(&decoder, Engine::new(&cfg), &history);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(events.len() as u64));
        group.sample_size(10);
        group.bench_function("bare_serde_parse", |b| {
            b.iter(|| events.iter().map(|e| bare(e)).sum::<usize>())
        });
        group.bench_function("value_parse", |b| {
            b.iter(|| events.iter().map(|e| value_parse(e)).sum::<usize>())
        });
        // What decoding alone costs: the floor under `decode_and_engine`.
        group.bench_function("decode", |b| b.iter(|| decode_only(&decoder, &events)));
        group.bench_function("decode_and_engine", |b| {
            b.iter_batched(
                warmed,
                |engine| apply(&decoder, engine, &events),
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

fn bench_format(
    c: &mut Criterion,
    name: &str,
    format: Format,
    profile: &str,
    bare: fn(&[u8]) -> usize,
) {
    let events = events(format, 100_000);
    assert_parses(name, bare, &events);
    let bytes: usize = events.iter().map(Vec::len).sum();
    let decoder = Decoder::for_profile(profile, &BTreeMap::new()).unwrap();
    let cfg = Config::default();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    eprintln!(
        "{name}: {} events, {} bytes on average",
        events.len(),
        bytes / events.len()
    );
    group.bench_function("bare_serde_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in &events {
                n += bare(e);
            }
            n
        })
    });
    group.bench_function("value_parse", |b| {
        b.iter(|| events.iter().map(|e| value_parse(e)).sum::<usize>())
    });
    group.bench_function("decode", |b| b.iter(|| decode_only(&decoder, &events)));
    group.bench_function("decode_and_engine", |b| {
        b.iter_batched(
            || Engine::new(&cfg),
            |engine| apply(&decoder, engine, &events),
            BatchSize::PerIteration,
        )
    });
    // The same with every kind of enrichment file configured: the real
    // GeoLite2-City when present (see `netintel_files`), the fixture ASN
    // DB, cloud ranges and lists.
    let netintel = netintel_files();
    group.bench_function("decode_and_engine_with_netintel", |b| {
        b.iter_batched(
            || Engine::with_parts(&cfg, None, Some(netintel.clone())),
            |engine| apply(&decoder, engine, &events),
            BatchSize::PerIteration,
        )
    });
    // The same work through the pipeline the daemon runs: with every metric
    // (event counters, decode errors, findings, latency histogram) updated.
    group.bench_function("pipeline_with_metrics", |b| {
        b.iter_batched(
            || {
                let engine = Engine::new(&cfg);
                let metrics = std::sync::Arc::new(Metrics::new());
                let mut cfg = cfg.clone();
                cfg.decode.profile = profile.to_owned();
                Pipeline::new(&cfg, engine, metrics, std::sync::Arc::new(|_| {})).unwrap()
            },
            |mut pipeline| {
                for (i, e) in events.iter().enumerate() {
                    let _ = pipeline.apply_at(e, None, Some((1, i as i64)));
                }
                pipeline
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Every kind of enrichment file: the real GeoLite2-City when present
/// (`KEYWATCH_GEOLITE2_CITY`, default: where `.ci/test` installs the
/// `maxminddb-geolite2` package), otherwise the fixture city DB; the
/// fixture ASN DB, cloud ranges (AWS, GCP, Azure) and lists (Tor, a feed).
fn netintel_files() -> NetIntel {
    let fixture = |name: &str| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/netintel")
            .join(name)
    };
    let real = std::env::var_os("KEYWATCH_GEOLITE2_CITY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/ci-tools/python/_maxminddb_geolite2/GeoLite2-City.mmdb")
        });
    let city = if real.exists() {
        real
    } else {
        eprintln!("netintel: no GeoLite2-City, the fixture city DB instead");
        fixture("city.mmdb")
    };
    let cfg = NetIntelConfig {
        city_db: Some(city),
        asn_db: Some(fixture("asn.mmdb")),
        cloud_ranges: vec![
            fixture("ip-ranges.json"),
            fixture("cloud.json"),
            fixture("ServiceTags_Public.json"),
        ],
        lists: vec![
            ListConfig {
                path: fixture("tor-exits.txt"),
                label: "tor".into(),
                kind: ListKind::Tor,
            },
            ListConfig {
                path: fixture("lists.csv"),
                label: "feeds".into(),
                kind: ListKind::Threat,
            },
        ],
        ..Default::default()
    };
    NetIntel::open(&cfg, None).expect("netintel files")
}

/// The ceiling only means something if the bare parse reads every event
/// through (a parse that fails at its first field is no ceiling): every
/// event here names its key.
fn assert_parses(name: &str, bare: fn(&[u8]) -> usize, events: &[Vec<u8>]) {
    if let Some(e) = events.iter().find(|e| bare(e) == 0) {
        panic!(
            "{name}: the bare parse fails on {}",
            String::from_utf8_lossy(e)
        );
    }
}

/// The other yardstick: a parse into `serde_json::Value`, what a consumer
/// that knows no schema does with each line (every field, owned).
fn value_parse(bytes: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map_or(0, |v| v.as_object().map_or(0, |o| o.len()))
}

fn bare_generic(bytes: &[u8]) -> usize {
    serde_json::from_slice::<BareGeneric>(bytes).map_or(0, |e| e.key_id.len())
}

fn bare_cloudtrail(bytes: &[u8]) -> usize {
    serde_json::from_slice::<BareCloudTrail>(bytes)
        .map_or(0, |e| e.user_identity.access_key_id.map_or(0, |k| k.len()))
}

fn generic(c: &mut Criterion) {
    bench_format(c, "generic", Format::Generic, "generic", bare_generic);
}

fn cloudtrail(c: &mut Criterion) {
    bench_format(
        c,
        "cloudtrail",
        Format::CloudTrail,
        "cloudtrail",
        bare_cloudtrail,
    );
}

criterion_group!(benches, generic, cloudtrail, heavy_keys);
criterion_main!(benches);
