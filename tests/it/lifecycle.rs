//! The key lifecycle inside the daemon, end to end (`keywatch run` as a
//! process over librdkafka's mock cluster, findings store on):
//!
//! - reviews on a cadence: with `[review] every = "1m"` the daemon makes a
//!   review at start and another a minute later, delivers both to a signed
//!   webhook on 127.0.0.1 (and as Markdown to a file), keeps them in the
//!   store; the second says what changed: a new unknown key (traffic), a
//!   key that went stale (time), a key rotated (the inventory was edited);
//! - revocation that acts, against moto's IAM emulator on 127.0.0.1: a
//!   `confirmed` verdict given in the console (Chromium) leaves the AWS key
//!   `Inactive` within seconds, the audit trail says who asked and what
//!   was done; a dry-run rule changes nothing and says what it would have
//!   done; a key on the never-touch list is left alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::triage::{screenshot_dir, Browser};

const TOPIC: &str = "audit";
const TOKEN: &str = "lifecycle-test-token-0123456789";
const DAY: i64 = 86_400;

/// A `keywatch run` over a mock cluster, with `extra` configuration.
struct Env {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
    dir: tempfile::TempDir,
    base: String,
    http: reqwest::blocking::Client,
    _daemon: Option<KillOnDrop>,
}

impl Env {
    fn new() -> Env {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        Env {
            _cluster: cluster,
            producer,
            dir: tempfile::tempdir().unwrap(),
            base: String::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _daemon: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&mut self, extra: &str) {
        let listen = free_loopback_addr();
        let cfg = self.path("keywatch.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[kafka]
brokers = "{}"
topics = ["{TOPIC}"]
group_id = "lifecycle"
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
[changelog]
enabled = false
[store]
path = "{}"
{extra}
"#,
                self._cluster.bootstrap_servers(),
                self.path("state").display(),
                self.path("findings.db").display(),
            ),
        )
        .unwrap();
        self.base = format!("http://{listen}");
        self._daemon = Some(KillOnDrop(
            keywatch()
                .arg("run")
                .arg("-c")
                .arg(&cfg)
                .env("KEYWATCH_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.path("run.log")).unwrap())
                .spawn()
                .unwrap(),
        ));
        self.wait_for("/readyz", "the daemon ready", |_| true);
    }

    fn send(&self, key: &str, t: i64, source: &str) {
        let payload = json!({
            "time": t, "key_id": key, "source": source,
            "principal": format!("arn:aws:iam::123456789012:user/{}", key.to_lowercase()),
            "action": "s3:GetObject", "user_agent": "aws-cli/2.15.0",
        })
        .to_string();
        self.producer
            .send(BaseRecord::to(TOPIC).key(key).payload(&payload))
            .unwrap();
    }

    fn get(&self, path: &str) -> Option<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).send().ok()?;
        r.status().is_success().then(|| r.json().ok())?
    }

    /// Waits (up to 90 s) for `path` to answer JSON that `ok` accepts.
    fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(v) = self.get(path).filter(|v| ok(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {path} never answered as expected; daemon log:\n{}",
                tail(&self.logs(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.path("run.log")).unwrap_or_default()
    }
}

/// One request a [`Hook`] received.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1 that answers 200 and keeps every request.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Hook {
    fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut headers = Vec::new();
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((n, v)) = l.split_once(':') {
                                headers.push((n.trim().to_owned(), v.trim().to_owned()));
                            }
                        }
                        let len = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        keep.lock().unwrap().push(Request { headers, body });
                        let _ = reader
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    }
                });
            }
        });
        Hook { url, got }
    }

    /// Waits (up to `within`) for `n` requests.
    fn wait_for(&self, n: usize, within: Duration, logs: impl Fn() -> String) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries in {within:?}; daemon log:\n{}",
                got.len(),
                tail(&logs(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn reviews_on_a_cadence_reach_a_webhook_and_the_second_says_what_changed() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let hook = Hook::start();
    let mut env = Env::new();
    let now = chrono::Utc::now().timestamp();
    let inventory = |rotated: i64| {
        format!(
            "key_id,owner,created,last_rotated,last_used\n\
             AKIAROTATE,alice,{},{},{}\n\
             AKIASOONSTALE,bob,{},,{}\n\
             AKIAKEEP,carol,{},,{}\n",
            rfc3339(now - 200 * DAY),
            rfc3339(rotated),
            rfc3339(now - DAY),
            rfc3339(now - 100 * DAY),
            // Unused for 90 days (the stale threshold) 40 seconds from now:
            // fresh at the first review, stale at the second.
            rfc3339(now - 90 * DAY + 40),
            rfc3339(now - 10 * DAY),
            rfc3339(now - DAY),
        )
    };
    std::fs::write(env.path("keys.csv"), inventory(now - 200 * DAY)).unwrap();
    let markdown = env.path("reviews/latest.md");
    env.start(&format!(
        r#"
[inventory]
path = "{}"
check_interval = "1s"
[review]
every = "1m"
[[review.deliver]]
type = "webhook"
url = "{}"
secret = "{SECRET}"
[[review.deliver]]
type = "file"
path = "{}"
"#,
        env.path("keys.csv").display(),
        hook.url,
        markdown.display(),
    ));
    let started = Instant::now();

    // The first review, at start: nothing to compare with.
    let first = hook.wait_for(1, Duration::from_secs(30), || env.logs());
    let doc: Value = serde_json::from_slice(&first[0].body).unwrap();
    assert_eq!(doc["type"], "keywatch.review");
    assert_eq!(doc["changes"]["since"], Value::Null);
    assert_eq!(doc["review"]["summary"]["listed"], 3);
    assert!(!doc["review"]["stale"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key_id"] == "AKIASOONSTALE"));
    // Signed like every webhook keywatch sends (Standard Webhooks).
    let r = &first[0];
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let key = keywatch::config::signing_key(SECRET).unwrap();
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{ts}.", r.header("webhook-id")).as_bytes());
    mac.update(&r.body);
    use base64::Engine as _;
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), expected);

    // Before the next: AKIAROTATE is rotated (the inventory says so), and a
    // key nobody listed is used.
    std::fs::write(env.path("keys.csv"), inventory(now)).unwrap();
    env.send(
        "AKIANEWCOMER",
        chrono::Utc::now().timestamp(),
        "198.51.100.23",
    );
    env.producer.flush(Duration::from_secs(10)).unwrap();

    let both = hook.wait_for(2, Duration::from_secs(100), || env.logs());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(50),
        "the second review came {elapsed:?} after the first, not a minute"
    );
    let second: Value = serde_json::from_slice(&both[1].body).unwrap();
    let changes = &second["changes"];
    assert_eq!(changes["since"], doc["review"]["generated_at"]);
    assert_eq!(changes["new_unknown"], json!(["AKIANEWCOMER"]), "{changes}");
    assert_eq!(changes["went_stale"], json!(["AKIASOONSTALE"]), "{changes}");
    assert_eq!(changes["rotated"], json!(["AKIAROTATE"]), "{changes}");

    // Kept in the store, listed newest first for the console.
    let list = env.wait_for("/api/v1/reviews", "two stored reviews", |v| {
        v["reviews"].as_array().is_some_and(|r| r.len() >= 2)
    });
    assert_eq!(
        list["reviews"][0]["changes"]["went_stale"],
        json!(["AKIASOONSTALE"])
    );
    assert_eq!(list["reviews"][1]["changes"]["since"], Value::Null);
    // The Markdown file holds the latest, with its changes.
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.starts_with("# Key security review"), "{md}");
    assert!(
        md.contains("**Keys that went stale** (1): `AKIASOONSTALE`"),
        "{md}"
    );
    // The metric an overdue-review alert watches.
    let metrics = env.metrics();
    let last = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keywatch_review_last_run_timestamp_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("keywatch_review_last_run_timestamp_seconds");
    assert!(last as i64 >= now + 50, "{last}");
    assert!(
        metrics.contains("keywatch_review_interval_seconds 60"),
        "interval exported"
    );
    assert!(
        metrics
            .contains(r#"keywatch_review_deliveries_total{destination="webhook",result="ok"} 2"#),
        "{metrics}"
    );

    // The console's Key review page lists both, the newest with its changes.
    if let Some(driver) = external_tool(&["chromedriver"]) {
        let browser = Browser::start(&driver);
        browser.go(&format!("{}/#/review", env.base));
        browser.wait_for("#reviews tr.review-row", "AKIASOONSTALE");
        browser.wait_for("#reviews tr.review-row", "AKIANEWCOMER");
        browser.wait_for("#reviews tr.review-row", "the first review");
        browser.screenshot(&screenshot_dir(), "10-past-reviews");
    }
}

/// moto's IAM emulator, as a user would run it.
struct Moto {
    url: String,
    http: reqwest::blocking::Client,
    _process: KillOnDrop,
}

impl Moto {
    fn start() -> Option<Moto> {
        if !available(
            "moto's server (Python package moto[server])",
            std::process::Command::new("python3").args(["-c", "import moto.server"]),
        ) {
            return None;
        }
        let addr = free_loopback_addr();
        let port = addr.rsplit(':').next().unwrap().to_owned();
        let process = KillOnDrop(
            std::process::Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let moto = Moto {
            url: format!("http://{addr}/"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _process: process,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.try_call(&[("Action", "ListUsers")]).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {addr}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(moto)
    }

    /// One IAM Query API call. moto checks no signature; its router reads
    /// the service from the credential scope, so the header names `iam`.
    fn try_call(&self, params: &[(&str, &str)]) -> Result<String, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", "2010-05-08");
        form.extend_pairs(params);
        let r = self
            .http
            .post(&self.url)
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20251201/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let text = r.text().map_err(|e| e.to_string())?;
        ok.then_some(text.clone()).ok_or(text)
    }

    fn call(&self, params: &[(&str, &str)]) -> String {
        self.try_call(params)
            .unwrap_or_else(|e| panic!("IAM {params:?}: {e}"))
    }

    /// A new IAM user with one access key; returns the key id.
    fn user_with_key(&self, user: &str) -> String {
        self.call(&[("Action", "CreateUser"), ("UserName", user)]);
        let xml = self.call(&[("Action", "CreateAccessKey"), ("UserName", user)]);
        between(&xml, "<AccessKeyId>", "</AccessKeyId>").to_owned()
    }

    fn status(&self, user: &str) -> String {
        let xml = self.call(&[("Action", "ListAccessKeys"), ("UserName", user)]);
        between(&xml, "<Status>", "</Status>").to_owned()
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {text}"))
        + open.len();
    let end = text[start..].find(close).unwrap() + start;
    &text[start..end]
}

#[test]
fn a_confirmed_compromise_deactivates_the_key_at_aws_and_a_dry_run_only_says_so() {
    let Some(_) = external_tool(&["chromium", "chromium-browser"]) else {
        return;
    };
    let Some(driver) = external_tool(&["chromedriver"]) else {
        return;
    };
    let Some(moto) = Moto::start() else {
        return;
    };
    let armed = moto.user_with_key("alice");
    let rehearsed = moto.user_with_key("bob");
    let untouchable = moto.user_with_key("breakglass");
    let mut env = Env::new();
    std::fs::write(
        env.path("keys.csv"),
        format!(
            "key_id,owner,principal\n{armed},alice@acme.example,alice\n{rehearsed},bob@acme.example,bob\n{untouchable},ops@acme.example,breakglass\n"
        ),
    )
    .unwrap();
    env.start(&format!(
        r#"
[inventory]
path = "{}"
[[response]]
name = "deactivate-at-aws"
dry_run = false
keys = ["{armed}", "{untouchable}"]
never = ["{untouchable}"]
max_per_hour = 5
[response.aws_deactivate_key]
endpoint = "{}"
access_key_id = "testing"
secret_access_key = "testing"
[[response]]
name = "rehearsal"
keys = ["{rehearsed}"]
[response.aws_deactivate_key]
endpoint = "{}"
access_key_id = "testing"
secret_access_key = "testing"
"#,
        env.path("keys.csv").display(),
        moto.url,
        moto.url,
    ));

    // Twenty days of each key from its usual network, then each from a
    // new one: a new_source finding per key.
    let t0 = chrono::Utc::now().timestamp() - 21 * DAY;
    let mut t = t0;
    while t < t0 + 20 * DAY {
        for key in [&armed, &rehearsed, &untouchable] {
            env.send(key, t, "203.0.113.10");
        }
        t += 900;
    }
    for (key, attacker) in [
        (&armed, "198.51.100.7"),
        (&rehearsed, "192.0.2.7"),
        (&untouchable, "192.0.2.99"),
    ] {
        env.send(key, t0 + 20 * DAY, attacker);
    }
    env.producer.flush(Duration::from_secs(10)).unwrap();
    let finding_of = |key: &str| {
        let list = env.wait_for(
            &format!("/api/v1/findings?key_id={key}"),
            "the new_source finding",
            |v| {
                v["findings"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["detector"] == "new_source"))
            },
        );
        list["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["detector"] == "new_source")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (armed_id, rehearsed_id, untouchable_id) = (
        finding_of(&armed),
        finding_of(&rehearsed),
        finding_of(&untouchable),
    );

    // In the console, signed in as erin: Confirmed on the armed key's finding.
    let shots = screenshot_dir();
    let browser = Browser::start(&driver);
    browser.go(&format!("{}/#token={TOKEN}", env.base));
    browser.cmd(
        reqwest::Method::POST,
        "/execute/sync",
        json!({"script": "sessionStorage.setItem('keywatch.who', 'erin')", "args": []}),
    );
    browser.go(&format!("{}/#/findings", env.base));
    let confirmed = Instant::now();
    browser.click_css(&format!(
        "tr.finding[data-key={armed}][data-detector=new_source] button[data-verdict=confirmed]"
    ));
    // Inactive at AWS within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    while moto.status("alice") != "Inactive" {
        assert!(
            Instant::now() < deadline,
            "the key is still {} at AWS; daemon log:\n{}",
            moto.status("alice"),
            tail(&env.logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = confirmed.elapsed();
    eprintln!("confirmed → Inactive at the emulator in {took:?}");

    // The audit trail says who asked and what was done, in the console too.
    let audit = |id: &str| {
        env.wait_for(
            &format!("/api/v1/findings/{id}"),
            "the response audit entry",
            |f| {
                f["audit"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["action"] == "response"))
            },
        )["audit"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "response")
            .unwrap()
            .clone()
    };
    let entry = audit(&armed_id);
    assert_eq!(entry["who"], "keywatch response");
    assert_eq!(entry["detail"]["requested_by"], "erin");
    assert_eq!(entry["detail"]["result"], "ok");
    assert_eq!(entry["detail"]["action"], "aws_deactivate_key");
    assert_eq!(entry["detail"]["user"], "alice");
    assert_eq!(
        entry["detail"]["what"],
        format!("did set AWS access key {armed} of IAM user alice Inactive (iam:UpdateAccessKey)")
    );
    browser.go(&format!("{}/#/findings/{armed_id}", env.base));
    browser.wait_for("main", "did set AWS access key");
    browser.screenshot(&shots, "8-response-done");

    // The dry run: confirmed in the console (on the finding's page),
    // nothing changes at AWS, the trail says what would have been done.
    browser.go(&format!("{}/#/findings/{rehearsed_id}", env.base));
    browser.wait_for("main", "No verdict yet");
    browser.click_css("#verdict button[data-verdict=confirmed]");
    let entry = audit(&rehearsed_id);
    assert_eq!(entry["detail"]["result"], "dry_run");
    assert_eq!(entry["detail"]["dry_run"], true);
    assert_eq!(
        entry["detail"]["what"],
        format!(
            "would set AWS access key {rehearsed} of IAM user bob Inactive (iam:UpdateAccessKey)"
        )
    );
    // The page re-drew on the verdict; the response writes its entry a
    // moment later: open the page again to see it.
    browser.go(&format!("{}/#/findings", env.base));
    browser.go(&format!("{}/#/findings/{rehearsed_id}", env.base));
    browser.wait_for("main", "would set AWS access key");
    browser.screenshot(&shots, "9-response-dry-run");

    // The never-touch key, confirmed through the API: left alone, and said so.
    let r = env
        .http
        .post(format!(
            "{}/api/v1/findings/{untouchable_id}/verdict",
            env.base
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"status": "confirmed", "by": "erin"}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(audit(&untouchable_id)["detail"]["result"], "never_touch");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(moto.status("bob"), "Active", "the dry run changed the key");
    assert_eq!(
        moto.status("breakglass"),
        "Active",
        "a never-touch key was touched"
    );

    let metrics = env.metrics();
    for (result, n) in [("ok", 1), ("dry_run", 1), ("never_touch", 1)] {
        let line = format!(
            "keywatch_response_actions_total{{action=\"aws_deactivate_key\",result=\"{result}\"}} {n}"
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
}
