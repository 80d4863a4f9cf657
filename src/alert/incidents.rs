//! The pipeline's incidents: every finding that is not muted joins its
//! identity's incident ([`keywatch_core::incident::Tracker`]), and what
//! changes is counted, told to whoever listens (the findings store) and
//! sent to the sinks that take incidents.

use std::sync::{Arc, Mutex, OnceLock};

use keywatch_core::engine::Finding;
use keywatch_core::incident::{Change, IncidentEvent, IncidentsConfig, Observed, Tracker};
use keywatch_core::metrics::Metrics;

/// Told every incident event (the findings store keeps them).
pub type IncidentListener = Arc<dyn Fn(&IncidentEvent) + Send + Sync>;

/// The open incidents and what watches them.
pub struct Incidents {
    tracker: Mutex<Tracker>,
    metrics: Arc<Metrics>,
    listener: OnceLock<IncidentListener>,
}

impl Incidents {
    /// Incidents per `cfg`, grouped by principal when `by_principal`.
    pub fn new(cfg: &IncidentsConfig, by_principal: bool, metrics: Arc<Metrics>) -> Incidents {
        Incidents {
            tracker: Mutex::new(Tracker::new(cfg, by_principal)),
            metrics,
            listener: OnceLock::new(),
        }
    }

    /// Sets who is told every event; only the first call counts.
    pub fn listen(&self, listener: IncidentListener) {
        let _ = self.listener.set(listener);
    }

    /// `finding` joins its incident.
    pub fn observe(&self, finding: &Finding) -> Observed {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let observed = tracker.observe(finding);
        self.metrics.incidents_open.set(tracker.open_count() as i64);
        observed
    }

    /// Resolves the incidents quiet for the window before `now_ms`.
    pub fn resolve_idle(&self, now_ms: i64) -> Vec<IncidentEvent> {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let events = tracker.resolve_idle(now_ms);
        self.metrics.incidents_open.set(tracker.open_count() as i64);
        events
    }

    /// The open incidents, newest last finding first.
    pub fn open(&self) -> Vec<keywatch_core::incident::Incident> {
        let tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        tracker.open_incidents().into_iter().cloned().collect()
    }

    /// Counts `event` and tells the listener.
    pub fn record(&self, event: &IncidentEvent) {
        if matches!(event.change, Change::Opened | Change::Escalated) {
            self.metrics
                .incidents
                .with_label_values(&[event.incident.severity.as_str()])
                .inc();
        }
        if let Some(listener) = self.listener.get() {
            listener(event);
        }
    }
}
