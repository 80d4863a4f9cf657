//! `keywatch demo`: the whole pipeline with nothing to install. An embedded
//! Kafka broker (librdkafka's mock cluster), a generator replaying weeks of
//! realistic traffic in seconds and then running live with injected attacks,
//! the daemon consuming it, and alerts printed on stdout.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::core::Collector;
use rdkafka::mocking::MockCluster;

use crate::cli::DemoArgs;
use crate::config::{
    Config, FileSinkConfig, HumanDuration, SinkConfig, SinkKind, StdoutSinkConfig,
};
use crate::daemon::{self, Daemon};
use crate::engine::Severity;
use crate::gen::{Format, GenConfig, Scenario};
use crate::source::kafka::SourceStatus;
use crate::source::produce::{EventProducer, Pacer};

use super::Failure;

/// The demo's topic.
const TOPIC: &str = "audit-events";
/// Days of history; attacks fall in the last ten.
const DAYS: u32 = 45;
/// Days replayed as fast as the consumer takes them (the learned baseline).
const HISTORY_DAYS: u32 = 34;
/// How far the producer may run ahead of the consumer: the mock broker keeps
/// only ~10k messages per partition.
const MAX_AHEAD: u64 = 20_000;

/// Runs the demo until Ctrl-C or `--duration`.
pub fn run(args: DemoArgs) -> Result<(), Failure> {
    let rt = daemon::runtime()?;
    let cluster = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    cluster
        .create_topic(TOPIC, 4, 1)
        .context("creating the demo topic")?;
    let bootstrap = cluster.bootstrap_servers();
    let workdir = tempfile_dir()?;

    let mut cfg = match &args.config {
        Some(path) => Config::load(Some(path))?,
        None => Config::default(),
    };
    cfg.http.listen = args.listen.clone();
    cfg.kafka.brokers = bootstrap.clone();
    cfg.kafka.topics = vec![TOPIC.to_owned()];
    cfg.kafka.group_id = "keywatch-demo".to_owned();
    cfg.kafka.startup_timeout = HumanDuration::secs(10);
    cfg.alerts.dead_letter_path = workdir.join("dead-letter.jsonl");
    cfg.checkpoint.dir = workdir.join("checkpoints");
    let mut stdout = SinkConfig::new(SinkKind::Stdout(StdoutSinkConfig { pretty: true }));
    stdout.min_severity = Severity::Medium;
    let mut file = SinkConfig::new(SinkKind::File(FileSinkConfig {
        path: workdir.join("alerts.jsonl"),
    }));
    file.name = Some("all-alerts".to_owned());
    cfg.alerts.sinks.insert(0, file);
    cfg.alerts.sinks.insert(0, stdout);
    cfg.validate()?;

    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Days::new(DAYS as u64);
    let scenario = Scenario::new(GenConfig {
        seed: args.seed,
        keys: args.keys,
        start_ms: start
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis(),
        days: DAYS,
        attacks: true,
        attack_set: crate::gen::AttackSet::Classic,
        format: Format::Generic,
        volume: 0.5,
    });
    eprintln!(
        "keywatch demo: {} keys, {DAYS} days of traffic ({HISTORY_DAYS} replayed at once as history, \
         then live at {} events/s), {} attacks injected on their own keys.\n\
         Alerts of medium severity and above print below; all alerts go to {}.\n\
         Metrics and API: http://{}/metrics, http://{}/api/v1/findings. Ctrl-C stops.\n",
        args.keys + scenario.attacks().len(),
        args.rate,
        scenario.attacks().len(),
        workdir.join("alerts.jsonl").display(),
        args.listen,
        args.listen,
    );

    let daemon = Daemon::new(&cfg)?;
    let status = daemon.status.clone();
    let history_end = scenario.config().start_ms + HISTORY_DAYS as i64 * 86_400_000;
    let rate = args.rate;
    let producer = std::thread::Builder::new()
        .name("demo-traffic".into())
        .spawn(move || produce(&bootstrap, &scenario, history_end, rate, &status))
        .context("starting the traffic generator")?;

    let duration = args.duration;
    let shutdown = async move {
        match duration {
            Some(d) => tokio::select! {
                () = daemon::signals() => {}
                () = tokio::time::sleep(d.0) => {}
            },
            None => daemon::signals().await,
        }
    };
    let metrics = daemon.metrics.clone();
    rt.block_on(daemon::run(cfg, daemon, shutdown))?;
    if producer.is_finished() {
        if let Ok(Err(e)) = producer.join() {
            eprintln!("traffic generator stopped: {e:#}");
        }
    }
    let findings: u64 = metrics
        .findings
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    eprintln!(
        "\nkeywatch demo: {findings} findings; every alert is in {}",
        workdir.join("alerts.jsonl").display()
    );
    drop(cluster);
    Ok(())
}

/// Produces the history as fast as the consumer keeps up, then the rest at `rate`.
fn produce(
    bootstrap: &str,
    scenario: &Scenario,
    history_end_ms: i64,
    rate: f64,
    status: &Arc<SourceStatus>,
) -> anyhow::Result<()> {
    let mut producer = EventProducer::new(bootstrap, TOPIC)?;
    let mut live: Option<Pacer> = None;
    let mut announced = false;
    for ev in scenario.events() {
        while producer.sent() > status.messages.load(Ordering::Relaxed) + MAX_AHEAD {
            std::thread::sleep(Duration::from_millis(5));
        }
        if ev.time_ms >= history_end_ms {
            if !announced {
                producer.flush(Duration::from_secs(30))?;
                eprintln!(
                    "keywatch demo: {} events of history applied; now live.\n",
                    producer.sent()
                );
                announced = true;
            }
            live.get_or_insert_with(|| Pacer::new(rate)).tick();
        }
        producer.send(&ev)?;
    }
    producer.flush(Duration::from_secs(30))?;
    eprintln!(
        "keywatch demo: all {} events produced; the daemon keeps running until Ctrl-C.",
        producer.sent()
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("keywatch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
