//! The alert pipeline's front: a finding is checked against the suppression
//! rules, made into an [`Alert`], routed to the sinks that want it, checked
//! against each sink's memory of delivered ids, and queued — without ever
//! waiting. A full queue sends the alert to the dead-letter file instead.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use prometheus::IntCounter;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_128;

use super::config::{AlertsConfig, SinkConfig, Suppression};
use super::dead_letter::{DeadLetter, DeadLetterRecord};
use super::incidents::Incidents;
use super::ledger::Ledger;
use super::redact::Redactor;
use super::retry::{Backoff, Pacer};
use super::seen::SeenIds;
use super::shape::{Alert, EncodedAlert, IncidentAlert};
use super::sink;
use super::sink::config::Takes;
use super::suppress::{SuppressionEntry, SuppressionError, Suppressions};
use super::worker::{Delivery, Queued, RetryPolicy, SinkMetrics};
use keywatch_core::engine::{Detector, Finding, Severity};
use keywatch_core::incident::IncidentEvent;
use keywatch_core::metrics::Metrics;
use keywatch_core::owner::{Owner, OwnerLookup};

/// The running alert pipeline. Cheap to clone; every clone feeds the same
/// sinks.
#[derive(Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
}

struct Shared {
    sinks: Vec<SinkEntry>,
    suppressions: Suppressions,
    redactor: Redactor,
    owners: Option<Arc<dyn OwnerLookup>>,
    muted: IntCounter,
    incidents: Option<Incidents>,
}

/// The submitting side of one sink.
struct SinkEntry {
    route: Route,
    takes: Takes,
    queue: mpsc::Sender<Queued>,
    seen: Option<Arc<Mutex<SeenIds>>>,
    /// Ids delivered per source partition; present exactly when `seen` is.
    ledger: Option<Arc<Ledger>>,
    metrics: Arc<SinkMetrics>,
    dead_letter: DeadLetter,
}

/// Which alerts a sink wants.
struct Route {
    min_severity: Severity,
    detectors: Vec<Detector>,
    teams: Vec<String>,
}

impl Route {
    fn new(cfg: &SinkConfig) -> Route {
        Route {
            min_severity: cfg.min_severity,
            detectors: cfg.detectors.clone(),
            teams: cfg.teams.clone(),
        }
    }

    fn wants(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
            && (self.detectors.is_empty() || self.detectors.contains(&alert.detector))
            && self.wants_team(alert.team.as_deref())
    }

    /// An incident by its severity now (it never falls, so a sink that got
    /// none of an incident's events gets no `resolved` either), any of its
    /// detectors, and its first key's team.
    fn wants_incident(&self, alert: &IncidentAlert) -> bool {
        alert.severity >= self.min_severity
            && (self.detectors.is_empty()
                || alert
                    .detectors
                    .iter()
                    .any(|(d, _)| self.detectors.contains(d)))
            && self.wants_team(alert.team.as_deref())
    }

    fn wants_team(&self, team: Option<&str>) -> bool {
        self.teams.is_empty() || team.is_some_and(|t| self.teams.iter().any(|x| x == t))
    }
}

impl Alerts {
    /// Starts a worker per configured sink and returns the handle findings
    /// are submitted to, and a task that ends once `shutdown` is cancelled
    /// and every sink has drained (within `alerts.drain_timeout`) and the
    /// dead-letter file is written.
    ///
    /// Fails when the configuration is invalid, the dead-letter file cannot
    /// be opened, or a sink cannot be set up (an unwritable file, a bad
    /// Kafka property). Must be called within a Tokio runtime.
    pub fn start(
        cfg: &AlertsConfig,
        metrics: Arc<Metrics>,
        owners: Option<Arc<dyn OwnerLookup>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Alerts, JoinHandle<()>)> {
        Alerts::start_with(cfg, None, metrics, owners, shutdown)
    }

    /// [`Alerts::start`], with findings grouped into `incidents` (when
    /// given): the sinks are then sent what [`SinkConfig::takes`] says.
    pub fn start_with(
        cfg: &AlertsConfig,
        incidents: Option<Incidents>,
        metrics: Arc<Metrics>,
        owners: Option<Arc<dyn OwnerLookup>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Alerts, JoinHandle<()>)> {
        cfg.validate()?;
        let incidents_on = incidents.is_some();
        let redactor = Redactor::new(&cfg.redact).context("alerts.redact.patterns")?;
        let links = sink::Links::new(&cfg.public_url).context("alerts.public_url")?;
        let alerts = |sinks| Alerts {
            shared: Arc::new(Shared {
                sinks,
                suppressions: Suppressions::new(&cfg.suppress),
                redactor,
                owners,
                muted: metrics.suppressed.with_label_values(&["mute"]),
                incidents,
            }),
        };
        if cfg.sinks.is_empty() {
            let idle = tokio::spawn(async move { shutdown.cancelled().await });
            return Ok((alerts(Vec::new()), idle));
        }
        let dead_letter = DeadLetter::open(&cfg.dead_letter_path).with_context(|| {
            format!(
                "opening the dead-letter file `{}` (alerts.dead_letter_path)",
                cfg.dead_letter_path.display()
            )
        })?;
        let mut sinks = Vec::with_capacity(cfg.sinks.len());
        let mut workers = Vec::with_capacity(cfg.sinks.len());
        for (i, sink_cfg) in cfg.sinks.iter().enumerate() {
            let (entry, worker) = start_sink(
                cfg,
                sink_cfg,
                incidents_on,
                &metrics,
                &links,
                &dead_letter,
                &shutdown,
            )
            .with_context(|| format!("setting up alerts.sinks[{i}] ({})", sink_cfg.name()))?;
            sinks.push(entry);
            workers.push(worker);
        }
        let done = tokio::spawn(async move {
            for worker in workers {
                if let Err(e) = worker.await {
                    tracing::error!(error = %e, "an alert sink worker failed");
                }
            }
            dead_letter.flush().await;
        });
        Ok((alerts(sinks), done))
    }

    /// Hands a finding to the sinks. Never waits: the caller is detection.
    /// A muted finding is counted and dropped; a finding a sink already
    /// delivered (same id) is not sent to it again; a full queue sends the
    /// alert to the dead-letter file. With incidents on, the finding joins
    /// its incident first, and the incident's events follow it.
    pub fn submit(&self, finding: &Finding) {
        self.submit_at(finding, None);
    }

    /// A finding sent again because a responder confirmed it: as
    /// [`Alerts::submit`], but its incident takes it as evidence of now (the
    /// wall clock, or its event time if later), so a confirmation of an old
    /// finding opens an incident that pages, rather than one already past
    /// its window.
    pub fn renotify(&self, finding: &Finding) {
        let now = chrono::Utc::now().timestamp_millis();
        self.submit_at(finding, Some(now.max(finding.observed_at_ms())));
    }

    fn submit_at(&self, finding: &Finding, at_ms: Option<i64>) {
        let shared = &*self.shared;
        if shared.sinks.is_empty() && shared.incidents.is_none() {
            return;
        }
        if shared.suppressions.mutes(finding) {
            shared.muted.inc();
            return;
        }
        let observed = shared.incidents.as_ref().map(|i| i.observe(finding, at_ms));
        if !shared.sinks.is_empty() {
            let mut alert =
                Alert::from_finding(finding, self.owner_of(&finding.key_id), &shared.redactor);
            alert.incident_id = observed.as_ref().map(|o| o.incident_id.clone());
            self.enqueue(
                &alert.id,
                |sink| sink.takes.findings && sink.route.wants(&alert),
                || EncodedAlert::new(&alert),
                finding.origin,
            );
        }
        for event in observed.iter().flat_map(|o| &o.events) {
            self.incident_event(event, finding.origin);
        }
    }

    /// Resolves the incidents quiet for `incidents.window` before `now_ms`
    /// (event time) and sends their `resolved` events.
    pub fn resolve_idle_incidents(&self, now_ms: i64) {
        let Some(incidents) = &self.shared.incidents else {
            return;
        };
        for event in incidents.resolve_idle(now_ms) {
            self.incident_event(&event, 0);
        }
    }

    /// The incidents, when they are on.
    pub fn incidents(&self) -> Option<&Incidents> {
        self.shared.incidents.as_ref()
    }

    fn owner_of(&self, key_id: &str) -> Option<Owner> {
        self.shared.owners.as_ref().and_then(|o| o.owner_of(key_id))
    }

    /// Counts and records an incident event, and queues it for the sinks
    /// that take incidents.
    fn incident_event(&self, event: &IncidentEvent, origin: u16) {
        let shared = &*self.shared;
        if let Some(incidents) = &shared.incidents {
            incidents.record(event);
        }
        if shared.sinks.iter().all(|s| !s.takes.incidents) {
            return;
        }
        let owner = event
            .incident
            .key_ids
            .first()
            .and_then(|k| self.owner_of(k));
        let alert = IncidentAlert::from_event(event, owner, &shared.redactor);
        self.enqueue(
            &alert.id,
            |sink| sink.takes.incidents && sink.route.wants_incident(&alert),
            || EncodedAlert::incident(&alert),
            origin,
        );
    }

    /// Queues one record (encoded once, for the first sink that wants it)
    /// on every sink `wants` picks and that has not delivered `id` yet.
    fn enqueue(
        &self,
        id: &str,
        wants: impl Fn(&SinkEntry) -> bool,
        encode: impl FnOnce() -> EncodedAlert,
        origin: u16,
    ) {
        let raised = Instant::now();
        let id_hash = xxh3_128(id.as_bytes());
        let mut encode = Some(encode);
        let mut encoded: Option<Arc<EncodedAlert>> = None;
        for sink in &self.shared.sinks {
            if !wants(sink) {
                sink.metrics.filtered.inc();
                continue;
            }
            if let Some(seen) = &sink.seen {
                if !seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remember(id_hash)
                {
                    sink.metrics.duplicate.inc();
                    continue;
                }
            }
            let encoded =
                encoded.get_or_insert_with(|| Arc::new((encode.take().expect("encoded once"))()));
            sink.metrics.depth.inc();
            let queued = Queued {
                alert: encoded.clone(),
                raised,
                id_hash,
                origin,
            };
            let (reason, error) = match sink.queue.try_send(queued) {
                Ok(()) => continue,
                Err(TrySendError::Full(_)) => ("queue_full", "the sink's queue is full"),
                Err(TrySendError::Closed(_)) => ("shutdown", "the sink has shut down"),
            };
            sink.metrics.depth.dec();
            sink.metrics.failure(reason);
            if let Some(seen) = &sink.seen {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(id_hash);
            }
            let record =
                DeadLetterRecord::new(&sink.metrics.name, reason, error.to_owned(), 0, encoded);
            sink.dead_letter.try_keep(&record, &sink.metrics);
        }
    }

    /// Mutes findings matching `rule` (until its expiry, if any); returns
    /// the rule's id.
    pub fn add_suppression(&self, rule: Suppression) -> Result<u64, SuppressionError> {
        self.shared.suppressions.add(rule)
    }

    /// Removes a rule added with [`Alerts::add_suppression`].
    pub fn remove_suppression(&self, id: u64) -> Result<SuppressionEntry, SuppressionError> {
        self.shared.suppressions.remove(id)
    }

    /// The rules in force (configured and added), expired ones left out.
    pub fn suppressions(&self) -> Vec<SuppressionEntry> {
        self.shared.suppressions.list()
    }

    /// Ids delivered for findings from `origin`, per sink name, oldest first.
    ///
    /// Ids are the xxh3-128 hashes of the alert ids. Only sinks that
    /// delivered something for `origin` are listed; a sink keeps at most
    /// `alerts.remember_ids` per origin, and none when that is 0. Origin 0
    /// (no partition) is never recorded.
    pub fn delivered(&self, origin: u16) -> Vec<(String, Vec<u128>)> {
        self.shared
            .sinks
            .iter()
            .filter_map(|sink| {
                let ids = sink.ledger.as_ref()?.ids(origin);
                (!ids.is_empty()).then(|| (sink.metrics.name.to_string(), ids))
            })
            .collect()
    }

    /// Forgets the ledger of `origin` (its partition went to another instance).
    ///
    /// The sinks' memory of delivered ids is kept: it is bounded and shared
    /// by every origin.
    pub fn forget_origin(&self, origin: u16) {
        for ledger in self.shared.sinks.iter().filter_map(|s| s.ledger.as_ref()) {
            ledger.forget(origin);
        }
    }

    /// Takes over what a previous owner of partition `origin` delivered: each named
    /// sink remembers the ids (so a re-found finding is not sent again) and the ledger
    /// of `origin` holds them (so the next snapshot passes them on). Unknown sink names are ignored.
    ///
    /// `delivered` is what [`Alerts::delivered`] returned on the previous
    /// owner, ids oldest first. Past `alerts.remember_ids` the oldest are
    /// not kept; with `remember_ids = 0` nothing is.
    pub fn adopt(&self, origin: u16, delivered: &[(String, Vec<u128>)]) {
        for (name, ids) in delivered {
            let Some(sink) = self.shared.sinks.iter().find(|s| *s.metrics.name == **name) else {
                tracing::debug!(sink = %name, origin, "delivered ids for an unknown sink ignored");
                continue;
            };
            if let Some(seen) = &sink.seen {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                for &id in ids {
                    seen.remember(id);
                }
            }
            if let Some(ledger) = &sink.ledger {
                ledger.adopt(origin, ids);
            }
        }
    }
}

/// One sink's queue, memory of ids and worker.
fn start_sink(
    cfg: &AlertsConfig,
    sink_cfg: &SinkConfig,
    incidents: bool,
    metrics: &Metrics,
    links: &sink::Links,
    dead_letter: &DeadLetter,
    shutdown: &CancellationToken,
) -> anyhow::Result<(SinkEntry, JoinHandle<()>)> {
    let sink_metrics = Arc::new(SinkMetrics::new(metrics, sink_cfg.name()));
    let seen = (cfg.remember_ids > 0).then(|| Arc::new(Mutex::new(SeenIds::new(cfg.remember_ids))));
    let ledger = (cfg.remember_ids > 0).then(|| Arc::new(Ledger::new(cfg.remember_ids)));
    let (tx, rx) = mpsc::channel(sink_cfg.queue_capacity);
    let setup = sink::SinkSetup {
        cfg: sink_cfg,
        links: links.clone(),
        metrics: sink_metrics.clone(),
    };
    let delivery = Delivery {
        metrics: sink_metrics.clone(),
        policy: RetryPolicy {
            timeout: sink_cfg.timeout.0,
            max_retries: sink_cfg.max_retries,
            backoff: Backoff {
                initial: sink_cfg.backoff_initial.0,
                max: sink_cfg.backoff_max.0,
            },
            max_age: sink_cfg.max_delivery_age.0,
        },
        pacer: Pacer::default(),
        dead_letter: dead_letter.clone(),
        seen: seen.clone(),
        ledger: ledger.clone(),
        give_up: CancellationToken::new(),
    };
    let worker = sink::spawn(setup, rx, delivery, cfg.drain_timeout.0, shutdown.clone())?;
    let entry = SinkEntry {
        route: Route::new(sink_cfg),
        takes: sink_cfg.takes(incidents),
        queue: tx,
        seen,
        ledger,
        metrics: sink_metrics,
        dead_letter: dead_letter.clone(),
    };
    Ok((entry, worker))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::alert::config::{FileSinkConfig, SinkKind};
    use crate::alert::tests::finding;

    /// One file sink named `audit`, delivering one alert at a time (so in
    /// submission order), into `dir/alerts.jsonl`.
    fn file_sink(dir: &Path, remember_ids: usize) -> AlertsConfig {
        let mut sink = SinkConfig::new(SinkKind::File(FileSinkConfig {
            path: dir.join("alerts.jsonl"),
        }));
        sink.name = Some("audit".to_owned());
        sink.concurrency = 1;
        AlertsConfig {
            dead_letter_path: dir.join("dead-letter.jsonl"),
            remember_ids,
            sinks: vec![sink],
            ..AlertsConfig::default()
        }
    }

    /// Starts an instance, lets `f` submit to it, and shuts it down once
    /// every sink has drained; returns it (its ledger outlives the workers)
    /// and its metrics.
    async fn run(cfg: &AlertsConfig, f: impl FnOnce(&Alerts)) -> (Alerts, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (alerts, done) = Alerts::start(cfg, metrics.clone(), None, shutdown.clone()).unwrap();
        f(&alerts);
        shutdown.cancel();
        done.await.unwrap();
        (alerts, metrics)
    }

    /// A finding on key `AKIAEXAMPLE{n}` from partition `origin`.
    fn from(origin: u16, n: u32) -> Finding {
        let mut f = finding(
            &format!("AKIAEXAMPLE{n}"),
            Detector::NewSource,
            "185.220.101.7",
        );
        f.origin = origin;
        f
    }

    fn hash(f: &Finding) -> u128 {
        xxh3_128(f.id.as_bytes())
    }

    /// The ids of the alerts in the file, in order.
    fn written(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let alert: serde_json::Value = serde_json::from_str(l).unwrap();
                alert["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_ledger_travels_with_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = file_sink(dir.path(), 100);
        let (a, b) = (from(3, 1), from(3, 2));

        // The first owner delivers `a` and records it under partition 3 only.
        let (first, _) = run(&cfg, |alerts| alerts.submit(&a)).await;
        let handed_over = first.delivered(3);
        assert_eq!(handed_over, [("audit".to_owned(), vec![hash(&a)])]);
        assert!(first.delivered(4).is_empty());
        assert!(first.delivered(0).is_empty());
        assert_eq!(written(dir.path()), [a.id.as_str()]);

        // The next owner adopts the list, then re-finds `a` and finds `b`.
        let mut with_unknown = handed_over.clone();
        with_unknown.push(("gone".to_owned(), vec![hash(&b)]));
        let (second, metrics) = run(&cfg, |alerts| {
            alerts.adopt(3, &with_unknown);
            alerts.submit(&a);
            alerts.submit(&b);
        })
        .await;
        assert_eq!(
            written(dir.path()),
            [a.id.clone(), b.id.clone()],
            "`a` is delivered once across both owners, `b` is delivered"
        );
        assert_eq!(
            metrics
                .alerts
                .with_label_values(&["audit", "duplicate"])
                .get(),
            1
        );
        assert_eq!(
            second.delivered(3),
            [("audit".to_owned(), vec![hash(&a), hash(&b)])],
            "the adopted ids pass on with the next snapshot; the unknown sink is ignored"
        );

        second.forget_origin(3);
        assert!(second.delivered(3).is_empty());
    }

    #[tokio::test]
    async fn the_ledger_is_bounded_per_origin() {
        let dir = tempfile::tempdir().unwrap();
        let three: Vec<_> = (0..5).map(|n| from(3, n)).collect();
        let four: Vec<_> = (10..12).map(|n| from(4, n)).collect();
        let none = from(0, 20);
        let (alerts, _) = run(&file_sink(dir.path(), 3), |alerts| {
            three.iter().chain(&four).for_each(|f| alerts.submit(f));
            alerts.submit(&none);
        })
        .await;
        assert_eq!(written(dir.path()).len(), 8, "every finding is delivered");
        assert_eq!(
            alerts.delivered(3),
            [("audit".to_owned(), three[2..].iter().map(hash).collect())],
            "the newest three of partition 3"
        );
        assert_eq!(
            alerts.delivered(4),
            [("audit".to_owned(), four.iter().map(hash).collect())]
        );
        assert!(alerts.delivered(0).is_empty());

        // Adopting more than the bound keeps the newest.
        alerts.adopt(5, &[("audit".to_owned(), (1..=5).collect())]);
        assert_eq!(alerts.delivered(5), [("audit".to_owned(), vec![3, 4, 5])]);
    }

    #[tokio::test]
    async fn no_ledger_without_memory_or_sinks() {
        let dir = tempfile::tempdir().unwrap();
        let a = from(3, 1);
        let (forgetful, _) = run(&file_sink(dir.path(), 0), |alerts| alerts.submit(&a)).await;
        assert_eq!(written(dir.path()), [a.id.as_str()]);
        assert!(forgetful.delivered(3).is_empty());
        forgetful.adopt(3, &[("audit".to_owned(), vec![hash(&a)])]);
        assert!(forgetful.delivered(3).is_empty());

        let (idle, _) = run(&AlertsConfig::default(), |alerts| alerts.submit(&a)).await;
        idle.adopt(3, &[("audit".to_owned(), vec![hash(&a)])]);
        assert!(idle.delivered(3).is_empty());
        idle.forget_origin(3);
    }
}
