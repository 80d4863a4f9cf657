//! The findings store and verdicts through the HTTP API on a real loopback
//! socket: filters served from the store, verdicts behind the bearer token
//! with an audit trail, `expected` teaching the key so the same use never
//! alerts again (also after a restart), `false_positive` creating a
//! suppression, and the console page served by keywatch itself.

use std::sync::Arc;
use std::time::Duration;

use keywatch::alert::Alerts;
use keywatch::config::{
    Config, Entity, FileSinkConfig, HttpConfig, KafkaConfig, Secret, SinkConfig, SinkKind,
    StoreConfig,
};
use keywatch::engine::{Detector, Engine, Finding};
use keywatch::feedback::topic::FeedbackTopic;
use keywatch::http::{self, AppState, RecentFindings};
use keywatch::metrics::Metrics;
use keywatch::source::kafka::SourceStatus;
use keywatch::store::{FindingsStore, StoreWriter};
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

// The same S3 read the HTTP tests apply.
use crate::http::event;

const TOKEN: &str = "t0ken-of-sixteen+";
const T0: i64 = 1_767_571_200_000;
const QUARTER_HOUR: i64 = 900_000;
const DAY: i64 = 86_400_000;

/// The usual traffic of `keys` from their usual network, `from..to`.
fn usual(engine: &Engine, keys: &[&str], from: i64, to: i64) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut t = from;
    while t < to {
        for k in keys {
            engine.process(&event(k, t, "203.0.113.10"), &mut found);
        }
        t += QUARTER_HOUR;
    }
    found
}

struct Console {
    base: String,
    engine: Engine,
    client: reqwest::Client,
    store: FindingsStore,
    _writer: StoreWriter,
    _stop: tokio_util::sync::DropGuard,
}

impl Console {
    /// A server over `engine` with a store in `dir`, verdicts re-applied.
    async fn start(engine: Engine, dir: &std::path::Path) -> Console {
        Console::start_with(engine, dir, None).await
    }

    /// As [`Console::start`], one of several instances sharing the feedback
    /// topic on the broker at `bootstrap`.
    async fn start_with(engine: Engine, dir: &std::path::Path, bootstrap: Option<&str>) -> Console {
        Console::start_full(engine, dir, bootstrap, None).await
    }

    /// As [`Console::start_with`], with a key inventory (the review's).
    async fn start_full(
        engine: Engine,
        dir: &std::path::Path,
        bootstrap: Option<&str>,
        inventory: Option<keywatch::inventory::InventoryHandle>,
    ) -> Console {
        let mut cfg = Config::default();
        // Every alert to a file, to see what a verdict re-sends.
        cfg.alerts.dead_letter_path = dir.join("dead-letter.jsonl");
        cfg.alerts
            .sinks
            .push(SinkConfig::new(SinkKind::File(FileSinkConfig {
                path: dir.join("alerts.jsonl"),
            })));
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let (alerts, _) = Alerts::start(&cfg.alerts, metrics.clone(), None, stop.clone()).unwrap();
        let store_cfg = StoreConfig {
            path: dir.join("findings.db"),
            ..StoreConfig::default()
        };
        let (store, writer) = FindingsStore::open(&store_cfg, metrics.clone(), None).unwrap();
        keywatch::feedback::restore(&store, &engine, &alerts);
        let feedback = match bootstrap {
            Some(brokers) => {
                let kafka = KafkaConfig {
                    brokers: brokers.to_owned(),
                    group_id: "console-it".into(),
                    ..KafkaConfig::default()
                };
                let (store, engine, alerts, stop) =
                    (store.clone(), engine.clone(), alerts.clone(), stop.clone());
                Some(
                    tokio::task::spawn_blocking(move || {
                        FeedbackTopic::start(
                            &kafka,
                            "keywatch-feedback",
                            store,
                            engine,
                            alerts,
                            stop,
                        )
                    })
                    .await
                    .unwrap()
                    .unwrap(),
                )
            }
            None => None,
        };
        let state = AppState {
            engine: engine.clone(),
            metrics: metrics.clone(),
            status: Arc::new(SourceStatus::default()),
            recent: Arc::new(RecentFindings::new(
                100,
                100,
                Duration::from_secs(60),
                metrics,
            )),
            alerts,
            api_token: Some(Secret::resolve(TOKEN).unwrap()),
            dormant_s: 30 * 86_400,
            inventory,
            inventory_cfg: Default::default(),
            checkpoint_max_age: None,
            last_checkpoint_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            started: std::time::Instant::now(),
            store: Some(store.clone()),
            feedback,
            responder: None,
        };
        let http_cfg = HttpConfig {
            listen: "127.0.0.1:0".into(),
            ..HttpConfig::default()
        };
        let (addr, _) = http::serve(&http_cfg, state, stop.clone()).await.unwrap();
        Console {
            base: format!("http://{addr}"),
            engine,
            client: reqwest::Client::new(),
            store,
            _writer: writer,
            _stop: stop.drop_guard(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
        )
    }

    async fn verdict(&self, id: &str, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/v1/findings/{id}/verdict", self.base))
            .header("user-agent", "console-test/1")
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// Two settled keys, both used from a new network on day 20: one
/// `new_source` finding each, stored.
fn settled_and_attacked(engine: &Engine, store: &FindingsStore) -> Vec<Finding> {
    let keys = ["AKIATAUGHT", "AKIACONTROL"];
    assert!(usual(engine, &keys, T0, T0 + 20 * DAY).is_empty());
    let mut found = Vec::new();
    for k in keys {
        engine.process(&event(k, T0 + 20 * DAY, "198.51.100.7"), &mut found);
    }
    let new_source: Vec<Finding> = found
        .into_iter()
        .filter(|f| f.detector == Detector::NewSource)
        .collect();
    assert_eq!(new_source.len(), 2, "{new_source:#?}");
    for f in &new_source {
        store.store_now(f).unwrap();
    }
    new_source
}

#[tokio::test]
async fn expected_teaches_the_key_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(&Config::default());
    let c = Console::start(engine, dir.path()).await;
    let found = settled_and_attacked(&c.engine, &c.store);
    let taught = found.iter().find(|f| f.key_id == "AKIATAUGHT").unwrap();

    // Filters come from the store.
    let (_, page) = c.get("/api/v1/findings?key_id=AKIATAUGHT").await;
    assert_eq!(page["findings"].as_array().unwrap().len(), 1);
    assert_eq!(page["findings"][0]["status"], "open");
    let (_, page) = c.get("/api/v1/findings?status=expected").await;
    assert!(page["findings"].as_array().unwrap().is_empty());

    // Writes need the token.
    let body = json!({"status": "expected", "by": "alice", "note": "new office"});
    assert_eq!(c.verdict(&taught.id, body.clone(), None).await.0, 401);
    assert_eq!(
        c.verdict(&taught.id, body.clone(), Some("wrong")).await.0,
        401
    );
    let (status, r) = c.verdict(&taught.id, body, Some(TOKEN)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["effect"]["taught"]["kind"], "network");
    let (status, _) = c
        .verdict("0000", json!({"status": "resolved"}), Some(TOKEN))
        .await;
    assert_eq!(status, 404);

    // The finding shows the verdict and who gave it, from where.
    let (_, f) = c.get(&format!("/api/v1/findings/{}", taught.id)).await;
    assert_eq!(f["status"], "expected");
    let audit = f["audit"].as_array().unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["taught", "status", "note"], "{audit:#?}");
    assert_eq!(audit[0]["who"], "alice");
    assert!(audit[0]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(audit[0]["user_agent"], "console-test/1");
    let (_, page) = c.get("/api/v1/findings?status=expected").await;
    assert_eq!(page["findings"].as_array().unwrap().len(), 1);

    // The key page says what it was taught and by whom.
    let (_, key) = c.get("/api/v1/keys/AKIATAUGHT").await;
    assert_eq!(key["taught"][0]["by"], "alice");
    assert_eq!(key["taught"][0]["source"], "198.51.100.7");

    // A restart: a new engine and server over the same store file. Both keys
    // live on for 40 days from their usual network, so the new network is
    // long forgotten; then both are used from it again.
    drop(c);
    let engine = Engine::new(&Config::default());
    let c = Console::start(engine, dir.path()).await;
    assert!(
        usual(&c.engine, &["AKIATAUGHT", "AKIACONTROL"], T0, T0 + 60 * DAY)
            .iter()
            .all(|f| f.detector != Detector::NewSource)
    );
    let mut again = Vec::new();
    for k in ["AKIATAUGHT", "AKIACONTROL"] {
        c.engine
            .process(&event(k, T0 + 60 * DAY, "198.51.100.9"), &mut again);
    }
    let raised: Vec<&str> = again
        .iter()
        .filter(|f| f.detector == Detector::NewSource)
        .map(|f| f.key_id.as_str())
        .collect();
    assert_eq!(raised, ["AKIACONTROL"], "only the untaught key alerts");
    assert!(
        c.engine
            .stats()
            .suppressed_taught
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn false_positive_creates_a_scoped_suppression_with_an_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(Engine::new(&Config::default()), dir.path()).await;
    let found = settled_and_attacked(&c.engine, &c.store);
    let f = &found[0];
    let (status, r) = c
        .verdict(
            &f.id,
            json!({"status": "false_positive", "scope": "network", "expires_in": "2d", "by": "bob"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let (_, list) = c.get("/api/v1/suppressions").await;
    let rules = list["suppressions"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{list}");
    assert_eq!(rules[0]["id"], r["effect"]["suppression_id"]);
    assert_eq!(rules[0]["source_network"], "198.51.100.0/24");
    assert_eq!(rules[0]["detector"], "new_source");
    assert!(rules[0]["expires"].is_string());
    assert!(rules[0]["reason"].as_str().unwrap().contains("bob"));

    // A scope the finding cannot fill is refused, and changes nothing.
    let (status, _) = c
        .verdict(
            &found[1].id,
            json!({"status": "false_positive", "scope": "principal"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 422);
    let (_, other) = c.get(&format!("/api/v1/findings/{}", found[1].id)).await;
    assert_eq!(other["status"], "open");

    // The suppression is back after a restart.
    drop(c);
    let c = Console::start(Engine::new(&Config::default()), dir.path()).await;
    let (_, list) = c.get("/api/v1/suppressions").await;
    assert_eq!(list["suppressions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_console_is_served_by_keywatch_itself() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(Engine::new(&Config::default()), dir.path()).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let r = c
            .client
            .get(format!("{}{path}", c.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let text = r.text().await.unwrap();
        // Nothing from elsewhere: no CDN, no external font.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn confirmed_pages_at_critical_and_marks_the_key_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "[[keys]]\nkey_id = \"AKIATAUGHT\"\nowner = \"alice\"\nsystem = \"billing\"\n",
    )
    .unwrap();
    let inventory = keywatch::inventory::InventoryHandle::open(&inventory, None).unwrap();
    let c = Console::start_full(
        Engine::new(&Config::default()),
        dir.path(),
        None,
        Some(inventory),
    )
    .await;
    let found = settled_and_attacked(&c.engine, &c.store);
    let f = &found[0];
    let (status, r) = c
        .verdict(
            &f.id,
            json!({"status": "confirmed", "by": "dana"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["effect"]["renotified"], true);
    let (_, comp) = c.get("/api/v1/compromised").await;
    assert_eq!(comp["keys"], json!([f.key_id]));
    // The review says so too, first, with what the inventory knows.
    assert_eq!(f.key_id, "AKIATAUGHT");
    let (_, review) = c.get("/api/v1/review").await;
    assert_eq!(
        review["compromised"],
        json!([{"key_id": "AKIATAUGHT", "owner": "alice", "system": "billing", "listed": true}])
    );
    let md = c
        .client
        .get(format!("{}/api/v1/review?format=markdown", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = md.find("## Compromised (confirmed)").expect(&md);
    assert!(section < md.find("## Ranked by risk").unwrap(), "{md}");
    assert!(
        md[section..].contains("| `AKIATAUGHT` | alice | billing | yes |"),
        "{md}"
    );

    // The sinks got it again, at critical, under a new id.
    let path = dir.path().join("alerts.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("-confirmed")) {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no re-sent alert in {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["id"], format!("{}-confirmed", f.id));
    assert!(alert["summary"].as_str().unwrap().contains("dana"));

    // Resolved: the key is no longer marked.
    c.verdict(&f.id, json!({"status": "resolved"}), Some(TOKEN))
        .await;
    let (_, comp) = c.get("/api/v1/compromised").await;
    assert_eq!(comp["keys"], json!([]));
    let (_, review) = c.get("/api/v1/review").await;
    assert_eq!(review["compromised"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_reach_every_instance_through_the_feedback_topic() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = Config::default();
    let a = Console::start_with(Engine::new(&cfg), dir_a.path(), Some(&bootstrap)).await;
    let b = Console::start_with(Engine::new(&cfg), dir_b.path(), Some(&bootstrap)).await;
    // The findings are raised on A; B owns nothing of them yet.
    let found = settled_and_attacked(&a.engine, &a.store);
    let (taught, muted) = (&found[0], &found[1]);
    assert_eq!(taught.key_id, "AKIATAUGHT");
    let (status, _) = a
        .verdict(
            &taught.id,
            json!({"status": "expected", "by": "erin"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = a
        .verdict(
            &muted.id,
            json!({"status": "false_positive", "by": "erin"}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);

    // B applies both, and A does not apply its own twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, rules) = b.get("/api/v1/suppressions").await;
        if !b.engine.teachings(Entity::KeyId, "AKIATAUGHT").is_empty()
            && rules["suppressions"].as_array().unwrap().len() == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never got the verdicts: {rules}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.engine.teachings(Entity::KeyId, "AKIATAUGHT")[0].by,
        "erin"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rules) = a.get("/api/v1/suppressions").await;
    assert_eq!(
        rules["suppressions"].as_array().unwrap().len(),
        1,
        "{rules}"
    );
    assert_eq!(a.engine.teachings(Entity::KeyId, "AKIATAUGHT").len(), 1);

    // B restarted: the teaching is back from its own store at once, and the
    // topic read again from its start adds nothing twice.
    drop(b);
    let b = Console::start_with(Engine::new(&cfg), dir_b.path(), Some(&bootstrap)).await;
    assert_eq!(b.engine.teachings(Entity::KeyId, "AKIATAUGHT").len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.engine.teachings(Entity::KeyId, "AKIATAUGHT").len(), 1);
    let (_, rules) = b.get("/api/v1/suppressions").await;
    assert_eq!(
        rules["suppressions"].as_array().unwrap().len(),
        1,
        "{rules}"
    );
}
