//! The open incidents, one per identity, and what each finding does to them.

use std::collections::HashMap;

use super::{Change, Incident, IncidentEvent, IncidentsConfig, Status};
use crate::engine::Finding;
use crate::types::Entity;

/// What one finding did to the incidents.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The incident the finding joined.
    pub incident_id: String,
    /// What changed, in order: an incident the finding found stale resolved
    /// first, then the one it opened or changed.
    pub events: Vec<IncidentEvent>,
}

/// The open incidents, keyed by identity. Deterministic: the same findings
/// in the same order give the same incidents and events.
#[derive(Debug)]
pub struct Tracker {
    window_ms: i64,
    max_open: usize,
    max_timeline: usize,
    by_principal: bool,
    open: HashMap<(Entity, String), Incident>,
}

impl Tracker {
    /// A tracker per `cfg`; `by_principal` when the engine judges principals
    /// (`engine.entities` names `principal`): a principal's keys then share
    /// their incidents.
    pub fn new(cfg: &IncidentsConfig, by_principal: bool) -> Tracker {
        Tracker {
            window_ms: i64::try_from(cfg.window.0.as_millis()).unwrap_or(i64::MAX),
            max_open: cfg.max_open,
            max_timeline: cfg.max_timeline,
            by_principal,
            open: HashMap::new(),
        }
    }

    /// Incidents open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The open incidents, newest last finding first.
    pub fn open_incidents(&self) -> Vec<&Incident> {
        let mut v: Vec<_> = self.open.values().collect();
        v.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(a.id.cmp(&b.id)));
        v
    }

    /// The identity a finding's incident is about.
    fn identity_of(&self, f: &Finding) -> (Entity, String) {
        match &f.principal {
            Some(p) if self.by_principal || f.entity == Entity::Principal => {
                (Entity::Principal, p.clone())
            }
            _ => (Entity::KeyId, f.key_id.clone()),
        }
    }

    /// Adds a finding to its identity's open incident, or opens one. A
    /// finding already in the incident's timeline changes nothing. A folded
    /// finding (a run's record, already counted) should not be passed: it
    /// would count twice.
    pub fn observe(&mut self, f: &Finding) -> Observed {
        self.observe_at(f, f.observed_at_ms())
    }

    /// As [`Tracker::observe`], the finding taken as evidence at `at_ms`
    /// rather than its event's time: a responder's `confirmed` verdict,
    /// given now on a finding of any age, is news of now.
    pub fn observe_at(&mut self, f: &Finding, at_ms: i64) -> Observed {
        let key = self.identity_of(f);
        let mut events = Vec::new();
        let stale = self
            .open
            .get(&key)
            .is_some_and(|i| at_ms.saturating_sub(i.last_ms) >= self.window_ms);
        if stale {
            let mut old = self.open.remove(&key).expect("present");
            events.push(Self::resolve(&mut old));
        }
        if !self.open.contains_key(&key) && self.open.len() >= self.max_open {
            if let Some(oldest) = self
                .open
                .iter()
                .min_by(|a, b| a.1.last_ms.cmp(&b.1.last_ms).then(a.1.id.cmp(&b.1.id)))
                .map(|(k, _)| k.clone())
            {
                let mut old = self.open.remove(&oldest).expect("present");
                events.push(Self::resolve(&mut old));
            }
        }
        if let Some(incident) = self.open.get(&key) {
            // The same finding again (re-found while a partition catches
            // up): already in, nothing changes.
            if incident.timeline.iter().any(|s| s.finding_id == f.id) {
                return Observed {
                    incident_id: incident.id.clone(),
                    events,
                };
            }
        }
        let max_timeline = self.max_timeline;
        let (incident, change) = match self.open.get_mut(&key) {
            Some(incident) => {
                let escalated = incident.add(f, at_ms, max_timeline);
                let change = if escalated {
                    Change::Escalated
                } else {
                    Change::Updated
                };
                (incident, change)
            }
            None => {
                let mut incident = Incident::open(key.0, &key.1, f, at_ms);
                incident.add(f, at_ms, max_timeline);
                (self.open.entry(key).or_insert(incident), Change::Opened)
            }
        };
        events.push(IncidentEvent::new(change, incident));
        Observed {
            incident_id: incident.id.clone(),
            events,
        }
    }

    /// Takes back incidents that were open when the process stopped (read
    /// from the findings store at start), so a finding after a restart joins
    /// its identity's incident, under the same id, instead of opening a
    /// second one and paging again. Open ones only, at most `max_open`
    /// (pass the latest first); an identity already open here keeps its
    /// own. The number taken back.
    pub fn restore(&mut self, incidents: impl IntoIterator<Item = Incident>) -> usize {
        let mut taken = 0;
        for incident in incidents {
            if incident.status != Status::Open || self.open.len() >= self.max_open {
                continue;
            }
            let key = (incident.entity, incident.identity.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = self.open.entry(key) {
                slot.insert(incident);
                taken += 1;
            }
        }
        taken
    }

    /// Resolves every incident whose last finding is at least
    /// `incidents.window` before `now_ms`, oldest first.
    pub fn resolve_idle(&mut self, now_ms: i64) -> Vec<IncidentEvent> {
        let mut idle: Vec<_> = self
            .open
            .iter()
            .filter(|(_, i)| now_ms.saturating_sub(i.last_ms) >= self.window_ms)
            .map(|(k, i)| (i.last_ms, i.id.clone(), k.clone()))
            .collect();
        idle.sort();
        idle.into_iter()
            .map(|(_, _, k)| {
                let mut incident = self.open.remove(&k).expect("present");
                Self::resolve(&mut incident)
            })
            .collect()
    }

    /// Resolves every open incident (the end of a replay).
    pub fn resolve_all(&mut self) -> Vec<IncidentEvent> {
        self.resolve_idle(i64::MAX)
    }

    fn resolve(incident: &mut Incident) -> IncidentEvent {
        incident.status = Status::Resolved;
        incident.revision += 1;
        IncidentEvent::new(Change::Resolved, incident)
    }
}
