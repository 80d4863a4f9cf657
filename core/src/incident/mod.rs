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
mod score;
pub mod tactics;
#[cfg(test)]
mod tests;
mod tracker;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use config::IncidentsConfig;
pub use score::{finding_weight, noisy_or, severity_of_score};
pub use tactics::Tactic;
pub use tracker::{Observed, Tracker};

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

impl Step {
    /// One line of a timeline for a chat or paging message: time,
    /// severity, detector and action.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.observed_at,
            self.severity.as_str(),
            self.detector,
            self.action.as_deref().unwrap_or("")
        )
    }
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
    /// Networks of the tripping events (/24 or /56, or a named source).
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

/// The network of a source as the detectors judge it: its /24 (IPv4) or
/// /56 (IPv6), or the name.
fn network_of(source: &str) -> String {
    match crate::decode::Source::parse(std::borrow::Cow::Borrowed(source)) {
        Some(ip @ crate::decode::Source::Ip(_)) => {
            crate::engine::source::SourceId::of(&ip).network_display()
        }
        _ => source.to_owned(),
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
