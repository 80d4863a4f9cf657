//! `/metrics` at scale: scrape time with a million keys tracked, measured
//! over a real loopback socket, against a scrape of an empty daemon in the
//! same run. `cargo bench --bench scrape [-- KEYS]`; under `cargo test` it
//! runs 10,000 keys.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::alert::Alerts;
use keywatch::config::{Config, HttpConfig};
use keywatch::decode::{AuditEvent, Outcome, Source};
use keywatch::engine::Engine;
use keywatch::http::{self, AppState, RecentFindings};
use keywatch::metrics::Metrics;
use keywatch::source::kafka::SourceStatus;
use tokio_util::sync::CancellationToken;

fn fill(engine: &Engine, keys: usize) {
    let mut out = Vec::new();
    let mut key = String::new();
    for k in 0..keys {
        use std::fmt::Write;
        key.clear();
        let _ = write!(key, "AKIA{k:016X}");
        for i in 0..6i64 {
            engine.process(
                &AuditEvent {
                    time_ms: 1_767_571_200_000 + i * 3_600_000,
                    key_id: Cow::Borrowed(&key),
                    principal: None,
                    source: Some(Source::Ip(
                        std::net::Ipv4Addr::from(0x0A00_0000 | k as u32).into(),
                    )),
                    user_agent: Some(Cow::Borrowed("aws-cli/2.15.0")),
                    action: Some(Cow::Borrowed("s3:GetObject")),
                    action_namespace: None,
                    outcome: Outcome::Success,
                    region: None,
                    count: 1,
                },
                &mut out,
            );
        }
    }
}

async fn median_scrape(keys: usize) -> (Duration, usize) {
    let mut cfg = Config::default();
    cfg.engine.max_keys = keys + 1;
    let engine = Engine::new(&cfg);
    fill(&engine, keys);
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (alerts, _) = Alerts::start(&cfg.alerts, metrics.clone(), None, stop.clone()).unwrap();
    let state = AppState {
        engine,
        metrics: metrics.clone(),
        status: Arc::new(SourceStatus::default()),
        recent: Arc::new(RecentFindings::new(
            100,
            100,
            Duration::from_secs(60),
            metrics,
        )),
        alerts,
        api_token: None,
        dormant_s: 30 * 86_400,
        inventory: None,
        inventory_cfg: Default::default(),
        checkpoint_max_age: None,
        last_checkpoint_ms: Arc::new(Default::default()),
        started: Instant::now(),
        store: None,
        feedback: None,
        responder: None,
    };
    let http_cfg = HttpConfig {
        listen: "127.0.0.1:0".into(),
        ..HttpConfig::default()
    };
    let (addr, _) = http::serve(&http_cfg, state, stop.clone()).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..31 {
        let t = Instant::now();
        size = client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
        times.push(t.elapsed());
    }
    stop.cancel();
    times.sort();
    (times[times.len() / 2], size)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let keys: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench { 1_000_000 } else { 10_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (empty, _) = rt.block_on(median_scrape(0));
    let (full, bytes) = rt.block_on(median_scrape(keys));
    println!(
        "median /metrics scrape: {:.2} ms with {keys} keys ({bytes} bytes), {:.2} ms with none ({:.2}x)",
        full.as_secs_f64() * 1e3,
        empty.as_secs_f64() * 1e3,
        full.as_secs_f64() / empty.as_secs_f64()
    );
}
