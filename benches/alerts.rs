//! Alert delivery: how many alerts a second one webhook sink sustains
//! against a local receiver, and how much memory a queue of undelivered
//! alerts takes (measured with a counting allocator).
//!
//! `cargo bench --bench alerts` (run by hand; add `-- N` to change the
//! number of alerts, default 100,000). Under `cargo test` it runs 1,000.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::alert::Alerts;
use keywatch::config::{
    AlertsConfig, Entity, HumanDuration, Secret, SinkConfig, SinkKind, WebhookConfig,
};
use keywatch::decode::EventSample;
use keywatch::engine::finding::finding_id;
use keywatch::engine::{Detector, Eligibility, Evidence, Finding, Severity};
use keywatch::metrics::Metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::LIVE;

/// A finding the size of a real `new_source` one (see the example in docs/alerts.md).
fn finding(n: u32) -> Finding {
    let key_id = format!("AKIA{n:016}");
    let principal = format!("arn:aws:iam::123456789012:user/svc-{n}");
    Finding {
        id: finding_id(Entity::KeyId, &key_id, Detector::NewSource, 7, n as i64),
        detector: Detector::NewSource,
        severity: Severity::High,
        entity: Entity::KeyId,
        principal: Some(principal.clone()),
        observed_at: "2026-02-09T03:12:44.000Z".to_owned(),
        summary: format!(
            "key {key_id} ({principal}) was used from 185.220.101.7 (185.220.101.0/24), a network it has not used in 30d; it normally uses 1 network (203.0.113.0/24)."
        ),
        evidence: Evidence {
            observed: json!({"source": "185.220.101.7", "network": "185.220.101.0/24", "same_wider_network": false}),
            baseline: json!({"known_networks": 1, "networks": ["203.0.113.0/24"], "no_new_network_for_s": 2_592_000}),
            threshold: json!({"forget_after_s": 2_592_000, "roaming_days": 2, "roaming_expiry_s": 1209600}),
            eligibility: Eligibility {
                learned_for_s: 2_635_200,
                events_learned: 18_233,
                active_days: 31,
            },
            network: None,
        },
        sample: EventSample {
            time: "2026-02-09T03:12:44.000Z".to_owned(),
            key_id: key_id.clone(),
            principal: Some(principal),
            source: Some("185.220.101.7".to_owned()),
            user_agent: Some("python-requests/2.31.0".to_owned()),
            action: Some("sts:GetCallerIdentity".to_owned()),
            outcome: "success".to_owned(),
            error_code: None,
            region: Some("eu-west-1".to_owned()),
            count: 1,
        },
        key_id,
        folded: None,
        origin: 0,
    }
}

/// A local receiver that counts requests; `hang` never answers.
async fn receiver(hang: bool) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            if hang {
                std::future::pending::<()>().await;
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

fn config(dir: &std::path::Path, url: &str, alerts: usize, concurrency: usize) -> AlertsConfig {
    let mut sink = SinkConfig::new(SinkKind::Webhook(WebhookConfig {
        url: url.to_owned(),
        secret: Some(Secret::resolve("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()),
        headers: Default::default(),
    }));
    sink.queue_capacity = alerts + 1;
    sink.concurrency = concurrency;
    sink.timeout = HumanDuration::secs(30);
    AlertsConfig {
        dead_letter_path: dir.join("dead-letter.jsonl"),
        drain_timeout: HumanDuration::secs(1),
        sinks: vec![sink],
        ..AlertsConfig::default()
    }
}

async fn throughput(alerts: u32, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = receiver(false).await;
    let shutdown = CancellationToken::new();
    let cfg = config(dir.path(), &url, alerts as usize, concurrency);
    let (pipeline, done) =
        Alerts::start(&cfg, Arc::new(Metrics::new()), None, shutdown.clone()).unwrap();
    let t0 = Instant::now();
    for n in 0..alerts {
        pipeline.submit(&finding(n));
    }
    let submitted = t0.elapsed();
    while received.load(Ordering::Relaxed) < alerts as usize {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = t0.elapsed();
    println!(
        "webhook, concurrency {concurrency:>2}: {alerts} alerts delivered in {:.2}s = {:.0} alerts/s (submit: {:.1} µs/alert)",
        delivered.as_secs_f64(),
        alerts as f64 / delivered.as_secs_f64(),
        submitted.as_secs_f64() * 1e6 / alerts as f64,
    );
    shutdown.cancel();
    done.await.unwrap();
}

async fn queue_memory(alerts: u32, remember_ids: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = receiver(true).await;
    let shutdown = CancellationToken::new();
    let mut cfg = config(dir.path(), &url, alerts as usize, 1);
    cfg.remember_ids = remember_ids;
    let metrics = Arc::new(Metrics::new());
    let (pipeline, done) = Alerts::start(&cfg, metrics.clone(), None, shutdown.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let t0 = Instant::now();
    for n in 0..alerts {
        pipeline.submit(&finding(n));
    }
    let submitted = t0.elapsed();
    let depth = metrics.sink_queue_depth.with_label_values(&["webhook"]);
    while depth.get() < alerts as i64 - 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "queue of {} undelivered alerts (remember_ids = {remember_ids}): {:.1} MiB = {} bytes/alert (submit: {:.1} µs/alert)",
        depth.get(),
        queued as f64 / (1 << 20) as f64,
        queued / alerts as isize,
        submitted.as_secs_f64() * 1e6 / alerts as f64,
    );
    // Every undelivered alert ends in the dead-letter file on shutdown.
    shutdown.cancel();
    done.await.unwrap();
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let alerts: u32 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench_mode { 100_000 } else { 1_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    for n in 0..alerts {
        std::hint::black_box(finding(n));
    }
    println!(
        "(building the findings themselves: {:.1} µs each, included in the submit times below)",
        t0.elapsed().as_secs_f64() * 1e6 / alerts as f64
    );
    rt.block_on(async {
        for concurrency in [1, 4, 16] {
            throughput(alerts / 2, concurrency).await;
        }
        queue_memory(alerts, AlertsConfig::default().remember_ids).await;
        queue_memory(alerts, 0).await;
    });
}
