//! `keywatch run`: the daemon's wiring. Builds the engine, the finding
//! handlers and the Kafka source, runs until the shutdown future resolves,
//! then stops fetching, commits and exits within the configured deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alert::{Alerts, Incidents};
use crate::cadence::Scheduler;
use crate::checkpoint::{Checkpointer, Origins, Store};
use crate::config::Config;
use crate::feedback::topic::FeedbackTopic;
use crate::http::{self, AppState, RecentFindings};
use crate::response::Responder;
use crate::source::kafka::{ChangelogSetup, Durable, KafkaSource, SourceStatus};
use crate::store::{FindingsStore, StoreWriter};
use keywatch_core::engine::{Engine, Finding};
use keywatch_core::inventory::InventoryHandle;
use keywatch_core::metrics::Metrics;
use keywatch_core::netintel::NetIntel;
use keywatch_core::owner::OwnerLookup;
use keywatch_core::pipeline::{FindingHandler, Pipeline};
use keywatch_core::types::Entity;

/// The parts of a running daemon other components (HTTP, tests) look at.
#[derive(Clone)]
pub struct Daemon {
    /// The per-key store.
    pub engine: Engine,
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// The source's progress.
    pub status: Arc<SourceStatus>,
    /// The key inventory, when one is configured.
    pub inventory: Option<InventoryHandle>,
    /// When the last checkpoint was written (epoch ms; 0: none yet).
    pub last_checkpoint_ms: Arc<AtomicI64>,
}

/// Why a daemon cannot start: a configured file it must read is unusable.
/// Each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The inventory file.
    #[error(transparent)]
    Inventory(#[from] keywatch_core::inventory::InventoryError),
    /// A network-intelligence file.
    #[error(transparent)]
    NetIntel(#[from] keywatch_core::netintel::NetIntelError),
}

impl Daemon {
    /// A daemon's shared parts: the inventory and the network intelligence
    /// files are loaded (a bad one stops the start, naming the file and what
    /// is wrong with it).
    pub fn new(cfg: &Config) -> Result<Daemon, StartError> {
        let metrics = Arc::new(Metrics::new());
        let inventory = match cfg.inventory.sources() {
            Some(sources) => Some(InventoryHandle::open(sources, Some(&metrics))?),
            None => None,
        };
        let netintel = NetIntel::from_config(&cfg.netintel, Some(&metrics))?;
        let engine = Engine::with_parts(cfg, inventory.clone(), netintel);
        Ok(Daemon {
            engine,
            metrics,
            status: Arc::new(SourceStatus {
                unreachable_after_ms: (cfg.kafka.unreachable_after.0.as_millis() as u64).into(),
                ..SourceStatus::default()
            }),
            inventory,
            last_checkpoint_ms: Arc::new(AtomicI64::new(0)),
        })
    }
}

/// Restores the newest readable checkpoint and starts the checkpoint writer.
/// Without the changelog the checkpoint is loaded into the engine now; with
/// it, it is held until its partitions are assigned (another instance may
/// own them now, with newer state in the changelog).
fn durability(cfg: &Config, daemon: &Daemon, alerts: &Alerts) -> anyhow::Result<Durable> {
    let origins = Arc::new(Origins::default());
    let store = if cfg.checkpoint.enabled() {
        Some(
            Store::open(&cfg.checkpoint.dir, cfg.checkpoint.keep).with_context(|| {
                format!("opening checkpoint.dir {}", cfg.checkpoint.dir.display())
            })?,
        )
    } else {
        tracing::warn!("checkpoints are off (checkpoint.dir is empty): a restart restores from the changelog only, if it is on");
        None
    };
    let mut resume = HashMap::new();
    let mut parked = None;
    if let Some(store) = &store {
        let started = Instant::now();
        if let Some((path, cp)) = store.load_newest() {
            let keys = cp.key_count();
            daemon
                .last_checkpoint_ms
                .store(cp.written_at_ms, Ordering::Relaxed);
            if cfg.changelog.enabled {
                tracing::info!(path = %path.display(), keys, "read the local checkpoint; its partitions load as they are assigned");
                parked = Some(cp);
            } else {
                resume = cp.restore(&daemon.engine, &origins);
                tracing::info!(
                    path = %path.display(),
                    keys,
                    partitions = resume.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "restored state from checkpoint"
                );
            }
        } else {
            tracing::info!(dir = %cfg.checkpoint.dir.display(), "no checkpoint to restore; starting empty");
        }
    }
    let checkpointer = if store.is_some() || cfg.changelog.enabled {
        Some(
            Checkpointer::start(
                store,
                daemon.engine.clone(),
                origins.clone(),
                daemon.metrics.clone(),
                cfg.checkpoint.interval.0,
                daemon.last_checkpoint_ms.clone(),
            )
            .context("starting the checkpoint writer")?,
        )
    } else {
        None
    };
    let changelog = cfg.changelog.enabled.then(|| ChangelogSetup {
        cfg: cfg.changelog.clone(),
        engine: daemon.engine.clone(),
        alerts: Some(alerts.clone()),
        parked,
    });
    Ok(Durable {
        origins,
        resume,
        checkpointer,
        changelog,
    })
}

/// Every finding is logged (target `keywatch::finding`, which the demo
/// leaves out: it prints findings itself), kept for the API (and the
/// findings store, when on) and handed to the alert pipeline, except a
/// folded one: it updates its run's record in the API and the store and
/// pages no one.
fn finding_handler(
    alerts: Alerts,
    recent: Arc<RecentFindings>,
    store: Option<FindingsStore>,
    responder: Option<Responder>,
) -> FindingHandler {
    Arc::new(move |f: &Finding| {
        recent.record(f);
        if let Some(store) = &store {
            store.record(f);
        }
        if let Some(responder) = &responder {
            responder.detected(f);
        }
        tracing::info!(
            target: "keywatch::finding",
            id = %f.id,
            detector = f.detector.as_str(),
            severity = f.severity.as_str(),
            key_id = %f.key_id,
            "{}",
            f.summary
        );
        if f.folded.is_none() {
            alerts.submit(f);
        }
    })
}

/// Resolves the incidents quiet for `incidents.window`, on the engine's
/// clock: the newest event time applied. Live, that is the wall clock; while
/// catching up on a backlog it is the backlog's time, so incidents in it
/// close as they did when it happened, not all at once.
async fn resolve_incidents(
    alerts: Alerts,
    engine: Engine,
    window: Duration,
    stop: CancellationToken,
) {
    let every = (window / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {
                let now = engine.stats().watermark_ms.load(Ordering::Relaxed);
                if now > 0 {
                    alerts.resolve_idle_incidents(now);
                }
            }
        }
    }
}

/// Runs the daemon until `shutdown` resolves or the source stops: the
/// source stops fetching and commits first, then the alert sinks drain and
/// the HTTP server stops. A run that fails leaves no empty checkpoint
/// directory behind that it created itself.
pub async fn run(
    cfg: Config,
    daemon: Daemon,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let dir = cfg.checkpoint.dir.clone();
    let created = cfg.checkpoint.enabled() && !dir.exists();
    let result = serve(cfg, daemon, shutdown).await;
    if result.is_err() && created {
        // Only an empty directory goes: `remove_dir` refuses any other.
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

/// Takes back the incidents the findings store holds open, so a restart in
/// the middle of an attack keeps its incident (and its page).
pub(crate) fn restore_incidents(store: &FindingsStore, incidents: &Incidents, max_open: usize) {
    let filter = keywatch_core::incident::Filter {
        status: Some(keywatch_core::incident::Status::Open),
        ..Default::default()
    };
    match store.incidents(&filter, max_open) {
        Ok(open) if open.is_empty() => {}
        Ok(open) => {
            let taken = incidents.restore(open);
            tracing::info!(
                incidents = taken,
                "open incidents taken back from the findings store"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not read the open incidents from the findings store; findings open new ones"
        ),
    }
}

async fn serve(
    cfg: Config,
    daemon: Daemon,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let alerts_stop = CancellationToken::new();
    let owners = daemon
        .inventory
        .clone()
        .map(|i| Arc::new(i) as Arc<dyn OwnerLookup>);
    let incidents = cfg.incidents.enabled.then(|| {
        Incidents::new(
            &cfg.incidents,
            cfg.engine.entities.contains(&Entity::Principal),
            daemon.metrics.clone(),
        )
    });
    let (alerts, alerts_done) = Alerts::start_with(
        &cfg.alerts,
        incidents,
        daemon.metrics.clone(),
        owners,
        alerts_stop.clone(),
    )?;
    if cfg.incidents.enabled {
        tokio::spawn(resolve_incidents(
            alerts.clone(),
            daemon.engine.clone(),
            cfg.incidents.window.0,
            alerts_stop.clone(),
        ));
    }
    let (store, store_writer) = open_store(&cfg, &daemon, &alerts)?;
    if let (Some(store), Some(incidents)) = (&store, alerts.incidents()) {
        restore_incidents(store, incidents, cfg.incidents.max_open);
        let store = store.clone();
        incidents.listen(Arc::new(move |event| {
            store.record_incident(&event.incident)
        }));
    }
    let feedback_stop = CancellationToken::new();
    let feedback = match &store {
        Some(store) if !cfg.store.feedback_topic.is_empty() => {
            let (kafka, topic) = (cfg.kafka.clone(), cfg.store.feedback_topic.clone());
            let (store, engine, alerts, stop) = (
                store.clone(),
                daemon.engine.clone(),
                alerts.clone(),
                feedback_stop.clone(),
            );
            let started = tokio::task::spawn_blocking(move || {
                FeedbackTopic::start(&kafka, &topic, store, engine, alerts, stop)
            })
            .await
            .context("starting the feedback topic")?
            .context("store.feedback_topic")?;
            Some(started)
        }
        _ => None,
    };
    let findings_stop = CancellationToken::new();
    // Also stopped when a later step of the start fails.
    let _findings_guard = findings_stop.clone().drop_guard();
    if let (Some(store), Some(sink)) = (&store, cfg.findings_sink()) {
        crate::store::ingest::start(
            sink,
            &cfg.store.findings_topic,
            store.clone(),
            findings_stop.clone(),
        )
        .context("store.findings_topic")?;
    }
    let responder = Responder::start(
        cfg.response.clone(),
        store.clone(),
        daemon.inventory.clone(),
        daemon.metrics.clone(),
        alerts_stop.clone(),
    )
    .context("starting the response rules")?;
    let durable = durability(&cfg, &daemon, &alerts)?;
    if let Some(inv) = &daemon.inventory {
        tokio::spawn(
            inv.clone()
                .watch(cfg.inventory.check_interval.0, alerts_stop.clone()),
        );
        match inv.clone().reload_on_sighup(alerts_stop.clone()) {
            Ok(reloads) => {
                tokio::spawn(reloads);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the inventory reloads on change only")
            }
        }
    }
    if let Some(n) = daemon.engine.netintel() {
        tokio::spawn(
            n.clone()
                .watch(cfg.netintel.check_interval.0, alerts_stop.clone()),
        );
    }
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
        inventory: daemon.inventory.clone(),
        inventory_cfg: cfg.inventory.clone(),
        checkpoint_max_age: cfg.checkpoint.enabled().then_some(cfg.checkpoint.max_age.0),
        last_checkpoint_ms: daemon.last_checkpoint_ms.clone(),
        started: Instant::now(),
        store: store.clone(),
        feedback: feedback.clone(),
        responder: responder.clone(),
    };
    let (_, http_done) = http::serve(&cfg.http, state, http_stop.clone()).await?;
    if let (Some(inventory), Some(_)) = (&daemon.inventory, cfg.review.every) {
        let scheduler = Scheduler {
            cfg: cfg.review.clone(),
            inventory_cfg: cfg.inventory.clone(),
            engine: daemon.engine.clone(),
            inventory: inventory.clone(),
            recent: recent.clone(),
            store: store.clone(),
            metrics: daemon.metrics.clone(),
        };
        tokio::spawn(scheduler.run(alerts_stop.clone()));
    }
    let result = run_source(
        &cfg,
        &daemon,
        durable,
        finding_handler(alerts, recent, store, responder),
        shutdown,
    )
    .await;
    alerts_stop.cancel();
    let drain = cfg.alerts.drain_timeout.0 + Duration::from_secs(1);
    if tokio::time::timeout(drain, alerts_done).await.is_err() {
        tracing::warn!("alert sinks did not drain in time; the rest is in the dead-letter file");
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_done).await;
    feedback_stop.cancel();
    findings_stop.cancel();
    // Writes what is still queued, then stops.
    drop(store_writer);
    result
}

/// Opens the findings store when `store.path` is set, and gives the engine
/// and the alert pipeline back what earlier verdicts taught and muted.
fn open_store(
    cfg: &Config,
    daemon: &Daemon,
    alerts: &Alerts,
) -> anyhow::Result<(Option<FindingsStore>, Option<StoreWriter>)> {
    if !cfg.store.enabled() {
        return Ok((None, None));
    }
    let owners = daemon
        .inventory
        .clone()
        .map(|i| Arc::new(i) as Arc<dyn OwnerLookup>);
    let (store, writer) = FindingsStore::open(&cfg.store, daemon.metrics.clone(), owners)
        .with_context(|| {
            format!(
                "opening the findings store {} (store.path)",
                cfg.store.path.display()
            )
        })?;
    let (taught, muted) = crate::feedback::restore(&store, &daemon.engine, alerts);
    tracing::info!(
        path = %cfg.store.path.display(),
        findings = daemon.metrics.store_findings.get(),
        teachings = taught,
        suppressions = muted,
        "opened the findings store"
    );
    Ok((Some(store), Some(writer)))
}

async fn run_source(
    cfg: &Config,
    daemon: &Daemon,
    durable: Durable,
    on_finding: FindingHandler,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // The polling thread's pipeline first, then one per apply thread.
    let pipelines = (0..cfg.kafka.pipelines())
        .map(|_| {
            Pipeline::new(
                cfg,
                daemon.engine.clone(),
                daemon.metrics.clone(),
                on_finding.clone(),
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kafka = cfg.kafka.clone();
    let (metrics, status) = (daemon.metrics.clone(), daemon.status.clone());
    let source = tokio::task::spawn_blocking(move || {
        KafkaSource::connect(&kafka, pipelines, metrics, status, durable)
    })
    .await
    .context("starting the Kafka source")??;

    let stop = CancellationToken::new();
    let token = stop.clone();
    // `stopped`: everything applied is committed and handed over; `left`:
    // the consumer has also left the group. A panic drops both senders.
    let (stopped_tx, mut stopped_rx) = tokio::sync::oneshot::channel();
    let (left_tx, left_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kafka-source".into())
        .spawn(move || {
            let mut source = source;
            source.run(&token);
            let _ = stopped_tx.send(());
            drop(source);
            let _ = left_tx.send(());
        })
        .context("spawning the source thread")?;

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        _ = &mut stopped_rx => anyhow::bail!("the Kafka source stopped unexpectedly"),
    }
    stop.cancel();
    let deadline = cfg.kafka.shutdown_timeout.0;
    let started = tokio::time::Instant::now();
    let within = humantime::format_duration(deadline);
    match tokio::time::timeout(deadline, stopped_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => anyhow::bail!("the Kafka source failed while stopping (see the log above)"),
        Err(_) => anyhow::bail!(
            "the source did not commit and hand over its partitions within kafka.shutdown_timeout ({within})"
        ),
    }
    // Leaving the group needs the coordinator, which may hold the request
    // until a rebalance in flight completes. Nothing is at stake by now: the
    // group gives the partitions out again when this member's session lapses.
    let rest = deadline.saturating_sub(started.elapsed());
    if tokio::time::timeout(rest, left_rx).await.is_err() {
        tracing::warn!(
            "committed and handed over, but the group coordinator did not confirm the leave within kafka.shutdown_timeout ({within}); the group reassigns the partitions when the session lapses"
        );
    }
    Ok(())
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
