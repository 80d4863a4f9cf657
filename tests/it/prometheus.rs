//! End to end with a real Prometheus and Alertmanager (Debian's `prometheus`
//! and `prometheus-alertmanager`, installed by `.ci/test`): `keywatch demo`
//! on its injected attacks, scraped by Prometheus loading
//! `config/prometheus/rules.yml`; Alertmanager routing by
//! `config/prometheus/alertmanager.yml` to a webhook receiver of the test's
//! own. The example configurations are used as shipped, with only addresses
//! and waits shortened. Every server listens on 127.0.0.1 and keeps its data
//! in a temporary directory. Without the tools the test says it is skipped,
//! except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

use crate::helpers::*;

/// A file of the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A server the test started: stopped when dropped; when the test fails,
/// the end of its log is printed to tell why.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(name: &'static str, cmd: &mut Command, dir: &Path) -> Server {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Server { name, child, log }
    }

    /// Fails the test when the process is gone.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status})", self.name);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so keywatch and Prometheus shut down as in
        // production; SIGKILL if that takes too long.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `text` with every `from` replaced; fails when `from` is absent, so a
/// change of the example files cannot silently bypass the test's edits.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in:\n{text}");
    text.replace(from, to)
}

/// Runs a check command; fails with its output unless it succeeds.
fn check(cmd: &mut Command) -> String {
    let o = run(cmd.stdin(Stdio::null()));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Polls `probe` every 500 ms until it returns something; fails after `within`.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// GET a JSON document; `None` while the server is not answering 2xx.
async fn get_json(client: &reqwest::Client, url: Url) -> Option<Value> {
    let resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn url(addr: &str, path: &str, query: &[(&str, &str)]) -> Url {
    let mut url = Url::parse(&format!("http://{addr}{path}")).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// Alertmanager webhook notifications received: (path, body).
type Notifications = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver on a free loopback port; every POST is recorded.
async fn webhook_receiver() -> (String, Notifications) {
    let got: Notifications = Arc::default();
    let log = got.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let log = log.clone();
        async move {
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push((uri.path().to_owned(), json));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

/// Firing alerts named `alertname` in a notification sent to `path`.
fn notified(got: &Notifications, path: &str, alertname: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .flat_map(|(_, body)| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == alertname && a["status"] == "firing")
        .collect()
}

/// Every `expr` string in a JSON document (panel targets, annotations).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// A dashboard expression as Grafana sends it with every job and instance
/// selected (the variables' `allValue` is `.+`).
fn grafana_substitute(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "5s")
        .replace("$job", ".+")
        .replace("$instance", ".+");
    assert!(!e.contains('$'), "unknown template variable in {expr:?}");
    e
}

/// Whether a query_range result holds at least one finite sample.
fn has_finite_sample(result: &Value) -> bool {
    result["data"]["result"].as_array().is_some_and(|series| {
        series.iter().any(|s| {
            s["values"].as_array().is_some_and(|vals| {
                vals.iter().any(|p| {
                    p[1].as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                })
            })
        })
    })
}

#[test]
fn example_rules_and_configs_pass_promtool_and_amtool() {
    let (Some(promtool), Some(amtool)) = (external_tool(&["promtool"]), external_tool(&["amtool"]))
    else {
        return;
    };
    let dir = repo("config/prometheus");
    check(
        Command::new(&promtool)
            .args(["check", "rules", "rules.yml"])
            .current_dir(&dir),
    );
    let tests = check(
        Command::new(&promtool)
            .args(["test", "rules", "rules_test.yml"])
            .current_dir(&dir),
    );
    assert!(tests.contains("SUCCESS"), "{tests}");
    check(
        Command::new(&promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&dir),
    );
    check(
        Command::new(&amtool)
            .args(["check-config", "alertmanager.yml"])
            .current_dir(&dir),
    );
    // Findings route by severity, keywatch's own trouble to its operators.
    for (labels, receiver) in [
        (
            &[
                "alertname=KeywatchKeyAnomaly",
                "kind=finding",
                "severity=critical",
            ][..],
            "security-pager",
        ),
        (
            &["alertname=KeywatchFinding", "severity=high"][..],
            "security-team",
        ),
        (
            &["alertname=KeywatchFinding", "severity=low"][..],
            "security-digest",
        ),
        // With incidents on, one incident's findings are one group
        // whatever their severities.
        (
            &[
                "alertname=KeywatchFinding",
                "severity=low",
                "incident_id=5c0f6f7e0f1b8a0e6b1f3d8e2a9c4b71",
            ][..],
            "security-team",
        ),
        (
            &[
                "alertname=KeywatchCriticalIncident",
                "kind=finding",
                "severity=critical",
            ][..],
            "security-pager",
        ),
        (
            &["alertname=KeywatchDown", "kind=health", "severity=high"][..],
            "keywatch-operators",
        ),
    ] {
        let routed = check(
            Command::new(&amtool)
                .args(["config", "routes", "test", "--config.file=alertmanager.yml"])
                .args(labels)
                .current_dir(&dir),
        );
        assert_eq!(routed.trim(), receiver, "{labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_reach_prometheus_alertmanager_and_the_dashboard() {
    let (Some(prometheus), Some(alertmanager)) = (
        external_tool(&["prometheus"]),
        external_tool(&["alertmanager", "prometheus-alertmanager"]),
    ) else {
        return;
    };
    let started = chrono::Utc::now().timestamp();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (hook, notifications) = webhook_receiver().await;

    // Alertmanager with the example routing, its receivers pointed at the
    // test's webhook and its waits cut to a second.
    let am_addr = free_loopback_addr();
    let mut am_cfg = std::fs::read_to_string(repo("config/prometheus/alertmanager.yml")).unwrap();
    am_cfg = edit(
        &am_cfg,
        "http://127.0.0.1:5001/",
        &format!("http://{hook}/"),
    );
    for wait in ["group_wait: 30s", "group_wait: 10s", "group_wait: 5m"] {
        am_cfg = edit(&am_cfg, wait, "group_wait: 1s");
    }
    std::fs::write(dir.join("alertmanager.yml"), am_cfg).unwrap();
    let mut am = Server::start(
        "alertmanager",
        Command::new(&alertmanager)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address="),
        dir,
    );

    // keywatch demo: its own Alertmanager sink, and a webhook sink nobody
    // listens to, so alert delivery fails for real.
    let kw_addr = free_loopback_addr();
    let dead_port = free_loopback_addr();
    let kw_cfg = format!(
        r#"
[[alerts.sinks]]
type = "alertmanager"
url = "http://{am_addr}"
resend_interval = "5s"

[[alerts.sinks]]
type = "webhook"
name = "unreachable"
url = "http://{dead_port}/hook"
timeout = "1s"
max_retries = 1
backoff_initial = "100ms"
backoff_max = "200ms"
"#
    );
    std::fs::write(dir.join("keywatch.toml"), kw_cfg).unwrap();
    std::fs::create_dir(dir.join("demo")).unwrap();
    let mut kw = Server::start(
        "keywatch",
        keywatch()
            .arg("demo")
            .arg("-c")
            .arg(dir.join("keywatch.toml"))
            .args(["--listen", &kw_addr, "--duration", "5m", "--rate", "0.05"])
            // Whatever the demo writes stays in the temporary directory.
            .env("TMPDIR", dir.join("demo"))
            .current_dir(dir),
        dir,
    );

    // Prometheus with the example configuration and rules, scraping and
    // evaluating every second.
    let prom_addr = free_loopback_addr();
    let mut prom_cfg = std::fs::read_to_string(repo("config/prometheus/prometheus.yml")).unwrap();
    prom_cfg = edit(&prom_cfg, "127.0.0.1:9464", &kw_addr);
    prom_cfg = edit(&prom_cfg, "127.0.0.1:9093", &am_addr);
    prom_cfg = edit(&prom_cfg, "scrape_interval: 15s", "scrape_interval: 1s");
    prom_cfg = edit(
        &prom_cfg,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    prom_cfg = edit(&prom_cfg, "scrape_timeout: 5s", "scrape_timeout: 1s");
    std::fs::write(dir.join("prometheus.yml"), prom_cfg).unwrap();
    std::fs::copy(repo("config/prometheus/rules.yml"), dir.join("rules.yml")).unwrap();
    let mut prom = Server::start(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}")),
        dir,
    );

    for (server, addr, path) in [
        (&mut am, &am_addr, "/-/ready"),
        (&mut prom, &prom_addr, "/-/ready"),
        (&mut kw, &kw_addr, "/readyz"),
    ] {
        let name = server.name;
        eventually(
            &format!("{name} to be ready"),
            Duration::from_secs(60),
            async || {
                server.assert_running();
                let resp = client.get(url(addr, path, &[])).send().await.ok()?;
                resp.status().is_success().then_some(())
            },
        )
        .await;
    }

    // A high or critical finding becomes a firing Prometheus alert naming
    // the key, and keywatch's own API shows that key's finding.
    let anomaly = eventually(
        "KeywatchKeyAnomaly to fire in Prometheus",
        Duration::from_secs(150),
        async || {
            kw.assert_running();
            let alerts = get_json(&client, url(&prom_addr, "/api/v1/alerts", &[])).await?;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "KeywatchKeyAnomaly" && a["state"] == "firing"
                })
                .cloned()
        },
    )
    .await;
    let labels = &anomaly["labels"];
    let key_id = labels["key_id"]
        .as_str()
        .expect("the alert names the key")
        .to_owned();
    let severity = labels["severity"].as_str().unwrap().to_owned();
    assert!(
        ["high", "critical"].contains(&severity.as_str()),
        "{anomaly}"
    );
    assert_eq!(labels["instance"], kw_addr.as_str(), "{anomaly}");
    assert!(
        anomaly["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains(&key_id),
        "{anomaly}"
    );
    let findings = get_json(
        &client,
        url(
            &kw_addr,
            "/api/v1/findings",
            &[("key_id", &key_id), ("severity", &severity)],
        ),
    )
    .await
    .expect("keywatch's findings API answers");
    let findings = findings["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["detector"] == labels["detector"] && f["severity"] == severity.as_str()),
        "the alert's finding is in keywatch's API: {anomaly} vs {findings:?}"
    );

    // Alertmanager holds it, beside the findings keywatch's own sink sent.
    let am_alerts = eventually(
        "both alert paths in Alertmanager's /api/v2/alerts",
        Duration::from_secs(60),
        async || {
            let alerts = get_json(&client, url(&am_addr, "/api/v2/alerts", &[])).await?;
            let alerts = alerts.as_array()?.clone();
            let from_rule = alerts.iter().any(|a| {
                a["labels"]["alertname"] == "KeywatchKeyAnomaly"
                    && a["labels"]["key_id"] == key_id.as_str()
            });
            let from_sink = alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == "KeywatchFinding");
            (from_rule && from_sink).then_some(alerts)
        },
    )
    .await;
    let from_sink: Vec<&Value> = am_alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "KeywatchFinding")
        .collect();
    for a in &from_sink {
        let sink_key = a["labels"]["key_id"]
            .as_str()
            .expect("keywatch's alert names the key");
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains(sink_key),
            "{a}"
        );
        let found = get_json(
            &client,
            url(&kw_addr, "/api/v1/findings", &[("key_id", sink_key)]),
        )
        .await
        .unwrap();
        assert!(
            !found["findings"].as_array().unwrap().is_empty(),
            "keywatch sent {a} but has no finding for its key"
        );
    }

    // keywatch's findings carry their incident, and the example route makes
    // each incident one notification: one group per incident id, whatever
    // the severities of its findings.
    assert!(
        from_sink
            .iter()
            .all(|a| a["labels"]["incident_id"].is_string()),
        "{from_sink:?}"
    );
    let groups = eventually(
        "an incident's findings notified as one group at /security-team",
        Duration::from_secs(60),
        async || {
            let got = notifications.lock().unwrap().clone();
            let groups: Vec<Value> = got
                .into_iter()
                .filter(|(p, body)| {
                    p == "/security-team" && body["groupLabels"]["incident_id"].is_string()
                })
                .map(|(_, body)| body)
                .collect();
            (!groups.is_empty()).then_some(groups)
        },
    )
    .await;
    for g in &groups {
        let id = &g["groupLabels"]["incident_id"];
        let alerts = g["alerts"].as_array().unwrap();
        assert!(
            alerts.iter().all(|a| &a["labels"]["incident_id"] == id),
            "one notification holds one incident's findings: {g}"
        );
    }

    // Alertmanager notifies the receiver the example routes the severity to.
    let receiver = if severity == "critical" {
        "/security-pager"
    } else {
        "/security-team"
    };
    eventually(
        &format!("KeywatchKeyAnomaly for {key_id} at the webhook's {receiver}"),
        Duration::from_secs(60),
        async || {
            notified(&notifications, receiver, "KeywatchKeyAnomaly")
                .iter()
                .any(|a| a["labels"]["key_id"] == key_id.as_str())
                .then_some(())
        },
    )
    .await;

    // The sink nobody listens to: attempts fail, alerts are dead-lettered,
    // and the operators hear of it through Prometheus and Alertmanager.
    eventually(
        "KeywatchAlertsUndelivered for the unreachable sink at /keywatch-operators",
        Duration::from_secs(60),
        async || {
            notified(
                &notifications,
                "/keywatch-operators",
                "KeywatchAlertsUndelivered",
            )
            .iter()
            .any(|a| a["labels"]["sink"] == "unreachable")
            .then_some(())
        },
    )
    .await;
    assert!(
        notified(
            &notifications,
            "/keywatch-operators",
            "KeywatchAlertsUndelivered"
        )
        .iter()
        .all(|a| a["labels"]["sink"] == "unreachable"),
        "only the unreachable sink fails: {:?}",
        notifications.lock().unwrap()
    );

    // Every expression of the dashboard returns data, and its variables
    // find this keywatch.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/keywatch.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut dashboard_exprs = Vec::new();
    exprs(&dashboard, &mut dashboard_exprs);
    assert!(dashboard_exprs.len() >= 20, "{dashboard_exprs:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let end = chrono::Utc::now().timestamp().to_string();
        let mut empty = Vec::new();
        for expr in &dashboard_exprs {
            let query = grafana_substitute(expr);
            let start = started.to_string();
            let q = [
                ("query", query.as_str()),
                ("start", &start),
                ("end", &end),
                ("step", "1"),
            ];
            let result = get_json(&client, url(&prom_addr, "/api/v1/query_range", &q))
                .await
                .unwrap_or_else(|| panic!("Prometheus rejects {query:?}"));
            if !has_finite_sample(&result) {
                empty.push(query);
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard expressions without data:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (label, selector, expected) in [
        ("job", "keywatch_events_total", "keywatch"),
        (
            "instance",
            r#"keywatch_events_total{job=~".+"}"#,
            kw_addr.as_str(),
        ),
    ] {
        let values = get_json(
            &client,
            url(
                &prom_addr,
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", selector)],
            ),
        )
        .await
        .unwrap();
        assert!(
            values["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == expected),
            "label_values({selector}, {label}) lacks {expected}: {values}"
        );
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["definition"].as_str())
        .collect();
    assert_eq!(
        variables,
        [
            "label_values(keywatch_events_total, job)",
            r#"label_values(keywatch_events_total{job=~"$job"}, instance)"#
        ],
        "the variables checked above"
    );
}
