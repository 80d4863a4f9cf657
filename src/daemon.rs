//! `keywatch run`: the daemon's wiring. Builds the engine, the finding
//! handlers and the Kafka source, runs until the shutdown future resolves,
//! then stops fetching, commits and exits within the configured deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alert::Alerts;
use crate::config::Config;
use crate::engine::{Engine, Finding};
use crate::http::{self, AppState, RecentFindings};
use crate::metrics::Metrics;
use crate::pipeline::{FindingHandler, Pipeline};
use crate::source::kafka::{KafkaSource, SourceStatus};

/// The parts of a running daemon other components (HTTP, tests) look at.
#[derive(Clone)]
pub struct Daemon {
    /// The per-key store.
    pub engine: Engine,
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// The source's progress.
    pub status: Arc<SourceStatus>,
}

impl Daemon {
    /// A daemon's shared parts for a validated configuration.
    pub fn new(cfg: &Config) -> Daemon {
        Daemon {
            engine: Engine::new(cfg),
            metrics: Arc::new(Metrics::new()),
            status: Arc::new(SourceStatus::default()),
        }
    }
}

/// Every finding is logged, kept for the API and handed to the alert pipeline.
fn finding_handler(alerts: Alerts, recent: Arc<RecentFindings>) -> FindingHandler {
    Arc::new(move |f: &Finding| {
        recent.record(f);
        tracing::info!(
            id = %f.id,
            detector = f.detector.as_str(),
            severity = f.severity.as_str(),
            key_id = %f.key_id,
            "{}",
            f.summary
        );
        alerts.submit(f);
    })
}

/// Runs the daemon until `shutdown` resolves or the source stops: the
/// source stops fetching and commits first, then the alert sinks drain and
/// the HTTP server stops.
pub async fn run(cfg: Config, daemon: Daemon, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let alerts_stop = CancellationToken::new();
    let (alerts, alerts_done) = Alerts::start(
        &cfg.alerts,
        daemon.metrics.clone(),
        None,
        alerts_stop.clone(),
    )?;
    let recent = Arc::new(RecentFindings::new(
        cfg.http.recent_findings,
        cfg.http.max_active_anomalies,
        cfg.engine.cooldown.0,
        daemon.metrics.clone(),
    ));
    let http_stop = CancellationToken::new();
    let state = AppState {
        engine: daemon.engine.clone(),
        metrics: daemon.metrics.clone(),
        status: daemon.status.clone(),
        recent: recent.clone(),
        alerts: alerts.clone(),
        api_token: cfg.http.api_token.clone(),
        dormant_s: cfg.detectors.dormant_revival.dormant_after.as_secs_u32(),
    };
    let (_, http_done) = http::serve(&cfg.http, state, http_stop.clone()).await?;
    let result = run_source(&cfg, &daemon, finding_handler(alerts, recent), shutdown).await;
    alerts_stop.cancel();
    let drain = cfg.alerts.drain_timeout.0 + Duration::from_secs(1);
    if tokio::time::timeout(drain, alerts_done).await.is_err() {
        tracing::warn!("alert sinks did not drain in time; the rest is in the dead-letter file");
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_done).await;
    result
}

async fn run_source(
    cfg: &Config,
    daemon: &Daemon,
    on_finding: FindingHandler,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let pipeline = Pipeline::new(cfg, daemon.engine.clone(), daemon.metrics.clone(), on_finding)?;
    let kafka = cfg.kafka.clone();
    let (metrics, status) = (daemon.metrics.clone(), daemon.status.clone());
    let source = tokio::task::spawn_blocking(move || {
        KafkaSource::connect(&kafka, pipeline, metrics, status)
    })
    .await
    .context("starting the Kafka source")??;

    let stop = CancellationToken::new();
    let token = stop.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kafka-source".into())
        .spawn(move || {
            source.run(&token);
            let _ = done_tx.send(());
        })
        .context("spawning the source thread")?;

    let mut done_rx = done_rx;
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        _ = &mut done_rx => anyhow::bail!("the Kafka source stopped unexpectedly"),
    }
    stop.cancel();
    let deadline = cfg.kafka.shutdown_timeout.0;
    match tokio::time::timeout(deadline, done_rx).await {
        Ok(_) => Ok(()),
        Err(_) => anyhow::bail!(
            "the source did not stop within kafka.shutdown_timeout ({})",
            humantime::format_duration(deadline)
        ),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signals() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A small multi-threaded runtime for the daemon: two workers is what the
/// HTTP server and the alert sinks need; detection runs on its own thread.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_keep_alive(Duration::from_secs(10))
        .build()
        .context("starting the async runtime")
}
