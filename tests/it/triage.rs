//! The triage console end to end: `keywatch run` as a process over a Kafka
//! broker (librdkafka's mock cluster) with the findings store on.
//!
//! - Findings and verdicts survive `kill -9` of the daemon.
//! - In a real browser (Debian's `chromium` driven by `chromedriver` over
//!   WebDriver): the default view lists incidents, a copied incident link
//!   opens its timeline beside the key's baseline, and a verdict on it
//!   reaches each of its findings; findings appear, filtering works, `Expected` on a
//!   `new_source` finding teaches the key (the key page says so, and the
//!   next use from that network raises nothing), `False positive` creates a
//!   suppression the suppressions page lists. Screenshots go to
//!   `target/console-screenshots/`.
//!
//! The WebDriver client is a few calls over `reqwest` (already a
//! dependency): a crate such as fantoccini would add its own HTTP stack
//! to the build for the eight commands used here.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::helpers::*;

const TOPIC: &str = "audit";
const TOKEN: &str = "console-test-token-0123456789";
/// 2026-01-05T00:00:00Z, seconds.
const T0: i64 = 1_767_571_200;
const DAY: i64 = 86_400;

struct Setup {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    base: String,
    http: reqwest::blocking::Client,
}

impl Setup {
    fn new() -> Setup {
        let cluster = MockCluster::new(1).unwrap();
        // One partition: events reach the engine in the order they are sent.
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let listen = free_loopback_addr();
        let cfg = dir.path().join("keywatch.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[kafka]
brokers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "console"
commit_interval = "1s"
startup_timeout = "10s"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[http]
listen = "{listen}"
api_token = "{TOKEN}"
[checkpoint]
dir = "{}"
interval = "1s"
[changelog]
enabled = false
[store]
path = "{}"
"#,
                dir.path().join("state").display(),
                dir.path().join("findings.db").display(),
            ),
        )
        .unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        Setup {
            _cluster: cluster,
            producer,
            dir,
            cfg,
            base: format!("http://{listen}"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn start(&self, log: &str) -> KillOnDrop {
        KillOnDrop(
            keywatch()
                .arg("run")
                .arg("-c")
                .arg(&self.cfg)
                .env("KEYWATCH_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path().join(log)).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    fn send(&self, key: &str, t: i64, source: &str) {
        let payload = json!({
            "time": t, "key_id": key, "source": source,
            "action": "s3:GetObject", "user_agent": "aws-cli/2.15.0",
        })
        .to_string();
        self.producer
            .send(BaseRecord::to(TOPIC).key(key).payload(&payload))
            .unwrap();
    }

    /// Twenty days of use from each key's usual network, then each key used
    /// from a network of its own it never used.
    fn settle_and_attack(&self, keys: &[(&str, &str)]) {
        let mut t = T0;
        while t < T0 + 20 * DAY {
            for (key, _) in keys {
                self.send(key, t, "203.0.113.10");
            }
            t += 900;
        }
        for (key, attacker) in keys {
            self.send(key, T0 + 20 * DAY, attacker);
        }
        self.producer.flush(Duration::from_secs(10)).unwrap();
    }

    fn get(&self, path: &str) -> Option<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).send().ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// Waits (up to a minute) for `path` to answer JSON that `ok` accepts.
    fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.get(path).filter(|v| ok(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {path} never answered as expected; daemon log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Events the daemon has applied (`keywatch_events_total`).
    fn events_applied(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("keywatch_events_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for log in ["first.log", "second.log", "run.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(log)) {
                out.push_str(&format!("== {log}\n{text}"));
            }
        }
        out
    }

    fn post_verdict(&self, id: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v1/findings/{id}/verdict", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "verdict refused: {}", r.status());
        r.json().unwrap()
    }
}

fn findings(v: &Value) -> &Vec<Value> {
    v["findings"].as_array().unwrap()
}

fn new_source_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    findings(v)
        .iter()
        .find(|f| f["key_id"] == key && f["detector"] == "new_source")
}

#[test]
fn findings_and_verdicts_survive_kill_9() {
    let s = Setup::new();
    let mut daemon = s.start("first.log");
    s.settle_and_attack(&[("AKIAKILLED1", "198.51.100.7")]);
    let list = s.wait_for("/api/v1/findings", "the new_source finding", |v| {
        new_source_of(v, "AKIAKILLED1").is_some()
    });
    let id = new_source_of(&list, "AKIAKILLED1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s.post_verdict(&id, json!({"status": "expected", "by": "carol"}));
    assert_eq!(r["effect"]["taught"]["kind"], "network");

    // No shutdown: SIGKILL, then a new process over the same files.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let _daemon = s.start("second.log");
    let f = s.wait_for(
        &format!("/api/v1/findings/{id}"),
        "the finding after kill -9",
        |v| v["id"] == id.as_str(),
    );
    assert_eq!(f["status"], "expected");
    let actions: Vec<&str> = f["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["taught", "status"]);
    // The teaching is back on the key once its state is restored.
    s.wait_for(
        "/api/v1/keys/AKIAKILLED1",
        "the teaching after kill -9",
        |k| k["taught"][0]["by"] == "carol",
    );
}

/// A WebDriver session with headless chromium (also driven by the access
/// tests and `lifecycle.rs`).
pub(crate) struct Browser {
    client: reqwest::blocking::Client,
    session: String,
    driver: Child,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .delete(format!(
                "http://127.0.0.1:{}/session/{}",
                self.port, self.session
            ))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub(crate) fn start(driver: &str) -> Browser {
        Browser::start_with(driver, &[])
    }

    /// A session whose chromium also gets `args`.
    pub(crate) fn start_with(driver: &str, args: &[&str]) -> Browser {
        let addr = free_loopback_addr();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut chrome_args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ];
        chrome_args.extend_from_slice(args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": chrome_args},
            // The console's messages (a CSP violation says so there).
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = client
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            client,
            session,
            driver: child,
            port,
        }
    }

    pub(crate) fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        );
        let mut req = self.client.request(method.clone(), url);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let r: Value = req
            .send()
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())?;
        if r["value"]["error"].is_string() {
            return Err(format!("WebDriver {path}: {}", r["value"]));
        }
        Ok(r["value"].clone())
    }

    pub(crate) fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Clicks the first element `css` matches, retrying (up to a minute)
    /// while there is none or the page re-draws it under the click.
    pub(crate) fn click_css(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let clicked = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .and_then(|e| {
                    let id = e[ELEMENT].as_str().ok_or("no element")?.to_owned();
                    self.try_cmd(
                        reqwest::Method::POST,
                        &format!("/element/{id}/click"),
                        json!({}),
                    )
                });
            match clicked {
                Ok(_) => return,
                Err(e) => assert!(Instant::now() < deadline, "cannot click {css}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub(crate) fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    pub(crate) fn find_all(&self, css: &str) -> Vec<String> {
        self.cmd(
            reqwest::Method::POST,
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
        .collect()
    }

    /// Waits (up to a minute) until `css` matches at least one element
    /// whose text contains `text`; returns the first.
    pub(crate) fn wait_for(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for e in self.find_all(css) {
                if self.text(&e).contains(text) {
                    return e;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {css} with {text:?} appeared; the page says:\n{}",
                self.text(&self.find_all("body")[0])
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The element's text; empty when it is gone (the page re-drew it).
    pub(crate) fn text(&self, el: &str) -> String {
        self.try_cmd(
            reqwest::Method::GET,
            &format!("/element/{el}/text"),
            json!(null),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    pub(crate) fn click(&self, el: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        );
    }

    pub(crate) fn type_into(&self, el: &str, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/clear"),
            json!({}),
        );
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        );
    }

    pub(crate) fn screenshot(&self, dir: &Path, name: &str) {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", json!(null));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

pub(crate) fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn console_in_a_real_browser() {
    let Some(_) = external_tool(&["chromium", "chromium-browser"]) else {
        return;
    };
    let Some(driver) = external_tool(&["chromedriver"]) else {
        return;
    };
    let shots = screenshot_dir();
    let s = Setup::new();
    let _daemon = s.start("run.log");
    s.settle_and_attack(&[
        ("AKIABROWSER1", "198.51.100.7"),
        ("AKIABROWSER2", "192.0.2.7"),
    ]);
    let browser = Browser::start(&driver);
    browser.go(&format!("{}/#token={TOKEN}", s.base));

    // The default view lists incidents, one per attacked key, appearing on
    // their own (the list polls).
    browser.wait_for("tr.incident", "AKIABROWSER1");
    browser.wait_for("tr.incident", "AKIABROWSER2");
    browser.wait_for("tr.incident", "Initial access");
    browser.screenshot(&shots, "0-incidents");

    // A copied link opens one incident on its timeline, the key's baseline
    // beside it.
    let incident_of = |key: &str| {
        let list = s
            .get(&format!("/api/v1/incidents?key_id={key}"))
            .expect("the incidents API answers");
        let list = list["incidents"].as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "one incident per attacked key: {list:?}");
        list[0].clone()
    };
    let second = incident_of("AKIABROWSER2");
    let second_id = second["id"].as_str().unwrap().to_owned();
    browser.go(&format!("{}/#/incidents/{second_id}", s.base));
    browser.wait_for("#timeline-steps tr.step", "Used from a new network");
    browser.wait_for("main", "its baseline");
    browser.wait_for("#baseline", "Events");
    browser.screenshot(&shots, "0-incident");

    // The findings appear on their own (the list polls).
    browser.go(&format!("{}/#/findings", s.base));
    browser.wait_for("tr.finding", "AKIABROWSER1");
    browser.wait_for("tr.finding", "AKIABROWSER2");
    browser.screenshot(&shots, "1-findings");

    // Filtering by key leaves only that key's findings.
    let key_input = browser.find_all("#filters input[name=key_id]")[0].clone();
    browser.type_into(&key_input, "AKIABROWSER1");
    browser.click(&browser.find_all("#filters button[type=submit]")[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = browser.find_all("tr.finding");
        let texts: Vec<String> = rows.iter().map(|r| browser.text(r)).collect();
        if !texts.is_empty() && texts.iter().all(|t| t.contains("AKIABROWSER1")) {
            break;
        }
        assert!(Instant::now() < deadline, "the filter left {texts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    browser.screenshot(&shots, "2-filtered");

    // Expected, in one click on the new_source row.
    browser.click_css(
        "tr.finding[data-key=AKIABROWSER1][data-detector=new_source] button[data-verdict=expected]",
    );
    browser.wait_for("tr.finding[data-status=expected]", "AKIABROWSER1");
    browser.screenshot(&shots, "3-expected");

    // The key page says what was taught, by whom.
    browser.go(&format!("{}/#/key/AKIABROWSER1", s.base));
    browser.wait_for("main", "is normal");
    browser.screenshot(&shots, "4-key-taught");

    // The next use from that network raises nothing: another address of
    // it, an hour later; waited for until the daemon has applied it.
    let before = findings(&s.get("/api/v1/findings?key_id=AKIABROWSER1").unwrap()).len();
    let applied = s.events_applied();
    s.send("AKIABROWSER1", T0 + 20 * DAY + 3600, "198.51.100.99");
    s.producer.flush(Duration::from_secs(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.events_applied() < applied + 1 {
        assert!(Instant::now() < deadline, "the next use was never applied");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The finding handler runs on the event's own path; give the store's
    // writer a moment to have written anything it raised.
    std::thread::sleep(Duration::from_secs(1));
    let after = findings(&s.get("/api/v1/findings?key_id=AKIABROWSER1").unwrap()).len();
    assert_eq!(before, after, "the taught network raised a finding again");

    // False positive in two clicks: the verdict, then the scope.
    browser.go(&format!("{}/#/findings", s.base));
    browser.click_css("#clear");
    browser.wait_for("tr.finding[data-detector=new_source]", "192.0.2.7");
    browser.click_css(
        "tr.finding[data-key=AKIABROWSER2][data-detector=new_source] button[data-verdict=false_positive]",
    );
    browser.click_css("tr.finding[data-key=AKIABROWSER2] button[data-scope=key]");
    browser.wait_for("tr.finding[data-status=false_positive]", "AKIABROWSER2");
    browser.go(&format!("{}/#/suppressions", s.base));
    browser.wait_for("#suppressions tr", "AKIABROWSER2");
    browser.screenshot(&shots, "5-suppressions");

    // The finding page: summary, evidence as a table, chart, audit trail.
    let list = s.get("/api/v1/findings?key_id=AKIABROWSER1").unwrap();
    let id = new_source_of(&list, "AKIABROWSER1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The deep link as copied from the address bar: /#/findings/ID.
    browser.go(&format!("{}/#/findings/{id}", s.base));
    browser.wait_for("main", "What was seen");
    browser.wait_for("main", "taught");
    assert!(!browser.find_all("svg.chart").is_empty(), "no rate chart");
    browser.screenshot(&shots, "6-finding");

    // One verdict on an incident is given on each of its findings.
    browser.go(&format!("{}/#/incidents/{second_id}", s.base));
    browser.wait_for("#timeline-steps tr.step", "Used from a new network");
    browser.click_css("#incident-verdict button[data-verdict=resolved]");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = s.get("/api/v1/findings?key_id=AKIABROWSER2").unwrap();
        let statuses: Vec<String> = findings(&list)
            .iter()
            .map(|f| f["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        if !statuses.is_empty() && statuses.iter().all(|st| st == "resolved") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the incident's findings stay {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    browser.wait_for("#timeline-steps tr.step", "Resolved");
    browser.screenshot(&shots, "7-incident-resolved");
}
