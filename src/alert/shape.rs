//! The one alert JSON shape: the webhook body, the Kafka message, the JSON
//! Lines record and the dead-letter entry all carry exactly this.

use serde::{Deserialize, Serialize};

use super::redact::Redactor;
use keywatch_core::engine::{Detector, Evidence, Finding, Severity};
use keywatch_core::owner::Owner;

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
        }
    }
}

/// An alert serialised once. Queues hold this form (about a third of the
/// memory of the parsed [`Alert`], see `benches/alerts.rs`); the webhook,
/// Kafka and file sinks send its JSON as it is, the others decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedAlert {
    id: Box<str>,
    key_id: Box<str>,
    json: Box<str>,
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
        }
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

    /// The alert back as a struct, for sinks that reshape it.
    pub fn decode(&self) -> Alert {
        serde_json::from_str(&self.json).expect("an encoded alert decodes")
    }
}
