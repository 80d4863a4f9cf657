//! The pipeline's incidents: every finding that is not muted joins its
//! identity's incident ([`keywatch_core::incident::Tracker`]), and what
//! changes is counted, told to whoever listens (the findings store) and
//! sent to the sinks that take incidents.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use keywatch_core::engine::Finding;
use keywatch_core::incident::{
    Change, Filter, Incident, IncidentEvent, IncidentsConfig, Observed, Tracker,
};
use keywatch_core::metrics::Metrics;

/// Incidents kept in memory for the API when there is no findings store:
/// the last thousand opened (a few KB each), as they last stood.
const RECENT: usize = 1000;

/// Told every incident event (the findings store keeps them).
pub type IncidentListener = Arc<dyn Fn(&IncidentEvent) + Send + Sync>;

/// The open incidents and what watches them.
pub struct Incidents {
    tracker: Mutex<Tracker>,
    metrics: Arc<Metrics>,
    listener: OnceLock<IncidentListener>,
    recent: Mutex<Recent>,
}

/// The latest state of the incidents opened last, oldest first.
#[derive(Default)]
struct Recent {
    by_id: HashMap<String, Incident>,
    order: VecDeque<String>,
}

impl Incidents {
    /// Incidents per `cfg`, grouped by principal when `by_principal`.
    pub fn new(cfg: &IncidentsConfig, by_principal: bool, metrics: Arc<Metrics>) -> Incidents {
        Incidents {
            tracker: Mutex::new(Tracker::new(cfg, by_principal)),
            metrics,
            listener: OnceLock::new(),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// The recent incidents matching `filter` (open ones, and resolved ones
    /// among the last [`RECENT`] opened), the latest last finding first.
    pub fn list(&self, filter: &Filter, limit: usize) -> Vec<Incident> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Incident> = recent
            .by_id
            .values()
            .filter(|i| filter.matches(i))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.last_seen_ms()
                .cmp(&a.last_seen_ms())
                .then(a.id.cmp(&b.id))
        });
        out.truncate(limit);
        out
    }

    /// A recent incident by id.
    pub fn get(&self, id: &str) -> Option<Incident> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.by_id.get(id).cloned()
    }

    /// Sets who is told every event; only the first call counts.
    pub fn listen(&self, listener: IncidentListener) {
        let _ = self.listener.set(listener);
    }

    /// `finding` joins its incident, as evidence of its event's time, or of
    /// `at_ms` when given (a verdict's re-notification).
    pub fn observe(&self, finding: &Finding, at_ms: Option<i64>) -> Observed {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let observed = match at_ms {
            Some(at) => tracker.observe_at(finding, at),
            None => tracker.observe(finding),
        };
        self.metrics.incidents_open.set(tracker.open_count() as i64);
        observed
    }

    /// Takes back the incidents open when the process stopped (see
    /// [`Tracker::restore`]); they are listed by the API as before.
    pub fn restore(&self, incidents: Vec<Incident>) -> usize {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for incident in &incidents {
            if recent
                .by_id
                .insert(incident.id.clone(), incident.clone())
                .is_none()
            {
                recent.order.push_back(incident.id.clone());
            }
        }
        let taken = tracker.restore(incidents);
        self.metrics.incidents_open.set(tracker.open_count() as i64);
        taken
    }

    /// Resolves the incidents quiet for the window before `now_ms`.
    pub fn resolve_idle(&self, now_ms: i64) -> Vec<IncidentEvent> {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let events = tracker.resolve_idle(now_ms);
        self.metrics.incidents_open.set(tracker.open_count() as i64);
        events
    }

    /// Counts `event`, keeps it for the API and tells the listener.
    pub fn record(&self, event: &IncidentEvent) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let incident = &event.incident;
            if recent
                .by_id
                .insert(incident.id.clone(), incident.clone())
                .is_none()
            {
                recent.order.push_back(incident.id.clone());
                if recent.order.len() > RECENT {
                    if let Some(old) = recent.order.pop_front() {
                        recent.by_id.remove(&old);
                    }
                }
            }
        }
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
