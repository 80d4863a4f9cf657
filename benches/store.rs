//! The findings store at a million findings: how fast the writer stores
//! them, and the median time of each query the console and
//! `/api/v1/findings` make (first page of 100, newest first).
//!
//! `cargo bench --bench store` (`STORE_BENCH_ROWS` to change the size;
//! `STORE_BENCH_DB=FILE` keeps the database, and a later run over a file
//! that holds the findings already only measures the queries).
//! Prints one line per measurement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::config::{Entity, StoreConfig};
use keywatch::decode::EventSample;
use keywatch::engine::{Detector, Eligibility, Evidence, Finding, Severity};
use keywatch::metrics::Metrics;
use keywatch::owner::{Owner, OwnerLookup};
use keywatch::store::{Actor, FindingsQuery, FindingsStore, Status};

const KEYS: u64 = 10_000;
const PRINCIPALS: u64 = 2_000;
const TEAMS: u64 = 50;
/// Findings spread over 90 days of event time.
const SPAN_MS: i64 = 90 * 86_400_000;
const T0: i64 = 1_767_571_200_000;
/// Findings queued at once (under the queue's 50k), and the unit of the
/// per-chunk write rates.
const CHUNK: u64 = 20_000;

struct Teams;

impl OwnerLookup for Teams {
    fn owner_of(&self, key_id: &str) -> Option<Owner> {
        let n: u64 = key_id.trim_start_matches("AKIABENCH").parse().ok()?;
        Some(Owner {
            owner: format!("owner{n}"),
            team: Some(format!("team{}", n % TEAMS)),
        })
    }
}

fn finding(i: u64) -> Finding {
    // A cheap scramble so keys, detectors and severities do not move in step.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let key = format!("AKIABENCH{}", h % KEYS);
    let principal = format!("arn:aws:iam::123456789012:user/p{}", (h >> 20) % PRINCIPALS);
    let detector = Detector::ALL[((h >> 8) % Detector::ALL.len() as u64) as usize];
    let severity = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ][((h >> 16) % 5) as usize];
    let at = T0 + (i as i64 * SPAN_MS) / 1_000_000;
    let observed_at = keywatch::decode::time::format_rfc3339(at);
    Finding {
        id: format!("{:032x}", h as u128 * 31 + i as u128),
        detector,
        severity,
        entity: Entity::KeyId,
        key_id: key.clone(),
        principal: Some(principal.clone()),
        observed_at: observed_at.clone(),
        summary: format!("key {key} ({principal}) was used from 198.51.100.7 (198.51.100.0/24), a network it has not used in 30d; it normally uses 2 networks (203.0.113.0/24, 192.0.2.0/24)."),
        evidence: Evidence {
            observed: serde_json::json!({"source": "198.51.100.7", "network": "198.51.100.0/24", "rules": ["same_wider_network"]}),
            baseline: serde_json::json!({"known_networks": 2, "networks": ["203.0.113.0/24", "192.0.2.0/24"], "roaming_days": 0}),
            threshold: serde_json::json!({"forget_after_s": 2_592_000, "roaming_days": 2}),
            eligibility: Eligibility {
                learned_for_s: 2_635_200,
                events_learned: 18_233,
                active_days: 31,
            },
            network: None,
        },
        sample: EventSample {
            time: observed_at,
            key_id: key,
            principal: Some(principal),
            source: Some("198.51.100.7".into()),
            user_agent: Some("aws-cli/2.15.0 Python/3.11.6".into()),
            action: Some("sts:GetCallerIdentity".into()),
            outcome: "success".into(),
            error_code: None,
            region: Some("eu-west-1".into()),
            count: 1,
        },
        folded: None,
        origin: 0,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rows: u64 = std::env::var("STORE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("STORE_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("findings.db"));
    let metrics = Arc::new(Metrics::new());
    let cfg = StoreConfig {
        path,
        max_rows: rows as usize * 2,
        queue: 50_000,
        ..StoreConfig::default()
    };
    let (store, writer) =
        FindingsStore::open(&cfg, metrics.clone(), Some(Arc::new(Teams))).unwrap();

    // The writer as detection feeds it: through the bounded queue, in
    // chunks no larger than the queue so none is dropped. Each chunk's rate
    // is kept: the median says what a store of this size sustains, the
    // first chunk (an empty store) is the baseline it is compared with.
    let started = Instant::now();
    let mut i = metrics.store_findings.get() as u64;
    let fresh = i == 0;
    let mut rates = Vec::new();
    while i < rows {
        let end = (i + CHUNK).min(rows);
        let t = Instant::now();
        for n in i..end {
            store.record(&finding(n));
        }
        while (metrics.store_findings.get() as u64) < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        rates.push((end - i) as f64 / t.elapsed().as_secs_f64());
        eprintln!(
            "store: {end} findings stored, this chunk at {:.0} findings/s",
            rates[rates.len() - 1]
        );
        i = end;
    }
    let secs = started.elapsed().as_secs_f64();
    if fresh {
        println!(
            "store: wrote {rows} findings in {secs:.1} s: {:.0} findings/s (dropped {})",
            rows as f64 / secs,
            metrics.store_dropped.get()
        );
        let first = rates[0];
        let last = *rates.last().unwrap();
        rates.sort_by(f64::total_cmp);
        let mid = rates[rates.len() / 2];
        println!(
            "store: write rate per chunk of {CHUNK}: median {mid:.0} findings/s over {} chunks \
             (min {:.0}, max {:.0}); first chunk (empty store) {first:.0}/s, last {last:.0}/s; \
             median / first = {:.2}",
            rates.len(),
            rates[0],
            rates[rates.len() - 1],
            mid / first
        );
    }
    drop(writer);

    let actor = Actor {
        who: "bench".into(),
        ..Actor::default()
    };
    // One finding in a thousand has a verdict.
    for n in (0..rows).step_by(1000) {
        store
            .set_status(&finding(n).id, Status::Expected, None, None, &actor)
            .unwrap();
    }
    let size = std::fs::metadata(&cfg.path).map(|m| m.len()).unwrap_or(0);
    println!("store: file {:.0} MB", size as f64 / 1e6);

    let mid = T0 + SPAN_MS / 2;
    let queries: Vec<(&str, FindingsQuery)> = vec![
        ("newest", FindingsQuery::default()),
        (
            "key",
            FindingsQuery {
                key_id: Some("AKIABENCH4242".into()),
                ..Default::default()
            },
        ),
        (
            "principal",
            FindingsQuery {
                principal: Some("arn:aws:iam::123456789012:user/p17".into()),
                ..Default::default()
            },
        ),
        (
            "team",
            FindingsQuery {
                team: Some("team7".into()),
                ..Default::default()
            },
        ),
        (
            "detector",
            FindingsQuery {
                detector: Some(Detector::DormantRevival),
                ..Default::default()
            },
        ),
        (
            "severity>=critical",
            FindingsQuery {
                severity: Some(Severity::Critical),
                ..Default::default()
            },
        ),
        (
            "status=expected",
            FindingsQuery {
                status: Some(Status::Expected),
                ..Default::default()
            },
        ),
        (
            "one hour window",
            FindingsQuery {
                since_ms: Some(mid),
                until_ms: Some(mid + 3_600_000),
                ..Default::default()
            },
        ),
        (
            "key+detector+since",
            FindingsQuery {
                key_id: Some("AKIABENCH4242".into()),
                detector: Some(Detector::NewSource),
                since_ms: Some(T0),
                ..Default::default()
            },
        ),
    ];
    for (name, q) in &queries {
        let q = FindingsQuery {
            limit: 100,
            ..q.clone()
        };
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..31 {
            let t = Instant::now();
            found = store.query(&q).unwrap().findings.len();
            times.push(t.elapsed());
        }
        println!(
            "store: query {name:<20} median {:>8.2} ms ({found} findings)",
            median(times).as_secs_f64() * 1000.0
        );
    }
    // Deep paging: the 50th page of 100 by cursor.
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut cursor = None;
        let t = Instant::now();
        for _ in 0..50 {
            let page = store
                .query(&FindingsQuery {
                    limit: 100,
                    cursor,
                    ..Default::default()
                })
                .unwrap();
            cursor = page.next_cursor;
        }
        times.push(t.elapsed() / 50);
    }
    println!(
        "store: query {:<20} median {:>8.2} ms per page",
        "50 pages by cursor",
        median(times).as_secs_f64() * 1000.0
    );
    let (f, trail) = store.get(&finding(5000).id).unwrap();
    assert!(f.status == Status::Expected && !trail.is_empty());
}
