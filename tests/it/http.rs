//! The HTTP server on a real loopback socket: metrics, probes, the key and
//! findings API, and suppressions behind a bearer token.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::alert::{Alerts, Incidents};
use keywatch::config::{Config, HttpConfig, HumanDuration, Secret};
use keywatch::decode::{AuditEvent, Outcome, Source};
use keywatch::engine::Engine;
use keywatch::http::{self, AppState, RecentFindings};
use keywatch::metrics::Metrics;
use keywatch::source::kafka::SourceStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::Tmpfs;

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    state: AppState,
    client: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

/// A server over an engine that has seen a settled key, then an attack.
async fn server(max_active: usize) -> Server {
    let http_cfg = HttpConfig {
        listen: "127.0.0.1:0".into(),
        max_body_bytes: 1024,
        ..HttpConfig::default()
    };
    server_with(max_active, http_cfg).await
}

/// As [`server`], with its own `[http]` section.
async fn server_with(max_active: usize, http_cfg: HttpConfig) -> Server {
    server_over(max_active, http_cfg, None).await
}

/// As [`server_with`], over a findings store.
async fn server_over(
    max_active: usize,
    http_cfg: HttpConfig,
    store: Option<keywatch::store::FindingsStore>,
) -> Server {
    let cfg = Config::default();
    let engine = Engine::new(&cfg);
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let incidents = Incidents::new(&cfg.incidents, true, metrics.clone());
    let (alerts, _) = Alerts::start_with(
        &cfg.alerts,
        Some(incidents),
        metrics.clone(),
        None,
        stop.clone(),
    )
    .unwrap();
    if let (Some(store), Some(incidents)) = (&store, alerts.incidents()) {
        let store = store.clone();
        incidents.listen(Arc::new(move |e| store.record_incident(&e.incident)));
    }
    let recent = Arc::new(RecentFindings::new(
        100,
        max_active,
        Duration::from_secs(3600),
        metrics.clone(),
    ));
    let t0 = 1_767_571_200_000i64;
    let mut found = Vec::new();
    for i in 0..2000 {
        engine.process(
            &event("AKIASETTLED", t0 + i * 900_000, "203.0.113.10"),
            &mut found,
        );
    }
    for (i, src) in ["185.220.101.7", "45.9.20.1", "91.7.3.3"]
        .iter()
        .enumerate()
    {
        let key = format!("AKIAVICTIM{i}");
        for j in 0..2000 {
            engine.process(&event(&key, t0 + j * 900_000, "198.51.100.4"), &mut found);
        }
        let mut attack = event(&key, t0 + 2001 * 900_000, src);
        attack.user_agent = Some(Cow::Borrowed("python-requests/2.31.0"));
        engine.process(&attack, &mut found);
    }
    // Per victim: a high new_source and a low new_user_agent.
    assert_eq!(found.len(), 6, "{found:#?}");
    for f in &found {
        recent.record(f);
        alerts.submit(f);
    }
    let state = AppState {
        engine,
        metrics,
        status: Arc::new(SourceStatus::default()),
        recent,
        alerts,
        api_token: Some(Secret::resolve("t0ken-of-sixteen+").unwrap()),
        dormant_s: 30 * 86_400,
        inventory: None,
        inventory_cfg: Default::default(),
        checkpoint_max_age: Some(Duration::from_secs(300)),
        last_checkpoint_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        started: std::time::Instant::now(),
        store,
        feedback: None,
        responder: None,
    };
    let (addr, _) = http::serve(&http_cfg, state.clone(), stop.clone())
        .await
        .unwrap();
    Server {
        base: format!("http://{addr}"),
        addr,
        state,
        client: reqwest::Client::new(),
        _stop: stop.drop_guard(),
    }
}

pub(crate) fn event<'a>(key: &'a str, ms: i64, src: &'a str) -> AuditEvent<'a> {
    AuditEvent {
        time_ms: ms,
        key_id: Cow::Borrowed(key),
        principal: None,
        source: Source::parse(Cow::Borrowed(src)),
        user_agent: Some(Cow::Borrowed("aws-cli/2.15.0")),
        action: Some(Cow::Borrowed("s3:GetObject")),
        action_namespace: None,
        outcome: Outcome::Success,
        region: None,
        count: 1,
    }
}

impl Server {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
        )
    }
}

#[tokio::test]
async fn metrics_and_probes() {
    let s = server(100).await;
    let (status, text) = s.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("keywatch_keys_tracked{entity=\"key_id\"} 4"),
        "{text}"
    );
    assert!(text.contains("keywatch_anomaly_active{detector=\"new_source\",key_id=\"AKIAVICTIM0\",severity=\"high\"} 1"), "{text}");
    assert!(
        text.contains("keywatch_processing_latency_seconds{quantile=\"0.99\"}"),
        "{text}"
    );
    assert!(text.contains("keywatch_event_time_lag_seconds"), "{text}");
    let (status, body) = s.json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = s.json("/readyz").await;
    assert_eq!(status, 503, "not ready before consuming: {body}");
    assert!(body["error"].as_str().unwrap().contains("not consuming"));
    s.state.status.consuming.store(true, Ordering::Relaxed);
    let (status, body) = s.json("/readyz").await;
    assert_eq!(status, 503, "not ready before a partition: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no partition assigned"),
        "{body}"
    );
    s.state.status.assigned_once.store(true, Ordering::Relaxed);
    assert_eq!(s.get("/readyz").await.0, 200);
    // Brokers gone for a second: still ready (a restart), until
    // kafka.unreachable_after has passed.
    s.state
        .status
        .unreachable_after_ms
        .store(1_000, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp_millis();
    s.state
        .status
        .brokers_down_since_ms
        .store(now, Ordering::Relaxed);
    assert_eq!(s.get("/readyz").await.0, 200);
    s.state
        .status
        .brokers_down_since_ms
        .store(now - 5_000, Ordering::Relaxed);
    let (status, body) = s.json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no Kafka broker reachable for 5s"),
        "{body}"
    );
    s.state
        .status
        .brokers_down_since_ms
        .store(0, Ordering::Relaxed);
    assert_eq!(s.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn key_api_explains_each_detector() {
    let s = server(100).await;
    let (status, key) = s.json("/api/v1/keys/AKIASETTLED").await;
    assert_eq!(status, 200);
    assert_eq!(key["eligible"], true);
    assert_eq!(key["baseline"]["networks"][0], "203.0.113.0/24");
    assert!(
        key["detectors"]["new_source"]
            .as_str()
            .unwrap()
            .starts_with("armed"),
        "{key}"
    );
    assert!(
        key["detectors"]["dormant_revival"]
            .as_str()
            .unwrap()
            .starts_with("active"),
        "{key}"
    );
    let (status, body) = s.json("/api/v1/keys/AKIANOBODY").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("AKIANOBODY"));
    assert_eq!(s.get("/api/v1/nothing").await.0, 404);
}

#[tokio::test]
async fn findings_api_filters() {
    let s = server(100).await;
    let (_, all) = s.json("/api/v1/findings").await;
    let all = all["findings"].as_array().unwrap().clone();
    assert_eq!(all.len(), 6);
    let (_, one) = s.json("/api/v1/findings?key_id=AKIAVICTIM1").await;
    assert_eq!(one["findings"].as_array().unwrap().len(), 2);
    let (_, none) = s.json("/api/v1/findings?detector=rate_spike").await;
    assert!(none["findings"].as_array().unwrap().is_empty());
    let (_, high) = s.json("/api/v1/findings?severity=high").await;
    assert_eq!(high["findings"].as_array().unwrap().len(), 3);
    let (_, later) = s.json("/api/v1/findings?since=2030-01-01T00:00:00Z").await;
    assert!(later["findings"].as_array().unwrap().is_empty());
    let (status, bad) = s.json("/api/v1/findings?since=yesterday").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("yesterday"));
    let id = all[0]["id"].as_str().unwrap();
    let (status, f) = s.json(&format!("/api/v1/findings/{id}")).await;
    assert_eq!((status, f["id"].as_str()), (200, Some(id)));
}

#[tokio::test]
async fn suppressions_need_the_token() {
    let s = server(100).await;
    let url = format!("{}/api/v1/suppressions", s.base);
    let rule =
        serde_json::json!({"key": "AKIAVICTIM*", "detector": "new_source", "reason": "pentest"});
    let r = s.client.post(&url).json(&rule).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token");
    let r = s
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "wrong token");
    let r = s
        .client
        .post(&url)
        .bearer_auth("t0ken-of-sixteen+")
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let (_, list) = s.json("/api/v1/suppressions").await;
    assert!(
        list["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id && r["reason"] == "pentest"),
        "{list}"
    );
    let bad = s
        .client
        .post(&url)
        .bearer_auth("t0ken-of-sixteen+")
        .body("{\"key\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let big = s
        .client
        .post(&url)
        .bearer_auth("t0ken-of-sixteen+")
        .body("x".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413, "body over http.max_body_bytes");
    let del = s
        .client
        .delete(format!("{url}/{id}"))
        .bearer_auth("t0ken-of-sixteen+")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 200);
    let again = s
        .client
        .delete(format!("{url}/{id}"))
        .bearer_auth("t0ken-of-sixteen+")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
}

#[tokio::test]
async fn writes_are_refused_without_a_configured_token() {
    let mut s = server(100).await;
    s.state.api_token = None;
    let cfg = HttpConfig {
        listen: "127.0.0.1:0".into(),
        ..HttpConfig::default()
    };
    let stop = CancellationToken::new();
    let (addr, _) = http::serve(&cfg, s.state.clone(), stop.clone())
        .await
        .unwrap();
    let r = s
        .client
        .post(format!("http://{addr}/api/v1/suppressions"))
        .bearer_auth("anything")
        .json(&serde_json::json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("http.api_token"));
    stop.cancel();
}

#[tokio::test]
async fn active_anomaly_series_are_capped() {
    let s = server(2).await;
    let (_, text) = s.get("/metrics").await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("keywatch_anomaly_active{"))
        .count();
    assert_eq!(series, 2, "{text}");
    assert!(
        text.contains("keywatch_anomaly_active_dropped_total 4"),
        "{text}"
    );
}

#[tokio::test]
async fn suppressions_refuse_what_the_config_refuses() {
    let s = server(100).await;
    let url = format!("{}/api/v1/suppressions", s.base);
    let long = "AKIA".repeat(70);
    for (rule, field, value) in [
        (serde_json::json!({"key": "*"}), "key", "*"),
        (
            serde_json::json!({"principal": "?**", "detector": "new_source"}),
            "principal",
            "?**",
        ),
        (serde_json::json!({"key": long}), "key", &long[..32]),
        (serde_json::json!({"key": ""}), "key", ""),
    ] {
        let r = s
            .client
            .post(&url)
            .bearer_auth("t0ken-of-sixteen+")
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{rule}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["field"], field, "{body}");
        assert!(body["value"].as_str().unwrap().starts_with(value), "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("suppression."),
            "{body}"
        );
    }
    let (_, list) = s.json("/api/v1/suppressions").await;
    assert!(
        list["suppressions"].as_array().unwrap().is_empty(),
        "{list}"
    );
}

#[tokio::test]
async fn every_error_is_json() {
    let s = server(100).await;
    let url = |path: &str| format!("{}{path}", s.base);
    let token = "t0ken-of-sixteen+";
    let requests = [
        (s.client.get(url("/api/v1/nothing")), 404),
        (s.client.post(url("/healthz")), 405),
        (s.client.delete(url("/api/v1/findings")), 405),
        (s.client.get(url("/api/v1/findings?limit=many")), 400),
        (s.client.get(url("/api/v1/findings?detector=psychic")), 400),
        (
            s.client.get(url("/api/v1/keys/AKIASETTLED?entity=robot")),
            400,
        ),
        (
            s.client
                .delete(url("/api/v1/suppressions/not-a-number"))
                .bearer_auth(token),
            400,
        ),
        (
            s.client
                .post(url("/api/v1/suppressions"))
                .bearer_auth(token)
                .body("{\"key\": "),
            400,
        ),
        (
            s.client
                .post(url("/api/v1/suppressions"))
                .bearer_auth(token)
                .body("x".repeat(4096)),
            413,
        ),
    ];
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..150 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
            "v".parse().unwrap(),
        );
    }
    // Past hyper's own limits too (64 KiB line, 100 fields), which answer
    // with an empty body.
    let oversized = [
        (
            s.client
                .get(url("/healthz"))
                .header("x-big", "b".repeat(100_000)),
            431,
        ),
        (s.client.get(url("/healthz")).headers(many), 431),
    ];
    for (request, status) in requests.into_iter().chain(oversized) {
        let r = request.send().await.unwrap();
        let what = format!("{} {}", r.status(), r.url());
        assert_eq!(r.status().as_u16(), status, "{what}");
        let ctype = r.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert!(
            ctype.to_str().unwrap().starts_with("application/json"),
            "{what}: {ctype:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(
            !body["error"].as_str().unwrap().is_empty(),
            "{what}: {body}"
        );
    }
    // A request line longer than any client library will send.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let line = format!("GET /api/v1/keys/{} HTTP/1.1\r\n", "A".repeat(70_000));
    // The server may answer and close before it has read everything.
    let _ = conn.write_all(line.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("request line"),
        "{body}"
    );
}

/// Reads until the server closes the connection or `within` passes; the
/// time it took, `None` when still open.
async fn closed_after(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn flood_config(max_connections: usize) -> HttpConfig {
    HttpConfig {
        listen: "127.0.0.1:0".into(),
        header_read_timeout: HumanDuration(Duration::from_secs(2)),
        idle_timeout: HumanDuration(Duration::from_millis(300)),
        max_connections,
        ..HttpConfig::default()
    }
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alives_are_closed() {
    let s = server_with(100, flood_config(64)).await;
    // Slowloris: a header line every 500 ms, never the blank line.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = s.addr;
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                let start = Instant::now();
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
                for i in 0.. {
                    if closed_after(&mut conn, Duration::from_millis(500))
                        .await
                        .is_some()
                    {
                        return Some(start.elapsed());
                    }
                    if start.elapsed() > Duration::from_secs(6)
                        || conn
                            .write_all(format!("X-{i}: y\r\n").as_bytes())
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
                // Still open after 6 s, or refused the write without an EOF.
                (start.elapsed() <= Duration::from_secs(6)).then(|| start.elapsed())
            })
        })
        .collect();
    // A keep-alive connection, idle after its response.
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let idle = closed_after(&mut kept, Duration::from_secs(5)).await;
    assert!(
        idle.is_some_and(|d| d < Duration::from_millis(1500)),
        "keep-alive idle past idle_timeout (300ms) is closed before header_read_timeout (2s): {idle:?}"
    );
    for task in slow {
        let closed = task.await.unwrap();
        assert!(
            closed.is_some_and(|d| d >= Duration::from_millis(1500) && d < Duration::from_secs(4)),
            "slow headers closed at header_read_timeout (2s): {closed:?}"
        );
    }
    let (_, text) = s.get("/metrics").await;
    assert!(
        text.contains("keywatch_http_connections_rejected_total{reason=\"header_timeout\"} 20"),
        "{text}"
    );
    assert!(
        text.contains("keywatch_http_connections_rejected_total{reason=\"idle_timeout\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn healthz_answers_under_a_flood_of_idle_connections() {
    let s = server_with(100, flood_config(64)).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Slow-header clients among them.
    for _ in 0..50 {
        let mut conn = TcpStream::connect(s.addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        idle.push(conn);
    }
    for _ in 0..5 {
        let start = Instant::now();
        let (status, body) = s.json("/healthz").await;
        let took = start.elapsed();
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
        assert!(took < Duration::from_millis(500), "/healthz took {took:?}");
        // A new connection each time, as a prober would.
        let fresh = reqwest::Client::new();
        let start = Instant::now();
        let r = fresh
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "/metrics took {:?}",
            start.elapsed()
        );
        let open: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("keywatch_http_connections "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=64).contains(&open), "{open} open, cap 64");
    }
    let (_, text) = s.get("/metrics").await;
    let shed: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("keywatch_http_connections_rejected_total{reason=\"shed_idle\"} ")
        })
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert!(shed >= 2000 - 64, "{shed} shed");
    // Every idle connection is gone by header_read_timeout (2s) and a margin.
    let start = Instant::now();
    for conn in &mut idle {
        let left = Duration::from_secs(4).saturating_sub(start.elapsed());
        assert!(
            closed_after(conn, left).await.is_some(),
            "an idle connection still open {:?} after the flood",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn a_write_without_the_token_is_refused_before_its_body() {
    let s = server(100).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    // The body is announced and never sent: a connection held busy.
    conn.write_all(b"POST /api/v1/suppressions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
}

/// A finding as the daemon stores it, `n` of a run.
fn stored(n: u32) -> keywatch::engine::Finding {
    serde_json::from_value(serde_json::json!({
        "id": format!("full-disk-{n:04}"), "detector": "new_source", "severity": "high",
        "entity": "key_id", "key_id": format!("AKIAFULL{}", n % 9),
        "observed_at": "2026-02-20T00:00:00.000Z",
        "summary": format!("{n}: used from a new network {}", "·".repeat(1_500)),
        "evidence": {"observed": {"source": "198.51.100.7"}, "baseline": [], "threshold": null,
                     "eligibility": {"learned_for_s": 1, "events_learned": 1, "active_days": 1}},
        "sample": {"time": "2026-02-20T00:00:00.000Z", "key_id": "AKIAFULL",
                   "source": "198.51.100.7", "outcome": "success", "count": 1}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_store_behind_and_not_ready_and_loses_no_finding() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let metrics = Arc::new(Metrics::new());
    let store_cfg = keywatch::config::StoreConfig {
        path: fs.path().join("findings.db"),
        ..Default::default()
    };
    let (store, writer) =
        keywatch::store::FindingsStore::open(&store_cfg, metrics.clone(), None).unwrap();
    let http_cfg = HttpConfig {
        listen: "127.0.0.1:0".into(),
        ..HttpConfig::default()
    };
    let s = server_over(100, http_cfg, Some(store.clone())).await;
    s.state.status.consuming.store(true, Ordering::Relaxed);
    s.state.status.assigned_once.store(true, Ordering::Relaxed);
    let stored_rows = || metrics.store_findings.get();
    let wait = |what: &'static str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for n in 0..10 {
        store.record(&stored(n));
    }
    wait("ten stored", &|| stored_rows() == 10);
    assert_eq!(s.get("/readyz").await.0, 200);

    // The disk fills up; findings keep coming until the store says so.
    let filler = fs.fill();
    let mut raised = 10;
    while store.behind().is_none() {
        assert!(raised < 2_000, "a full disk never failed a write");
        store.record(&stored(raised));
        raised += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..20 {
        store.record(&stored(raised));
        raised += 1;
    }
    let (status, body) = s.json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().unwrap();
    assert!(
        why.contains("findings store cannot write") && why.contains("full"),
        "{why}"
    );
    let (status, list) = s.json("/api/v1/findings?limit=1000").await;
    assert_eq!(status, 200);
    assert!(
        list["store_behind"]["unwritten"].as_i64().unwrap() >= 20,
        "{list}"
    );
    assert!(list["findings"].as_array().unwrap().len() < raised as usize);

    // Room again: every finding is in the console, none dropped.
    std::fs::remove_file(filler).unwrap();
    wait("all stored", &|| stored_rows() == raised as i64);
    wait("caught up", &|| store.behind().is_none());
    assert_eq!(s.get("/readyz").await.0, 200);
    let (_, list) = s.json("/api/v1/findings?limit=1000").await;
    assert_eq!(list["findings"].as_array().unwrap().len(), raised as usize);
    assert!(list.get("store_behind").is_none(), "{list}");
    assert_eq!(metrics.store_dropped.get(), 0);
    drop(store);
    drop(s);
    drop(writer);
}

/// Each victim's two findings (a new network, a new client) are one
/// incident; the list filters, and one incident comes with its findings.
async fn check_incidents(s: &Server) {
    let (status, body) = s.json("/api/v1/incidents").await;
    assert_eq!(status, 200, "{body}");
    let list = body["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{body:#}");
    for i in list {
        assert_eq!(i["findings"], 2, "{i}");
        assert_eq!(i["entity"], "key_id");
        assert_eq!(i["status"], "open");
        assert_eq!(i["timeline"].as_array().unwrap().len(), 2);
        assert!(i["summary"].as_str().unwrap().contains("2 findings"), "{i}");
    }
    let (_, one) = s.json("/api/v1/incidents?key_id=AKIAVICTIM1").await;
    let one = one["incidents"].as_array().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["key_ids"], serde_json::json!(["AKIAVICTIM1"]));
    assert_eq!(one[0]["networks"], serde_json::json!(["45.9.20.0/24"]));
    let (_, none) = s.json("/api/v1/incidents?severity=critical").await;
    assert!(none["incidents"].as_array().unwrap().is_empty(), "{none}");
    let (_, none) = s.json("/api/v1/incidents?status=resolved").await;
    assert!(none["incidents"].as_array().unwrap().is_empty(), "{none}");
    let (_, limited) = s.json("/api/v1/incidents?limit=2").await;
    assert_eq!(limited["incidents"].as_array().unwrap().len(), 2);

    let id = one[0]["id"].as_str().unwrap();
    let (status, got) = s.json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["incident"]["id"], id);
    let findings = got["findings"].as_array().unwrap();
    let detectors: Vec<&str> = findings
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert_eq!(detectors, ["new_source", "new_user_agent"], "{got:#}");
    assert!(findings.iter().all(|f| f["key_id"] == "AKIAVICTIM1"));

    let (status, _) = s.get("/api/v1/incidents/0123456789abcdef").await;
    assert_eq!(status, 404);
    let (status, body) = s.get("/api/v1/incidents?tactic=sideways").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn incidents_are_listed_and_opened_from_memory() {
    check_incidents(&server(100).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_listed_and_opened_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store_cfg = keywatch::config::StoreConfig {
        path: dir.path().join("findings.db"),
        ..Default::default()
    };
    let (store, writer) =
        keywatch::store::FindingsStore::open(&store_cfg, metrics.clone(), None).unwrap();
    let http_cfg = HttpConfig {
        listen: "127.0.0.1:0".into(),
        ..HttpConfig::default()
    };
    let s = server_over(100, http_cfg, Some(store.clone())).await;
    for f in s.state.recent.list(100, |_| true).iter() {
        store.record(f);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.store_findings.get() < 6 {
        assert!(Instant::now() < deadline, "findings not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The incidents were queued before the findings: they are in too.
    check_incidents(&s).await;
    let (_, got) = s.json("/api/v1/incidents?key_id=AKIAVICTIM2").await;
    let id = got["incidents"][0]["id"].as_str().unwrap().to_owned();
    let (_, one) = s.json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(
        one["findings"][0]["status"], "open",
        "stored findings carry their verdict status: {one}"
    );
    drop(s);
    drop(store);
    drop(writer);
}
