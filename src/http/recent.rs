//! Recent findings for the API, and the capped `keywatch_anomaly_active`
//! series that lets a Prometheus rule name the key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keywatch_core::engine::Finding;
use keywatch_core::metrics::Metrics;

type Series = (String, &'static str, &'static str);

/// A bounded ring of recent findings and the active-anomaly gauge's series.
pub struct RecentFindings {
    ring: Mutex<VecDeque<Arc<Finding>>>,
    capacity: usize,
    active: Mutex<HashMap<Series, Instant>>,
    max_active: usize,
    cooldown: Duration,
    metrics: Arc<Metrics>,
}

impl RecentFindings {
    /// Keeps `capacity` findings; exports at most `max_active` series, each
    /// for `cooldown` after its finding.
    pub fn new(
        capacity: usize,
        max_active: usize,
        cooldown: Duration,
        metrics: Arc<Metrics>,
    ) -> RecentFindings {
        RecentFindings {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            active: Mutex::new(HashMap::new()),
            max_active,
            cooldown,
            metrics,
        }
    }

    /// Records a finding.
    pub fn record(&self, f: &Finding) {
        if let Ok(mut ring) = self.ring.lock() {
            if f.folded.is_some() {
                // A run's record: the latest replaces the one before.
                ring.retain(|old| old.id != f.id);
            }
            if ring.len() >= self.capacity {
                ring.pop_front();
            }
            ring.push_back(Arc::new(f.clone()));
        }
        let series = (f.key_id.clone(), f.detector.as_str(), f.severity.as_str());
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        if !active.contains_key(&series) && active.len() >= self.max_active {
            self.metrics.anomaly_active_dropped.inc();
            return;
        }
        self.metrics
            .anomaly_active
            .with_label_values(&[&series.0, series.1, series.2])
            .set(1);
        active.insert(series, Instant::now() + self.cooldown);
    }

    /// Removes series whose cooldown has passed.
    pub fn expire(&self) {
        let now = Instant::now();
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        active.retain(|(key, detector, severity), until| {
            let keep = *until > now;
            if !keep {
                let _ = self.metrics.anomaly_active.remove_label_values(&[
                    key.as_str(),
                    detector,
                    severity,
                ]);
            }
            keep
        });
    }

    /// Findings, oldest first, that pass `filter`; at most `limit`, newest kept.
    pub fn list(&self, limit: usize, filter: impl Fn(&Finding) -> bool) -> Vec<Arc<Finding>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Finding>> = ring
            .iter()
            .rev()
            .filter(|f| filter(f))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// One finding by id.
    pub fn get(&self, id: &str) -> Option<Arc<Finding>> {
        self.ring
            .lock()
            .ok()?
            .iter()
            .rev()
            .find(|f| f.id == id)
            .cloned()
    }
}
