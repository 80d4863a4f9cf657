//! Incidents: one identity's findings, while they keep arriving, as one
//! thing a responder works — one page, one verdict.
//!
//! Findings on one identity (the principal when the event names one, so a
//! principal's keys share their incidents; the key otherwise) belong to one
//! incident while each arrives within `incidents.window` of the incident's
//! last one, in event time. The incident's id is a hash of its identity and
//! its first finding's id, so replaying the same events gives the same
//! incidents with the same ids.
//!
//! # Score
//!
//! Each finding stands for a probability that the identity is misused, from
//! its severity ([`finding_weight`]). Findings of one detector are one piece
//! of evidence (six new actions in one burst are one observation of scope
//! creep, not six), so the strongest finding per detector counts; the
//! detectors' weights combine by noisy-OR: `score = 1 − Π(1 − p_d)`, the
//! chance that at least one signal is real if each were independent. Two
//! medium findings of different detectors make 0.64 (medium), three make
//! 0.78 (high); a high new network with a listed source, a new client and
//! new actions passes 0.95 (critical). The incident's severity is the
//! highest of its findings' and the score's ([`severity_of_score`]), and
//! never falls.
//!
//! # Attack sequences
//!
//! Every finding maps to ATT&CK tactics through [`tactics::TACTICS`]. An
//! incident whose findings span two or more tactics after initial access,
//! with one of them from a source or client new to the identity, is an
//! attack sequence: critical, its tactic chain (in the order first seen)
//! in its summary.

pub mod config;
pub mod tactics;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use config::IncidentsConfig;
pub use tactics::Tactic;

use crate::engine::{Detector, Finding, Severity};
use crate::types::Entity;

/// Most networks, clients and actions an incident lists; more are counted.
const MAX_LISTED: usize = 20;

/// Whether an incident is still collecting findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Findings may still join it.
    Open,
    /// Quiet for `incidents.window`: a new finding opens a new incident.
    Resolved,
}

impl Status {
    /// Name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
        }
    }
}

/// One finding in an incident's timeline, with its event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The finding's id.
    pub finding_id: String,
    /// Its detector.
    pub detector: Detector,
    /// Its severity.
    pub severity: Severity,
    /// The key it was raised on.
    pub key_id: String,
    /// Event time (RFC 3339).
    pub observed_at: String,
    /// The finding's sentence.
    pub summary: String,
    /// The tactics it is a step of.
    pub tactics: Vec<Tactic>,
    /// The tripping event's source, client and action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Its action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// One identity's findings while they keep arriving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id: its identity and first finding, hashed.
    pub id: String,
    /// What the incident is about: `key_id` or `principal`.
    pub entity: Entity,
    /// The key or principal.
    pub identity: String,
    /// The principal, when the findings name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The keys its findings were raised on, first seen first.
    pub key_ids: Vec<String>,
    /// Open or resolved.
    pub status: Status,
    /// Its findings' and its score's severity, critical for an attack sequence.
    pub severity: Severity,
    /// Noisy-OR of its detectors' strongest findings, in [0, 1].
    pub score: f64,
    /// Two or more tactics past initial access, from a source or client new
    /// to the identity.
    pub attack_sequence: bool,
    /// The tactics its findings map to, in the order first seen.
    pub tactics: Vec<Tactic>,
    /// One sentence for a responder.
    pub summary: String,
    /// Event time of its first finding (RFC 3339).
    pub first_seen: String,
    /// Event time of its last finding (RFC 3339).
    pub last_seen: String,
    /// Findings in it (the timeline keeps the first `incidents.max_timeline`).
    pub findings: u32,
    /// Findings per detector.
    pub detectors: Vec<(Detector, u32)>,
    /// Networks of the tripping events (/24 or /64, or a named source).
    pub networks: Vec<String>,
    /// User agents of the tripping events.
    pub clients: Vec<String>,
    /// Actions of the tripping events.
    pub actions: Vec<String>,
    /// Each finding with its event, in arrival order.
    pub timeline: Vec<Step>,
    /// Bumped by every change; an event's id is the incident's and this.
    pub revision: u32,
    #[serde(skip)]
    first_ms: i64,
    #[serde(skip)]
    last_ms: i64,
    /// Strongest weight per detector (the score's inputs).
    #[serde(skip)]
    weights: Vec<(Detector, f64)>,
    #[serde(skip)]
    new_origin: bool,
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Its first finding.
    Opened,
    /// Another finding, the severity unchanged.
    Updated,
    /// Another finding raised its severity (or made it an attack sequence).
    Escalated,
    /// Quiet for `incidents.window`.
    Resolved,
}

impl Change {
    /// Name in incident events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Opened => "opened",
            Change::Updated => "updated",
            Change::Escalated => "escalated",
            Change::Resolved => "resolved",
        }
    }
}

/// An incident as it stands after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    /// Stable id of this event: the incident's id, the change and the
    /// revision, hashed. Receivers de-duplicate on it.
    pub id: String,
    /// What changed.
    pub change: Change,
    /// The incident after it.
    pub incident: Incident,
}

impl IncidentEvent {
    fn new(change: Change, incident: &Incident) -> IncidentEvent {
        let mut buf = Vec::with_capacity(48);
        buf.extend_from_slice(incident.id.as_bytes());
        buf.push(0);
        buf.extend_from_slice(change.as_str().as_bytes());
        buf.extend_from_slice(&incident.revision.to_le_bytes());
        IncidentEvent {
            id: format!("{:032x}", xxh3_128(&buf)),
            change,
            incident: incident.clone(),
        }
    }
}

/// The probability a finding of this severity stands for: the scale the
/// detectors' own severities are set on (a high `new_source` is a network
/// new to a key that almost never meets one).
pub fn finding_weight(severity: Severity) -> f64 {
    match severity {
        Severity::Info => 0.05,
        Severity::Low => 0.2,
        Severity::Medium => 0.4,
        Severity::High => 0.7,
        Severity::Critical => 0.95,
    }
}

/// The severity of a combined score: each line is a single finding's
/// weight, so one finding keeps its severity and only combined evidence
/// moves an incident up.
pub fn severity_of_score(score: f64) -> Severity {
    if score >= 0.95 {
        Severity::Critical
    } else if score >= 0.7 {
        Severity::High
    } else if score >= 0.4 {
        Severity::Medium
    } else if score >= 0.2 {
        Severity::Low
    } else {
        Severity::Info
    }
}

/// Noisy-OR: the chance at least one of independent signals is real,
/// rounded to 1e-9 so that one finding's score is its weight exactly
/// (1 − (1 − 0.2) is 0.19999999999999996 in floating point, below the line
/// of `low`).
pub fn noisy_or(weights: impl IntoIterator<Item = f64>) -> f64 {
    let p = 1.0
        - weights
            .into_iter()
            .map(|p| 1.0 - p.clamp(0.0, 1.0))
            .product::<f64>();
    (p * 1e9).round() / 1e9
}

/// Detectors whose finding says the key met a source or client new to it.
fn new_origin(detector: Detector) -> bool {
    matches!(
        detector,
        Detector::NewSource
            | Detector::NewUserAgent
            | Detector::ListedSource
            | Detector::ImpossibleTravel
            | Detector::CloudCredentialOutsideCloud
            | Detector::SourceFanout
            | Detector::OutsideAllowlist
            | Detector::NewIdentitySensitiveAction
    )
}

/// The network of a source: its /24 (IPv4) or /64 (IPv6), or the name.
fn network_of(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let [a, b, c, _] = a.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(a)) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => source.to_owned(),
    }
}

fn push_listed(list: &mut Vec<String>, value: &str) {
    if list.len() < MAX_LISTED && !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Incident {
    fn open(entity: Entity, identity: &str, first: &Finding, at_ms: i64) -> Incident {
        let mut buf = Vec::with_capacity(identity.len() + 48);
        buf.extend_from_slice(entity.as_str().as_bytes());
        buf.push(0);
        buf.extend_from_slice(identity.as_bytes());
        buf.push(0);
        buf.extend_from_slice(first.id.as_bytes());
        Incident {
            id: format!("{:032x}", xxh3_128(&buf)),
            entity,
            identity: identity.to_owned(),
            principal: first.principal.clone(),
            key_ids: Vec::new(),
            status: Status::Open,
            severity: Severity::Info,
            score: 0.0,
            attack_sequence: false,
            tactics: Vec::new(),
            summary: String::new(),
            first_seen: rfc3339(at_ms),
            last_seen: rfc3339(at_ms),
            findings: 0,
            detectors: Vec::new(),
            networks: Vec::new(),
            clients: Vec::new(),
            actions: Vec::new(),
            timeline: Vec::new(),
            revision: 0,
            first_ms: at_ms,
            last_ms: at_ms,
            weights: Vec::new(),
            new_origin: false,
        }
    }

    /// Restores the times kept out of its JSON (an incident read back from
    /// the store or a topic) from `first_seen` and `last_seen`.
    pub fn restore_times(&mut self) {
        let ms = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        };
        self.first_ms = ms(&self.first_seen);
        self.last_ms = ms(&self.last_seen);
    }

    /// Event time of its last finding, epoch milliseconds.
    pub fn last_seen_ms(&self) -> i64 {
        self.last_ms
    }

    /// Event time of its first finding, epoch milliseconds.
    pub fn first_seen_ms(&self) -> i64 {
        self.first_ms
    }

    /// The tactic chain as written in summaries: "discovery → persistence".
    pub fn chain(&self) -> String {
        self.tactics
            .iter()
            .map(|t| t.text())
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Adds `f`; returns whether the severity rose (or it became an attack
    /// sequence).
    fn add(&mut self, f: &Finding, at_ms: i64, max_timeline: usize) -> bool {
        let before = (self.severity, self.attack_sequence);
        self.first_ms = self.first_ms.min(at_ms);
        self.last_ms = self.last_ms.max(at_ms);
        self.first_seen = rfc3339(self.first_ms);
        self.last_seen = rfc3339(self.last_ms);
        self.findings += 1;
        self.revision += 1;
        if self.principal.is_none() {
            self.principal = f.principal.clone();
        }
        push_listed(&mut self.key_ids, &f.key_id);
        match self.detectors.iter_mut().find(|(d, _)| *d == f.detector) {
            Some((_, n)) => *n += 1,
            None => self.detectors.push((f.detector, 1)),
        }
        let weight = finding_weight(f.severity);
        match self.weights.iter_mut().find(|(d, _)| *d == f.detector) {
            Some((_, w)) => *w = w.max(weight),
            None => self.weights.push((f.detector, weight)),
        }
        self.score = noisy_or(self.weights.iter().map(|(_, w)| *w));
        self.new_origin |= new_origin(f.detector);
        let sample = &f.sample;
        if let Some(s) = &sample.source {
            push_listed(&mut self.networks, &network_of(s));
        }
        if let Some(ua) = &sample.user_agent {
            push_listed(&mut self.clients, ua);
        }
        if let Some(a) = &sample.action {
            push_listed(&mut self.actions, a);
        }
        let tactics = tactics::of_finding(f.detector, sample.action.as_deref());
        for t in &tactics {
            if !self.tactics.contains(t) {
                self.tactics.push(*t);
            }
        }
        if self.timeline.len() < max_timeline {
            self.timeline.push(Step {
                finding_id: f.id.clone(),
                detector: f.detector,
                severity: f.severity,
                key_id: f.key_id.clone(),
                observed_at: f.observed_at.clone(),
                summary: f.summary.clone(),
                tactics,
                source: sample.source.clone(),
                user_agent: sample.user_agent.clone(),
                action: sample.action.clone(),
            });
        }
        let past_access = self
            .tactics
            .iter()
            .filter(|t| **t != Tactic::InitialAccess)
            .count();
        self.attack_sequence = self.new_origin && past_access >= 2;
        let combined = if self.attack_sequence {
            Severity::Critical
        } else {
            f.severity.max(severity_of_score(self.score))
        };
        self.severity = self.severity.max(combined);
        self.summary = self.sentence();
        (self.severity, self.attack_sequence) != before
    }

    fn sentence(&self) -> String {
        let who = match (self.entity, &self.principal) {
            (Entity::Principal, _) => format!("principal {}", self.identity),
            (Entity::KeyId, Some(p)) => format!("key {} ({p})", self.identity),
            (Entity::KeyId, None) => format!("key {}", self.identity),
        };
        let detectors = self
            .detectors
            .iter()
            .map(|(d, n)| {
                if *n > 1 {
                    format!("{} ×{n}", d.as_str())
                } else {
                    d.as_str().to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let minutes = (self.last_ms - self.first_ms) / 60_000;
        let span = if minutes == 0 {
            "within a minute".to_owned()
        } else {
            format!("over {minutes} min")
        };
        let networks = if self.networks.is_empty() {
            String::new()
        } else {
            format!(" from {}", self.networks.join(", "))
        };
        let head = if self.attack_sequence {
            format!("attack sequence ({}) on ", self.chain())
        } else {
            String::new()
        };
        let tail = if self.attack_sequence || self.tactics.is_empty() {
            String::new()
        } else {
            format!("; tactics: {}", self.chain())
        };
        format!(
            "{head}{who}: {n} finding{s} {span}{networks} ({detectors}), score {score:.2}{tail}.",
            n = self.findings,
            s = if self.findings == 1 { "" } else { "s" },
            score = self.score,
        )
    }
}

/// Which incidents a list shows (`/api/v1/incidents`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Open or resolved.
    pub status: Option<Status>,
    /// Lowest severity.
    pub severity: Option<Severity>,
    /// The key or principal it is about.
    pub identity: Option<String>,
    /// One of its keys.
    pub key_id: Option<String>,
    /// One of its tactics.
    pub tactic: Option<Tactic>,
    /// Attack sequences only (or none of them).
    pub attack_sequence: Option<bool>,
    /// Last finding at or after (epoch ms).
    pub since_ms: Option<i64>,
    /// First finding before (epoch ms).
    pub until_ms: Option<i64>,
}

impl Filter {
    /// Whether `incident` is in the list.
    pub fn matches(&self, incident: &Incident) -> bool {
        self.status.is_none_or(|s| incident.status == s)
            && self.severity.is_none_or(|s| incident.severity >= s)
            && self
                .identity
                .as_ref()
                .is_none_or(|i| &incident.identity == i)
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| incident.key_ids.contains(k))
            && self.tactic.is_none_or(|t| incident.tactics.contains(&t))
            && self
                .attack_sequence
                .is_none_or(|a| incident.attack_sequence == a)
            && self.since_ms.is_none_or(|t| incident.last_ms >= t)
            && self.until_ms.is_none_or(|t| incident.first_ms < t)
    }
}

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
        let at_ms = f.observed_at_ms();
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
