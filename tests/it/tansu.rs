//! End to end with a real Kafka-compatible broker process (tansu), events
//! produced by the Python confluent-kafka client as a user would, and the
//! `keywatch run` binary consuming them. Needs `tansu` and `confluent_kafka`
//! (installed by `.ci/test`); without them the test says it is skipped,
//! except under `CI=true`, where it fails.

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A tansu broker with in-memory storage on a free loopback port.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let child = Command::new("tansu")
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let start = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Tansu {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let o = run(Command::new("tansu")
            .args(["topic", "create", name])
            .args(["--broker", &format!("tcp://{}", self.addr)])
            .args(["--partitions", &partitions.to_string()]));
        assert!(o.status.success(), "creating topic {name}: {}", stderr(&o));
    }

    /// Produces a JSON Lines file with the Python client; returns the count.
    pub fn produce(&self, topic: &str, file: &Path) -> u64 {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/produce.py");
        let o = run(Command::new("python3")
            .arg(script)
            .args(["--brokers", &self.addr, "--topic", topic])
            .arg(file));
        assert!(o.status.success(), "producing: {}", stderr(&o));
        stdout(&o).trim().parse().unwrap()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both external parts are installed.
pub fn tansu_and_python() -> bool {
    available("tansu", Command::new("tansu").arg("--version"))
        && available(
            "the Python confluent-kafka client",
            Command::new("python3").args(["-c", "import confluent_kafka"]),
        )
}

/// A `keywatch run` configuration for `addr`, alerts to `alerts`.
pub fn run_config(dir: &Path, addr: &str, topic: &str, alerts: &Path) -> PathBuf {
    let path = dir.join("keywatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
brokers = "{addr}"
topics = ["{topic}"]
group_id = "keywatch-e2e"
startup_timeout = "20s"
shutdown_timeout = "20s"
commit_interval = "1s"

[http]
listen = "127.0.0.1:0"

[checkpoint]
dir = "{state}"

[alerts]
dead_letter_path = "{dl}"

[[alerts.sinks]]
type = "file"
path = "{alerts}"
"#,
            dl = dir.join("dead-letter.jsonl").display(),
            state = dir.join("checkpoints").display(),
            alerts = alerts.display(),
        ),
    )
    .unwrap();
    path
}

fn alerts_in(path: &Path) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        // The findings' alerts: incident events beside them (`"type":
        // "incident"`) are checked in alerts.rs.
        .filter(|a| a.get("type").is_none())
        .collect()
}

#[test]
fn run_consumes_a_real_broker_and_alerts_every_attack() {
    if !tansu_and_python() {
        return;
    }
    let tansu = Tansu::start();
    tansu.create_topic("audit", 4);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let produced = tansu.produce("audit", &data.join("scenario.jsonl.gz"));
    assert!(produced > 100_000, "{produced}");

    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let cfg = run_config(dir.path(), &tansu.addr, "audit", &alerts);
    let child = keywatch()
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .env("KEYWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("truth.json")).unwrap()).unwrap();
    let expected: Vec<(String, String)> = truth["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["key_id"].as_str().unwrap().to_owned(),
                a["detector"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let start = Instant::now();
    let missing = loop {
        let got = alerts_in(&alerts);
        let missing: Vec<_> = expected
            .iter()
            .filter(|(k, d)| {
                !got.iter()
                    .any(|a| a["key_id"] == **k && a["detector"] == **d)
            })
            .collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(120) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(
        missing.is_empty(),
        "attacks not alerted: {missing:?}\n{log}"
    );
    assert!(out.status.success(), "graceful exit on SIGTERM: {log}");
    assert!(log.contains("consumer stopped and committed"), "{log}");
    // On normal keys, only what a replay of the same events finds (the
    // roaming laptop's low new_source, a new network on 11% of its days).
    let normal = truth["normal_keys"].as_object().unwrap();
    let replayed = replay_ids(&data.join("scenario.jsonl.gz"));
    let noisy: Vec<_> = alerts_in(&alerts)
        .into_iter()
        .filter(|a| normal.contains_key(a["key_id"].as_str().unwrap()))
        .filter(|a| !replayed.contains(a["id"].as_str().unwrap()) || a["severity"] != "low")
        .collect();
    assert!(noisy.is_empty(), "alerts on normal keys: {noisy:#?}");
}

/// `n` events of eight keys from `start` on, one a minute, as JSON Lines.
fn quiet_events(path: &Path, start: usize, n: usize) {
    let lines: Vec<String> = (start..start + n)
        .map(|i| {
            let t = 1_767_571_200 + i as i64 * 60;
            format!(
                r#"{{"time":{t},"key_id":"AKIAPAUSE{}","source":"198.51.100.{}","action":"s3:GetObject"}}"#,
                i % 8,
                i % 8
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_paused_broker_turns_readyz_not_ready_and_nothing_is_lost_when_it_resumes() {
    if !tansu_and_python() {
        return;
    }
    let tansu = Tansu::start();
    tansu.create_topic("audit", 2);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    quiet_events(&first, 0, 500);
    assert_eq!(tansu.produce("audit", &first), 500);

    let listen = free_loopback_addr();
    let alerts = dir.path().join("alerts.jsonl");
    let cfg = run_config(dir.path(), &tansu.addr, "audit", &alerts);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{listen}\""),
        )
        .replace(
            "commit_interval = \"1s\"",
            "commit_interval = \"1s\"\nunreachable_after = \"3s\"",
        );
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("run.log");
    let mut child = keywatch()
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .env("KEYWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ready = |want: u16| http_get(&listen, "/readyz").is_some_and(|(status, _)| status == want);
    let messages = || {
        http_get(&listen, "/readyz")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["messages"].as_u64())
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait("ready with every event", &|| messages() == Some(500));

    // The broker process stops (SIGSTOP): its connections stay open and
    // nothing answers.
    let pid = tansu.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    wait("not ready", &|| ready(503));
    let (_, body) = http_get(&listen, "/readyz").unwrap();
    assert!(body.contains("no Kafka broker reachable"), "{body}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not answering"), "{text}");

    // It resumes: ready again, and the events sent since are all read.
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let second = dir.path().join("second.jsonl");
    quiet_events(&second, 500, 300);
    assert_eq!(tansu.produce("audit", &second), 300);
    wait("ready with every event", &|| messages() == Some(800));
    assert!(sigterm(&mut child).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("a Kafka broker is reachable again"), "{text}");
}
