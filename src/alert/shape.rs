//! The one alert JSON shape: the webhook body, the Kafka message, the JSON
//! Lines record and the dead-letter entry all carry exactly this. Beside
//! findings, the same channels carry incident events ([`IncidentAlert`]),
//! told apart by their `"type": "incident"`.

use serde::{Deserialize, Serialize};

use super::redact::Redactor;
use keywatch_core::engine::{Detector, Evidence, Finding, Severity};
use keywatch_core::incident::{Change, Incident, IncidentEvent, Status, Step, Tactic};
use keywatch_core::owner::Owner;
use keywatch_core::types::Entity;

/// A finding made ready to leave the process: owner attached, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The finding's id: the same finding, also after a replay, has the same
    /// id, so receivers can de-duplicate.
    pub id: String,
    /// The detector that raised it.
    pub detector: Detector,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: Severity,
    /// The credential used.
    pub key_id: String,
    /// Who holds it, when the event says.
    pub principal: Option<String>,
    /// Who is responsible for the key, when the inventory says.
    pub owner: Option<String>,
    /// The owner's team, when the inventory says; alerts can be routed by it.
    pub team: Option<String>,
    /// Event time of the tripping event (RFC 3339).
    pub observed_at: String,
    /// One sentence for a responder.
    pub summary: String,
    /// Observed, baseline, threshold and why the key was eligible.
    pub evidence: Evidence,
    /// The tripping event, with configured fields dropped or masked.
    pub sample: serde_json::Map<String, serde_json::Value>,
    /// The incident the finding belongs to, when incidents are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
}

impl Alert {
    /// The alert for `finding`, owned by `owner`, every string scrubbed.
    pub fn from_finding(finding: &Finding, owner: Option<Owner>, redactor: &Redactor) -> Alert {
        let scrub = |s: &str| redactor.scrub(s).into_owned();
        let mut evidence = finding.evidence.clone();
        for value in [
            &mut evidence.observed,
            &mut evidence.baseline,
            &mut evidence.threshold,
        ] {
            redactor.scrub_json(value);
        }
        let (owner, team) = match owner {
            Some(o) => (Some(o.owner), o.team),
            None => (None, None),
        };
        Alert {
            id: finding.id.clone(),
            detector: finding.detector,
            severity: finding.severity,
            key_id: scrub(&finding.key_id),
            principal: finding.principal.as_deref().map(scrub),
            owner,
            team,
            observed_at: finding.observed_at.clone(),
            summary: scrub(&finding.summary),
            evidence,
            sample: redactor.sample(&finding.sample),
            incident_id: None,
        }
    }
}

/// The `type` of an incident event; findings carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// An incident event.
    Incident,
}

/// An incident event made ready to leave the process: owner attached,
/// secrets masked. Sent beside findings to the sinks that take both, and
/// alone to the paging sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentAlert {
    /// This event's id: the incident's, the change and the revision hashed.
    /// The same event, also after a replay, has the same id.
    pub id: String,
    /// Always `incident`: what tells an incident event from a finding.
    #[serde(rename = "type")]
    pub record: RecordType,
    /// `opened`, `updated`, `escalated` or `resolved`.
    pub event: Change,
    /// The incident's stable id (PagerDuty's `dedup_key`).
    pub incident_id: String,
    /// Combined severity.
    pub severity: Severity,
    /// Noisy-OR of its detectors' strongest findings.
    pub score: f64,
    /// `open` or `resolved`.
    pub status: Status,
    /// Two or more tactics past initial access from a new source or client.
    pub attack_sequence: bool,
    /// ATT&CK tactics, in the order first seen.
    pub tactics: Vec<Tactic>,
    /// `key_id` or `principal`.
    pub entity: Entity,
    /// The key or principal the incident is about.
    pub identity: String,
    /// The first key's id (routing, Kafka message key).
    pub key_id: String,
    /// Every key its findings were raised on.
    pub key_ids: Vec<String>,
    /// Who holds the keys.
    pub principal: Option<String>,
    /// The first key's owner, when the inventory says.
    pub owner: Option<String>,
    /// The owner's team; incidents are routed by it.
    pub team: Option<String>,
    /// Event time of its first finding.
    pub first_seen: String,
    /// Event time of its last finding.
    pub last_seen: String,
    /// One sentence for a responder.
    pub summary: String,
    /// How many findings.
    pub findings: u32,
    /// Findings per detector.
    pub detectors: Vec<(Detector, u32)>,
    /// Networks, clients and actions of the tripping events.
    pub networks: Vec<String>,
    /// User agents of the tripping events.
    pub clients: Vec<String>,
    /// Actions of the tripping events.
    pub actions: Vec<String>,
    /// Each finding with its event.
    pub timeline: Vec<Step>,
    /// The incident's revision: bumped by every change, so a receiver can
    /// tell the newest state of an incident from an older one arriving late.
    pub revision: u32,
}

impl IncidentAlert {
    /// The incident as it stood at this event (another instance's, read
    /// back from the findings topic).
    pub fn incident(&self) -> Incident {
        let mut value = serde_json::to_value(self).expect("an incident always serialises");
        if let Some(obj) = value.as_object_mut() {
            obj.insert("id".into(), self.incident_id.clone().into());
        }
        let mut incident: Incident =
            serde_json::from_value(value).expect("an incident event holds its incident");
        incident.restore_times();
        incident
    }

    /// The alert for `event`, owned by `owner`, every string scrubbed.
    pub fn from_event(
        event: &IncidentEvent,
        owner: Option<Owner>,
        redactor: &Redactor,
    ) -> IncidentAlert {
        let scrub = |s: &str| redactor.scrub(s).into_owned();
        let i = &event.incident;
        let (owner, team) = match owner {
            Some(o) => (Some(o.owner), o.team),
            None => (None, None),
        };
        let timeline = i
            .timeline
            .iter()
            .map(|s| Step {
                key_id: scrub(&s.key_id),
                summary: scrub(&s.summary),
                user_agent: s.user_agent.as_deref().map(scrub),
                ..s.clone()
            })
            .collect();
        IncidentAlert {
            id: event.id.clone(),
            record: RecordType::Incident,
            event: event.change,
            incident_id: i.id.clone(),
            severity: i.severity,
            score: (i.score * 1000.0).round() / 1000.0,
            status: i.status,
            attack_sequence: i.attack_sequence,
            tactics: i.tactics.clone(),
            entity: i.entity,
            identity: scrub(&i.identity),
            key_id: scrub(i.key_ids.first().map_or(&i.identity, |k| k)),
            key_ids: i.key_ids.iter().map(|k| scrub(k)).collect(),
            principal: i.principal.as_deref().map(scrub),
            owner,
            team,
            first_seen: i.first_seen.clone(),
            last_seen: i.last_seen.clone(),
            summary: scrub(&i.summary),
            findings: i.findings,
            detectors: i.detectors.clone(),
            networks: i.networks.clone(),
            clients: i.clients.iter().map(|c| scrub(c)).collect(),
            actions: i.actions.clone(),
            timeline,
            revision: i.revision,
        }
    }
}

/// What a queued record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A finding's alert ([`Alert`]).
    Finding,
    /// An incident event ([`IncidentAlert`]).
    Incident,
}

/// An alert serialised once. Queues hold this form (about a third of the
/// memory of the parsed [`Alert`], see `benches/alerts.rs`); the webhook,
/// Kafka and file sinks send its JSON as it is, the others decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedAlert {
    id: Box<str>,
    key_id: Box<str>,
    json: Box<str>,
    kind: Kind,
}

impl EncodedAlert {
    /// Serialises `alert`.
    pub fn new(alert: &Alert) -> EncodedAlert {
        EncodedAlert {
            id: alert.id.as_str().into(),
            key_id: alert.key_id.as_str().into(),
            json: serde_json::to_string(alert)
                .expect("an alert always serialises")
                .into(),
            kind: Kind::Finding,
        }
    }

    /// Serialises an incident event.
    pub fn incident(alert: &IncidentAlert) -> EncodedAlert {
        EncodedAlert {
            id: alert.id.as_str().into(),
            key_id: alert.key_id.as_str().into(),
            json: serde_json::to_string(alert)
                .expect("an incident always serialises")
                .into(),
            kind: Kind::Incident,
        }
    }

    /// A finding or an incident event.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The incident event back as a struct; `None` for a finding.
    pub fn decode_incident(&self) -> Option<IncidentAlert> {
        (self.kind == Kind::Incident)
            .then(|| serde_json::from_str(&self.json).expect("an encoded incident decodes"))
    }

    /// The alert's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The credential the alert is about.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The alert as JSON, one line.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Event time of the record in epoch milliseconds: a finding's
    /// `observed_at`, an incident event's `last_seen`.
    pub fn event_time_ms(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Times<'a> {
            #[serde(borrow)]
            observed_at: Option<&'a str>,
            #[serde(borrow)]
            last_seen: Option<&'a str>,
        }
        let t: Times<'_> = serde_json::from_str(&self.json).ok()?;
        let at = match self.kind {
            Kind::Finding => t.observed_at,
            Kind::Incident => t.last_seen,
        }?;
        chrono::DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The alert back as a struct, for sinks that reshape it. Only for a
    /// finding: incident events reach the sinks that reshape through
    /// [`EncodedAlert::decode_incident`].
    pub fn decode(&self) -> Alert {
        serde_json::from_str(&self.json).expect("an encoded alert decodes")
    }
}
