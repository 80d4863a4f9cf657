//! The schema a JSON-carrying sink writes an alert in: keywatch's own alert
//! (the default, unchanged), an OCSF Detection Finding, or an Elastic Common
//! Schema document; an incident event likewise (an OCSF Incident Finding,
//! an ECS alert document). One alert, three shapes of the same facts; the
//! dead-letter file always keeps the keywatch shape, so what is kept can be
//! sent again in any.

mod ecs;
mod ocsf;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::shape::{Alert, EncodedAlert, Kind};

pub use ocsf::OCSF_VERSION;

/// `format` on a sink that carries the alert as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// keywatch's alert, as documented in docs/alerts.md.
    #[default]
    Keywatch,
    /// An OCSF 1.3.0 Detection Finding (class 2004).
    Ocsf,
    /// An Elastic Common Schema document for Elastic Security.
    Ecs,
}

impl AlertFormat {
    /// The value as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertFormat::Keywatch => "keywatch",
            AlertFormat::Ocsf => "ocsf",
            AlertFormat::Ecs => "ecs",
        }
    }

    /// The alert as one line of JSON in this format. The keywatch shape is
    /// the queued JSON itself; the others are built from the decoded alert.
    pub fn render(self, alert: &EncodedAlert) -> Cow<'_, str> {
        match self {
            AlertFormat::Keywatch => Cow::Borrowed(alert.json()),
            _ => Cow::Owned(to_line(&self.value(alert))),
        }
    }

    /// The alert in this format as a JSON value (for sinks that wrap it).
    pub fn value(self, alert: &EncodedAlert) -> serde_json::Value {
        if self == AlertFormat::Keywatch {
            // A finding or an incident event, as queued.
            return serde_json::from_str(alert.json()).expect("an encoded alert is JSON");
        }
        match (self, alert.kind()) {
            (AlertFormat::Keywatch, _) => unreachable!("returned above"),
            (AlertFormat::Ocsf, Kind::Finding) => ocsf::finding(&alert.decode()),
            (AlertFormat::Ecs, Kind::Finding) => ecs::document(&alert.decode()),
            (AlertFormat::Ocsf, Kind::Incident) => ocsf::incident(&incident_of(alert)),
            (AlertFormat::Ecs, Kind::Incident) => ecs::incident(&incident_of(alert)),
        }
    }
}

fn incident_of(alert: &EncodedAlert) -> super::shape::IncidentAlert {
    alert
        .decode_incident()
        .expect("an incident record decodes as an incident")
}

fn to_line(v: &serde_json::Value) -> String {
    serde_json::to_string(v).expect("a JSON value always serialises")
}

/// An RFC 3339 time in epoch milliseconds (0 if unreadable, which keywatch
/// never writes).
fn epoch_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp_millis())
}

/// The alert's event time in epoch milliseconds.
fn observed_ms(alert: &Alert) -> i64 {
    epoch_ms(&alert.observed_at)
}

/// A sample field as text.
fn sample_str<'a>(alert: &'a Alert, field: &str) -> Option<&'a str> {
    alert.sample.get(field).and_then(|v| v.as_str())
}

/// The sample's source when it is an IP address.
fn source_ip(alert: &Alert) -> Option<std::net::IpAddr> {
    sample_str(alert, "source").and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests;
