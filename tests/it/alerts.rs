//! The alert pipeline against real receivers: HTTP servers bound to
//! 127.0.0.1 by the tests (answering, failing, rate-limiting, hanging or
//! absent), librdkafka's mock cluster, and files. Each test checks what a
//! person on call, or the operator, would notice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use keywatch::alert::{Alerts, Incidents};
use keywatch::config::{
    AlertmanagerConfig, AlertsConfig, Entity, FileSinkConfig, HumanDuration, IncidentsConfig,
    KafkaSinkConfig, PagerDutyConfig, RedactConfig, Secret, SinkConfig, SinkKind, SlackConfig,
    SplunkHecConfig, Suppression, Timestamp, WebhookConfig,
};
use keywatch::decode::EventSample;
use keywatch::engine::finding::finding_id;
use keywatch::engine::{Detector, Eligibility, Evidence, Finding, Severity};
use keywatch::metrics::Metrics;
use keywatch::owner::{Owner, OwnerLookup};

// ---------------------------------------------------------------- receivers

/// What a test receiver answers to its n-th request (from 0).
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    Delay(Duration),
    Hang,
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    log: Arc<Mutex<Vec<Received>>>,
    script: Script,
}

/// An HTTP server on 127.0.0.1 that records every request and answers as
/// its script says.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

async fn handle(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut log = state.log.lock().unwrap();
        log.push(Received {
            at: Instant::now(),
            wall: chrono::Utc::now(),
            path: uri.path().to_owned(),
            headers,
            body,
        });
        log.len() - 1
    };
    match (state.script)(n) {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::RetryAfter(code, secs) => {
            (StatusCode::from_u16(code).unwrap(), [("retry-after", secs)]).into_response()
        }
        Reply::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            log: log.clone(),
            script: Arc::new(script),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, log }
    }

    async fn answering(code: u16) -> Receiver {
        Receiver::start(move |_| Reply::Status(code)).await
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        eventually(within, || {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

/// A 127.0.0.1 address nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

async fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- pipeline

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

/// A sink with test-sized timeouts and backoff.
fn sink(name: &str, kind: SinkKind) -> SinkConfig {
    let mut s = SinkConfig::new(kind);
    s.name = Some(name.to_owned());
    s.timeout = ms(1000);
    s.max_retries = 3;
    s.backoff_initial = ms(20);
    s.backoff_max = ms(100);
    s
}

fn webhook(url: &str) -> SinkKind {
    SinkKind::Webhook(WebhookConfig {
        url: url.to_owned(),
        secret: None,
        headers: Default::default(),
    })
}

struct Running {
    alerts: Alerts,
    done: JoinHandle<()>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    dead_letter_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(sinks: Vec<SinkConfig>) -> Running {
        Running::start_with(sinks, |_| {}, None)
    }

    fn start_with(
        sinks: Vec<SinkConfig>,
        tweak: impl FnOnce(&mut AlertsConfig),
        owners: Option<Arc<dyn OwnerLookup>>,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AlertsConfig {
            dead_letter_path: dir.path().join("dead-letter.jsonl"),
            drain_timeout: ms(500),
            sinks,
            ..AlertsConfig::default()
        };
        tweak(&mut cfg);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (alerts, done) =
            Alerts::start(&cfg, metrics.clone(), owners, shutdown.clone()).unwrap();
        Running {
            alerts,
            done,
            shutdown,
            metrics,
            dead_letter_path: cfg.dead_letter_path,
            _dir: dir,
        }
    }

    /// With findings grouped into incidents (window 1h, by principal).
    fn with_incidents(sinks: Vec<SinkConfig>, owners: Option<Arc<dyn OwnerLookup>>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AlertsConfig {
            dead_letter_path: dir.path().join("dead-letter.jsonl"),
            drain_timeout: ms(500),
            public_url: "https://keywatch.example.com".into(),
            sinks,
            ..AlertsConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let incidents = Incidents::new(&IncidentsConfig::default(), true, metrics.clone());
        let (alerts, done) = Alerts::start_with(
            &cfg,
            Some(incidents),
            metrics.clone(),
            owners,
            shutdown.clone(),
        )
        .unwrap();
        Running {
            alerts,
            done,
            shutdown,
            metrics,
            dead_letter_path: cfg.dead_letter_path,
            _dir: dir,
        }
    }

    fn count(&self, sink: &str, result: &str) -> u64 {
        self.metrics.alerts.with_label_values(&[sink, result]).get()
    }

    fn failures(&self, sink: &str, reason: &str) -> u64 {
        self.metrics
            .alert_failures
            .with_label_values(&[sink, reason])
            .get()
    }

    fn dead_letters(&self) -> Vec<Value> {
        read_json_lines(&self.dead_letter_path)
    }

    async fn wait_dead_letters(&self, n: usize, within: Duration) -> Vec<Value> {
        eventually(within, || {
            let got = self.dead_letters();
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// Cancels, and waits for the drain to finish.
    async fn stop(mut self) -> Running {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), &mut self.done)
            .await
            .expect("the pipeline stops within its drain deadline")
            .unwrap();
        self
    }
}

fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// A high-severity `new_source` finding, distinct per `n`.
fn finding(n: u32) -> Finding {
    let key_id = format!("AKIAEXAMPLE{n:09}");
    let at_ms = 1_770_606_764_000 + n as i64;
    Finding {
        id: finding_id(Entity::KeyId, &key_id, Detector::NewSource, 7, at_ms),
        detector: Detector::NewSource,
        severity: Severity::High,
        entity: Entity::KeyId,
        principal: Some("arn:aws:iam::123456789012:user/svc-billing".to_owned()),
        observed_at: "2026-02-09T03:12:44.000Z".to_owned(),
        summary: format!(
            "key {key_id} was used from 185.220.101.7, a network it has not used in 30d"
        ),
        evidence: Evidence {
            observed: json!({"source": "185.220.101.7", "network": "185.220.101.0/24"}),
            baseline: json!({"known_networks": 1, "networks": ["203.0.113.0/24"]}),
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
            principal: Some("arn:aws:iam::123456789012:user/svc-billing".to_owned()),
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

/// Keys ending in an even number belong to payments, odd ones to identity.
struct Teams;

impl OwnerLookup for Teams {
    fn owner_of(&self, key_id: &str) -> Option<Owner> {
        let n: u32 = key_id.trim_start_matches("AKIAEXAMPLE").parse().ok()?;
        let (owner, team) = if n % 2 == 0 {
            ("alice@example.com", "payments")
        } else {
            ("bob@example.com", "identity")
        };
        Some(Owner {
            owner: owner.to_owned(),
            team: Some(team.to_owned()),
        })
    }
}

// ---------------------------------------------------------------- webhook

#[tokio::test]
async fn webhook_signature_verifies_with_an_independent_hmac() {
    let receiver = Receiver::answering(204).await;
    let key_bytes: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37)).collect();
    let secret = format!("whsec_{}", BASE64.encode(&key_bytes));
    let mut hook = sink("signed", webhook(&receiver.url));
    if let SinkKind::Webhook(w) = &mut hook.kind {
        w.secret = Some(Secret::resolve(&secret).unwrap());
        w.headers
            .insert("X-Tenant".into(), Secret::resolve("blue").unwrap());
    }
    let run = Running::start_with(vec![hook], |_| {}, Some(Arc::new(Teams)));
    let f = finding(2);
    run.alerts.submit(&f);

    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    let req = &got[0];
    let id = req.header("webhook-id");
    let ts = req.header("webhook-timestamp");
    assert_eq!(id, f.id, "webhook-id is the alert id");
    let sent_at: i64 = ts.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 30);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert!(
        req.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "{} != {expected}",
        req.header("webhook-signature")
    );
    assert_eq!(req.header("x-tenant"), "blue", "custom header");
    assert_eq!(req.header("content-type"), "application/json");

    let body = req.json();
    assert_eq!(body["id"], f.id.as_str());
    assert_eq!(body["detector"], "new_source");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["key_id"], f.key_id.as_str());
    assert_eq!(body["owner"], "alice@example.com");
    assert_eq!(body["team"], "payments");
    assert_eq!(body["evidence"]["observed"]["source"], "185.220.101.7");
    assert_eq!(body["sample"]["action"], "sts:GetCallerIdentity");
    assert_eq!(run.count("signed", "sent"), 1);
}

#[tokio::test]
async fn server_error_then_success_delivers_exactly_once() {
    let receiver = Receiver::start(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let run = Running::start(vec![sink("hook", webhook(&receiver.url))]);
    let f = finding(1);
    run.alerts.submit(&f);

    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got_later = receiver.received();
    assert_eq!(got_later.len(), 2, "no request after the success");
    assert!(got.iter().all(|r| r.header("webhook-id") == f.id));
    assert_eq!(run.count("hook", "sent"), 1);
    assert_eq!(run.count("hook", "retried"), 1);
    assert_eq!(run.failures("hook", "status_5xx"), 1);
    let run = run.stop().await;
    assert!(run.dead_letters().is_empty());
}

#[tokio::test]
async fn rate_limit_retry_after_is_waited_out() {
    let receiver = Receiver::start(|n| {
        if n == 0 {
            Reply::RetryAfter(429, "2")
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let run = Running::start(vec![sink("hook", webhook(&receiver.url))]);
    run.alerts.submit(&finding(1));

    let got = receiver.wait_for(2, Duration::from_secs(6)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1950) && gap < Duration::from_millis(4000),
        "second attempt {gap:?} after the 429 (backoff alone would be ≤100ms)"
    );
    // The worker counts the delivery once the answer is read: give it time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(run.count("hook", "sent"), 1);
    assert_eq!(run.failures("hook", "rate_limited"), 1);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn service_unavailable_retry_after_is_honoured() {
    let receiver = Receiver::start(|n| {
        if n == 0 {
            Reply::RetryAfter(503, "1")
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let run = Running::start(vec![sink("hook", webhook(&receiver.url))]);
    run.alerts.submit(&finding(1));

    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried {gap:?} after the 503"
    );
    // The receiver logs a request before it answers: the sender counts the
    // delivery only once the answer is back.
    eventually(Duration::from_secs(5), || {
        (run.count("hook", "sent") >= 1).then_some(())
    })
    .await;
    assert_eq!(run.count("hook", "sent"), 1);
    assert_eq!(run.failures("hook", "status_5xx"), 1);
}

#[tokio::test]
async fn client_error_is_not_retried_and_goes_to_the_dead_letter_file() {
    let receiver = Receiver::answering(400).await;
    let run = Running::start(vec![sink("hook", webhook(&receiver.url))]);
    let f = finding(1);
    run.alerts.submit(&f);

    let dead = run.wait_dead_letters(1, Duration::from_secs(5)).await;
    assert_eq!(dead[0]["sink"], "hook");
    assert_eq!(dead[0]["reason"], "status_4xx");
    assert_eq!(dead[0]["attempts"], 1);
    assert!(
        dead[0]["error"].as_str().unwrap().contains("400"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["alert"]["id"], f.id.as_str());
    assert_eq!(dead[0]["alert"]["key_id"], f.key_id.as_str());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 1, "a 400 is not retried");
    assert_eq!(run.count("hook", "dead_lettered"), 1);
    assert_eq!(run.count("hook", "failed"), 1);
}

#[tokio::test]
async fn hanging_receiver_trips_the_timeout() {
    let receiver = Receiver::start(|_| Reply::Hang).await;
    let mut hook = sink("hook", webhook(&receiver.url));
    hook.timeout = ms(300);
    hook.max_retries = 0;
    let run = Running::start(vec![hook]);
    let t0 = Instant::now();
    run.alerts.submit(&finding(1));

    let dead = run.wait_dead_letters(1, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(dead[0]["reason"], "timeout");
    assert_eq!(run.failures("hook", "timeout"), 1);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_waiting_to_retry_do_not_hold_the_sinks_slots() {
    // The receiver hangs on its first two requests, then answers.
    let receiver = Receiver::start(|n| {
        if n < 2 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let mut hook = sink("hook", webhook(&receiver.url));
    hook.concurrency = 2;
    hook.timeout = ms(300);
    hook.backoff_initial = ms(20_000);
    hook.backoff_max = ms(20_000);
    hook.max_delivery_age = HumanDuration(Duration::from_secs(120));
    let run = Running::start(vec![hook]);
    for n in 0..10 {
        run.alerts.submit(&finding(n));
    }
    // The two that timed out wait 20 s for their retry; the other eight
    // go through meanwhile.
    eventually(Duration::from_secs(8), || {
        (run.count("hook", "sent") >= 8).then_some(())
    })
    .await;
    assert_eq!(run.failures("hook", "timeout"), 2);
}

#[tokio::test]
async fn receiver_down_for_the_whole_test_leaves_every_alert_in_the_dead_letter_file() {
    let url = closed_port().await;
    let run = Running::start(vec![sink("hook", webhook(&url))]);
    let ids: BTreeSet<String> = (0..5)
        .map(|n| {
            let f = finding(n);
            run.alerts.submit(&f);
            f.id
        })
        .collect();

    let dead = run.wait_dead_letters(5, Duration::from_secs(10)).await;
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|d| d["alert"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead_ids, ids);
    for d in &dead {
        assert_eq!(d["reason"], "connect", "{d}");
        assert_eq!(d["attempts"], 4, "the first try and three retries: {d}");
    }
    assert_eq!(run.count("hook", "sent"), 0);
    assert_eq!(run.count("hook", "dead_lettered"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_does_not_delay_another() {
    let stalled = Receiver::start(|_| Reply::Hang).await;
    let healthy = Receiver::answering(200).await;
    let mut slow = sink("stalled", webhook(&stalled.url));
    slow.timeout = ms(10_000);
    slow.concurrency = 1;
    let run = Running::start(vec![slow, sink("healthy", webhook(&healthy.url))]);

    let t0 = Instant::now();
    for n in 0..20 {
        run.alerts.submit(&finding(n));
    }
    let submitted = t0.elapsed();
    let got = healthy.wait_for(20, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 20);
    assert!(submitted < Duration::from_millis(500), "{submitted:?}");
    stalled.wait_for(1, Duration::from_secs(1)).await;
    assert_eq!(
        stalled.received().len(),
        1,
        "one in flight, the rest queued"
    );
    assert_eq!(
        run.metrics
            .sink_queue_depth
            .with_label_values(&["stalled"])
            .get(),
        19
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_never_blocks_and_a_full_queue_loses_nothing() {
    // The receiver never answers: a submit that waited for room in the full
    // queue would wait for a delivery to time out (a minute each), so 2000
    // of them finishing before the first could have is the proof that none
    // waited (a bound on behaviour, not on the machine's speed).
    let receiver = Receiver::start(|_| Reply::Hang).await;
    let mut hook = sink("hook", webhook(&receiver.url));
    hook.queue_capacity = 4;
    hook.concurrency = 1;
    hook.timeout = ms(60_000);
    let run = Running::start(vec![hook]);

    let total = 2000;
    let t0 = Instant::now();
    let mut ids = BTreeSet::new();
    for n in 0..total {
        let f = finding(n);
        run.alerts.submit(&f);
        ids.insert(f.id);
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "{total} submits took {took:?}: one waited for the hung delivery"
    );
    let run = run.stop().await;
    let dead = run.dead_letters();
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|d| d["alert"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead.len(), total as usize, "each alert kept exactly once");
    assert_eq!(dead_ids, ids);
    let reasons: BTreeSet<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, BTreeSet::from(["queue_full", "shutdown"]));
    assert_eq!(
        run.failures("hook", "queue_full") as usize,
        dead.iter().filter(|d| d["reason"] == "queue_full").count()
    );
    assert_eq!(run.count("hook", "dead_lettered"), total as u64);
}

#[tokio::test]
async fn shutdown_drains_queued_alerts_before_the_deadline() {
    let receiver = Receiver::start(|_| Reply::Delay(Duration::from_millis(100))).await;
    let mut hook = sink("hook", webhook(&receiver.url));
    hook.concurrency = 1;
    let run = Running::start_with(vec![hook], |c| c.drain_timeout = ms(3000), None);
    for n in 0..4 {
        run.alerts.submit(&finding(n));
    }
    let run = run.stop().await;
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(run.count("hook", "sent"), 4);
    assert!(run.dead_letters().is_empty());
}

#[tokio::test]
async fn a_replayed_finding_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.jsonl");
    let run = Running::start(vec![sink(
        "file",
        SinkKind::File(FileSinkConfig { path: out.clone() }),
    )]);
    let f = finding(1);
    for _ in 0..3 {
        run.alerts.submit(&f);
    }
    run.alerts.submit(&finding(2));
    let run = run.stop().await;
    let lines = read_json_lines(&out);
    // Deliveries run concurrently: the order of the two lines is not fixed.
    let mut ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    ids.sort_unstable();
    let second = finding(2);
    let mut want = vec![f.id.as_str(), second.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "{lines:?}");
    assert_eq!(run.count("file", "duplicate"), 2);
}

// ---------------------------------------------------------------- suppression and routing

#[tokio::test]
async fn suppression_with_an_expiry_stops_then_lets_through() {
    let receiver = Receiver::answering(200).await;
    let f = finding(1);
    let expires = Timestamp::now().after(Duration::from_millis(700));
    let run = Running::start_with(
        vec![sink("hook", webhook(&receiver.url))],
        |c| {
            c.suppress = vec![Suppression {
                key: Some("AKIAEXAMPLE*".into()),
                detector: Some(Detector::NewSource),
                expires: Some(expires),
                reason: Some("key rotation window".into()),
                ..Suppression::default()
            }]
        },
        None,
    );
    assert_eq!(run.alerts.suppressions().len(), 1);
    run.alerts.submit(&f);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "muted while the rule holds");
    assert_eq!(run.metrics.suppressed.with_label_values(&["mute"]).get(), 1);

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        run.alerts.suppressions().is_empty(),
        "expired rules are not listed"
    );
    run.alerts.submit(&f);
    let got = receiver.wait_for(1, Duration::from_secs(3)).await;
    assert_eq!(got[0].header("webhook-id"), f.id);

    let id = run
        .alerts
        .add_suppression(Suppression {
            principal: Some("*:user/svc-billing".into()),
            ..Suppression::default()
        })
        .unwrap();
    run.alerts.submit(&finding(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "muted by the rule added at run time"
    );
    run.alerts.remove_suppression(id).unwrap();
    run.alerts.submit(&finding(2));
    receiver.wait_for(2, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn slack_messages_are_routed_per_team_and_read_at_a_glance() {
    let payments = Receiver::answering(200).await;
    let identity = Receiver::answering(200).await;
    let pager = Receiver::answering(200).await;
    let slack = |name: &str, url: &str, team: &str| {
        let mut s = sink(
            name,
            SinkKind::Slack(SlackConfig {
                url: Secret::resolve(url).unwrap(),
                min_interval: ms(10),
                update_interval: ms(10),
            }),
        );
        s.teams = vec![team.to_owned()];
        s
    };
    let mut critical_only = sink("critical", webhook(&pager.url));
    critical_only.min_severity = Severity::Critical;
    let run = Running::start_with(
        vec![
            slack("slack-payments", &payments.url, "payments"),
            slack("slack-identity", &identity.url, "identity"),
            critical_only,
        ],
        |c| c.public_url = "https://keywatch.example.com".into(),
        Some(Arc::new(Teams)),
    );
    let (even, odd) = (finding(4), finding(7));
    run.alerts.submit(&even);
    run.alerts.submit(&odd);

    let got = payments.wait_for(1, Duration::from_secs(3)).await;
    let msg = got[0].json();
    let text = msg.to_string();
    for needle in [
        "HIGH",
        even.key_id.as_str(),
        "alice@example.com (payments)",
        "was used from 185.220.101.7",
        "known_networks",
        &format!("https://keywatch.example.com/api/v1/findings/{}", even.id),
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert!(msg["text"].as_str().unwrap().contains(&even.key_id));
    let got = identity.wait_for(1, Duration::from_secs(3)).await;
    assert!(got[0].json().to_string().contains(&odd.key_id));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(payments.received().len(), 1, "each team gets its own keys");
    assert_eq!(identity.received().len(), 1);
    assert!(pager.received().is_empty(), "high is below critical");
    assert_eq!(run.count("critical", "filtered"), 2);
}

// ---------------------------------------------------------------- PagerDuty, Alertmanager

#[tokio::test]
async fn pagerduty_triggers_then_resolves_after_a_quiet_period() {
    let receiver = Receiver::answering(202).await;
    let pd = sink(
        "pagerduty",
        SinkKind::PagerDuty(PagerDutyConfig {
            routing_key: Secret::resolve("R0UTINGKEY").unwrap(),
            url: receiver.url.clone(),
            resolve_after: ms(600),
        }),
    );
    let run = Running::start(vec![pd]);
    let first = finding(1);
    // The same key and detector again, another finding: keeps the key "not quiet".
    let mut second = finding(1);
    second.id = finding_id(Entity::KeyId, &second.key_id, Detector::NewSource, 8, 1);
    let t0 = Instant::now();
    run.alerts.submit(&first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.alerts.submit(&second);

    let got = receiver.wait_for(4, Duration::from_secs(5)).await;
    let events: Vec<Value> = got.iter().map(Received::json).collect();
    assert!(got.iter().all(|r| r.path == "/v2/enqueue"));
    let trigger = &events[0];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UTINGKEY");
    assert_eq!(trigger["dedup_key"], first.id.as_str());
    assert_eq!(
        trigger["payload"]["severity"], "error",
        "high maps to error"
    );
    assert_eq!(trigger["payload"]["source"], first.key_id.as_str());
    assert_eq!(trigger["payload"]["class"], "new_source");
    assert_eq!(
        trigger["payload"]["custom_details"],
        serde_json::to_value(&first.evidence).unwrap()
    );
    assert_eq!(events[1]["event_action"], "trigger");
    assert_eq!(events[1]["dedup_key"], second.id.as_str());
    let resolved: BTreeSet<&str> = events[2..]
        .iter()
        .map(|e| {
            assert_eq!(e["event_action"], "resolve", "{e}");
            e["dedup_key"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        resolved,
        BTreeSet::from([first.id.as_str(), second.id.as_str()])
    );
    let quiet = got[2].at - t0;
    assert!(
        quiet >= Duration::from_millis(900),
        "resolved {quiet:?} after the first trigger: not before 600ms after the last"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 4, "resolved once");
}

#[tokio::test]
async fn alertmanager_re_sends_active_alerts_until_they_end() {
    let receiver = Receiver::answering(200).await;
    let am = sink(
        "alertmanager",
        SinkKind::Alertmanager(AlertmanagerConfig {
            url: receiver.url.clone(),
            resend_interval: ms(200),
            active_for: ms(900),
        }),
    );
    let run = Running::start_with(vec![am], |_| {}, Some(Arc::new(Teams)));
    let f = finding(3);
    run.alerts.submit(&f);

    // Posted once, re-sent every 200ms while active (900ms), then resolved.
    let got = eventually(Duration::from_secs(5), || {
        let got = receiver.received();
        got.last()
            .is_some_and(|r| {
                let ends = r.json()[0]["endsAt"].as_str().unwrap().to_owned();
                chrono::DateTime::parse_from_rfc3339(&ends).unwrap() <= r.wall
            })
            .then_some(got)
    })
    .await;
    assert!(got.len() >= 4, "posted and re-sent: {} requests", got.len());
    let first = got[0].json();
    let alert = &first[0];
    assert!(got.iter().all(|r| r.path == "/api/v2/alerts"));
    assert_eq!(
        alert["labels"],
        json!({
            "alertname": "KeywatchFinding",
            "detector": "new_source",
            "severity": "high",
            "key_id": f.key_id,
            "team": "identity",
        })
    );
    assert_eq!(alert["annotations"]["summary"], f.summary.as_str());
    assert_eq!(
        serde_json::from_str::<Value>(alert["annotations"]["evidence"].as_str().unwrap()).unwrap(),
        serde_json::to_value(&f.evidence).unwrap()
    );
    let starts_at = alert["startsAt"].clone();
    let ends_at = |r: &Received| {
        let a = &r.json()[0];
        assert_eq!(a["labels"], alert["labels"]);
        assert_eq!(a["startsAt"], starts_at, "startsAt is kept across re-sends");
        chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap()
    };
    let (last, firing) = got.split_last().unwrap();
    for r in firing {
        assert!(ends_at(r) > r.wall, "firing: endsAt ahead of the send");
    }
    assert!(ends_at(last) <= last.wall, "resolved: endsAt passed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        got.len(),
        "nothing after the resolution"
    );
}

// ---------------------------------------------------------------- incidents

const T0_MS: i64 = 1_770_606_764_000;

/// The stolen key of the demo, as a responder's sinks see it: a new
/// network, a listed source, a first `iam:ListUsers` and a first
/// `iam:CreateAccessKey`, all on key 2 within four minutes.
fn stolen_key_findings() -> Vec<Finding> {
    [
        (
            Detector::NewSource,
            Severity::High,
            0,
            "sts:GetCallerIdentity",
        ),
        (
            Detector::ListedSource,
            Severity::High,
            0,
            "sts:GetCallerIdentity",
        ),
        (Detector::NewAction, Severity::Medium, 2, "iam:ListUsers"),
        (
            Detector::NewAction,
            Severity::Medium,
            4,
            "iam:CreateAccessKey",
        ),
    ]
    .into_iter()
    .map(|(detector, severity, minute, action)| {
        let mut f = finding(2);
        let at = T0_MS + minute * 60_000;
        f.id = finding_id(Entity::KeyId, &f.key_id, detector, action.len() as u64, at);
        f.detector = detector;
        f.severity = severity;
        f.observed_at = chrono::DateTime::from_timestamp_millis(at)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        f.sample.action = Some(action.to_owned());
        f
    })
    .collect()
}

#[tokio::test]
async fn one_attack_is_one_notification_per_paging_sink_updated_then_resolved() {
    let pagerduty = Receiver::answering(202).await;
    let slack = Receiver::answering(200).await;
    let hook = Receiver::answering(200).await;
    let alertmanager = Receiver::answering(200).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    // The webhook and PagerDuty one request at a time, so their order is
    // the incident's; Slack with the default concurrency (4): requests side
    // by side must still open the incident once.
    let mut signed = sink("hook", webhook(&hook.url));
    signed.concurrency = 1;
    if let SinkKind::Webhook(w) = &mut signed.kind {
        w.secret = Some(Secret::resolve("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
    }
    let mut pagerduty_sink = sink(
        "pagerduty",
        SinkKind::PagerDuty(PagerDutyConfig {
            routing_key: Secret::resolve("R0UTINGKEY").unwrap(),
            url: pagerduty.url.clone(),
            resolve_after: ms(600),
        }),
    );
    pagerduty_sink.concurrency = 1;
    let run = Running::with_incidents(
        vec![
            pagerduty_sink,
            sink(
                "slack",
                SinkKind::Slack(SlackConfig {
                    url: Secret::resolve(&slack.url).unwrap(),
                    min_interval: ms(10),
                    update_interval: ms(400),
                }),
            ),
            signed,
            sink(
                "alertmanager",
                SinkKind::Alertmanager(AlertmanagerConfig {
                    url: alertmanager.url.clone(),
                    resend_interval: HumanDuration::secs(60),
                    active_for: HumanDuration::secs(3600),
                }),
            ),
            sink(
                "audit",
                SinkKind::File(FileSinkConfig { path: file.clone() }),
            ),
        ],
        Some(Arc::new(Teams)),
    );
    let findings = stolen_key_findings();
    for f in &findings {
        run.alerts.submit(f);
    }
    // Re-found (a partition catching up): nothing new anywhere.
    run.alerts.submit(&findings[1]);

    // Slack: one message on opening; the three changes after it inside the
    // update interval make one update (its "4 findings" below: had it not
    // waited, it would be the second finding's alone). Not timed: on a busy
    // machine the opening message can reach the receiver late.
    let got = slack.wait_for(2, Duration::from_secs(5)).await;
    let opened = got[0].json().to_string();
    assert!(opened.contains("incident opened"), "{opened}");
    assert!(
        opened.contains("https://keywatch.example.com/api/v1/incidents/"),
        "{opened}"
    );
    let update = got[1].json().to_string();
    assert!(update.contains("CRITICAL · incident escalated"), "{update}");
    assert!(
        update.contains("attack sequence (initial access → discovery → persistence)"),
        "{update}"
    );
    assert!(update.contains("4 findings"), "{update}");

    // The incident goes quiet for its window (90 minutes of event time).
    run.alerts
        .resolve_idle_incidents(T0_MS + 4 * 60_000 + 90 * 60_000);
    let got = slack.wait_for(3, Duration::from_secs(5)).await;
    assert!(got[2].json().to_string().contains("incident resolved"));

    // PagerDuty: every event on one dedup_key, the incident's; triggers,
    // the last at critical, then one resolve.
    let events: Vec<Value> = pagerduty
        .wait_for(5, Duration::from_secs(5))
        .await
        .iter()
        .map(Received::json)
        .collect();
    let incident_id = events[0]["dedup_key"].as_str().unwrap().to_owned();
    assert!(
        events
            .iter()
            .all(|e| e["dedup_key"] == incident_id.as_str()),
        "{events:#?}"
    );
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "trigger", "trigger", "trigger", "resolve"]
    );
    assert_eq!(events[0]["payload"]["severity"], "error", "opened high");
    assert_eq!(events[3]["payload"]["severity"], "critical");
    assert_eq!(events[3]["payload"]["class"], "attack_sequence");
    assert_eq!(events[3]["payload"]["group"], "payments");
    assert_eq!(
        events[3]["payload"]["custom_details"]["tactics"],
        json!(["initial_access", "discovery", "persistence"])
    );

    // Webhook: the four findings and the five incident events, each once,
    // each signed with its own id.
    let got = hook.wait_for(9, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.received().len(), 9, "nothing twice");
    let ids: BTreeSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 9);
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    let changes: Vec<&str> = bodies
        .iter()
        .filter(|b| b["type"] == "incident")
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        ["opened", "updated", "updated", "escalated", "resolved"]
    );
    for b in &bodies {
        assert_eq!(b["incident_id"], incident_id.as_str(), "{b}");
    }
    let findings_sent: Vec<&Value> = bodies.iter().filter(|b| b.get("type").is_none()).collect();
    assert_eq!(findings_sent.len(), 4);
    assert!(
        findings_sent
            .iter()
            .all(|b| b["detector"].is_string() && b["evidence"].is_object()),
        "findings keep their shape"
    );
    assert!(got
        .iter()
        .all(|r| r.header("webhook-signature").starts_with("v1,")));

    // Alertmanager: the findings, labelled with their incident.
    let got = alertmanager.wait_for(4, Duration::from_secs(5)).await;
    for r in &got {
        assert_eq!(r.json()[0]["labels"]["incident_id"], incident_id.as_str());
    }

    // The file: findings and incident events, one line each.
    let run = run.stop().await;
    let lines = read_json_lines(&file);
    assert_eq!(lines.len(), 9);
    assert_eq!(run.metrics.incidents_open.get(), 0);
    assert_eq!(run.metrics.incidents.with_label_values(&["high"]).get(), 1);
    assert_eq!(
        run.metrics.incidents.with_label_values(&["critical"]).get(),
        1
    );
}

#[tokio::test]
async fn a_confirmed_old_finding_pages_as_an_incident_that_stays_open() {
    let pagerduty = Receiver::answering(202).await;
    let mut pd = sink(
        "pagerduty",
        SinkKind::PagerDuty(PagerDutyConfig {
            routing_key: Secret::resolve("R0UTINGKEY").unwrap(),
            url: pagerduty.url.clone(),
            resolve_after: ms(600),
        }),
    );
    pd.concurrency = 1;
    let run = Running::with_incidents(vec![pd], None);
    let f = &stolen_key_findings()[0];
    run.alerts.submit(f);
    run.alerts.resolve_idle_incidents(T0_MS + 2 * 3_600_000);
    // Months later a responder confirms it: the copy is news of now.
    let mut confirmed = f.clone();
    confirmed.id = format!("{}-confirmed", f.id);
    confirmed.severity = Severity::Critical;
    run.alerts.renotify(&confirmed);
    run.alerts.resolve_idle_incidents(T0_MS + 3 * 3_600_000);
    let events: Vec<Value> = pagerduty
        .wait_for(3, Duration::from_secs(5))
        .await
        .iter()
        .map(Received::json)
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pagerduty.received().len(), 3, "{events:#?}");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve", "trigger"]);
    assert_ne!(
        events[2]["dedup_key"], events[0]["dedup_key"],
        "a new incident"
    );
    assert_eq!(events[2]["payload"]["severity"], "critical");
    assert_eq!(
        run.metrics.incidents_open.get(),
        1,
        "open until an hour of quiet from now"
    );
}

#[tokio::test]
async fn incident_events_follow_the_sinks_severity_and_format() {
    let hook = Receiver::answering(200).await;
    let ocsf = Receiver::answering(200).await;
    let mut critical = sink("critical", webhook(&hook.url));
    critical.min_severity = Severity::Critical;
    let mut siem = sink("siem", webhook(&ocsf.url));
    siem.format = keywatch::alert::format::AlertFormat::Ocsf;
    let run = Running::with_incidents(vec![critical, siem], None);
    for f in &stolen_key_findings() {
        run.alerts.submit(f);
    }
    run.alerts.resolve_idle_incidents(T0_MS + 2 * 3_600_000);
    // The critical sink: no finding (all are high or medium), and the
    // incident from the moment it became critical, resolved included.
    let got = hook.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changes: Vec<String> = hook
        .received()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changes, ["escalated", "resolved"], "{got:?}");
    // The OCSF sink: the four findings as Detection Findings, and the
    // incident's events as Incident Findings of one incident, created
    // first and closed last.
    ocsf.wait_for(4 + changes.len(), Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = ocsf.received();
    let class = |uid: i64| -> Vec<serde_json::Value> {
        got.iter()
            .map(|r| r.json())
            .filter(|v| v["class_uid"] == uid)
            .collect()
    };
    assert_eq!(class(2004).len(), 4, "{got:?}");
    let incident = class(2005);
    assert!(incident.len() >= 2, "{got:?}");
    assert_eq!(got.len(), 4 + incident.len(), "nothing else");
    assert_eq!(incident[0]["activity_id"], 1);
    assert_eq!(incident.last().unwrap()["activity_id"], 3);
    let id = &incident[0]["unmapped"]["incident_id"];
    assert!(incident.iter().all(|v| &v["unmapped"]["incident_id"] == id));
    assert_eq!(
        incident.last().unwrap()["finding_info_list"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "the closing event lists every finding"
    );
}

#[tokio::test]
async fn splunk_hec_takes_incident_events_with_their_own_sourcetype_and_time() {
    let (receiver, url) = Hec::start("hec-t0ken", false, |_| None).await;
    let run = Running::with_incidents(vec![sink("splunk", hec(&url, "hec-t0ken", false))], None);
    let findings = stolen_key_findings();
    for f in &findings {
        run.alerts.submit(f);
    }
    run.alerts.resolve_idle_incidents(T0_MS + 2 * 3_600_000);
    eventually(Duration::from_secs(5), || {
        receiver
            .events()
            .iter()
            .any(|(_, b)| b["event"]["event"] == "resolved")
            .then_some(())
    })
    .await;
    let events = receiver.events();
    let (alerts, incidents): (Vec<_>, Vec<_>) = events
        .iter()
        .map(|(_, b)| b)
        .partition(|b| b["sourcetype"] == "keywatch:alert");
    assert_eq!(alerts.len(), findings.len());
    assert!(incidents
        .iter()
        .all(|b| b["sourcetype"] == "keywatch:incident"));
    let last = incidents.last().unwrap();
    let last_seen =
        chrono::DateTime::parse_from_rfc3339(last["event"]["last_seen"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
    assert_eq!(
        last["time"],
        last_seen as f64 / 1000.0,
        "the incident's time"
    );
    assert_eq!(run.failures("splunk", "status_5xx"), 0);
    run.stop().await;
}

// ---------------------------------------------------------------- Kafka, files, redaction

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_produces_keyed_alerts_to_a_topic() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, Offset, TopicPartitionList};

    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("keywatch-alerts", 2, 1).unwrap();
    let run = Running::start(vec![sink(
        "kafka",
        SinkKind::Kafka(KafkaSinkConfig {
            brokers: cluster.bootstrap_servers(),
            topic: "keywatch-alerts".into(),
            properties: Default::default(),
            secret_properties: Default::default(),
        }),
    )]);
    let findings: Vec<Finding> = (0..3).map(finding).collect();
    for f in &findings {
        run.alerts.submit(f);
    }
    eventually(Duration::from_secs(10), || {
        (run.count("kafka", "sent") == 3).then_some(())
    })
    .await;

    // Assigned, not subscribed: no group to join, so the test stays fast.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "alerts-it")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..2 {
        partitions
            .add_partition_offset("keywatch-alerts", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("alerts on the topic")
            .unwrap();
        let key = std::str::from_utf8(msg.key().unwrap()).unwrap().to_owned();
        let alert: Value = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        let header = msg.headers().unwrap().get(0);
        assert_eq!(header.key, "keywatch-alert-id");
        assert_eq!(
            header.value.unwrap(),
            alert["id"].as_str().unwrap().as_bytes()
        );
        assert_eq!(key, alert["key_id"].as_str().unwrap(), "keyed by key id");
        seen.push(alert["id"].as_str().unwrap().to_owned());
    }
    let mut expected: Vec<String> = findings.iter().map(|f| f.id.clone()).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn secrets_never_leave_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.jsonl");
    let run = Running::start_with(
        vec![sink(
            "file",
            SinkKind::File(FileSinkConfig { path: out.clone() }),
        )],
        |c| {
            c.redact = RedactConfig {
                drop: vec!["region".into()],
                mask: vec!["source".into()],
                patterns: vec![r"corp-ticket-\d+".into()],
            }
        },
        None,
    );
    let secrets = [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "abcdef0123456789abcdef",
        "hunter2hunter2",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "MIIEowIBAAKCAQEAx4",
        "corp-ticket-4711",
    ];
    let mut f = finding(1);
    f.sample.user_agent = Some(format!("curl/8 (Authorization: Bearer {})", secrets[1]));
    f.sample.action = Some(format!(
        "GET https://deploy:{}@git.example.com/x",
        secrets[2]
    ));
    f.principal = Some(format!("svc (pasted {} in chat)", secrets[0]));
    f.evidence.observed = json!({"token": secrets[3], "nested": [format!("-----BEGIN PRIVATE KEY-----\n{}", secrets[5])]});
    f.summary = format!("{} leaked in {}; see {}", secrets[4], "a gist", secrets[6]);
    run.alerts.submit(&f);
    let run = run.stop().await;

    let text = std::fs::read_to_string(&out).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for marker in [
        "[redacted:aws_secret_key]",
        "Bearer [redacted]",
        "https://deploy:[redacted]@git.example.com",
        "[redacted:jwt]",
        "[redacted:token]",
        "[redacted:private_key]",
    ] {
        assert!(text.contains(marker), "{marker} missing: {text}");
    }
    let alert = &read_json_lines(&out)[0];
    assert_eq!(alert["sample"]["source"], "[redacted]");
    assert!(alert["sample"].get("region").is_none());
    assert_eq!(
        alert["key_id"],
        f.key_id.as_str(),
        "identifiers stay readable"
    );
    assert_eq!(run.count("file", "sent"), 1);
}

// ---------------------------------------------------------------- formats

/// A webhook in `ocsf` and a file in `ecs` carry the same alert in the
/// SIEM's schema; the signature covers what was sent, and what cannot be
/// delivered is kept in keywatch's own shape.
#[tokio::test]
async fn sinks_write_the_alert_in_their_format() {
    use keywatch::alert::format::AlertFormat;
    let receiver = Receiver::answering(200).await;
    let refusing = Receiver::answering(400).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecs.jsonl");
    let mut hook = sink("ocsf-hook", webhook(&receiver.url));
    hook.format = AlertFormat::Ocsf;
    if let SinkKind::Webhook(w) = &mut hook.kind {
        w.secret = Some(Secret::resolve("a-shared-secret").unwrap());
    }
    let mut file = sink(
        "ecs-file",
        SinkKind::File(FileSinkConfig { path: path.clone() }),
    );
    file.format = AlertFormat::Ecs;
    let mut refused = sink("refused", webhook(&refusing.url));
    refused.format = AlertFormat::Ocsf;
    let run = Running::start(vec![hook, file, refused]);
    let f = finding(3);
    run.alerts.submit(&f);

    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    let req = &got[0];
    let body = req.json();
    assert_eq!(body["class_uid"], 2004);
    assert_eq!(body["finding_info"]["uid"], f.id.as_str());
    assert_eq!(body["severity_id"], 4, "high");
    assert_eq!(body["evidences"][0]["src_endpoint"]["ip"], "185.220.101.7");
    assert_eq!(
        body["unmapped"]["evidence"]["baseline"]["networks"][0],
        "203.0.113.0/24"
    );
    assert_eq!(req.header("webhook-id"), f.id);
    let ts = req.header("webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"a-shared-secret").unwrap();
    mac.update(format!("{}.{ts}.", f.id).as_bytes());
    mac.update(&req.body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("webhook-signature"), expected);

    let lines = eventually(Duration::from_secs(5), || {
        let l = read_json_lines(&path);
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(lines[0]["event"]["kind"], "alert");
    assert_eq!(lines[0]["rule"]["name"], "new_source");
    assert_eq!(lines[0]["source"]["ip"], "185.220.101.7");
    assert_eq!(
        lines[0]["user"]["name"],
        "arn:aws:iam::123456789012:user/svc-billing"
    );
    assert_eq!(lines[0]["cloud"]["provider"], "aws");
    assert_eq!(lines[0]["cloud"]["account"]["id"], "123456789012");
    assert_eq!(lines[0]["@timestamp"], "2026-02-09T03:12:44.000Z");

    let dead = run.wait_dead_letters(1, Duration::from_secs(5)).await;
    assert_eq!(dead[0]["sink"], "refused");
    assert_eq!(dead[0]["alert"]["id"], f.id.as_str());
    assert_eq!(
        dead[0]["alert"]["detector"], "new_source",
        "kept as keywatch's alert"
    );
    run.stop().await;
}

// ---------------------------------------------------------------- Splunk HEC

/// A local HTTP Event Collector answering as Splunk documents: a token in
/// `Authorization: Splunk <token>`, `{"text":"Success","code":0}` (with an
/// `ackId` when acknowledgements are on, which then need a channel), and
/// `/services/collector/ack` saying an id is indexed from its second query.
#[derive(Clone)]
struct Hec {
    token: &'static str,
    acks: bool,
    /// Status for the n-th event request (from 0); 200 otherwise.
    fail: Arc<dyn Fn(usize) -> Option<u16> + Send + Sync>,
    events: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    ack_queries: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Hec {
    async fn start(
        token: &'static str,
        acks: bool,
        fail: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
    ) -> (Hec, String) {
        let hec = Hec {
            token,
            acks,
            fail: Arc::new(fail),
            events: Arc::default(),
            ack_queries: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/services/collector/event", axum::routing::post(hec_event))
            .route("/services/collector/ack", axum::routing::post(hec_ack))
            .with_state(hec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hec, url)
    }

    fn authorised(&self, headers: &HeaderMap) -> Option<Response> {
        let want = format!("Splunk {}", self.token);
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            None => Some(
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"text": "Token is required", "code": 2})),
                )
                    .into_response(),
            ),
            Some(got) if got != want => Some(
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"text": "Invalid token", "code": 4})),
                )
                    .into_response(),
            ),
            Some(_) => None,
        }
    }

    fn events(&self) -> Vec<(HeaderMap, Value)> {
        self.events.lock().unwrap().clone()
    }
}

async fn hec_event(State(hec): State<Hec>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = hec.authorised(&headers) {
        return refused;
    }
    let n = {
        let mut events = hec.events.lock().unwrap();
        events.push((
            headers.clone(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
        events.len() - 1
    };
    if let Some(status) = (hec.fail)(n) {
        let text = if status == 503 {
            "Server is busy"
        } else {
            "Invalid data format"
        };
        return (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"text": text, "code": 9})),
        )
            .into_response();
    }
    if !hec.acks {
        return axum::Json(json!({"text": "Success", "code": 0})).into_response();
    }
    if headers.get("x-splunk-request-channel").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"text": "Data channel is missing", "code": 10})),
        )
            .into_response();
    }
    axum::Json(json!({"text": "Success", "code": 0, "ackId": n})).into_response()
}

async fn hec_ack(State(hec): State<Hec>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = hec.authorised(&headers) {
        return refused;
    }
    let query: Value = serde_json::from_slice(&body).unwrap();
    let asked = {
        let mut queries = hec.ack_queries.lock().unwrap();
        queries.push((headers, query.clone()));
        queries.len()
    };
    // Indexed from the second question on.
    let acks: serde_json::Map<String, Value> = query["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| (id.to_string(), Value::Bool(asked > 1)))
        .collect();
    axum::Json(json!({ "acks": acks })).into_response()
}

fn hec(url: &str, token: &str, acknowledgements: bool) -> SinkKind {
    SinkKind::SplunkHec(SplunkHecConfig {
        url: url.to_owned(),
        token: Secret::resolve(token).unwrap(),
        index: Some("security".into()),
        source: "keywatch".into(),
        sourcetype: None,
        host: None,
        acknowledgements,
        ack_poll_interval: ms(50),
    })
}

#[tokio::test]
async fn splunk_hec_delivers_once_indexed_with_acknowledgements() {
    let (receiver, url) = Hec::start("hec-t0ken", true, |_| None).await;
    let run = Running::start(vec![sink("splunk", hec(&url, "hec-t0ken", true))]);
    let f = finding(4);
    run.alerts.submit(&f);

    eventually(Duration::from_secs(5), || {
        (run.count("splunk", "sent") == 1).then_some(())
    })
    .await;
    let events = receiver.events();
    assert_eq!(events.len(), 1);
    let (headers, body) = &events[0];
    let channel = headers["x-splunk-request-channel"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(channel.len(), 36, "a UUID: {channel}");
    assert_eq!(body["index"], "security");
    assert_eq!(body["source"], "keywatch");
    assert_eq!(body["sourcetype"], "keywatch:alert");
    assert_eq!(body["time"], 1_770_606_764.0);
    assert_eq!(body["event"]["id"], f.id.as_str());
    assert_eq!(body["event"]["detector"], "new_source");
    // Delivered only after the collector said the event was indexed: the
    // first question was answered "not yet".
    let queries = receiver.ack_queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[1].1, json!({ "acks": [0] }));
    assert_eq!(queries[1].0["x-splunk-request-channel"], channel.as_str());
    run.stop().await;
}

#[tokio::test]
async fn splunk_hec_retries_a_busy_collector_and_dead_letters_a_refused_token() {
    // Busy once, then fine: retried, delivered once, in the sink's format.
    let (busy, url) = Hec::start("hec-t0ken", false, |n| (n == 0).then_some(503)).await;
    let mut ocsf = sink("splunk", hec(&url, "hec-t0ken", false));
    ocsf.format = keywatch::alert::format::AlertFormat::Ocsf;
    // A wrong token: refused with 403, not retried, kept in the dead-letter file.
    let (refusing, url) = Hec::start("the-real-token", false, |_| None).await;
    let wrong = sink("splunk-wrong", hec(&url, "not-the-token", false));
    let run = Running::start(vec![ocsf, wrong]);
    let f = finding(5);
    run.alerts.submit(&f);

    eventually(Duration::from_secs(5), || {
        (run.count("splunk", "sent") == 1).then_some(())
    })
    .await;
    let events = busy.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].1["sourcetype"], "ocsf:detection_finding");
    assert_eq!(events[1].1["event"]["class_uid"], 2004);
    assert_eq!(events[1].1["event"]["finding_info"]["uid"], f.id.as_str());
    assert_eq!(run.count("splunk", "retried"), 1);
    assert_eq!(run.failures("splunk", "status_5xx"), 1);

    let dead = run.wait_dead_letters(1, Duration::from_secs(5)).await;
    assert_eq!(dead[0]["sink"], "splunk-wrong");
    assert_eq!(dead[0]["reason"], "status_4xx");
    assert_eq!(dead[0]["attempts"], 1);
    assert!(
        dead[0]["error"].as_str().unwrap().contains("403"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["alert"]["id"], f.id.as_str());
    assert_eq!(refusing.events().len(), 0, "refused before it was read");
    let run = run.stop().await;
    assert_eq!(run.count("splunk", "sent"), 1, "not sent twice");
}
